//! The docs' TCP example on a Unix stream socket: one read, stripped, sent back
//! upper-cased. The socket file is removed when the server exits.
//!
//! Usage: `cargo run --example unix_stream_server -- PATH` (port 0 picks a free port).
//! Prints `listening on ADDRESS` once bound, serves until SIGINT or SIGTERM (a request in
//! progress gets the 3 s drain timeout to finish; a second signal ends it at once).

use std::io::{self, Write};

use socketserver::handlers::UpperOnce;
use socketserver::{UnixStreamServer, DEFAULT_POLL_INTERVAL};

fn main() -> io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/socketserver-example.sock".into());
    let mut server = UnixStreamServer::inherit_or_bind(address, || UpperOnce)?;
    let _signals = server.shutdown_handle().stop_on_signals()?;
    println!("listening on {}", server.local_addr());
    io::stdout().flush()?;
    server.serve_forever(DEFAULT_POLL_INTERVAL)?;
    server.server_close();
    Ok(())
}
