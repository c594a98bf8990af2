//! Pre-forked workers on one port: N worker processes, started once, serve the same
//! listening socket, each with the synchronous loop; a supervisor replaces a worker
//! that dies. Like `forking_server`, each request is read once (at most 1024 bytes)
//! and answered `{pid}: {data}` with the serving worker's process id.
//!
//! Usage: `cargo run --example prefork_server -- HOST:PORT [--workers N]` (default 2
//! workers; port 0 picks a free port). Prints `listening on ADDRESS` once bound, serves
//! until SIGINT or SIGTERM to the supervisor: each worker then finishes its request
//! within the 3 s drain timeout and ends. Workers end with the supervisor, even when it
//! is killed, and leave a signal sent to the whole process group to it.

use std::io::{self, Write};

use socketserver::{Connection, Error, Prefork, StreamHandler, StreamRequest, TcpServer};

/// Replies with the serving worker's process id and the data.
struct WorkerReply;

impl<C: Connection> StreamHandler<C> for WorkerReply {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let mut data = [0u8; 1024];
        let n = req.connection().read(&mut data).map_err(Error::from_io)?;
        let pid = std::process::id();
        let reply = format!("{pid}: {}", String::from_utf8_lossy(&data[..n]));
        req.wfile.write_all(reply.as_bytes())
    }
}

fn usage() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "usage: prefork_server HOST:PORT [--workers N] (N at least 1)",
    )
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "localhost:9999".into());
    let workers = match (args.next().as_deref(), args.next()) {
        (None, _) => 2,
        (Some("--workers"), Some(n)) => n.parse::<usize>().map_err(|_| usage())?,
        _ => return Err(usage()),
    };
    if workers == 0 {
        return Err(usage());
    }
    let server = TcpServer::new(address.as_str(), || WorkerReply)?;
    let mut prefork = Prefork::new(server, workers);
    let _signals = prefork.shutdown_handle().stop_on_signals()?;
    println!("listening on {}", prefork.local_addr());
    io::stdout().flush()?;
    prefork.serve()
}
