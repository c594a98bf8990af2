//! The Python docs' `socketserver.UDPServer` example: `MyUDPHandler` replies with the
//! datagram, stripped and upper-cased.
//!
//! Usage: `cargo run --example udp_server -- HOST:PORT` (port 0 picks a free port).
//! Prints `listening on ADDRESS` once bound, serves until SIGINT or SIGTERM (a request in
//! progress gets the 3 s drain timeout to finish; a second signal ends it at once). On WASI,
//! which has no signals, it serves until the host ends it (`wasmtime run -S inherit-network=y
//! -S tcp=y -S udp=y EXAMPLE.wasm HOST:PORT`; see docs/guide/wasi.md).

use std::io::{self, Write};

use socketserver::handlers::UpperDatagram;
use socketserver::{UdpServer, DEFAULT_POLL_INTERVAL};

fn main() -> io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost:9999".into());
    let mut server = UdpServer::inherit_or_bind(address.as_str(), || UpperDatagram)?;
    #[cfg(not(target_os = "wasi"))]
    let _signals = server.shutdown_handle().stop_on_signals()?;
    println!("listening on {}", server.local_addr());
    io::stdout().flush()?;
    server.serve_forever(DEFAULT_POLL_INTERVAL)?;
    server.server_close();
    Ok(())
}
