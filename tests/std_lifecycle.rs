//! Server lifecycle on OS sockets: shutdown, close, timeouts, Python's
//! binding knobs, and Unix socket files.
#![cfg(feature = "std")]
#![cfg(not(target_os = "wasi"))]

mod util;

use std::fs;
use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use socketserver::handlers::{UpperDatagram, UpperLine, UpperOnce};
use socketserver::{ServerBuilder, ShutdownError, TcpServer, UdpServer, UnixStreamServer};
use util::{Recorder, Serving, TempDir, PATIENCE};

#[test]
fn twenty_servers_shut_down_right_after_their_loop_starts() {
    for i in 0..20 {
        let server = if i % 2 == 0 {
            TcpServer::new("127.0.0.1:0", || UpperOnce)
                .map(|s| Serving::start(s, Duration::from_millis(10)))
        } else {
            UdpServer::new("127.0.0.1:0", || UpperDatagram)
                .map(|s| Serving::start(s, Duration::from_millis(10)))
        };
        server.unwrap().stop().unwrap();
    }
}

#[test]
fn shutdown_does_not_wait_for_the_poll_interval() {
    let hooks = Recorder::default();
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .hooks(hooks.clone())
        .build(|| UpperOnce)
        .unwrap();
    let addr = *server.local_addr();
    let serving = Serving::start(server, Duration::from_secs(10));
    // After this request's pass the loop waits again, for up to 10 s.
    let mut client = TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(&mut client, b"x").unwrap();
    hooks.wait_passes(1);
    let start = Instant::now();
    serving.stop().unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
}

#[test]
fn shutdown_before_serving_returns_and_serving_then_stops_at_once() {
    let mut server = TcpServer::new("127.0.0.1:0", || UpperOnce).unwrap();
    let stop = server.shutdown_handle();
    stop.shutdown().unwrap();
    assert!(stop.is_shutdown_requested());
    server.serve_forever(Duration::from_secs(10)).unwrap();
    assert!(!stop.is_shutdown_requested(), "consumed by serve_forever");
}

/// Calls `shutdown` from inside the loop, as a hook would.
#[derive(Clone)]
struct ShutdownFromInside {
    handle: std::sync::Arc<std::sync::OnceLock<socketserver::ShutdownHandle>>,
    result: mpsc::Sender<Result<(), ShutdownError>>,
}

impl socketserver::ServerHooks for ShutdownFromInside {
    fn service_actions(&self) {
        let handle = self.handle.get().expect("handle set before serving");
        let _ = self.result.send(handle.shutdown());
        handle.request_shutdown();
    }
}

impl<R: ?Sized, A> socketserver::Hooks<R, A> for ShutdownFromInside {}

#[test]
fn shutdown_from_the_serving_thread_is_an_error_not_a_deadlock() {
    let (tx, rx) = mpsc::channel();
    let hooks = ShutdownFromInside {
        handle: Default::default(),
        result: tx,
    };
    let mut server = ServerBuilder::tcp("127.0.0.1:0")
        .hooks(hooks.clone())
        .build(|| UpperOnce)
        .unwrap();
    hooks.handle.set(server.shutdown_handle()).unwrap();
    // Returns because the hook also requested a shutdown without waiting.
    server.serve_forever(Duration::from_millis(1)).unwrap();
    assert_eq!(
        rx.recv_timeout(PATIENCE).unwrap(),
        Err(ShutdownError::FromServingThread)
    );
}

#[test]
fn shutdown_handle_is_clone_and_send() {
    fn assert_clone_send_sync<T: Clone + Send + Sync>() {}
    assert_clone_send_sync::<socketserver::ShutdownHandle>();
}

#[test]
fn server_closed_without_ever_serving() {
    let mut server = TcpServer::new("127.0.0.1:0", || UpperOnce).unwrap();
    assert!(server.as_raw_fd() >= 0);
    server.server_close();
    server.server_close();
    assert!(server.is_closed());
    assert_eq!(server.as_raw_fd(), -1);
    assert!(server.socket().is_none());
    assert!(server.serve_forever(Duration::from_millis(10)).is_err());
}

#[test]
fn after_close_connecting_is_refused() {
    let mut server = TcpServer::new("127.0.0.1:0", || UpperOnce).unwrap();
    let addr = *server.local_addr();
    server.server_close();
    let err = TcpStream::connect(addr).expect_err("nobody listens");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn handle_request_times_out_into_handle_timeout() {
    let hooks = Recorder::default();
    let mut server = ServerBuilder::udp("127.0.0.1:0")
        .timeout(Some(Duration::from_millis(50)))
        .hooks(hooks.clone())
        .build(|| UpperDatagram)
        .unwrap();
    let start = Instant::now();
    server.handle_request().unwrap();
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(hooks.timeouts(), 1);
}

#[test]
fn handle_request_serves_one_request() {
    let mut server = ServerBuilder::tcp("127.0.0.1:0")
        .timeout(Some(PATIENCE))
        .build(|| UpperLine)
        .unwrap();
    let mut client = TcpStream::connect(server.local_addr()).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    std::io::Write::write_all(&mut client, b"one\n").unwrap();
    server.handle_request().unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "ONE");
}

#[test]
fn sockets_are_close_on_exec_and_reachable_as_fds() {
    let server = TcpServer::new("127.0.0.1:0", || UpperOnce).unwrap();
    let fd = server.as_raw_fd();
    assert_eq!(fd, server.socket().unwrap().as_raw_fd());
    assert_eq!(std::os::fd::AsFd::as_fd(&server).as_raw_fd(), fd);
    assert!(util::is_cloexec(fd));
}

#[test]
fn bind_and_activate_false_then_explicit_steps() {
    let mut server = ServerBuilder::tcp("127.0.0.1:0")
        .bind_and_activate(false)
        .build(|| UpperLine)
        .unwrap();
    assert_eq!(server.local_addr().port(), 0, "not bound yet");
    assert!(server.handle_request().is_err(), "not activated");
    server.socket().unwrap().set_reuse_address(true).unwrap();
    server.server_bind().unwrap();
    let addr = *server.local_addr();
    assert_ne!(addr.port(), 0);
    assert!(server.socket().unwrap().reuse_address().unwrap());
    server.server_activate().unwrap();
    let _serving = Serving::start(server, Duration::from_millis(500));
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    std::io::Write::write_all(&mut client, b"steps\n").unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "STEPS");
}

#[test]
fn reuse_address_defaults_off_and_can_be_set() {
    let plain = TcpServer::new("127.0.0.1:0", || UpperOnce).unwrap();
    assert!(!plain.socket().unwrap().reuse_address().unwrap());
    let reusing = ServerBuilder::tcp("127.0.0.1:0")
        .allow_reuse_address(true)
        .build(|| UpperOnce)
        .unwrap();
    assert!(reusing.socket().unwrap().reuse_address().unwrap());
}

#[test]
fn reuse_port_lets_two_servers_share_a_port() {
    let first = ServerBuilder::udp("127.0.0.1:0")
        .allow_reuse_port(true)
        .build(|| UpperDatagram)
        .unwrap();
    let addr = *first.local_addr();
    let second = ServerBuilder::udp(addr)
        .allow_reuse_port(true)
        .build(|| UpperDatagram);
    assert!(second.is_ok(), "{:?}", second.err());
    let without = ServerBuilder::udp(addr).build(|| UpperDatagram);
    assert_eq!(without.err().map(|e| e.kind()), Some(ErrorKind::AddrInUse));
}

/// Connections a listener with `backlog` queues before refusing more
/// (Unix stream sockets enforce the backlog exactly: backlog + 1).
fn queued_connections(backlog: Option<i32>) -> usize {
    let dir = TempDir::new("backlog");
    let path = dir.path("s.sock");
    let mut builder = ServerBuilder::unix_stream(&path);
    if let Some(backlog) = backlog {
        builder = builder.request_queue_size(backlog);
    }
    let _server = builder.build(|| UpperOnce).unwrap();
    let mut clients = Vec::new();
    for _ in 0..64 {
        let client = socketserver::os::socket2::Socket::new(
            socketserver::os::socket2::Domain::UNIX,
            socketserver::os::socket2::Type::STREAM,
            None,
        )
        .unwrap();
        client.set_nonblocking(true).unwrap();
        let addr = socketserver::os::socket2::SockAddr::unix(&path).unwrap();
        match client.connect(&addr) {
            Ok(()) => clients.push(client),
            Err(err) if err.kind() == ErrorKind::WouldBlock => break,
            Err(err) => panic!("connect: {err}"),
        }
    }
    clients.len()
}

#[test]
fn request_queue_size_is_the_listen_backlog() {
    assert_eq!(queued_connections(None), 5 + 1, "CPython's default of 5");
    assert_eq!(queued_connections(Some(2)), 2 + 1);
}

#[test]
fn unix_socket_file_is_removed_on_close_unless_kept() {
    let dir = TempDir::new("unixfile");
    let path = dir.path("s.sock");
    let mut server = UnixStreamServer::new(&path, || UpperOnce).unwrap();
    assert!(path.exists());
    server.server_close();
    assert!(!path.exists());

    let server = ServerBuilder::unix_stream(&path)
        .keep_socket_file(true)
        .build(|| UpperOnce)
        .unwrap();
    drop(server);
    assert!(path.exists(), "kept");
}

#[test]
fn stale_unix_socket_file_is_replaced_and_live_one_is_in_use() {
    let dir = TempDir::new("stale");
    let path = dir.path("s.sock");
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "a stale file is left behind");
    let server = UnixStreamServer::new(&path, || UpperOnce).expect("stale file replaced");

    let err = UnixStreamServer::new(&path, || UpperOnce)
        .err()
        .expect("live server");
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
    let _serving = Serving::start(server, Duration::from_millis(500));
    let mut client = UnixStream::connect(&path).expect("the live server still owns the path");
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    std::io::Write::write_all(&mut client, b"still mine").unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "STILL MINE");

    let regular = dir.path("regular");
    fs::write(&regular, b"data").unwrap();
    let err = UnixStreamServer::new(&regular, || UpperOnce)
        .err()
        .expect("not a socket");
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
    assert_eq!(
        fs::read(&regular).unwrap(),
        b"data",
        "a regular file is never removed"
    );
}

#[test]
fn unix_socket_file_mode_can_be_set() {
    let dir = TempDir::new("mode");
    let path = dir.path("s.sock");
    let _server = ServerBuilder::unix_stream(&path)
        .socket_mode(0o600)
        .build(|| UpperOnce)
        .unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_termination_signal_requests_shutdown() {
    let mut server = TcpServer::new("127.0.0.1:0", || UpperOnce).unwrap();
    let _guard = server.shutdown_handle().stop_on_signals().unwrap();
    // Caught by the guard's handler, so the test process survives it.
    signal_hook::low_level::raise(signal_hook::consts::SIGTERM).unwrap();
    let start = Instant::now();
    server.serve_forever(Duration::from_secs(10)).unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn dual_stack_sets_ipv6_only_off_and_on() {
    for (dual, only_v6) in [(true, false), (false, true)] {
        // Checked before binding: Linux makes a socket bound to a specific
        // IPv6 address IPv6-only whatever was asked.
        let server = ServerBuilder::tcp("[::1]:0")
            .dual_stack(dual)
            .bind_and_activate(false)
            .build(|| UpperOnce)
            .unwrap();
        assert_eq!(server.socket().unwrap().only_v6().unwrap(), only_v6);
    }
}
