//! The Python docs' `ThreadingTCPServer` example: `ThreadedTCPRequestHandler` reads once
//! (at most 1024 bytes) and replies `{thread name}: {data}`, from a thread per request,
//! or with `--pool N` from one of N worker threads started once.
//!
//! Usage: `cargo run --example threaded_server -- HOST:PORT [--pool N]` (port 0 picks a
//! free port). Prints `listening on ADDRESS` once bound, serves until SIGINT or SIGTERM
//! (requests in progress get the 3 s drain timeout; a second signal ends it at once).

#[path = "common/args.rs"]
mod args;

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

fn main() -> io::Result<()> {
    let mut args = args::Args::parse("usage: threaded_server [HOST:PORT] [--pool N]");
    let pool: Option<usize> = args.option("--pool");
    let address = args.address("localhost:9999");
    if pool == Some(0) {
        args.fail("--pool wants at least one worker");
    }
    args.done();
    let builder = ServerBuilder::tcp(address.as_str()).socket_activation(true);
    let factory = || ThreadedTcpRequestHandler;
    match pool {
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
