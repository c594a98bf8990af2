//! The docs' UDP example on a Unix datagram socket; clients must bind a path of
//! their own to get the reply. The socket file is removed when the server exits.
//!
//! Usage: `cargo run --example unix_datagram_server -- PATH` (port 0 picks a free port).
//! Prints `listening on ADDRESS` once bound, serves until SIGINT or SIGTERM (a request in
//! progress gets the 3 s drain timeout to finish; a second signal ends it at once).

#[cfg(unix)]
#[path = "common/args.rs"]
mod args;

#[cfg(unix)]
use std::io::{self, Write};

#[cfg(unix)]
use socketserver::handlers::UpperDatagram;
#[cfg(unix)]
use socketserver::{UnixDatagramServer, DEFAULT_POLL_INTERVAL};

#[cfg(unix)]
fn main() -> io::Result<()> {
    let mut args = args::Args::parse("usage: unix_datagram_server [PATH]");
    let address = args.next_or("/tmp/socketserver-example-dgram.sock");
    args.done();
    let mut server = UnixDatagramServer::inherit_or_bind(address, || UpperDatagram)?;
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
    eprintln!("unix_datagram_server needs Unix (Unix domain sockets)");
    std::process::exit(2);
}
