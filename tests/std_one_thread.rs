//! The std servers served by the one thread that also runs the clients, as
//! on WASI (wasm32-wasip2), where no other thread exists: each client is
//! queued (in the listen backlog, or as a datagram) before the server takes
//! it. These run natively and, through the cargo runner, under wasmtime:
//! `cargo test --target wasm32-wasip2 --test std_one_thread`.
#![cfg(feature = "std")]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use socketserver::embedded_io::{ErrorKind, Write as _};
use socketserver::handlers::{UpperLine, UpperOnce};
use socketserver::{
    Connection, DatagramHandler, DatagramRequest, Error, Hooks, ReplySocket, ServerBuilder,
    ServerHooks, ShutdownHandle, StreamHandler, StreamOptions, StreamRequest, TcpServer,
};

/// How long a client waits for a reply before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// Hooks that record errors, count the loop's passes and timeouts, and stop
/// the loop after `stop_after` passes (0: never).
#[derive(Default)]
struct Recorder {
    errors: Mutex<Vec<ErrorKind>>,
    passes: AtomicUsize,
    timeouts: AtomicUsize,
    stop_after: usize,
    handle: OnceLock<ShutdownHandle>,
}

impl<R: ?Sized, A> Hooks<R, A> for Recorder {
    fn handle_error(&self, _client: &A, error: &Error) {
        self.errors.lock().unwrap().push(error.kind());
    }
}

impl ServerHooks for Recorder {
    fn handle_timeout(&self) {
        self.timeouts.fetch_add(1, Ordering::SeqCst);
    }

    fn service_actions(&self) {
        let passes = self.passes.fetch_add(1, Ordering::SeqCst) + 1;
        if passes == self.stop_after {
            self.handle
                .get()
                .expect("set once built")
                .request_shutdown();
        }
    }
}

fn client(addr: SocketAddr, data: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(data).unwrap();
    stream
}

fn reply(mut stream: TcpStream) -> String {
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn a_tcp_request_queued_before_the_server_takes_it_is_served() {
    let mut server = TcpServer::new("127.0.0.1:0", || UpperOnce).unwrap();
    let first = client(*server.local_addr(), b"hello world\n");
    let second = client(*server.local_addr(), b"again\n");
    server.handle_request().unwrap();
    server.handle_request().unwrap();
    assert_eq!(reply(first), "HELLO WORLD");
    assert_eq!(reply(second), "AGAIN");
}

#[test]
fn the_stream_handler_reads_a_line_through_rfile() {
    let mut server = TcpServer::new("127.0.0.1:0", || UpperLine).unwrap();
    let stream = client(*server.local_addr(), b"one line\nnot read\n");
    server.handle_request().unwrap();
    assert_eq!(reply(stream), "ONE LINE");
}

/// Replies `whole` or `truncated` and the bytes it got.
struct Truncation;

impl<S: ReplySocket> DatagramHandler<S> for Truncation {
    fn handle(&mut self, request: &mut DatagramRequest<'_, S>) -> Result<(), Error> {
        let verdict: &[u8] = if request.truncated {
            b"truncated "
        } else {
            b"whole "
        };
        let packet = request.rfile.packet();
        request.wfile.write_all(verdict)?;
        request.wfile.write_all(packet)
    }
}

#[test]
fn a_longer_datagram_reaches_the_handler_flagged_truncated() {
    let mut server = ServerBuilder::udp("127.0.0.1:0")
        .max_packet_size(8)
        .build(|| Truncation)
        .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (sent, expected) in [
        (&b"short"[..], &b"whole short"[..]),
        (b"longer than eight", b"truncated longer t"),
    ] {
        client.send_to(sent, server.local_addr()).unwrap();
        server.handle_request().unwrap();
        let (reply, from) = datagram_reply(&client);
        assert_eq!(from, *server.local_addr());
        assert_eq!(reply, expected);
    }
}

/// The reply to `client`, sent before `handle_request` returned, waited for
/// at most [`PATIENCE`]. Looked for every millisecond: WASI's UDP sockets
/// have no receive timeout (`SO_RCVTIMEO` fails with `ENOPROTOOPT`).
fn datagram_reply(client: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    client.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let start = Instant::now();
    loop {
        match client.recv_from(&mut buf) {
            Ok((n, from)) => return (buf[..n].to_vec(), from),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock && start.elapsed() < PATIENCE => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(err) => panic!("no reply: {err}"),
        }
    }
}

#[test]
fn handle_request_waits_its_timeout_then_calls_handle_timeout() {
    let hooks = &Recorder::default();
    let mut server = ServerBuilder::tcp("127.0.0.1:0")
        .hooks(hooks)
        .timeout(Some(Duration::from_millis(100)))
        .build(|| UpperOnce)
        .unwrap();
    let start = Instant::now();
    server.handle_request().unwrap();
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert_eq!(hooks.timeouts.load(Ordering::SeqCst), 1);
}

#[test]
fn service_actions_can_stop_serve_forever() {
    let hooks = &Recorder {
        stop_after: 3,
        ..Recorder::default()
    };
    let mut server = ServerBuilder::udp("127.0.0.1:0")
        .hooks(hooks)
        .build(|| Truncation)
        .unwrap();
    hooks.handle.set(server.shutdown_handle()).ok();
    server.serve_forever(Duration::from_millis(10)).unwrap();
    assert_eq!(hooks.passes.load(Ordering::SeqCst), 3);
}

/// Serves one line, then asks the server to stop.
struct LastOrder(Arc<OnceLock<ShutdownHandle>>);

impl<C: Connection> StreamHandler<C> for LastOrder {
    fn handle(&mut self, request: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        UpperLine.handle(request)?;
        self.0.get().expect("set once built").request_shutdown();
        Ok(())
    }
}

#[test]
fn a_handler_can_stop_serve_forever_after_its_request() {
    let handle = Arc::new(OnceLock::new());
    let shared = Arc::clone(&handle);
    let mut server = TcpServer::new("127.0.0.1:0", move || LastOrder(Arc::clone(&shared))).unwrap();
    handle.set(server.shutdown_handle()).ok();
    let addr = *server.local_addr();
    let stream = client(addr, b"last\n");
    server.serve_forever(Duration::from_secs(60)).unwrap();
    assert_eq!(reply(stream), "LAST");
    server.server_close();
    assert!(TcpStream::connect(addr).is_err(), "closed");
}

/// [`UpperLine`] with a per-read timeout.
struct Impatient;

impl<C: Connection> StreamHandler<C> for Impatient {
    fn options(&self) -> StreamOptions {
        StreamOptions::new().timeout(Some(Duration::from_millis(100)))
    }

    fn handle(&mut self, request: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        UpperLine.handle(request)
    }
}

#[test]
fn a_silent_client_times_out_and_the_next_one_is_served() {
    let hooks = &Recorder::default();
    let mut server = ServerBuilder::tcp("127.0.0.1:0")
        .hooks(hooks)
        .build(|| Impatient)
        .unwrap();
    let silent = client(*server.local_addr(), b"");
    let talker = client(*server.local_addr(), b"hi\n");
    server.handle_request().unwrap();
    assert_eq!(*hooks.errors.lock().unwrap(), [ErrorKind::TimedOut]);
    assert_eq!(reply(silent), "", "closed without a reply");
    server.handle_request().unwrap();
    assert_eq!(reply(talker), "HI");
    assert_eq!(hooks.errors.lock().unwrap().len(), 1);
}

/// WASI has no `SO_REUSEPORT`: asking for it is refused, not ignored.
#[cfg(target_os = "wasi")]
#[test]
fn allow_reuse_port_is_refused_on_wasi() {
    let built = ServerBuilder::tcp("127.0.0.1:0")
        .allow_reuse_port(true)
        .build(|| UpperOnce);
    let err = built.err().expect("refused");
    assert_eq!(err.kind(), io::ErrorKind::Unsupported);
}

#[cfg(unix)]
#[test]
fn allow_reuse_port_is_set_on_unix() -> io::Result<()> {
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .allow_reuse_port(true)
        .build(|| UpperOnce)?;
    assert!(server.socket().expect("open").reuse_port()?);
    Ok(())
}
