//! The docs' TCP example on a Unix stream socket: one read, stripped, sent back
//! upper-cased. The socket file is removed when the server exits.
//!
//! Usage: `cargo run --example unix_stream_server -- PATH` (port 0 picks a free port).
//! Prints `listening on ADDRESS` once bound, serves until SIGINT or SIGTERM (a request in
//! progress gets the 3 s drain timeout to finish; a second signal ends it at once).

#[cfg(unix)]
#[path = "common/args.rs"]
mod args;

#[cfg(unix)]
use std::io::{self, Write};

#[cfg(unix)]
use socketserver::handlers::UpperOnce;
#[cfg(unix)]
use socketserver::{UnixStreamServer, DEFAULT_POLL_INTERVAL};

#[cfg(unix)]
fn main() -> io::Result<()> {
    let mut args = args::Args::parse("usage: unix_stream_server [PATH]");
    let address = args.next_or("/tmp/socketserver-example.sock");
    args.done();
    let mut server = UnixStreamServer::inherit_or_bind(address, || UpperOnce)?;
    let _signals = server.shutdown_handle().stop_on_signals()?;
    println!("listening on {}", server.local_addr());
    io::stdout().flush()?;
    server.serve_forever(DEFAULT_POLL_INTERVAL)?;
    server.server_close();
    Ok(())
}

// Unix domain sockets: Unix only, as in Python.
#[cfg(not(unix))]
fn main() {
    eprintln!("unix_stream_server needs Unix (Unix domain sockets)");
    std::process::exit(2);
}
