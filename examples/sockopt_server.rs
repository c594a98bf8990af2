//! A std-only handler that reaches its own socket (Python's `self.request`):
//! it reads the client's line, then replies with one line read from the
//! connection's socket, `peer=IP:PORT rcvbuf=N nodelay=BOOL`, and closes.
//!
//! The handler is written for [`TcpConnection`], not for any
//! `C: Connection`, so `req.connection()` is the std connection itself:
//! its `socket2::Socket`, descriptor and `SocketAddr`, with no downcast.
//!
//! Usage: `cargo run --example sockopt_server -- HOST:PORT` (port 0 picks a
//! free port). Prints `listening on ADDRESS` once bound, serves until
//! SIGINT or SIGTERM.

use std::io::{self, Write};

use socketserver::os::TcpConnection;
use socketserver::{
    Error, StreamHandler, StreamOptions, StreamRequest, TcpServer, DEFAULT_POLL_INTERVAL,
};

/// Replies with what its socket says about itself.
struct SockOpt;

impl StreamHandler<TcpConnection> for SockOpt {
    fn options(&self) -> StreamOptions {
        // Python's `disable_nagle_algorithm = True`: the reply shows it arrived.
        StreamOptions::new().disable_nagle_algorithm(true)
    }

    fn handle(&mut self, req: &mut StreamRequest<'_, TcpConnection>) -> Result<(), Error> {
        req.rfile.read_line()?;
        let (peer, rcvbuf, nodelay) = {
            let conn = req.connection();
            let socket = conn.socket(); // socket2::Socket: any option there is
            (
                conn.peer_addr()?,
                socket.recv_buffer_size()?,
                socket.tcp_nodelay()?,
            )
        };
        writeln!(req.wfile, "peer={peer} rcvbuf={rcvbuf} nodelay={nodelay}")
    }
}

fn main() -> io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost:9999".into());
    let mut server = TcpServer::inherit_or_bind(address.as_str(), || SockOpt)?;
    let _signals = server.shutdown_handle().stop_on_signals()?;
    println!("listening on {}", server.local_addr());
    io::stdout().flush()?;
    server.serve_forever(DEFAULT_POLL_INTERVAL)?;
    server.server_close();
    Ok(())
}
