//! `stream_server` over TLS: the same `UpperLine` handler (read one line, reply
//! upper-cased), unchanged, with `--echo` the docs-style `EchoLines` (every line back
//! until the client closes), from a thread per request.
//!
//! Usage: `cargo run --features tls --example tls_server -- HOST:PORT --tls-cert FILE
//! --tls-key FILE [--echo]` (PEM files: the certificate chain and its private key).
//! Prints `listening on ADDRESS` once bound (or, started by socket activation, of the
//! inherited socket), serves until SIGINT or SIGTERM. A failed handshake (a plaintext
//! client, say) is reported on stderr with rustls' message; the others are served on.

use std::io::{self, Write};

use socketserver::handlers::{EchoLines, UpperLine};
use socketserver::os::tls;
use socketserver::os::TcpTransport;
use socketserver::{
    Dispatch, ServerBuilder, SocketServer, ThreadingDispatch, DEFAULT_POLL_INTERVAL,
};

const USAGE: &str = "usage: tls_server HOST:PORT --tls-cert FILE --tls-key FILE [--echo]";

fn serve<D: Dispatch<tls::TlsTransport<TcpTransport>>>(
    mut server: SocketServer<tls::TlsTransport<TcpTransport>, D>,
) -> io::Result<()> {
    let _signals = server.shutdown_handle().stop_on_signals()?;
    println!("listening on {}", server.local_addr());
    io::stdout().flush()?;
    server.serve_forever(DEFAULT_POLL_INTERVAL)?;
    server.server_close();
    Ok(())
}

fn main() -> io::Result<()> {
    let usage = || io::Error::new(io::ErrorKind::InvalidInput, USAGE);
    let mut args = std::env::args().skip(1);
    let address = args.next().ok_or_else(usage)?;
    let (mut cert, mut key, mut echo) = (None, None, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tls-cert" => cert = Some(args.next().ok_or_else(usage)?),
            "--tls-key" => key = Some(args.next().ok_or_else(usage)?),
            "--echo" => echo = true,
            _ => return Err(usage()),
        }
    }
    let config = tls::server_config(cert.ok_or_else(usage)?, key.ok_or_else(usage)?)?;
    let builder = ServerBuilder::tcp(address.as_str())
        .socket_activation(true)
        .tls(config);
    if echo {
        serve(builder.build_with(|config| ThreadingDispatch::new(|| EchoLines, config))?)
    } else {
        serve(builder.build_with(|config| ThreadingDispatch::new(|| UpperLine, config))?)
    }
}
