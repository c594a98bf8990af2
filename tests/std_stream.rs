//! Stream servers (TCP, Unix stream): CPython's `test_socketserver` stream
//! cases and what it does not test (handler panics, per-request timeout,
//! no-delay, writes to a closed peer).
#![cfg(feature = "std")]
#![cfg(not(target_os = "wasi"))]

mod util;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use socketserver::handlers::{EchoLines, UpperLine};
use socketserver::os::{SocketTransport, TcpConnection, TcpTransport};
use socketserver::{
    finish_request, Connection, Error, Listener, ServerBuilder, StreamHandler, StreamOptions,
    StreamRequest, TcpServer, Transport, UnixStreamServer,
};
use util::{Builds, Recorder, Serving, TempDir, PATIENCE};

const POLL: Duration = Duration::from_millis(500);

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Sends `data`, closes the sending side, returns everything read.
fn exchange<S: Read + Write>(mut stream: S, data: &[u8], shut: impl FnOnce(&S)) -> Vec<u8> {
    stream.write_all(data).expect("send");
    shut(&stream);
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("receive");
    reply
}

fn tcp_exchange(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    exchange(connect(addr), data, |s| {
        s.shutdown(Shutdown::Write).unwrap()
    })
}

/// A TCP server on a free port with recording hooks, serving until dropped.
fn serve_tcp<H: StreamHandler<TcpConnection> + 'static>(
    factory: fn() -> H,
) -> (SocketAddr, Recorder, Serving) {
    let hooks = Recorder::default();
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .hooks(hooks.clone())
        .build(factory)
        .unwrap();
    let addr = *server.local_addr();
    (addr, hooks, Serving::start(server, POLL))
}

#[test]
fn tcp_echo_through_rfile_and_wfile() {
    let server = TcpServer::new("127.0.0.1:0", || EchoLines).unwrap();
    let addr = *server.local_addr();
    assert_ne!(addr.port(), 0, "port 0 is resolved");
    let _serving = Serving::start(server, POLL);
    for _ in 0..3 {
        assert_eq!(tcp_exchange(addr, b"one\ntwo\nthree"), b"one\ntwo\nthree");
    }
}

#[test]
fn tcp_ipv6_loopback() {
    // A host without IPv6 loopback fails here loudly rather than skipping.
    let server = TcpServer::new("[::1]:0", || UpperLine)
        .unwrap_or_else(|err| panic!("bind [::1] (is IPv6 loopback configured?): {err}"));
    let addr = *server.local_addr();
    assert!(addr.is_ipv6());
    let _serving = Serving::start(server, POLL);
    assert_eq!(tcp_exchange(addr, b" hello v6 \n"), b"HELLO V6");
}

#[test]
fn unix_stream_echo() {
    let dir = TempDir::new("ustream");
    let path = dir.path("s.sock");
    let server = UnixStreamServer::new(&path, || EchoLines).unwrap();
    assert_eq!(server.local_addr().as_pathname(), Some(path.as_path()));
    let serving = Serving::start(server, POLL);
    for _ in 0..3 {
        let stream = UnixStream::connect(&path).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let reply = exchange(stream, b"a\nb\n", |s| s.shutdown(Shutdown::Write).unwrap());
        assert_eq!(reply, b"a\nb\n");
    }
    serving.stop().unwrap();
}

/// Fails on `fail`, panics on `panic`, otherwise upper-cases the line;
/// `finish` writes `.` so the test sees that it ran.
#[derive(Default)]
struct Moody;

impl<C: Connection> StreamHandler<C> for Moody {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let line = socketserver::handlers::strip(req.rfile.read_line()?);
        match &*line {
            b"fail" => Err(Error::Handler("asked to fail")),
            b"panic" => panic!("asked to panic"),
            _ => {
                line.make_ascii_uppercase();
                req.wfile.write_all(line)
            }
        }
    }

    fn finish(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        req.wfile.write_all(b".")
    }
}

#[test]
fn handler_error_is_reported_once_and_the_next_request_served() {
    let (addr, hooks, _serving) = serve_tcp(|| Moody);

    assert_eq!(
        tcp_exchange(addr, b"fail\n"),
        b".",
        "finish runs after a failed handle"
    );
    let errors = hooks.wait_errors(1);
    assert!(
        matches!(errors[0].1, Error::Handler("asked to fail")),
        "{:?}",
        errors[0].1
    );
    assert!(
        errors[0].0.contains("127.0.0.1"),
        "client address reported: {}",
        errors[0].0
    );
    assert_eq!(tcp_exchange(addr, b"next\n"), b"NEXT.");
    assert_eq!(hooks.errors().len(), 1, "handle_error called once");
}

#[test]
fn handler_panic_is_reported_and_the_server_goes_on() {
    let (addr, hooks, _serving) = serve_tcp(|| Moody);

    assert_eq!(
        tcp_exchange(addr, b"panic\n"),
        b"",
        "a panic ends the request: the handler is dropped unfinished (it may be \
         half-updated) and the connection closes"
    );
    assert!(
        matches!(hooks.wait_errors(1)[0].1, Error::Panicked),
        "{:?}",
        hooks.wait_errors(1)[0].1
    );
    assert_eq!(tcp_exchange(addr, b"still here\n"), b"STILL HERE.");
}

#[test]
fn refused_request_is_closed_and_never_handled() {
    let builds = Builds::default();
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .hooks(Recorder::refusing())
        .build(builds.factory::<Moody>())
        .unwrap();
    let addr = *server.local_addr();
    let _serving = Serving::start(server, POLL);

    let mut stream = connect(addr);
    let mut buf = [0u8; 16];
    assert_eq!(stream.read(&mut buf).expect("EOF, not a timeout"), 0);
    assert_eq!(builds.count(), 0, "no handler built for a refused request");
}

/// Writes 16 MiB in one `wfile` write.
#[derive(Default)]
struct Flood;

const FLOOD: usize = 16 << 20;

impl<C: Connection> StreamHandler<C> for Flood {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let data = vec![b'x'; FLOOD];
        req.wfile.write_all(&data)
    }
}

#[test]
fn a_16_mib_wfile_write_arrives_whole() {
    let (addr, hooks, _serving) = serve_tcp(|| Flood);

    let reply = tcp_exchange(addr, b"");
    assert_eq!(reply.len(), FLOOD);
    assert!(reply.iter().all(|&b| b == b'x'));
    assert!(hooks.errors().is_empty());
}

#[test]
fn writing_to_a_closed_peer_is_an_error_not_a_signal() {
    let (addr, hooks, _serving) = serve_tcp(|| Flood);

    // The client leaves at once: the 16 MiB cannot all be sent.
    drop(connect(addr));
    let kind = hooks.wait_errors(1)[0].1.kind();
    assert!(
        matches!(
            kind,
            socketserver::embedded_io::ErrorKind::BrokenPipe
                | socketserver::embedded_io::ErrorKind::ConnectionReset
        ),
        "{kind:?}"
    );
}

/// Reads a line with a short per-request timeout.
#[derive(Default)]
struct Impatient;

impl<C: Connection> StreamHandler<C> for Impatient {
    fn options(&self) -> StreamOptions {
        StreamOptions::new()
            .timeout(Some(Duration::from_millis(100)))
            .disable_nagle_algorithm(true)
    }

    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        req.rfile.read_line().map(drop)
    }
}

#[test]
fn per_request_timeout_closes_a_silent_client() {
    let (addr, hooks, _serving) = serve_tcp(|| Impatient);

    let mut silent = connect(addr);
    let mut buf = [0u8; 1];
    assert_eq!(silent.read(&mut buf).expect("closed by the server"), 0);
    let errors = hooks.wait_errors(1);
    assert_eq!(
        errors[0].1.kind(),
        socketserver::embedded_io::ErrorKind::TimedOut
    );
}

#[test]
fn handler_options_reach_the_socket() {
    let mut transport =
        TcpTransport::open("127.0.0.1:0".parse().unwrap(), &Default::default()).unwrap();
    transport.server_bind().unwrap();
    transport.server_activate().unwrap();
    let _client = connect(*transport.local_addr());
    assert_eq!(
        transport.wait(Some(PATIENCE)).unwrap(),
        socketserver::Readiness::Ready
    );
    let (conn, peer) = transport.try_accept().unwrap().expect("a connection");
    assert!(util::is_cloexec(std::os::fd::AsRawFd::as_raw_fd(&conn)));
    assert!(!conn.socket().tcp_nodelay().unwrap());

    let conn = RefCell::new(conn);
    let (mut rbuf, mut wbuf) = ([0u8; 64], [0u8; 0]);
    let result = finish_request(&mut Impatient, &conn, peer, &mut rbuf, &mut wbuf);
    let err = result.expect_err("the read timed out");
    assert_eq!(err.kind(), socketserver::embedded_io::ErrorKind::TimedOut);
    assert_eq!(
        err.to_string(),
        "connection timed out",
        "the transport's text"
    );
    let conn = conn.into_inner();
    assert!(
        conn.socket().tcp_nodelay().unwrap(),
        "disable_nagle_algorithm sets TCP_NODELAY"
    );
    assert_eq!(
        conn.socket().read_timeout().unwrap(),
        Some(Duration::from_millis(100))
    );
}

#[test]
fn connections_are_std_io_streams_too() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut transport =
        TcpTransport::open(listener.local_addr().unwrap(), &Default::default()).unwrap();
    drop(listener);
    transport.server_bind().unwrap();
    transport.server_activate().unwrap();
    let mut client = connect(*transport.local_addr());
    client.write_all(b"ping").unwrap();
    assert_eq!(
        transport.wait(Some(PATIENCE)).unwrap(),
        socketserver::Readiness::Ready
    );
    let (mut conn, _) = transport.try_accept().unwrap().expect("a connection");
    let mut buf = [0u8; 4];
    std::io::Read::read_exact(&mut conn, &mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    std::io::Write::write_all(&mut conn, b"pong").unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
}
