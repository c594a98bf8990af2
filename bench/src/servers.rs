//! The Rust servers under test, each run as `socketserver-bench serve KIND
//! ADDRESS` in a process of its own: the framework's, and what one would
//! write without it, with std threads or with tokio. All serve the
//! handlers of `socketserver::handlers` (or their hand-written
//! equivalents): `upper` (one line, stripped and upper-cased, then close),
//! `lines` (echo every line), `udp` (a datagram stripped and upper-cased),
//! `echo` (raw bytes, 1 KiB at a time; `copy` is the same with
//! `io::copy`, for reference).

use std::fmt::Display;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::thread;

use socketserver::handlers::{Echo, EchoLines, UpperDatagram, UpperLine};
use socketserver::os::{Forkable, SocketTransport, TcpTransport};
use socketserver::{
    Dispatch, ForkingDispatch, ParkingDispatch, PoolDispatch, Prefork, ServerBuilder, SocketServer,
    ThreadingDispatch, DEFAULT_POLL_INTERVAL,
};

/// The listen backlog of the framework's and CPython's stream servers.
pub const BACKLOG: i32 = 128;
/// The chunk every `echo` server reads and writes back (as `handlers::Echo`).
const ECHO_CHUNK: usize = 1024;

/// How one server kind is run: on the address given, until SIGTERM.
type Serve = fn(&str) -> io::Result<()>;

fn tcp(address: &str) -> ServerBuilder<TcpTransport> {
    ServerBuilder::tcp(address).request_queue_size(BACKLOG)
}

/// Every server kind, by name. A new server is one entry here; the
/// workloads name the kinds they compare, and `scale` measures a kind of
/// its peer list only when this table has it ([`exists`]).
const KINDS: &[(&str, Serve)] = &[
    ("fw-sync-upper", |a| run(tcp(a).build(|| UpperLine)?)),
    ("fw-threading-upper", |a| {
        run(tcp(a).build_with(|s| ThreadingDispatch::new(|| UpperLine, s))?)
    }),
    ("fw-pool-upper", |a| {
        run(tcp(a).build_with(|s| PoolDispatch::new(|| UpperLine, s))?)
    }),
    ("fw-forking-upper", |a| {
        run(tcp(a).build_with(|s| ForkingDispatch::new(|| UpperLine, s))?)
    }),
    ("fw-threading-lines", |a| {
        run(tcp(a).build_with(|s| ThreadingDispatch::new(|| EchoLines, s))?)
    }),
    ("fw-pool-lines", |a| {
        run(tcp(a).build_with(|s| PoolDispatch::new(|| EchoLines, s))?)
    }),
    // The new dispatch of issue 23: idle connections parked in the poller,
    // a message (a line) per call.
    ("persistent", |a| {
        run(tcp(a).build_with(|s| ParkingDispatch::new(|| EchoLines, s))?)
    }),
    ("fw-prefork1-upper", |a| {
        prefork(tcp(a).build(|| UpperLine)?, 1)
    }),
    ("fw-prefork2-upper", |a| {
        prefork(tcp(a).build(|| UpperLine)?, 2)
    }),
    ("fw-prefork1-lines", |a| {
        prefork(
            tcp(a).build_with(|s| ThreadingDispatch::new(|| EchoLines, s))?,
            1,
        )
    }),
    ("fw-prefork2-lines", |a| {
        prefork(
            tcp(a).build_with(|s| ThreadingDispatch::new(|| EchoLines, s))?,
            2,
        )
    }),
    ("fw-udp-upper", |a| {
        run(ServerBuilder::udp(a).build(|| UpperDatagram)?)
    }),
    ("fw-sync-echo", |a| run(tcp(a).build(|| Echo)?)),
    ("std-threads-upper", |a| std_threads(a, upper_line)),
    ("std-threads-lines", |a| std_threads(a, echo_lines)),
    ("std-threads-echo", |a| std_threads(a, echo)),
    ("std-threads-copy", |a| {
        std_threads(a, |s| io::copy(&mut &*s, &mut &*s).map(drop))
    }),
    ("std-udp-upper", std_udp),
    ("tokio-upper", |a| tokio::serve(a, tokio::Kind::Upper, None)),
    ("tokio-lines", |a| tokio::serve(a, tokio::Kind::Lines, None)),
    // As `scale` compares it: two workers, whatever the machine.
    ("tokio2-lines", |a| {
        tokio::serve(a, tokio::Kind::Lines, Some(2))
    }),
    ("tokio-echo", |a| tokio::serve(a, tokio::Kind::Echo, None)),
    ("tokio-udp-upper", |a| {
        tokio::serve(a, tokio::Kind::Udp, None)
    }),
    ("fw-tls-upper", |a| crate::tls::serve("fw-tls-upper", a)),
    ("fw-tls-echo", |a| crate::tls::serve("fw-tls-echo", a)),
    ("rustls-threads-upper", |a| {
        crate::tls::serve("rustls-threads-upper", a)
    }),
    ("rustls-threads-echo", |a| {
        crate::tls::serve("rustls-threads-echo", a)
    }),
];

/// Whether this program can serve `kind` (`py-*` kinds are CPython's).
pub fn exists(kind: &str) -> bool {
    KINDS.iter().any(|(name, _)| *name == kind)
}

/// Runs the server `kind` on `address` until SIGTERM.
///
/// # Errors
/// An unknown kind, or the server failed.
pub fn serve(kind: &str, address: &str) -> io::Result<()> {
    match KINDS.iter().find(|(name, _)| *name == kind) {
        Some((_, serve)) => serve(address),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown server kind {kind:?}"),
        )),
    }
}

/// Announces the framework's server and serves it until SIGTERM.
pub(crate) fn run<T, D>(mut server: SocketServer<T, D>) -> io::Result<()>
where
    T: SocketTransport,
    T::Addr: Display,
    D: Dispatch<T, T::Kind>,
{
    let _signals = server.shutdown_handle().stop_on_signals()?;
    announce(server.local_addr())?;
    server.serve_forever(DEFAULT_POLL_INTERVAL)?;
    server.server_close();
    Ok(())
}

/// Announces `server` and serves it from `workers` pre-forked processes
/// until SIGTERM.
fn prefork<T, D>(server: SocketServer<T, D>, workers: usize) -> io::Result<()>
where
    T: SocketTransport + Forkable,
    T::Addr: Display,
    D: Dispatch<T, T::Kind>,
{
    let mut prefork = Prefork::new(server, workers);
    let _signals = prefork.shutdown_handle().stop_on_signals()?;
    announce(prefork.local_addr())?;
    prefork.serve()
}

pub(crate) fn announce(address: impl Display) -> io::Result<()> {
    let mut stdout = io::stdout();
    writeln!(stdout, "listening on {address}")?;
    stdout.flush()
}

/// A thread per connection on std's listener; ended by SIGTERM's default
/// action.
fn std_threads(address: &str, handle: fn(&TcpStream) -> io::Result<()>) -> io::Result<()> {
    let listener = TcpListener::bind(address)?;
    announce(listener.local_addr()?)?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        thread::spawn(move || {
            let _ = handle(&stream);
            let _ = stream.shutdown(Shutdown::Write);
        });
    }
    Ok(())
}

fn upper_line(stream: &TcpStream) -> io::Result<()> {
    let mut line = Vec::new();
    BufReader::new(stream).read_until(b'\n', &mut line)?;
    let mut reply = line.trim_ascii().to_vec();
    reply.make_ascii_uppercase();
    (&*stream).write_all(&reply)
}

fn echo_lines(stream: &TcpStream) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        (&*stream).write_all(&line)?;
    }
}

fn echo(stream: &TcpStream) -> io::Result<()> {
    let mut chunk = [0; ECHO_CHUNK];
    loop {
        let n = (&*stream).read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        (&*stream).write_all(&chunk[..n])?;
    }
}

/// A receive-reply loop on std's socket.
fn std_udp(address: &str) -> io::Result<()> {
    let socket = UdpSocket::bind(address)?;
    announce(socket.local_addr()?)?;
    let mut packet = [0; 8192];
    loop {
        let (n, peer) = socket.recv_from(&mut packet)?;
        let reply = packet[..n].trim_ascii().to_ascii_uppercase();
        socket.send_to(&reply, peer)?;
    }
}

/// The same servers as tokio users write them: a multi-threaded runtime,
/// a task per connection.
mod tokio {
    use std::io;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream, UdpSocket};

    use super::{announce, ECHO_CHUNK};

    #[derive(Clone, Copy)]
    pub enum Kind {
        Upper,
        Lines,
        Echo,
        Udp,
    }

    /// Serves `kind` on a multi-threaded runtime of `workers` worker
    /// threads (`None`: tokio's default, one per CPU).
    pub fn serve(address: &str, kind: Kind, workers: Option<usize>) -> io::Result<()> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = workers {
            builder.worker_threads(n);
        }
        let runtime = builder.enable_all().build()?;
        runtime.block_on(async move {
            if let Kind::Udp = kind {
                return udp(address).await;
            }
            let listener = TcpListener::bind(address).await?;
            announce(listener.local_addr()?)?;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let _ = match kind {
                        Kind::Upper => upper_line(stream).await,
                        Kind::Lines => echo_lines(stream).await,
                        Kind::Echo => echo(stream).await,
                        Kind::Udp => unreachable!("served above"),
                    };
                });
            }
        })
    }

    async fn upper_line(mut stream: TcpStream) -> io::Result<()> {
        let mut line = Vec::new();
        BufReader::new(&mut stream)
            .read_until(b'\n', &mut line)
            .await?;
        let mut reply = line.trim_ascii().to_vec();
        reply.make_ascii_uppercase();
        stream.write_all(&reply).await?;
        stream.shutdown().await
    }

    async fn echo_lines(mut stream: TcpStream) -> io::Result<()> {
        let (reader, mut writer) = stream.split();
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).await? == 0 {
                return Ok(());
            }
            writer.write_all(&line).await?;
        }
    }

    async fn echo(mut stream: TcpStream) -> io::Result<()> {
        let mut chunk = [0; ECHO_CHUNK];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            stream.write_all(&chunk[..n]).await?;
        }
    }

    async fn udp(address: &str) -> io::Result<()> {
        let socket = UdpSocket::bind(address).await?;
        announce(socket.local_addr()?)?;
        let mut packet = [0; 8192];
        loop {
            let (n, peer) = socket.recv_from(&mut packet).await?;
            let reply = packet[..n].trim_ascii().to_ascii_uppercase();
            socket.send_to(&reply, peer).await?;
        }
    }
}
