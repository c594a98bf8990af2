//! The Python docs' `ForkingTCPServer` flavour of the threaded example: each request is
//! served in a child process, which reads once (at most 1024 bytes) and replies
//! `{pid}: {data}` with its own process id.
//!
//! Usage: `cargo run --example forking_server -- HOST:PORT` (port 0 picks a free port).
//! Prints `listening on ADDRESS` once bound, serves until SIGINT or SIGTERM; closing
//! waits for the children still running, for the 3 s drain timeout, then stops them
//! (a second signal ends it at once).

use std::io::{self, Write};

use socketserver::{
    Connection, Error, ForkingTcpServer, StreamHandler, StreamRequest, DEFAULT_POLL_INTERVAL,
};

/// Replies with the serving process's id and the data.
struct ForkedRequestHandler;

impl<C: Connection> StreamHandler<C> for ForkedRequestHandler {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let mut data = [0u8; 1024];
        let n = req.connection().read(&mut data).map_err(Error::from_io)?;
        let reply = format!(
            "{}: {}",
            std::process::id(),
            String::from_utf8_lossy(&data[..n])
        );
        req.wfile.write_all(reply.as_bytes())
    }
}

fn main() -> io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost:9999".into());
    let mut server = ForkingTcpServer::inherit_or_bind(address.as_str(), || ForkedRequestHandler)?;
    let _signals = server.shutdown_handle().stop_on_signals()?;
    println!("listening on {}", server.local_addr());
    io::stdout().flush()?;
    server.serve_forever(DEFAULT_POLL_INTERVAL)?;
    server.server_close();
    Ok(())
}
