//! Threading servers: CPython's `ThreadingMixIn` cases (echo on the four
//! predefined types, no finished thread held, errors handled and logged,
//! `block_on_close`, `daemon_threads`) and the `max_threads` bound.
#![cfg(feature = "std")]
#![cfg(not(target_os = "wasi"))]

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use socketserver::handlers::{EchoLines, UpperDatagram};
use socketserver::{
    Connection, Error, HandlerFactory, ServerBuilder, StreamHandler, StreamRequest,
    ThreadingDispatch, ThreadingTcpServer, ThreadingUdpServer, ThreadingUnixDatagramServer,
    ThreadingUnixStreamServer,
};
use util::concurrent::{connect, read_all, tcp_exchange, unix_exchange, Moody};
use util::gauge::{Gauge, Gauged};
use util::{Recorder, Serving, TempDir, PATIENCE};

const POLL: Duration = Duration::from_millis(500);

#[test]
fn threading_tcp_server_echoes() {
    let server = ThreadingTcpServer::new("127.0.0.1:0", || EchoLines).unwrap();
    let addr = *server.local_addr();
    let _serving = Serving::start(server, POLL);
    for _ in 0..3 {
        assert_eq!(tcp_exchange(addr, b"one\ntwo\n"), "one\ntwo\n");
    }
}

#[test]
fn threading_unix_stream_server_echoes() {
    let dir = TempDir::new("th-ustream");
    let path = dir.path("s.sock");
    let server = ThreadingUnixStreamServer::new(&path, || EchoLines).unwrap();
    let _serving = Serving::start(server, POLL);
    for _ in 0..3 {
        assert_eq!(unix_exchange(&path, b"a\nb\n"), "a\nb\n");
    }
}

#[test]
fn threading_udp_server_echoes() {
    let server = ThreadingUdpServer::new("127.0.0.1:0", || UpperDatagram).unwrap();
    let addr = *server.local_addr();
    let _serving = Serving::start(server, POLL);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    for word in ["one", "two", "three"] {
        client.send_to(word.as_bytes(), addr).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = client.recv_from(&mut buf).expect("a reply");
        assert_eq!(from, addr, "the reply comes from the server's address");
        assert_eq!(&buf[..n], word.to_uppercase().as_bytes());
    }
}

#[test]
fn threading_unix_datagram_server_echoes() {
    let dir = TempDir::new("th-udgram");
    let path = dir.path("s.sock");
    let server = ThreadingUnixDatagramServer::new(&path, || UpperDatagram).unwrap();
    let _serving = Serving::start(server, POLL);
    let client = UnixDatagram::bind(dir.path("c.sock")).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    for _ in 0..3 {
        client.send_to(b"hello\n", &path).unwrap();
        let mut buf = [0u8; 64];
        let n = client.recv(&mut buf).expect("a reply");
        assert_eq!(&buf[..n], b"HELLO");
    }
}

#[test]
fn ten_requests_leave_fewer_than_ten_held_threads() {
    // bpo-37193: finished threads are not kept for ever.
    let mut server = ThreadingTcpServer::new("127.0.0.1:0", || EchoLines).unwrap();
    let addr = *server.local_addr();
    for _ in 0..10 {
        let mut client = connect(addr);
        client.shutdown(Shutdown::Write).unwrap();
        server.handle_request().unwrap();
        assert_eq!(read_all(&mut client), "", "the request is over");
    }
    assert!(
        server.dispatch().held_threads() < 10,
        "{} thread handles held",
        server.dispatch().held_threads()
    );
    server.server_close();
    assert_eq!(server.dispatch().held_threads(), 0);
    assert_eq!(server.dispatch().active_threads(), 0, "close joined them");
}

#[test]
fn errors_and_panics_in_request_threads_reach_handle_error() {
    let hooks = Recorder::default();
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .build_with(|config| ThreadingDispatch::new(|| Moody, config.with_hooks(hooks.clone())))
        .unwrap();
    let addr = *server.local_addr();
    let _serving = Serving::start(server, POLL);

    assert_eq!(tcp_exchange(addr, b"fail\n"), "");
    assert!(
        matches!(hooks.wait_errors(1)[0].1, Error::Handler("asked to fail")),
        "{:?}",
        hooks.wait_errors(1)[0].1
    );
    assert_eq!(tcp_exchange(addr, b"panic\n"), "");
    assert!(
        matches!(hooks.wait_errors(2)[1].1, Error::Panicked),
        "{:?}",
        hooks.wait_errors(2)[1].1
    );
    assert!(hooks.wait_errors(2)[1].0.contains("127.0.0.1"));
    assert_eq!(tcp_exchange(addr, b"hi\n"), "ok", "the server goes on");
    assert_eq!(hooks.errors().len(), 2);
}

/// Keeps the log records of this test binary.
struct Captured {
    lines: Mutex<Vec<String>>,
    added: Condvar,
}

impl log::Log for Captured {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        self.lines.lock().unwrap().push(record.args().to_string());
        self.added.notify_all();
    }

    fn flush(&self) {}
}

fn captured_log() -> &'static Captured {
    static LOG: OnceLock<&'static Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Box::leak(Box::new(Captured {
            lines: Mutex::new(Vec::new()),
            added: Condvar::new(),
        }));
        log::set_logger(log).expect("the only logger of this binary");
        log::set_max_level(log::LevelFilter::Error);
        log
    })
}

#[test]
fn an_error_in_a_request_thread_is_logged_by_the_default_hooks() {
    let log = captured_log();
    let server = ThreadingTcpServer::new("127.0.0.1:0", || Moody).unwrap();
    let addr = *server.local_addr();
    let _serving = Serving::start(server, POLL);
    let client = connect(addr);
    let port = client.local_addr().unwrap().port().to_string();
    let mut client = client;
    client.write_all(b"fail\n").unwrap();

    let deadline = Instant::now() + PATIENCE;
    let mut lines = log.lines.lock().unwrap();
    while !lines
        .iter()
        .any(|l| l.contains(&port) && l.contains("asked to fail"))
    {
        let now = Instant::now();
        assert!(now < deadline, "not logged: {lines:?}");
        lines = log.added.wait_timeout(lines, deadline - now).unwrap().0;
    }
}

#[test]
fn max_threads_holds_under_four_times_as_many_clients() {
    const MAX: usize = 3;
    let gauge = Gauge::new();
    let path = gauge.path();
    let factory = move || Gauged {
        gauge: path.clone(),
        tag: || thread::current().name().unwrap_or("?").to_owned(),
    };
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .request_queue_size(64)
        .build_with(|config| {
            ThreadingDispatch::new(factory, config)
                .max_threads(Some(MAX))
                .thread_name("req")
        })
        .unwrap();
    let addr = *server.local_addr();
    let _serving = Serving::start(server, POLL);

    let mut clients: Vec<TcpStream> = (0..4 * MAX).map(|_| connect(addr)).collect();
    gauge.wait_running(MAX);
    for (i, client) in clients.iter_mut().enumerate() {
        writeln!(client, "client {i}").unwrap();
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let mut reply = String::new();
        client
            .read_to_string(&mut reply)
            .expect("every client answered");
        assert!(reply.starts_with("req-"), "{reply:?}");
        assert!(reply.ends_with(&format!(": client {i}\n")), "{reply:?}");
    }
    assert_eq!(gauge.wait_ended(4 * MAX), MAX, "peak of running requests");
}

/// Blocks the requests that send `wait` until the test opens the gate;
/// answers `done`. Also the factory of its handlers.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<(bool, usize)>, Condvar)>);

impl Gate {
    fn wait_entered(&self, n: usize) {
        let (state, changed) = &*self.0;
        let state = state.lock().unwrap();
        let (state, timeout) = changed
            .wait_timeout_while(state, PATIENCE, |s| s.1 < n)
            .unwrap();
        assert!(!timeout.timed_out(), "{} requests entered", state.1);
    }

    fn open(&self) {
        self.0 .0.lock().unwrap().0 = true;
        self.0 .1.notify_all();
    }

    fn pass(&self) -> Result<(), Error> {
        let (state, changed) = &*self.0;
        let mut state = state.lock().unwrap();
        state.1 += 1;
        changed.notify_all();
        let (_state, timeout) = changed
            .wait_timeout_while(state, PATIENCE, |s| !s.0)
            .unwrap();
        if timeout.timed_out() {
            return Err(Error::Handler("the gate never opened"));
        }
        Ok(())
    }
}

struct Gated(Gate);

impl<C: Connection> StreamHandler<C> for Gated {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        if socketserver::handlers::strip(req.rfile.read_line()?) == b"wait" {
            self.0.pass()?;
        }
        socketserver::embedded_io::Write::write_all(&mut req.wfile, b"done")
    }
}

impl HandlerFactory for Gate {
    type Handler = Gated;

    fn build(&self) -> Gated {
        Gated(self.clone())
    }
}

/// A threading server whose one request waits at the gate.
fn gated_server(
    gate: &Gate,
    configure: impl FnOnce(ThreadingDispatch<Gate>) -> ThreadingDispatch<Gate>,
) -> (ThreadingTcpServer<Gate>, TcpStream) {
    let mut server = ServerBuilder::tcp("127.0.0.1:0")
        .build_with(|config| configure(ThreadingDispatch::new(gate.clone(), config)))
        .unwrap();
    let mut client = connect(*server.local_addr());
    client.write_all(b"wait\n").unwrap();
    server.handle_request().unwrap();
    gate.wait_entered(1);
    (server, client)
}

#[test]
fn close_waits_for_request_threads_by_default() {
    let gate = Gate::default();
    let (mut server, mut client) = gated_server(&gate, |d| d);
    let opener = {
        let gate = gate.clone();
        thread::spawn(move || gate.open())
    };
    server.server_close();
    assert_eq!(server.dispatch().active_threads(), 0, "joined");
    assert_eq!(read_all(&mut client), "done");
    opener.join().unwrap();
}

#[test]
fn close_without_block_on_close_returns_at_once() {
    for daemon in [false, true] {
        let gate = Gate::default();
        let (mut server, mut client) = gated_server(&gate, |d| {
            if daemon {
                d.daemon_threads(true)
            } else {
                d.block_on_close(false)
            }
        });
        // Joining would block until the gate opens, and nothing opens it.
        server.server_close();
        assert_eq!(server.dispatch().active_threads(), 1, "still running");
        gate.open();
        assert_eq!(read_all(&mut client), "done", "the request completes");
    }
}

#[test]
fn shutdown_is_not_held_by_a_full_server() {
    let gate = Gate::default();
    // Not joining on close: the serving thread drops the server.
    let (server, mut held) = gated_server(&gate, |d| d.max_threads(Some(1)).block_on_close(false));
    let addr = *server.local_addr();
    let serving = Serving::start(server, POLL);
    // Ready to accept, but the only thread is taken: the loop waits for room.
    let _waiting = connect(addr);
    let (stopped, stop) = std::sync::mpsc::channel();
    let stopper = thread::spawn(move || stopped.send(serving.stop()).unwrap());
    let result = stop.recv_timeout(PATIENCE);
    gate.open();
    result
        .expect("shutdown returned while the held request still runs")
        .unwrap();
    assert_eq!(read_all(&mut held), "done");
    stopper.join().unwrap();
}

#[test]
fn a_request_longer_than_timeout_does_not_stop_the_others() {
    let gate = Gate::default();
    let hooks = Recorder::default();
    let mut server = ServerBuilder::tcp("127.0.0.1:0")
        .timeout(Some(Duration::from_millis(20)))
        .build_with(|config| ThreadingDispatch::new(gate.clone(), config.with_hooks(hooks.clone())))
        .unwrap();
    let addr = *server.local_addr();
    let mut slow = connect(addr);
    slow.write_all(b"wait\n").unwrap();
    server.handle_request().unwrap();
    gate.wait_entered(1);

    // The slow request outlives several timeouts while others are served.
    for _ in 0..1000 {
        if hooks.timeouts() >= 2 {
            break;
        }
        server.handle_request().unwrap();
    }
    hooks.wait_timeouts(2);
    let mut quick = connect(addr);
    quick.write_all(b"quick\n").unwrap();
    server.handle_request().unwrap();
    assert_eq!(
        read_all(&mut quick),
        "done",
        "served while the slow one waits"
    );
    gate.open();
    assert_eq!(read_all(&mut slow), "done");
    assert!(hooks.errors().is_empty());
}
