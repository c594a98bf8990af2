//! The Python docs' `ThreadingTCPServer` example: `ThreadedTCPRequestHandler` reads once
//! (at most 1024 bytes) and replies `{thread name}: {data}`, from a thread per request,
//! or with `--pool N` from one of N worker threads started once.
//!
//! Usage: `cargo run --example threaded_server -- HOST:PORT [--pool N]` (port 0 picks a
//! free port). Prints `listening on ADDRESS` once bound, serves until SIGINT or SIGTERM
//! (requests in progress get the 3 s drain timeout; a second signal ends it at once).

use std::io::{self, Write};
use std::thread;

use socketserver::os::TcpTransport;
use socketserver::{
    Connection, Dispatch, Error, PoolDispatch, ServerBuilder, SocketServer, StreamHandler,
    StreamRequest, ThreadingDispatch, DEFAULT_POLL_INTERVAL,
};

/// The docs' `ThreadedTCPRequestHandler`.
struct ThreadedTcpRequestHandler;

impl<C: Connection> StreamHandler<C> for ThreadedTcpRequestHandler {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let mut data = [0u8; 1024];
        let n = req.connection().read(&mut data).map_err(Error::from_io)?;
        let current = thread::current();
        let name = current.name().unwrap_or("unnamed");
        let reply = format!("{name}: {}", String::from_utf8_lossy(&data[..n]));
        req.wfile.write_all(reply.as_bytes())
    }
}

fn serve<D: Dispatch<TcpTransport>>(mut server: SocketServer<TcpTransport, D>) -> io::Result<()> {
    let _signals = server.shutdown_handle().stop_on_signals()?;
    println!("listening on {}", server.local_addr());
    io::stdout().flush()?;
    server.serve_forever(DEFAULT_POLL_INTERVAL)?;
    server.server_close();
    Ok(())
}

fn usage() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "usage: threaded_server HOST:PORT [--pool N]",
    )
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "localhost:9999".into());
    let pool = match (args.next().as_deref(), args.next()) {
        (None, _) => None,
        (Some("--pool"), Some(n)) => Some(n.parse::<usize>().map_err(|_| usage())?),
        _ => return Err(usage()),
    };
    let builder = ServerBuilder::tcp(address.as_str()).socket_activation(true);
    let factory = || ThreadedTcpRequestHandler;
    match pool {
        Some(0) => Err(usage()),
        Some(workers) => serve(builder.build_with(|config| {
            PoolDispatch::new(factory, config)
                .workers(workers)
                .thread_name("Worker")
        })?),
        None => {
            serve(builder.build_with(|config| {
                ThreadingDispatch::new(factory, config).thread_name("Thread")
            })?)
        }
    }
}
