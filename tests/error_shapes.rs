//! What reaches `handle_error`, in one shape on every backend (the
//! README's table): a read that times out is `Error::Io` of kind
//! `TimedOut`, a reset `Error::Io` of kind `ConnectionReset`, a line longer
//! than `rfile`'s buffer `Error::LineTooLong`, a panic `Error::Panicked`;
//! the same handler served on OS sockets and on smoltcp. And the default
//! report is one line, `Exception occurred during processing of request
//! from IP:PORT: words`, on both (checked in a child process, whose stderr
//! the test reads).
#![cfg(all(feature = "std", feature = "smoltcp"))]

#[path = "util/smoltcp.rs"]
#[allow(unused_imports, unused_macros)]
mod smol;
mod util;

use std::cell::RefCell;
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socketserver::embedded_io::ErrorKind;
use socketserver::smoltcp::memory::Cable;
use socketserver::smoltcp::socket::tcp;
use socketserver::smoltcp::wire::IpAddress;
use socketserver::smoltcp::{SmoltcpConnection, StdClock, TcpListener};
use socketserver::{
    Connection, Error, Server, ServerBuilder, ShutdownFlag, StreamHandler, StreamOptions,
    StreamRequest, SyncDispatch,
};
use util::{Recorder, Serving, PATIENCE};

/// The per-read timeout of [`Probe`].
const TIMEOUT: Duration = Duration::from_millis(200);
/// The `rfile` buffer of both servers.
const LINE: usize = 256;
/// Set in the child process of the default-report tests.
const CHILD: &str = "SOCKETSERVER_ERROR_SHAPES_CHILD";

const SERVER: IpAddress = IpAddress::v4(10, 0, 0, 1);
const CLIENT: IpAddress = IpAddress::v4(10, 0, 0, 2);

/// Says [`READY`], then reads a line with a short timeout and echoes it;
/// panics on `panic`.
#[derive(Clone, Copy, Default)]
struct Probe;

/// What [`Probe`] says first: the client acts once the request is taken.
const READY: &[u8] = b"ready\n";

impl<C: Connection> StreamHandler<C> for Probe {
    fn options(&self) -> StreamOptions {
        StreamOptions::new().timeout(Some(TIMEOUT))
    }

    fn setup(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        req.wfile.write_all(READY)
    }

    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let line = req.rfile.read_line()?;
        assert!(!line.starts_with(b"panic"), "the handler panics, as asked");
        req.wfile.write_all(line)
    }
}

/// One of the README's rows: what the client does, and what must reach
/// `handle_error`.
#[derive(Clone, Copy, Debug)]
enum Case {
    /// Connects and sends nothing.
    Silent,
    /// Sends part of a line, then resets the connection.
    Reset,
    /// Sends a line longer than the server's buffer.
    Long,
    /// Makes the handler panic.
    Panic,
}

const CASES: [Case; 4] = [Case::Silent, Case::Reset, Case::Long, Case::Panic];

/// Whether `err` has the shape the README promises for `case`.
fn expected(case: Case, err: &Error) -> bool {
    match case {
        Case::Silent => matches!(
            err,
            Error::Io {
                kind: ErrorKind::TimedOut,
                ..
            }
        ),
        Case::Reset => matches!(
            err,
            Error::Io {
                kind: ErrorKind::ConnectionReset,
                ..
            }
        ),
        Case::Long => {
            matches!(err, Error::LineTooLong { capacity: LINE })
                && err.kind() == ErrorKind::InvalidData
        }
        Case::Panic => matches!(err, Error::Panicked),
    }
}

fn check(errors: &[(String, Error)]) {
    assert_eq!(errors.len(), CASES.len(), "{errors:?}");
    for (case, (client, err)) in CASES.iter().zip(errors) {
        assert!(
            expected(*case, err),
            "{case:?}: {client} reported {err:?} ({err})"
        );
    }
}

// --- std ---

fn std_server(hooks: Recorder) -> (SocketAddr, Serving) {
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .buffer_sizes(socketserver::BufferSizes::new(LINE, LINE))
        .hooks(hooks)
        .build(|| Probe)
        .unwrap();
    let addr = *server.local_addr();
    (addr, Serving::start(server, Duration::from_millis(50)))
}

/// Acts `case` out against a std server at `addr`.
fn std_client(addr: SocketAddr, case: Case) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut ready = [0; READY.len()];
    std::io::Read::read_exact(&mut stream, &mut ready).unwrap();
    match case {
        Case::Silent => {
            // The server closes when its read times out.
            let mut rest = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stream, &mut rest);
        }
        Case::Reset => {
            stream.write_all(b"part of a line").unwrap();
            socketserver::os::socket2::SockRef::from(&stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        Case::Long => {
            let _ = stream.write_all(&[b'a'; 4 * LINE]);
        }
        Case::Panic => stream.write_all(b"panic\n").unwrap(),
    }
}

#[test]
fn std_errors_have_the_readme_shapes() {
    let hooks = Recorder::default();
    let (addr, _serving) = std_server(hooks.clone());
    for (n, case) in CASES.into_iter().enumerate() {
        std_client(addr, case);
        hooks.wait_errors(n + 1);
    }
    check(&hooks.errors());
}

// --- smoltcp ---

type ClientStack<'c> = RefCell<smol::MemStack<socketserver::smoltcp::memory::CableEnd<'c>>>;

/// A backlog of two: one socket may still be closing the last request.
fn backlog() -> [tcp::Socket<'static>; 2] {
    [smol::tcp_socket(), smol::tcp_socket()]
}

/// Polls the client's stack until `done`, at most [`PATIENCE`].
fn pump(stack: &ClientStack<'_>, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "the server did not get there");
        stack
            .borrow_mut()
            .poll_wait(Duration::from_millis(1), &ShutdownFlag::new());
    }
}

/// Acts `case` out against the smoltcp server, then keeps the client's
/// stack going until `done`.
fn smol_client(stack: &ClientStack<'_>, case: Case, done: impl Fn() -> bool) {
    let mut conn = SmoltcpConnection::connect(
        stack,
        smol::tcp_socket(),
        (SERVER, smol::PORT),
        Some(PATIENCE),
    )
    .unwrap();
    let mut ready = [0; READY.len()];
    socketserver::embedded_io::Read::read_exact(&mut conn, &mut ready).unwrap();
    assert_eq!(ready, READY);
    let mut send = |data: &[u8]| socketserver::embedded_io::Write::write_all(&mut conn, data);
    match case {
        Case::Silent => {}
        Case::Reset => {
            send(b"part of a line").unwrap();
            let handle = conn.handle();
            stack
                .borrow_mut()
                .sockets_mut()
                .get_mut::<tcp::Socket>(handle)
                .abort();
        }
        Case::Long => {
            let _ = send(&[b'a'; 4 * LINE]);
        }
        Case::Panic => send(b"panic\n").unwrap(),
    }
    pump(stack, done);
}

#[test]
fn smoltcp_errors_have_the_readme_shapes() {
    let mut cable = Cable::<64>::new();
    let (server_end, client_end) = cable.split();
    let client = smol::memory_stack(client_end, 2, CLIENT);
    let hooks = Recorder::default();
    let stop = ShutdownFlag::new();
    let (bound_tx, bound) = std::sync::mpsc::sync_channel(1);
    std::thread::scope(|s| {
        let (hooks2, stop2) = (hooks.clone(), &stop);
        let server = s.spawn(move || {
            let net = smol::memory_stack(server_end, 1, SERVER);
            let mut listener = TcpListener::bind(&net, smol::PORT, backlog(), stop2).unwrap();
            listener.set_linger(Duration::from_millis(200));
            bound_tx.send(()).unwrap();
            let dispatch = SyncDispatch::<_, _, [u8; LINE], [u8; 0]>::with_hooks(|| Probe, hooks2);
            let mut server = Server::new(listener, dispatch, StdClock);
            server.serve_forever(Duration::from_secs(60)).unwrap();
            server.server_close();
        });
        let _stop = smol::StopOnDrop(&stop);
        bound
            .recv_timeout(PATIENCE)
            .expect("the server did not bind");
        for (n, case) in CASES.into_iter().enumerate() {
            smol_client(&client, case, || hooks.errors().len() > n);
        }
        check(&hooks.errors());
        drop(_stop);
        server.join().unwrap();
    });
}

// --- the default report ---

/// Runs this test binary's test `name` again as a child with [`CHILD`]
/// set, and returns the lines of its stderr that are default reports.
fn reports_of_child(name: &str) -> Vec<String> {
    reports_of_child_after(name, "")
}

/// [`reports_of_child`], of the lines that start with `prefix` (removed).
fn reports_of_child_after(name: &str, prefix: &str) -> Vec<String> {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the child failed: {stderr}");
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter(|l| l.starts_with("Exception occurred"))
        .map(str::to_owned)
        .collect()
}

/// `IP:PORT` of `client`, then `: `, then `words`.
fn assert_report(lines: &[String], client: &str, words: &str) {
    assert_eq!(lines.len(), 1, "one report: {lines:?}");
    let rest = lines[0]
        .strip_prefix("Exception occurred during processing of request from ")
        .and_then(|r| r.strip_prefix(client))
        .and_then(|r| r.strip_prefix(':'))
        .unwrap_or_else(|| panic!("not a report from {client}: {:?}", lines[0]));
    let (port, error) = rest.split_once(": ").expect("PORT: error");
    assert!(port.parse::<u16>().is_ok(), "{port} is no port");
    assert_eq!(error, words);
}

#[test]
fn std_default_report_names_the_client_and_the_error_in_words() {
    if std::env::var_os(CHILD).is_none() {
        let lines = reports_of_child("std_default_report_names_the_client_and_the_error_in_words");
        return assert_report(
            &lines,
            "127.0.0.1",
            "Connection reset by peer (os error 104)",
        );
    }
    serve_one_reset_with_the_default_hooks();
}

/// One request from a client that resets, served on std with the default
/// hooks.
fn serve_one_reset_with_the_default_hooks() {
    let mut server = ServerBuilder::tcp("127.0.0.1:0").build(|| Probe).unwrap();
    let addr = *server.local_addr();
    std::thread::scope(|s| {
        let served = s.spawn(move || server.handle_request());
        std_client(addr, Case::Reset);
        served.join().unwrap().unwrap();
    });
}

/// Writes each record's message on stderr after `log: `.
struct Plain;

impl log::Log for Plain {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        eprintln!("log: {}", record.args());
    }
    fn flush(&self) {}
}

/// With a `log` logger installed the report goes there instead of stderr,
/// in the same words.
#[test]
fn the_report_through_log_has_the_same_words() {
    const NAME: &str = "the_report_through_log_has_the_same_words";
    if std::env::var_os(CHILD).is_none() {
        let lines = reports_of_child_after(NAME, "log: ");
        return assert_report(
            &lines,
            "127.0.0.1",
            "Connection reset by peer (os error 104)",
        );
    }
    log::set_logger(&Plain).unwrap();
    log::set_max_level(log::LevelFilter::Error);
    serve_one_reset_with_the_default_hooks();
}

#[test]
fn smoltcp_default_report_names_the_client_and_the_error_in_words() {
    if std::env::var_os(CHILD).is_none() {
        let lines =
            reports_of_child("smoltcp_default_report_names_the_client_and_the_error_in_words");
        return assert_report(&lines, "10.0.0.2", "connection reset");
    }
    let mut cable = Cable::<64>::new();
    let (server_end, client_end) = cable.split();
    let client = smol::memory_stack(client_end, 2, CLIENT);
    let (stop, done) = (ShutdownFlag::new(), AtomicBool::new(false));
    let (bound_tx, bound) = std::sync::mpsc::sync_channel(1);
    std::thread::scope(|s| {
        let (stop, done) = (&stop, &done);
        s.spawn(move || {
            let net = smol::memory_stack(server_end, 1, SERVER);
            let mut listener = TcpListener::bind(&net, smol::PORT, backlog(), stop).unwrap();
            listener.set_linger(Duration::from_millis(200));
            bound_tx.send(()).unwrap();
            let dispatch = SyncDispatch::<_, _, [u8; LINE], [u8; 0]>::new(|| Probe);
            let mut server = Server::new(listener, dispatch, StdClock);
            server.set_timeout(Some(PATIENCE));
            server.handle_request().unwrap();
            server.server_close();
            done.store(true, Ordering::Release);
        });
        let _stop = smol::StopOnDrop(stop);
        bound
            .recv_timeout(PATIENCE)
            .expect("the server did not bind");
        smol_client(&client, Case::Reset, || done.load(Ordering::Acquire));
    });
}
