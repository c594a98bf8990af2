//! Pool servers: echo on the stream and datagram transports, the worker
//! and queue bounds, errors and panics, and the close semantics.
#![cfg(feature = "std")]
#![cfg_attr(not(unix), allow(dead_code, unused_imports))]
#![cfg(not(target_os = "wasi"))]

mod util;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use socketserver::handlers::{EchoLines, UpperDatagram};
#[cfg(unix)]
use socketserver::PoolUnixStreamServer;
use socketserver::{
    Connection, Error, PoolDispatch, PoolTcpServer, ServerBuilder, StreamHandler, StreamRequest,
};
#[cfg(unix)]
use util::concurrent::unix_exchange;
use util::concurrent::{connect, read_all, tcp_exchange, Moody};
use util::gauge::{Gauge, Gauged};
#[cfg(unix)]
use util::TempDir;
use util::{Recorder, Serving, PATIENCE};

const POLL: Duration = Duration::from_millis(500);

#[test]
fn pool_tcp_server_echoes() {
    let server = PoolTcpServer::new("127.0.0.1:0", || EchoLines).unwrap();
    assert_eq!(
        server.dispatch().worker_count(),
        socketserver::os::default_workers()
    );
    let addr = *server.local_addr();
    let _serving = Serving::start(server, POLL);
    for _ in 0..5 {
        assert_eq!(tcp_exchange(addr, b"one\ntwo\n"), "one\ntwo\n");
    }
}

#[cfg(unix)]
#[test]
fn pool_unix_stream_server_echoes() {
    let dir = TempDir::new("pool-ustream");
    let path = dir.path("s.sock");
    let server = PoolUnixStreamServer::new(&path, || EchoLines).unwrap();
    let _serving = Serving::start(server, POLL);
    for _ in 0..3 {
        assert_eq!(unix_exchange(&path, b"a\nb\n"), "a\nb\n");
    }
}

#[test]
fn pool_udp_server_replies_through_the_shared_socket() {
    let server = ServerBuilder::udp("127.0.0.1:0")
        .build_with(|config| PoolDispatch::new(|| UpperDatagram, config).workers(2))
        .unwrap();
    let addr = *server.local_addr();
    let _serving = Serving::start(server, POLL);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    for word in ["one", "two", "three"] {
        client.send_to(word.as_bytes(), addr).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = client.recv_from(&mut buf).expect("a reply");
        assert_eq!(from, addr);
        assert_eq!(&buf[..n], word.to_uppercase().as_bytes());
    }
}

#[test]
fn workers_and_queue_bound_hold_under_four_times_as_many_clients() {
    const WORKERS: usize = 2;
    const QUEUE: usize = 2;
    let gauge = Gauge::new();
    let path = gauge.path();
    let factory = move || Gauged {
        gauge: path.clone(),
        tag: || thread::current().name().unwrap_or("?").to_owned(),
    };
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .request_queue_size(64)
        .build_with(|config| {
            PoolDispatch::new(factory, config)
                .workers(WORKERS)
                .queue_capacity(QUEUE)
                .thread_name("worker")
        })
        .unwrap();
    let addr = *server.local_addr();
    let hooks_thread = Serving::start(server, POLL);

    let n = 4 * (WORKERS + QUEUE);
    let mut clients: Vec<TcpStream> = (0..n).map(|_| connect(addr)).collect();
    gauge.wait_running(WORKERS);
    for (i, client) in clients.iter_mut().enumerate() {
        writeln!(client, "client {i}").unwrap();
    }
    let mut names = HashSet::new();
    for (i, client) in clients.iter_mut().enumerate() {
        let reply = read_all(client);
        let (name, rest) = reply.split_once(": ").expect("tagged reply");
        assert_eq!(rest, format!("client {i}\n"));
        names.insert(name.to_owned());
    }
    assert_eq!(gauge.wait_ended(n), WORKERS, "peak of running requests");
    let expected: HashSet<String> = (1..=WORKERS).map(|i| format!("worker-{i}")).collect();
    assert!(names.is_subset(&expected), "served by {names:?}");
    hooks_thread.stop().unwrap();
}

#[test]
fn a_single_worker_survives_errors_and_panics() {
    let hooks = Recorder::default();
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .build_with(|config| {
            PoolDispatch::new(|| Moody, config.with_hooks(hooks.clone())).workers(1)
        })
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
    assert_eq!(tcp_exchange(addr, b"hi\n"), "ok", "the worker goes on");
}

/// Waits for the test's word before answering `done`.
struct Held(mpsc::Receiver<()>);

impl<C: Connection> StreamHandler<C> for Held {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        self.0
            .recv_timeout(PATIENCE)
            .map_err(|_| Error::Handler("never released"))?;
        socketserver::embedded_io::Write::write_all(&mut req.wfile, b"done")
    }
}

/// A one-worker pool server whose handlers wait for a message each; the
/// returned sender releases one handler per message.
fn held_pool(block_on_close: bool) -> (PoolTcpServer<impl Fn() -> Held>, mpsc::Sender<()>) {
    let (release, released) = mpsc::channel();
    let released = std::sync::Mutex::new(Some(released));
    // One worker: the single receiver goes to the first handler built.
    let factory = move || Held(released.lock().unwrap().take().expect("one handler"));
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .build_with(|config| {
            PoolDispatch::new(factory, config)
                .workers(1)
                .block_on_close(block_on_close)
        })
        .unwrap();
    (server, release)
}

#[test]
fn close_without_block_on_close_returns_at_once() {
    let (mut server, release) = held_pool(false);
    let mut client = connect(*server.local_addr());
    server.handle_request().unwrap();
    // The worker waits for `release`, which is only sent after close.
    server.server_close();
    release.send(()).unwrap();
    assert_eq!(read_all(&mut client), "done", "the request completes");
}

#[test]
fn close_waits_for_the_workers_by_default() {
    let (mut server, release) = held_pool(true);
    let mut client = connect(*server.local_addr());
    server.handle_request().unwrap();
    let releaser = thread::spawn(move || release.send(()).unwrap());
    server.server_close();
    // Joined: the reply was written before close returned.
    client.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 8];
    let n = client.read(&mut buf).expect("the reply is already there");
    assert_eq!(&buf[..n], b"done");
    releaser.join().unwrap();
}

/// A pool held by a persistent connection refuses the clients it cannot
/// serve: each is reported to `handle_error`, counted, and closed unserved
/// within the queue timeout, none left waiting in the queue or the listen
/// backlog; the connection holding the worker is still served, and once it
/// closes the pool serves again.
#[test]
fn a_pool_held_by_a_long_connection_refuses_the_rest_visibly() {
    const WAITING: usize = 12;
    const TIMEOUT: Duration = Duration::from_millis(200);
    let recorder = Recorder::default();
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .request_queue_size(4)
        .hooks(recorder.clone())
        .build_with(|config| {
            PoolDispatch::new(|| EchoLines, config)
                .workers(1)
                .queue_capacity(1)
                .queue_timeout(TIMEOUT)
        })
        .unwrap();
    let addr = *server.local_addr();
    let refused = server.dispatch().refused_counter();
    let serving = Serving::start(server, POLL);

    let mut holder = connect(addr);
    let echo = |client: &mut TcpStream, line: &[u8]| {
        client.write_all(line).unwrap();
        let mut reply = vec![0; line.len()];
        client.read_exact(&mut reply).expect("an echo");
        assert_eq!(reply, line);
    };
    echo(&mut holder, b"first\n");
    // One queued, one in the server's hand, four in the backlog, the rest
    // waiting for room in it: all refused.
    let mut waiting: Vec<TcpStream> = (0..WAITING).map(|_| connect(addr)).collect();
    for client in &mut waiting {
        // Unread by the server: closing then resets the connection.
        client.write_all(b"never served\n").unwrap();
    }
    for (i, client) in waiting.iter_mut().enumerate() {
        let mut buf = [0; 64];
        match client.read(&mut buf) {
            Ok(0) => {}
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("client {i}: {other:?}, not refused"),
        }
    }
    assert_eq!(refused.get(), WAITING as u64, "refusals counted");
    let errors = recorder.wait_errors(WAITING);
    assert_eq!(errors.len(), WAITING, "{errors:?}");
    for (_, error) in &errors {
        assert_eq!(
            error.kind(),
            socketserver::embedded_io::ErrorKind::ConnectionRefused
        );
        assert!(error.to_string().contains("no pool worker free"), "{error}");
    }
    echo(&mut holder, b"still served\n");
    drop(holder);
    let mut next = connect(addr);
    echo(&mut next, b"served again\n");
    drop(next);
    serving.stop().unwrap();
}
