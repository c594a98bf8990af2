//! Forking servers: CPython's `ForkingMixIn` cases. Every test runs while a
//! child the test itself started has exited unreaped, and collects its exit
//! status (72) afterwards: the servers reap only their own children
//! (bpo-1540386). Closing leaves no zombie (bpo-31151).
//!
//! Forking servers get a test binary of their own, and their children only
//! run a handler and `_exit`. What happens in a child reaches the test
//! through a [`Gauge`] socket, since the child's memory is its own.
#![cfg(feature = "std")]
#![cfg(not(target_os = "wasi"))]

mod util;

use std::fmt::Debug;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;
use socketserver::embedded_io::Write as _;
use socketserver::{
    Connection, DatagramHandler, DatagramRequest, Error, ForkingDispatch, ForkingTcpServer,
    ForkingUdpServer, ForkingUnixDatagramServer, ForkingUnixStreamServer, Hooks, ServerBuilder,
    StreamHandler, StreamRequest,
};
use util::concurrent::Moody;
use util::gauge::{report, Gauge, Gauged};
use util::{Serving, TempDir, PATIENCE};

const POLL: Duration = Duration::from_millis(100);

/// A child of the test process, not of any server: it waits until
/// [`release`](Self::release), then exits with status 72.
struct Sentinel(Child);

impl Sentinel {
    fn start() -> Self {
        let child = Command::new("sh")
            .args(["-c", "read line; exit 72"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("sh");
        Sentinel(child)
    }

    /// Lets the child exit and waits until it has, leaving it unreaped.
    fn release(&mut self) {
        // A line, not EOF: server children forked meanwhile hold copies of
        // the pipe's writing end.
        if let Some(mut stdin) = self.0.stdin.take() {
            stdin.write_all(b"go\n").expect("the sentinel reads");
        }
        let pid = Pid::from_raw(self.0.id() as i32);
        waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT).expect("sentinel ends");
    }

    /// Collects the exit status, which nobody else may have taken.
    fn collect(mut self) {
        self.release();
        let status = self.0.wait().expect("the sentinel's status is still ours");
        assert_eq!(status.code(), Some(72));
    }
}

/// Whether `pid` is a zombie child of this process.
fn is_zombie_child(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) state ppid ...": comm may contain spaces and parentheses.
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    let mut fields = after.split(' ');
    let state = fields.next();
    let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    state == Some("Z") && ppid == std::process::id()
}

fn assert_no_zombies(pids: &[u32]) {
    for &pid in pids {
        assert!(!is_zombie_child(pid), "child {pid} left a zombie");
    }
}

/// The docs' forking example: replies `{pid}: {line}` (the child's pid).
#[derive(Default)]
struct PidEcho;

impl<C: Connection> StreamHandler<C> for PidEcho {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let reply = {
            let line = req.rfile.read_line()?;
            format!("{}: {}", std::process::id(), String::from_utf8_lossy(line))
        };
        req.wfile.write_all(reply.as_bytes())
    }
}

impl<S: socketserver::ReplySocket> DatagramHandler<S> for PidEcho {
    fn handle(&mut self, req: &mut DatagramRequest<'_, S>) -> Result<(), Error> {
        let reply = format!(
            "{}: {}",
            std::process::id(),
            String::from_utf8_lossy(req.rfile.packet())
        );
        req.wfile.write_all(reply.as_bytes())
    }
}

/// Checks a `{pid}: {sent}` reply and returns the pid, which must be
/// another process's.
fn child_pid(reply: &[u8], sent: &str) -> u32 {
    let reply = String::from_utf8_lossy(reply);
    let (pid, rest) = reply.split_once(": ").expect("a pid-tagged reply");
    assert_eq!(rest, sent);
    let pid: u32 = pid.parse().unwrap();
    assert_ne!(pid, std::process::id(), "served in a child");
    pid
}

fn stream_exchange<S: Read + Write>(mut stream: S, sent: &str, shut: impl FnOnce(&S)) -> u32 {
    stream.write_all(sent.as_bytes()).unwrap();
    shut(&stream);
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("a reply");
    child_pid(&reply, sent)
}

fn tcp_exchange(addr: SocketAddr, sent: &str) -> u32 {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream_exchange(stream, sent, |s| s.shutdown(Shutdown::Write).unwrap())
}

#[test]
fn forking_tcp_server_echoes_in_children_and_reaps_them() {
    let mut sentinel = Sentinel::start();
    let server = ForkingTcpServer::new("127.0.0.1:0", || PidEcho).unwrap();
    assert_eq!(server.timeout(), Some(socketserver::os::FORKING_TIMEOUT));
    let addr = *server.local_addr();
    let serving = Serving::start(server, POLL);
    sentinel.release();
    let pids: Vec<u32> = (0..3)
        .map(|i| tcp_exchange(addr, &format!("tcp {i}\n")))
        .collect();
    serving.stop().unwrap();
    assert_no_zombies(&pids);
    sentinel.collect();
}

#[test]
fn forking_unix_stream_server_echoes() {
    let mut sentinel = Sentinel::start();
    let dir = TempDir::new("fork-ustream");
    let path = dir.path("s.sock");
    let server = ForkingUnixStreamServer::new(&path, || PidEcho).unwrap();
    let serving = Serving::start(server, POLL);
    sentinel.release();
    let pids: Vec<u32> = (0..3)
        .map(|i| {
            let stream = UnixStream::connect(&path).unwrap();
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            stream_exchange(stream, &format!("unix {i}\n"), |s| {
                s.shutdown(Shutdown::Write).unwrap()
            })
        })
        .collect();
    serving.stop().unwrap();
    assert_no_zombies(&pids);
    sentinel.collect();
}

#[test]
fn forking_udp_server_echoes_and_handle_timeout_reaps() {
    let mut sentinel = Sentinel::start();
    let mut server = ForkingUdpServer::new("127.0.0.1:0", || PidEcho).unwrap();
    assert_eq!(server.timeout(), Some(socketserver::os::FORKING_TIMEOUT));
    server.set_timeout(Some(Duration::from_millis(10)));
    let addr = *server.local_addr();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    sentinel.release();
    let mut pids = Vec::new();
    for i in 0..3 {
        let sent = format!("udp {i}");
        client.send_to(sent.as_bytes(), addr).unwrap();
        server.handle_request().unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = client.recv_from(&mut buf).expect("a reply");
        assert_eq!(from, addr, "replied through the server socket");
        pids.push(child_pid(&buf[..n], &sent));
    }
    // Each wait that times out reaps what has ended, without blocking.
    for _ in 0..500 {
        if server.dispatch().active_children().is_empty() {
            break;
        }
        server.handle_request().unwrap();
    }
    assert_eq!(server.dispatch().active_children(), &[] as &[u32]);
    assert_no_zombies(&pids);
    sentinel.collect();
}

#[test]
fn forking_unix_datagram_server_echoes() {
    let mut sentinel = Sentinel::start();
    let dir = TempDir::new("fork-udgram");
    let path = dir.path("s.sock");
    let server = ForkingUnixDatagramServer::new(&path, || PidEcho).unwrap();
    let serving = Serving::start(server, POLL);
    sentinel.release();
    let client = UnixDatagram::bind(dir.path("c.sock")).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut pids = Vec::new();
    for i in 0..3 {
        let sent = format!("unix dgram {i}");
        client.send_to(sent.as_bytes(), &path).unwrap();
        let mut buf = [0u8; 64];
        let n = client.recv(&mut buf).expect("a reply");
        pids.push(child_pid(&buf[..n], &sent));
    }
    serving.stop().unwrap();
    assert_no_zombies(&pids);
    sentinel.collect();
}

#[test]
fn max_children_holds_under_four_times_as_many_clients() {
    const MAX: usize = 2;
    let mut sentinel = Sentinel::start();
    let gauge = Gauge::new();
    let path = gauge.path();
    let factory = move || Gauged {
        gauge: path.clone(),
        tag: || std::process::id().to_string(),
    };
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .request_queue_size(64)
        .build_with(|config| ForkingDispatch::new(factory, config).max_children(MAX))
        .unwrap();
    let addr = *server.local_addr();
    let serving = Serving::start(server, POLL);
    // At the limit, an ended child of the test's own must not be reaped.
    sentinel.release();

    let mut clients: Vec<TcpStream> = (0..4 * MAX)
        .map(|_| {
            let c = TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(PATIENCE)).unwrap();
            c
        })
        .collect();
    gauge.wait_running(MAX);
    for (i, client) in clients.iter_mut().enumerate() {
        writeln!(client, "client {i}").unwrap();
    }
    let mut pids = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        let mut reply = Vec::new();
        client
            .read_to_end(&mut reply)
            .expect("every client answered");
        pids.push(child_pid(&reply, &format!("client {i}\n")));
    }
    assert_eq!(gauge.wait_ended(4 * MAX), MAX, "peak of running children");
    serving.stop().unwrap();
    assert_no_zombies(&pids);
    sentinel.collect();
}

/// Hooks that tell the gauge about each error, from inside the child.
#[derive(Clone)]
struct ReportErrors(PathBuf);

impl<R: ?Sized, A: Debug> Hooks<R, A> for ReportErrors {
    fn handle_error(&self, client_address: &A, error: &Error) {
        let _ = report(&self.0, &format!("error from {client_address:?}: {error}"));
    }
}

impl socketserver::ServerHooks for ReportErrors {}

fn send_line(addr: SocketAddr, line: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(line).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("closed by the child");
    (stream.local_addr().unwrap().port(), reply)
}

#[test]
fn errors_and_panics_in_a_child_reach_handle_error() {
    let mut sentinel = Sentinel::start();
    let gauge = Gauge::new();
    let hooks = ReportErrors(gauge.path());
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .build_with(|config| ForkingDispatch::new(|| Moody, config.with_hooks(hooks)))
        .unwrap();
    let addr = *server.local_addr();
    let _serving = Serving::start(server, POLL);
    sentinel.release();

    let (port, reply) = send_line(addr, b"fail\n");
    assert_eq!(reply, b"");
    let notes = gauge.wait_notes(1);
    assert!(notes[0].contains(&format!(":{port}")), "{notes:?}");
    assert!(
        notes[0].ends_with("handler error: asked to fail"),
        "{notes:?}"
    );

    let (_, reply) = send_line(addr, b"panic\n");
    assert_eq!(reply, b"");
    let notes = gauge.wait_notes(2);
    assert!(notes[1].ends_with("request handler panicked"), "{notes:?}");

    assert_eq!(send_line(addr, b"hello\n").1, b"ok", "the server goes on");
    sentinel.collect();
}

/// Sends every log record to the gauge the running test set.
struct ToGauge(Mutex<Option<PathBuf>>);

impl log::Log for ToGauge {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if let Some(path) = &*self.0.lock().unwrap() {
            let _ = report(path, &format!("log: {}", record.args()));
        }
    }

    fn flush(&self) {}
}

static LOGGER: ToGauge = ToGauge(Mutex::new(None));

#[test]
fn an_error_in_a_child_is_logged_by_the_default_hooks() {
    let mut sentinel = Sentinel::start();
    let gauge = Gauge::new();
    *LOGGER.0.lock().unwrap() = Some(gauge.path());
    log::set_logger(&LOGGER).expect("the only logger of this binary");
    log::set_max_level(log::LevelFilter::Error);

    let server = ForkingTcpServer::new("127.0.0.1:0", || Moody).unwrap();
    let addr = *server.local_addr();
    let _serving = Serving::start(server, POLL);
    sentinel.release();
    let (port, _) = send_line(addr, b"fail\n");
    let logged = gauge.wait_note(|n| n.starts_with("log: ") && n.contains("asked to fail"));
    assert!(logged.contains(&format!(":{port}")), "{logged}");
    sentinel.collect();
}

#[test]
fn close_without_block_on_close_returns_at_once() {
    let mut sentinel = Sentinel::start();
    let mut server = ServerBuilder::tcp("127.0.0.1:0")
        .build_with(|config| ForkingDispatch::new(|| PidEcho, config).block_on_close(false))
        .unwrap();
    let mut client = TcpStream::connect(*server.local_addr()).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    server.handle_request().unwrap();
    assert_eq!(server.dispatch().active_children().len(), 1);
    sentinel.release();
    // The child waits for a line that is only sent after close returned.
    server.server_close();
    assert!(server.dispatch().active_children().is_empty());
    let pid = stream_exchange(&mut client, "after close\n", |s| {
        s.shutdown(Shutdown::Write).unwrap()
    });
    assert_ne!(pid, 0);
    sentinel.collect();
}

#[test]
fn a_child_that_fails_exits_with_status_one() {
    let mut sentinel = Sentinel::start();
    let mut server = ServerBuilder::tcp("127.0.0.1:0")
        .build_with(|config| ForkingDispatch::new(|| Moody, config))
        .unwrap();
    let addr = *server.local_addr();
    sentinel.release();
    let mut replies = Vec::new();
    for line in [&b"fail\n"[..], b"panic\n", b"hello\n"] {
        let mut client = TcpStream::connect(addr).unwrap();
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        client.write_all(line).unwrap();
        server.handle_request().unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).expect("the child closes");
        replies.push(reply);
    }
    assert_eq!(replies, [&b""[..], b"", b"ok"]);
    let pids = server.dispatch().active_children().to_vec();
    server.dispatch_mut().collect_children(true);
    assert!(server.dispatch().active_children().is_empty());
    // The error and the panic made their children exit with 1; the
    // successful one exited with 0.
    assert_eq!(server.dispatch().failed_children(), 2);
    assert_no_zombies(&pids);
    sentinel.collect();
}

#[test]
fn close_without_block_on_close_leaves_no_zombie() {
    let mut sentinel = Sentinel::start();
    let mut server = ServerBuilder::tcp("127.0.0.1:0")
        .build_with(|config| ForkingDispatch::new(|| PidEcho, config).block_on_close(false))
        .unwrap();
    let mut client = TcpStream::connect(*server.local_addr()).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    server.handle_request().unwrap();
    sentinel.release();
    server.server_close();
    // The child ends only now, after close returned: the background reaper
    // must collect it.
    let pid = stream_exchange(&mut client, "after close\n", |s| {
        s.shutdown(Shutdown::Write).unwrap()
    });
    // Once reaped, /proc forgets it; a zombie would stay.
    let deadline = std::time::Instant::now() + PATIENCE;
    while fs::metadata(format!("/proc/{pid}")).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "child {pid} still there (zombie: {})",
            is_zombie_child(pid)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    sentinel.collect();
}

#[test]
fn a_request_longer_than_timeout_does_not_stop_the_others() {
    let mut sentinel = Sentinel::start();
    let mut server = ServerBuilder::tcp("127.0.0.1:0")
        .timeout(Some(Duration::from_millis(20)))
        .build_with(|config| ForkingDispatch::new(|| PidEcho, config))
        .unwrap();
    let addr = *server.local_addr();
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(PATIENCE)).unwrap();
    server.handle_request().unwrap();
    sentinel.release();
    // Timeouts pass (each reaping) while the slow child waits for its line.
    for _ in 0..3 {
        server.handle_request().unwrap();
    }
    let quick = tcp_exchange_with(&mut server, addr, "quick\n");
    let slow_pid = stream_exchange(&mut slow, "slow\n", |s| {
        s.shutdown(Shutdown::Write).unwrap()
    });
    assert_ne!(quick, slow_pid);
    server.server_close();
    assert_no_zombies(&[quick, slow_pid]);
    sentinel.collect();
}

/// One exchange with a server driven by `handle_request` on this thread.
fn tcp_exchange_with<D>(
    server: &mut socketserver::SocketServer<socketserver::os::TcpTransport, D>,
    addr: SocketAddr,
    sent: &str,
) -> u32
where
    D: socketserver::Dispatch<socketserver::os::TcpTransport>,
{
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    server.handle_request().unwrap();
    stream_exchange(&mut stream, sent, |s| s.shutdown(Shutdown::Write).unwrap())
}
