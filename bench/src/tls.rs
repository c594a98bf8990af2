//! `tls` and `tls-bulk`: the framework's TLS (`ServerBuilder::tls`, rustls
//! with ring) against a hand-written rustls server (a thread per
//! connection, `rustls::StreamOwned`), both on the same configuration and
//! serving the same handlers. The certificate is made at run time (rcgen)
//! and passed to the server processes through [`CERT_DIR`].

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use socketserver::handlers::{Echo, UpperLine};
use socketserver::os::tls::{self, rustls};
use socketserver::{ServerBuilder, ThreadingDispatch};

use crate::load::{self, Counters, Load};
use crate::report::Target;
use crate::servers::{announce, run, BACKLOG};
use crate::stats::Sample;
use crate::workloads::{Peer, Spec};

/// The environment variable naming the directory of `cert.pem` and
/// `key.pem`, set by [`prepare`] for the server processes.
const CERT_DIR: &str = "SOCKETSERVER_BENCH_TLS_DIR";
/// The chunk every `echo` server reads and writes back (as `handlers::Echo`).
const ECHO_CHUNK: usize = 1024;
/// What a `tls-bulk` client writes, then reads back, per round trip.
const BULK_CHUNK: usize = 32 * 1024;
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The client side: trusts the run's certificate only, and never resumes
/// a session, so that every connection is a full handshake.
static CLIENT: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// `tls`: a full handshake per connection.
pub const CONN: Spec = Spec {
    workload: "tls",
    title: "TLS handshakes per second",
    about: "4 client threads (rustls, session resumption off, so every connection is a \
            full TLS 1.3 handshake with X25519 and an ECDSA P-256 certificate), each in a \
            loop: connect, handshake, send ` hello world \\n`, read the reply to the \
            server's close_notify, close. Both servers reply with the line stripped and \
            upper-cased (`handlers::UpperLine`) from a thread per connection.",
    unit: "handshakes/s",
    clients: 4,
    measure: conn,
    peers: &[
        Peer {
            name: "framework `ThreadingTcpServer` with `.tls(config)`",
            short: "threading + tls",
            kind: "fw-tls-upper",
        },
        Peer {
            name: "hand-written rustls, thread per connection",
            short: "hand-written rustls",
            kind: "rustls-threads-upper",
        },
    ],
    base: "rustls-threads-upper",
    targets: &[(
        "fw-tls-upper",
        "rustls-threads-upper",
        Target::AtLeast(0.95),
    )],
};

/// `tls-bulk`: one TLS connection streaming through an echo.
pub const BULK: Spec = Spec {
    workload: "tls-bulk",
    title: "TLS echo throughput of one connection",
    about: "One TLS connection; the client writes 32 KiB, reads its echo back, and again; \
            MB/s (10^6 bytes) of echo received. Both servers echo 1 KiB at a time (as \
            `handlers::Echo`), each write one TLS record.",
    unit: "MB/s",
    clients: 1,
    measure: bulk,
    peers: &[
        Peer {
            name: "framework `TcpServer` (inline) with `.tls(config)`",
            short: "TcpServer + tls",
            kind: "fw-tls-echo",
        },
        Peer {
            name: "hand-written rustls",
            short: "hand-written rustls",
            kind: "rustls-threads-echo",
        },
    ],
    base: "rustls-threads-echo",
    targets: &[("fw-tls-echo", "rustls-threads-echo", Target::AtLeast(0.95))],
};

/// Makes the run's certificate (once) and tells the servers where it is.
///
/// # Errors
/// The certificate could not be made or written.
pub fn prepare(dir: PathBuf) -> io::Result<()> {
    if CLIENT.get().is_some() {
        return Ok(());
    }
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .map_err(io::Error::other)?;
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("cert.pem"), made.cert.pem())?;
    std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem())?;
    // Read by the server processes this one starts; set while no other
    // thread reads the environment (between workloads).
    std::env::set_var(CERT_DIR, &dir);
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(made.cert.der().clone())
        .map_err(io::Error::other)?;
    #[allow(deprecated)] // the servers' provider; see tls::server_config
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    let _ = CLIENT.set(Arc::new(config));
    Ok(())
}

/// Runs the server `kind` (`fw-tls-*`, `rustls-threads-*`) until SIGTERM.
///
/// # Errors
/// No certificate directory in the environment, or the server failed.
pub fn serve(kind: &str, address: &str) -> io::Result<()> {
    let dir = std::env::var_os(CERT_DIR)
        .map(PathBuf::from)
        .ok_or_else(|| io::Error::other(format!("{CERT_DIR} is not set")))?;
    let config = tls::server_config(dir.join("cert.pem"), dir.join("key.pem"))?;
    let tcp = || {
        ServerBuilder::tcp(address)
            .request_queue_size(BACKLOG)
            .tls(Arc::clone(&config))
    };
    match kind {
        "fw-tls-upper" => run(tcp().build_with(|s| ThreadingDispatch::new(|| UpperLine, s))?),
        "fw-tls-echo" => run(tcp().build(|| Echo)?),
        "rustls-threads-upper" => rustls_threads(address, config, upper_line),
        "rustls-threads-echo" => rustls_threads(address, config, echo),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown server kind {kind:?}"),
        )),
    }
}

type TlsStream = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

/// A thread per connection on std's listener, each a rustls stream; ended
/// by SIGTERM's default action.
fn rustls_threads(
    address: &str,
    config: Arc<rustls::ServerConfig>,
    handle: fn(&mut TlsStream) -> io::Result<()>,
) -> io::Result<()> {
    let listener = TcpListener::bind(address)?;
    announce(listener.local_addr()?)?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        // As the framework's TLS connections: records go out at once.
        let _ = stream.set_nodelay(true);
        let config = Arc::clone(&config);
        thread::spawn(move || {
            let Ok(conn) = rustls::ServerConnection::new(config) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            if handle(&mut tls).is_ok() {
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
            let _ = tls.sock.shutdown(Shutdown::Write);
        });
    }
    Ok(())
}

fn upper_line(stream: &mut TlsStream) -> io::Result<()> {
    let mut line = Vec::new();
    BufReader::new(&mut *stream).read_until(b'\n', &mut line)?;
    let mut reply = line.trim_ascii().to_vec();
    reply.make_ascii_uppercase();
    stream.write_all(&reply)
}

fn echo(stream: &mut TlsStream) -> io::Result<()> {
    let mut chunk = [0; ECHO_CHUNK];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&chunk[..n])?;
    }
}

fn client() -> &'static Arc<rustls::ClientConfig> {
    CLIENT
        .get()
        .expect("tls::prepare runs before the TLS workloads")
}

fn connect(
    address: SocketAddr,
) -> io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let tcp = TcpStream::connect(address)?;
    tcp.set_read_timeout(Some(REPLY_TIMEOUT))?;
    let name = "localhost".try_into().map_err(io::Error::other)?;
    let conn =
        rustls::ClientConnection::new(Arc::clone(client()), name).map_err(io::Error::other)?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// `tls`: connect, handshake, a line, its reply. Counts connections.
pub fn conn(address: SocketAddr, load: Load) -> Sample {
    load::drive(load, 1.0, move |counters| {
        let mut reply = Vec::with_capacity(64);
        while !counters.stopped() {
            reply.clear();
            let ok = one_connection(address, &mut reply).is_ok() && reply == load::UPPER;
            counters.count(ok);
        }
    })
}

fn one_connection(address: SocketAddr, reply: &mut Vec<u8>) -> io::Result<()> {
    let mut stream = connect(address)?;
    stream.write_all(load::LINE)?;
    stream.read_to_end(reply)?;
    Ok(())
}

/// `tls-bulk`: 32 KiB out, its echo back, again. Counts bytes (MB/s).
pub fn bulk(address: SocketAddr, load: Load) -> Sample {
    let load = Load { clients: 1, ..load };
    load::drive(load, 1e6, move |counters| {
        if stream_through(address, counters).is_err() {
            counters.count(false);
        }
    })
}

fn stream_through(address: SocketAddr, counters: &Counters) -> io::Result<()> {
    let mut stream = connect(address)?;
    let chunk = vec![0x5a; BULK_CHUNK];
    let mut echo = vec![0; BULK_CHUNK];
    while !counters.stopped() {
        stream.write_all(&chunk)?;
        stream.read_exact(&mut echo)?;
        counters.add(BULK_CHUNK as u64);
    }
    stream.conn.send_close_notify();
    stream.flush()
}
