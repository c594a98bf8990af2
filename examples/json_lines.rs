//! JSON objects, one per line, read from `rfile` with serde_json through
//! `std::io`: `{"name": "NAME"}` gets the line `hello NAME`. A line that is
//! not a valid object ends the connection, and serde's message reaches
//! `handle_error` (printed on stderr by the default hooks).
//!
//! Usage: `cargo run --example json_lines -- HOST:PORT` (port 0 picks a free
//! port). Prints `listening on ADDRESS` once bound, serves a thread per
//! connection until SIGINT or SIGTERM.

use std::io::{self, Write};

use serde::Deserialize;
use socketserver::{
    Connection, Error, StreamHandler, StreamRequest, ThreadingTcpServer, DEFAULT_POLL_INTERVAL,
};

#[derive(Deserialize)]
struct Greeting {
    name: String,
}

/// Greets each object's `name` until the client closes.
struct JsonLines;

impl<C: Connection> StreamHandler<C> for JsonLines {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        // `rfile` is a std::io::Read: serde reads one value at a time.
        let greetings = serde_json::Deserializer::from_reader(&mut req.rfile).into_iter();
        for greeting in greetings {
            let Greeting { name } = greeting.map_err(Error::other)?;
            writeln!(req.wfile, "hello {name}")?;
        }
        Ok(())
    }
}

fn main() -> io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost:9999".into());
    let mut server = ThreadingTcpServer::inherit_or_bind(address.as_str(), || JsonLines)?;
    let _signals = server.shutdown_handle().stop_on_signals()?;
    println!("listening on {}", server.local_addr());
    io::stdout().flush()?;
    server.serve_forever(DEFAULT_POLL_INTERVAL)?;
    server.server_close();
    Ok(())
}
