//! Echoes lines on persistent connections, a line per message: the handler
//! serves one line per call and the connection is parked in the system's
//! poller between lines, so thousands of idle clients cost no threads.
//!
//! Usage: `cargo run --example persistent_echo -- HOST:PORT [--workers N]` (port 0
//! picks a free port). Prints `listening on ADDRESS` once bound, serves until SIGINT
//! or SIGTERM (a line in progress gets the 3 s drain timeout; a second signal ends it
//! at once).

use std::io::{self, Write};

use socketserver::handlers::EchoLines;
use socketserver::{ParkingDispatch, ServerBuilder, DEFAULT_POLL_INTERVAL};

fn usage() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "usage: persistent_echo HOST:PORT [--workers N]",
    )
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "localhost:9999".into());
    let workers = match (args.next().as_deref(), args.next()) {
        (None, _) => None,
        (Some("--workers"), Some(n)) => match n.parse::<usize>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(usage()),
        },
        _ => return Err(usage()),
    };
    let mut server = ServerBuilder::tcp(address.as_str())
        .request_queue_size(1024)
        .build_with(|config| {
            let dispatch = ParkingDispatch::new(|| EchoLines, config);
            match workers {
                Some(n) => dispatch.workers(n),
                None => dispatch,
            }
        })?;
    let _signals = server.shutdown_handle().stop_on_signals()?;
    println!("listening on {}", server.local_addr());
    io::stdout().flush()?;
    server.serve_forever(DEFAULT_POLL_INTERVAL)?;
    server.server_close();
    Ok(())
}
