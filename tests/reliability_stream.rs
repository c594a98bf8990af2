//! Stream clients that misbehave, against each in-process dispatch
//! (inline, threading, pool): handlers that panic, clients that stall or
//! trickle, peers that reset, leave before the reply or half-close. Every
//! test ends with a well-behaved client served.
//!
//! The forking dispatch gets the same panics in `reliability_forking.rs`.
#![cfg(feature = "std")]
#![cfg(not(target_os = "wasi"))]

#[path = "util/reliability.rs"]
mod reliability;
mod util;

use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use reliability::{
    ask, ask_tenth_panics, assert_each_panic_reported_once, port_of, quiet_planned_panics, serial,
    serve_tcp, InProcess, TenthPanics, POLL,
};
use socketserver::embedded_io::ErrorKind;
use socketserver::handlers::EchoLines;
use socketserver::os::socket2::SockRef;
use socketserver::{Connection, Error, ServerBuilder, StreamHandler, StreamOptions, StreamRequest};
use util::{Recorder, Serving, TempDir, PATIENCE};

/// 1000 requests, one in ten panicking: every other request is answered,
/// and every panic reaches `handle_error` once, from its own client.
fn one_request_in_ten_panics(dispatch: InProcess) {
    quiet_planned_panics();
    let hooks = Recorder::default();
    let builder = ServerBuilder::tcp("127.0.0.1:0").request_queue_size(64);
    let (addr, serving) = serve_tcp(dispatch, builder, || TenthPanics, hooks.clone());

    let panicked = ask_tenth_panics(addr);
    // A request is reported before its connection is shut down, so every
    // report is in by the time its client read EOF.
    assert_each_panic_reported_once(&hooks.errors(), &panicked);

    assert_eq!(ask(addr, b"7\n").1, b"ok 7", "still serving");
    serving.stop().unwrap();
}

#[test]
fn inline_one_request_in_ten_panics() {
    one_request_in_ten_panics(InProcess::Inline);
}

#[test]
fn threading_one_request_in_ten_panics() {
    one_request_in_ten_panics(InProcess::Threading);
}

#[test]
fn pool_one_request_in_ten_panics() {
    one_request_in_ten_panics(InProcess::Pool);
}

/// The timeouts of [`Patient`].
const TIMEOUT: Duration = Duration::from_millis(300);

/// Echoes lines until EOF, with [`TIMEOUT`] as its timeout for each read
/// and write and for the whole request.
#[derive(Clone, Copy, Default)]
struct Patient;

impl<C: Connection> StreamHandler<C> for Patient {
    fn options(&self) -> StreamOptions {
        StreamOptions::new()
            .timeout(Some(TIMEOUT))
            .request_timeout(Some(TIMEOUT))
    }

    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        EchoLines.handle(req)
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Sends a line and reads the reply to EOF.
fn line_exchange(mut client: TcpStream, line: &[u8]) -> Vec<u8> {
    client.write_all(line).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).expect("a reply");
    reply
}

/// Whether the server has closed `client`: EOF or a reset, without waiting.
fn closed_by_server(client: &TcpStream) -> bool {
    client.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let closed = match (&*client).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("the server echoed a partial line"),
        Err(err) if err.kind() == IoKind::WouldBlock => false,
        Err(_) => true,
    };
    client.set_nonblocking(false).unwrap();
    closed
}

#[test]
fn a_silent_client_is_closed_at_the_timeout_and_the_next_one_served() {
    let hooks = Recorder::default();
    let builder = ServerBuilder::tcp("127.0.0.1:0");
    let (addr, serving) = serve_tcp(InProcess::Inline, builder, || Patient, hooks.clone());

    // Accepted first (the backlog is FIFO), so the next client waits on it.
    let mut silent = connect(addr);
    let next = connect(addr);
    assert_eq!(line_exchange(next, b"next\n"), b"next\n");
    let errors = hooks.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].1.kind(), ErrorKind::TimedOut);
    assert_eq!(port_of(&errors[0].0), silent.local_addr().unwrap().port());
    let mut byte = [0u8; 1];
    assert_eq!(silent.read(&mut byte).expect("EOF"), 0, "closed");
    serving.stop().unwrap();
}

/// A byte every [`TRICKLE`], below the timeout, for up to [`TRICKLES`]
/// bytes: ten times the timeout in all.
const TRICKLE: Duration = Duration::from_millis(50);
const TRICKLES: usize = 60;

#[test]
fn a_trickling_client_is_closed_at_the_timeout_and_the_next_one_served() {
    let hooks = Recorder::default();
    let builder = ServerBuilder::tcp("127.0.0.1:0");
    let (addr, serving) = serve_tcp(InProcess::Inline, builder, || Patient, hooks.clone());

    let trickler = connect(addr);
    let trickler_port = trickler.local_addr().unwrap().port();
    let trickling = thread::spawn(move || {
        let mut trickler = trickler;
        for sent in 0..TRICKLES {
            if closed_by_server(&trickler) || trickler.write_all(b"x").is_err() {
                return Some(sent);
            }
            thread::sleep(TRICKLE);
        }
        None
    });
    // Waits behind the trickler on the synchronous server.
    let next = connect(addr);
    let reply = line_exchange(next, b"next\n");
    let closed_after = trickling.join().unwrap();

    assert!(
        closed_after.is_some(),
        "a client sending a byte every {TRICKLE:?} held a server whose request \
         timeout is {TIMEOUT:?} for all of its {TRICKLES} bytes"
    );
    assert_eq!(reply, b"next\n");
    let errors = hooks.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].1.kind(), ErrorKind::TimedOut);
    assert_eq!(port_of(&errors[0].0), trickler_port);
    serving.stop().unwrap();
}

/// Greets with `ready`, then serves one command: `sized N` reads exactly N
/// bytes and sends them back; `flood` sends 8 MiB.
#[derive(Clone, Copy, Default)]
struct Fragile;

const FLOOD: usize = 8 << 20;

impl<C: Connection> StreamHandler<C> for Fragile {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        req.wfile.write_all(b"ready\n")?;
        let command = socketserver::handlers::strip(req.rfile.read_line()?);
        if let Some(size) = command.strip_prefix(b"sized ") {
            let size: usize = std::str::from_utf8(size)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(Error::Handler("bad size"))?;
            let mut body = vec![0u8; size];
            req.rfile.read_exact(&mut body)?;
            req.wfile.write_all(&body)
        } else if command == b"flood" {
            let chunk = [b'x'; 64 << 10];
            for _ in 0..FLOOD / chunk.len() {
                req.wfile.write_all(&chunk)?;
            }
            Ok(())
        } else {
            Err(Error::Handler("unknown command"))
        }
    }
}

/// Set when this process receives `SIGPIPE`, which the handler installed
/// here catches instead of Rust's default of ignoring it.
fn sigpipe_seen() -> &'static AtomicBool {
    static SEEN: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    SEEN.get_or_init(|| {
        let seen = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGPIPE, Arc::clone(&seen))
            .expect("a SIGPIPE handler");
        // The detector works: writing to a pipe nobody reads raises it.
        let (reader, mut writer) = std::io::pipe().unwrap();
        drop(reader);
        assert_eq!(writer.write(b"x").unwrap_err().kind(), IoKind::BrokenPipe);
        assert!(seen.load(Ordering::SeqCst), "the SIGPIPE detector works");
        seen.store(false, Ordering::SeqCst);
        seen
    })
}

/// Waits for the `n`th error and checks it.
fn nth_error(hooks: &Recorder, n: usize, expected: impl Fn(&Error) -> bool) -> Error {
    let error = hooks.wait_errors(n)[n - 1].1.clone();
    assert!(expected(&error), "error {n}: {error:?}");
    error
}

fn is_broken(error: &Error) -> bool {
    matches!(
        error,
        Error::Io {
            kind: ErrorKind::BrokenPipe | ErrorKind::ConnectionReset,
            ..
        }
    )
}

fn peers_that_vanish(dispatch: InProcess) {
    let _serial = serial(); // the SIGPIPE detector is per process
    let sigpipe = sigpipe_seen();
    let hooks = Recorder::default();
    let builder = ServerBuilder::tcp("127.0.0.1:0");
    let (addr, serving) = serve_tcp(dispatch, builder, || Fragile, hooks.clone());
    let mut greeting = [0u8; 6];

    // Reset mid-request: the body is 10 bytes, 3 come, then an RST.
    let mut client = connect(addr);
    client.read_exact(&mut greeting).unwrap();
    client.write_all(b"sized 10\nabc").unwrap();
    SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    nth_error(&hooks, 1, |e| e.kind() == ErrorKind::ConnectionReset);

    // Closed before the reply: the 8 MiB reply meets a closed socket.
    let mut client = connect(addr);
    client.read_exact(&mut greeting).unwrap();
    client.write_all(b"flood\n").unwrap();
    drop(client);
    nth_error(&hooks, 2, is_broken);

    // Half-closed mid-request: the body ends early, the answer still comes.
    let mut client = connect(addr);
    client.write_all(b"sized 10\nabc").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"ready\n", "closed after the greeting");
    nth_error(&hooks, 3, |e| matches!(e, Error::UnexpectedEof));

    // Half-closed after a whole request: served as usual.
    assert_eq!(line_exchange(connect(addr), b"sized 3\nabc"), b"ready\nabc");
    assert_eq!(hooks.errors().len(), 3, "{:?}", hooks.errors());
    assert!(!sigpipe.load(Ordering::SeqCst), "SIGPIPE raised");
    serving.stop().unwrap();
}

#[test]
fn inline_peers_that_vanish() {
    peers_that_vanish(InProcess::Inline);
}

#[test]
fn threading_peers_that_vanish() {
    peers_that_vanish(InProcess::Threading);
}

#[test]
fn pool_peers_that_vanish() {
    peers_that_vanish(InProcess::Pool);
}

#[test]
fn a_unix_peer_that_leaves_before_the_reply_raises_no_sigpipe() {
    let _serial = serial();
    let sigpipe = sigpipe_seen();
    let dir = TempDir::new("rel-unix");
    let path = dir.path("s.sock");
    let hooks = Recorder::default();
    let server = ServerBuilder::unix_stream(&path)
        .hooks(hooks.clone())
        .build(|| Fragile)
        .unwrap();
    let serving = Serving::start(server, POLL);

    let mut client = UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut greeting = [0u8; 6];
    client.read_exact(&mut greeting).unwrap();
    client.write_all(b"flood\n").unwrap();
    drop(client);
    nth_error(&hooks, 1, is_broken);

    let mut client = UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.write_all(b"sized 2\nok").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"ready\nok");
    assert!(!sigpipe.load(Ordering::SeqCst), "SIGPIPE raised");
    serving.stop().unwrap();
}
