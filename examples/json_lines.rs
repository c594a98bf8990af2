//! JSON objects, one per line, read from `rfile` with serde_json through
//! `std::io`: `{"name": "NAME"}` gets the line `hello NAME`. A line that is
//! not a valid object ends the connection, and serde's message reaches
//! `handle_error` (printed on stderr by the default hooks). An object may
//! take at most 64 KiB (`rfile.set_io_limit`): serde grows a buffer for a
//! string, and without the bound a client sending a 64 MiB string would
//! make the server hold 64 MiB.
//!
//! Usage: `cargo run --example json_lines -- HOST:PORT` (port 0 picks a free
//! port). Prints `listening on ADDRESS` once bound, serves a thread per
//! connection until SIGINT or SIGTERM.

#[path = "common/args.rs"]
mod args;

use std::io::{self, Write};

use serde::Deserialize;
use socketserver::{
    Connection, Error, RFile, StreamHandler, StreamRequest, ThreadingTcpServer,
    DEFAULT_POLL_INTERVAL,
};

#[derive(Deserialize)]
struct Greeting {
    name: String,
}

/// Greets each object's `name` until the client closes.
struct JsonLines;

impl<C: Connection> StreamHandler<C> for JsonLines {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        // `rfile` is a std::io::Read: serde reads one value at a time,
        // each within a fresh bound on what it may read (64 KiB).
        while more(&mut req.rfile)? {
            req.rfile.set_io_limit(64 * 1024);
            let mut value = serde_json::Deserializer::from_reader(&mut req.rfile);
            let Greeting { name } = Greeting::deserialize(&mut value).map_err(Error::other)?;
            writeln!(req.wfile, "hello {name}")?;
        }
        Ok(())
    }
}

/// Skips blanks; whether anything but the end of the stream follows.
fn more<C: Connection>(rfile: &mut RFile<'_, C>) -> Result<bool, Error> {
    loop {
        let buf = rfile.fill_buf()?;
        let (len, blank) = (
            buf.len(),
            buf.iter().take_while(|b| b.is_ascii_whitespace()).count(),
        );
        rfile.consume(blank);
        if len == 0 || blank < len {
            return Ok(len > 0);
        }
    }
}

fn main() -> io::Result<()> {
    let mut args = args::Args::parse("usage: json_lines [HOST:PORT]");
    let address = args.address("localhost:9999");
    args.done();
    let mut server = ThreadingTcpServer::inherit_or_bind(address.as_str(), || JsonLines)?;
    let _signals = server.shutdown_handle().stop_on_signals()?;
    println!("listening on {}", server.local_addr());
    io::stdout().flush()?;
    server.serve_forever(DEFAULT_POLL_INTERVAL)?;
    server.server_close();
    Ok(())
}
