//! The docs' UDP example on a Unix datagram socket; clients must bind a path of
//! their own to get the reply. The socket file is removed when the server exits.
//!
//! Usage: `cargo run --example unix_datagram_server -- PATH` (port 0 picks a free port).
//! Prints `listening on ADDRESS` once bound, serves until SIGINT or SIGTERM (a request in
//! progress gets the 3 s drain timeout to finish; a second signal ends it at once).

use std::io::{self, Write};

use socketserver::handlers::UpperDatagram;
use socketserver::{UnixDatagramServer, DEFAULT_POLL_INTERVAL};

fn main() -> io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/socketserver-example-dgram.sock".into());
    let mut server = UnixDatagramServer::inherit_or_bind(address, || UpperDatagram)?;
    let _signals = server.shutdown_handle().stop_on_signals()?;
    println!("listening on {}", server.local_addr());
    io::stdout().flush()?;
    server.serve_forever(DEFAULT_POLL_INTERVAL)?;
    server.server_close();
    Ok(())
}
