//! Test support for the smoltcp backend: the servers every smoltcp test runs
//! (on an in-memory cable or a TAP device), the test cases, and two clients
//! that run them (a second smoltcp stack, or the host kernel's sockets).
#![cfg(all(feature = "smoltcp", feature = "std"))]
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::time::{Duration, Instant};

use socketserver::embedded_io::{Read, ReadReady, Write, WriteReady};
use socketserver::handlers::{Echo, UpperDatagram, UpperLine, UpperOnce};
use socketserver::smoltcp::iface::{Config, SocketStorage};
use socketserver::smoltcp::phy::Device;
use socketserver::smoltcp::socket::{tcp, udp};
use socketserver::smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint};
use socketserver::smoltcp::{
    Idle, NetRef, SmoltcpConnection, Stack, StdClock, TcpListener, UdpSocket,
};
use socketserver::{
    Clock, Connection, DatagramHandler, Dispatch, Error, Hooks, Server, ServerHooks, ShutdownFlag,
    StreamHandler, StreamRequest, SyncDispatch, Transport,
};

/// The port every test server listens on.
pub const PORT: u16 = 9999;
/// Bound on every client and server socket operation.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// TCP socket buffers: a full 16-bit window.
pub const TCP_BUF: usize = 65535;
/// The backlog of the test listeners, and the clients of the concurrency case.
pub const BACKLOG: usize = 8;
/// `serve_forever`'s poll interval: long, so that only a prompt shutdown
/// lets a test end in time.
pub const POLL_INTERVAL: Duration = Duration::from_secs(3600);
/// The bulk transfer size.
pub const BULK: usize = 1 << 20;

/// A zeroed buffer that lives for the rest of the test process.
pub fn leak(len: usize) -> &'static mut [u8] {
    Vec::leak(vec![0; len])
}

/// A TCP socket with [`TCP_BUF`]-byte buffers.
pub fn tcp_socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(leak(TCP_BUF)),
        tcp::SocketBuffer::new(leak(TCP_BUF)),
    )
}

/// A UDP socket with room for 16 datagrams of up to 64 KiB in total.
pub fn udp_socket() -> udp::Socket<'static> {
    let buffer = || {
        let meta = Vec::leak(vec![udp::PacketMetadata::EMPTY; 16]);
        udp::PacketBuffer::new(meta, leak(65535))
    };
    udp::Socket::new(buffer(), buffer())
}

/// Socket storage for `n` sockets.
pub fn storage(n: usize) -> &'static mut [SocketStorage<'static>] {
    Vec::leak((0..n).map(|_| SocketStorage::EMPTY).collect())
}

/// The idle hook of in-memory stacks: let the other side's thread run,
/// without spinning (the tests run side by side on few cores).
pub fn yield_idle(timeout: Duration) {
    std::thread::sleep(timeout.min(Duration::from_micros(50)));
}

/// A clock that runs `speed` times faster than the host's, so that
/// smoltcp's retransmission timeout (at least one second) passes quickly
/// in tests that lose packets on purpose.
#[derive(Clone, Copy, Debug)]
pub struct FastClock {
    base: StdClock,
    speed: u64,
}

impl FastClock {
    /// A clock `speed` times faster than real time.
    pub fn new(speed: u64) -> Self {
        FastClock {
            base: StdClock,
            speed,
        }
    }
}

impl Clock for FastClock {
    fn now(&self) -> socketserver::Instant {
        socketserver::Instant::from_micros(self.base.now().total_micros() * self.speed)
    }
}

/// A stack on an in-memory device.
pub type MemStack<D> = Stack<'static, D, FastClock, fn(Duration)>;

/// A stack on `device` with address `ip`/24 and a MAC ending in `mac`.
pub fn memory_stack<D: Device>(device: D, mac: u8, ip: IpAddress) -> RefCell<MemStack<D>> {
    fast_memory_stack(device, mac, ip, 1)
}

/// [`memory_stack`] with a clock `speed` times faster than real time.
pub fn fast_memory_stack<D: Device>(
    device: D,
    mac: u8,
    ip: IpAddress,
    speed: u64,
) -> RefCell<MemStack<D>> {
    let config = Config::new(EthernetAddress([2, 0, 0, 0, 0, mac]).into());
    let clock = FastClock::new(speed);
    let mut stack = Stack::new(
        config,
        device,
        storage(BACKLOG + 2),
        clock,
        yield_idle as fn(Duration),
    );
    stack.add_ip(IpCidr::new(ip, 24)).unwrap();
    RefCell::new(stack)
}

/// Hooks that record what the server did, and refuse one address.
#[derive(Default)]
pub struct TestHooks {
    /// `verify_request` refuses requests from this address.
    pub reject: Option<IpAddress>,
    /// Who was refused.
    pub rejected: RefCell<Vec<IpEndpoint>>,
    /// `handle_error` calls.
    pub errors: Cell<usize>,
    /// `handle_error` calls for a handler's panic.
    pub panics: Cell<usize>,
    /// `service_actions` calls.
    pub passes: Cell<usize>,
    /// `handle_timeout` calls.
    pub timeouts: Cell<usize>,
}

impl TestHooks {
    /// Hooks that refuse `reject`, if any.
    pub fn rejecting(reject: Option<IpAddress>) -> Self {
        TestHooks {
            reject,
            ..TestHooks::default()
        }
    }
}

impl<R: ?Sized> Hooks<R, IpEndpoint> for TestHooks {
    fn verify_request(&self, _request: &R, client: &IpEndpoint) -> bool {
        let refuse = self.reject == Some(client.addr);
        if refuse {
            self.rejected.borrow_mut().push(*client);
        }
        !refuse
    }

    fn handle_error(&self, client: &IpEndpoint, error: &Error) {
        eprintln!("handle_error: {client}: {error}");
        self.errors.set(self.errors.get() + 1);
        if matches!(error, Error::Panicked) {
            self.panics.set(self.panics.get() + 1);
        }
    }
}

impl ServerHooks for TestHooks {
    fn service_actions(&self) {
        self.passes.set(self.passes.get() + 1);
    }

    fn handle_timeout(&self) {
        self.timeouts.set(self.timeouts.get() + 1);
    }
}

/// What a test server did before it was shut down.
#[derive(Debug, Default)]
pub struct Report {
    /// Handlers built, one per request served.
    pub served: usize,
    /// Requests `verify_request` refused.
    pub rejected: Vec<IpEndpoint>,
    /// `handle_error` calls.
    pub errors: usize,
    /// `handle_error` calls for a handler's panic.
    pub panics: usize,
    /// `serve_forever` passes.
    pub passes: usize,
}

/// Python's `serve_forever` over a TCP listener with a backlog of
/// [`BACKLOG`] on `net`, building handlers with `handler`, until `shutdown`.
pub fn serve_stream<H: for<'s> StreamHandler<SmoltcpConnection<'s, 'static>> + Copy>(
    net: NetRef<'_, 'static>,
    handler: H,
    reject: Option<IpAddress>,
    timeout: Duration,
    shutdown: &ShutdownFlag,
    bound: SyncSender<()>,
) -> Report {
    let sockets = core::array::from_fn::<_, BACKLOG, _>(|_| tcp_socket());
    let mut listener = TcpListener::bind(net, PORT, sockets, shutdown).unwrap();
    listener.set_timeout(Some(timeout));
    // Linger is measured on the stack's clock, which runs fast in the fault
    // test: give the close as long as the requests get.
    listener.set_linger(timeout);
    bound.send(()).unwrap();
    let (hooks, served) = (TestHooks::rejecting(reject), Cell::new(0));
    let dispatch = SyncDispatch::<_, _>::with_hooks(counting(&served, handler), &hooks);
    serve_until_stopped(listener, dispatch);
    report(served.get(), hooks)
}

/// [`serve_stream`] for datagrams.
pub fn serve_datagrams<H: for<'s> DatagramHandler<UdpSocket<'s, 'static>> + Copy>(
    net: NetRef<'_, 'static>,
    handler: H,
    reject: Option<IpAddress>,
    shutdown: &ShutdownFlag,
    bound: SyncSender<()>,
) -> Report {
    let socket = UdpSocket::bind(net, PORT, udp_socket(), shutdown).unwrap();
    bound.send(()).unwrap();
    let (hooks, served) = (TestHooks::rejecting(reject), Cell::new(0));
    let dispatch = SyncDispatch::<_, _, [u8; 2048], [u8; 2048]>::with_hooks(
        counting(&served, handler),
        &hooks,
    );
    serve_until_stopped(socket, dispatch);
    report(served.get(), hooks)
}

/// A factory of `handler` that counts the handlers it builds in `served`.
fn counting<'c, H: Copy + 'c>(served: &'c Cell<usize>, handler: H) -> impl Fn() -> H + 'c {
    move || {
        served.set(served.get() + 1);
        handler
    }
}

/// `serve_forever` until shutdown, then `server_close`.
fn serve_until_stopped<T: Transport, D: Dispatch<T, T::Kind>>(transport: T, dispatch: D) {
    let mut server = Server::new(transport, dispatch, StdClock);
    server.serve_forever(POLL_INTERVAL).unwrap();
    server.server_close();
}

fn report(served: usize, hooks: TestHooks) -> Report {
    Report {
        served,
        rejected: hooks.rejected.into_inner(),
        errors: hooks.errors.get(),
        panics: hooks.panics.get(),
        passes: hooks.passes.get(),
    }
}

/// Requests shutdown when dropped, so a failing client never leaves its
/// server serving for ever.
pub struct StopOnDrop<'f>(pub &'f ShutdownFlag);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.request();
    }
}

/// What the test cases need from a client, whichever stack it runs on.
pub trait Client {
    /// Connects, sends `msg`, and reads until the server closes.
    fn exchange(&self, msg: &[u8]) -> Vec<u8>;
    /// Connects [`BACKLOG`] clients before any sends, then sends each its
    /// message and reads each reply to the end.
    fn concurrent(&self, msgs: &[Vec<u8>]) -> Vec<Vec<u8>>;
    /// Sends `data` while reading what comes back, shuts the sending side,
    /// and returns everything read until the server closes.
    fn echo(&self, data: &[u8]) -> Vec<u8>;
    /// Sends one datagram and returns the reply.
    fn datagram(&self, msg: &[u8]) -> Vec<u8>;
    /// The address the server sees this client at.
    fn address(&self) -> IpAddress;
}

/// A bulk payload that shows any reordering, loss or corruption.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

/// Calls the macro `$each` with the name of every function of [`cases`],
/// so that each harness runs them all.
#[allow(unused_macros)] // not every harness runs the cases
macro_rules! all_cases {
    ($each:ident) => {
        $each!(
            upper,
            sequential,
            concurrent,
            bulk,
            datagram,
            refused,
            handler_error,
            handler_panic
        );
    };
}
#[allow(unused_imports)]
pub(crate) use all_cases;

/// The cases every smoltcp server passes, each with its server. `serve`
/// runs a server until the flag it is given is raised; it returns the
/// server's report.
pub mod cases {
    use super::*;

    /// The docs' TCP example: one line in, upper-cased out.
    pub fn upper<C: Client>(client: &C, serve: impl ServeFn) {
        let report = serve.stream(UpperOnce, None, || {
            assert_eq!(client.exchange(b"hello world\n"), b"HELLO WORLD");
        });
        assert_eq!(report.served, 1);
        assert_eq!(report.errors, 0);
    }

    /// 100 connections one after the other, each on a re-armed socket.
    pub fn sequential<C: Client>(client: &C, serve: impl ServeFn) {
        let report = serve.stream(UpperOnce, None, || {
            for i in 0..100 {
                let reply = client.exchange(format!("request {i}\n").as_bytes());
                assert_eq!(reply, format!("REQUEST {i}").as_bytes());
            }
        });
        assert_eq!(report.served, 100);
        assert_eq!(report.errors, 0);
    }

    /// [`BACKLOG`] clients connected at once, all queued, all answered.
    pub fn concurrent<C: Client>(client: &C, serve: impl ServeFn) {
        let msgs: Vec<Vec<u8>> = (0..BACKLOG)
            .map(|i| format!("client {i}\n").into_bytes())
            .collect();
        let report = serve.stream(UpperOnce, None, || {
            let replies = client.concurrent(&msgs);
            for (i, reply) in replies.iter().enumerate() {
                assert_eq!(reply, format!("CLIENT {i}").as_bytes());
            }
        });
        assert_eq!(report.served, BACKLOG);
        assert_eq!(report.errors, 0);
    }

    /// [`BULK`] bytes echoed intact.
    pub fn bulk<C: Client>(client: &C, serve: impl ServeFn) {
        let data = pattern(BULK);
        let report = serve.stream(Echo, None, || {
            let back = client.echo(&data);
            assert_eq!(back.len(), data.len());
            assert!(back == data, "echoed data differs");
        });
        assert_eq!(report.served, 1);
        assert_eq!(report.errors, 0);
    }

    /// The docs' UDP example.
    pub fn datagram<C: Client>(client: &C, serve: impl ServeFn) {
        let report = serve.datagrams(UpperDatagram, None, || {
            assert_eq!(client.datagram(b"  hello udp  "), b"HELLO UDP");
        });
        assert_eq!(report.served, 1);
    }

    /// A line longer than the server's line buffer: `handle_error` is told,
    /// the client reads EOF, and the server goes on serving.
    pub fn handler_error<C: Client>(client: &C, serve: impl ServeFn) {
        let report = serve.stream(UpperLine, None, || {
            assert_eq!(client.exchange(&[b'a'; 10_000]), b"");
            assert_eq!(client.exchange(b"still serving\n"), b"STILL SERVING");
        });
        assert_eq!(report.served, 2);
        assert_eq!(report.errors, 1);
    }

    /// A handler that panics: `handle_error` is told (`Error::Panicked`,
    /// as the `std` feature turns on the core's panic catching), the client
    /// reads EOF, and the server goes on serving.
    pub fn handler_panic<C: Client>(client: &C, serve: impl ServeFn) {
        let report = serve.stream(PanickyUpper, None, || {
            assert_eq!(client.exchange(b"panic\n"), b"");
            assert_eq!(client.exchange(b"still serving\n"), b"STILL SERVING");
        });
        assert_eq!(report.served, 2);
        assert_eq!((report.errors, report.panics), (1, 1));
    }

    /// `verify_request` refuses the client's address: no handler is built,
    /// the client reads EOF at once, and the hook saw the client's address.
    pub fn refused<C: Client>(client: &C, serve: impl ServeFn) {
        let report = serve.stream(UpperOnce, Some(client.address()), || {
            assert_eq!(client.exchange(b"hello\n"), b"");
        });
        assert_eq!(report.served, 0);
        assert_eq!(report.rejected.len(), 1);
        assert_eq!(report.rejected[0].addr, client.address());
        assert_ne!(report.rejected[0].port, 0);
    }
}

/// The docs' `rfile` handler (one line, upper-cased), but it panics on the
/// line `panic`.
#[derive(Clone, Copy, Debug)]
pub struct PanickyUpper;

impl<C: Connection> StreamHandler<C> for PanickyUpper {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let line = req.rfile.read_line()?;
        let len = line.trim_ascii_end().len();
        let line = &mut line[..len];
        assert!(line != b"panic", "the handler panics, as asked");
        line.make_ascii_uppercase();
        req.wfile.write_all(line)
    }
}

/// Runs a test server in its own thread while a client body runs.
pub trait ServeFn {
    /// Serves `handler` on TCP until `body` is done.
    fn stream<H: for<'s> StreamHandler<SmoltcpConnection<'s, 'static>> + Copy + Send>(
        self,
        handler: H,
        reject: Option<IpAddress>,
        body: impl FnOnce(),
    ) -> Report;
    /// Serves `handler` on UDP until `body` is done.
    fn datagrams<H: for<'s> DatagramHandler<UdpSocket<'s, 'static>> + Copy + Send>(
        self,
        handler: H,
        reject: Option<IpAddress>,
        body: impl FnOnce(),
    ) -> Report;
}

/// A server on the stack that the closure builds in the server's thread (a
/// TAP device cannot move between threads), whose connections time out
/// after the duration (as measured by the stack's clock).
pub struct ServeOn<F>(pub F, pub Duration);

impl<F, D, K, I> ServeFn for ServeOn<F>
where
    F: FnOnce() -> RefCell<Stack<'static, D, K, I>> + Send,
    D: Device,
    K: Clock,
    I: Idle<D>,
{
    fn stream<H: for<'s> StreamHandler<SmoltcpConnection<'s, 'static>> + Copy + Send>(
        self,
        handler: H,
        reject: Option<IpAddress>,
        body: impl FnOnce(),
    ) -> Report {
        run_server(body, move |stop, bound| {
            serve_stream(&self.0(), handler, reject, self.1, stop, bound)
        })
    }

    fn datagrams<H: for<'s> DatagramHandler<UdpSocket<'s, 'static>> + Copy + Send>(
        self,
        handler: H,
        reject: Option<IpAddress>,
        body: impl FnOnce(),
    ) -> Report {
        run_server(body, move |stop, bound| {
            serve_datagrams(&self.0(), handler, reject, stop, bound)
        })
    }
}

/// Runs `server` in a thread, then `body` once the server is bound, then
/// stops the server (even when `body` panics) and returns its report.
pub fn run_server(
    body: impl FnOnce(),
    server: impl FnOnce(&ShutdownFlag, SyncSender<()>) -> Report + Send,
) -> Report {
    let stop = ShutdownFlag::new();
    let (bound_tx, bound_rx) = sync_channel(1);
    std::thread::scope(|s| {
        let stop = &stop;
        let thread = s.spawn(move || server(stop, bound_tx));
        {
            let _stop = StopOnDrop(stop);
            bound_rx
                .recv_timeout(IO_TIMEOUT)
                .expect("the server did not bind");
            body();
        }
        thread.join().expect("server thread panicked")
    })
}

/// A client on a second smoltcp stack.
pub struct SmolClient<'s, D: Device> {
    /// The client's stack.
    pub stack: &'s RefCell<MemStack<D>>,
    /// The server's address.
    pub server: IpAddress,
    /// This client's address.
    pub ip: IpAddress,
}

impl<D: Device> SmolClient<'_, D> {
    fn connect(&self) -> SmoltcpConnection<'_, 'static> {
        SmoltcpConnection::connect(
            self.stack,
            tcp_socket(),
            (self.server, PORT),
            Some(IO_TIMEOUT),
        )
        .unwrap()
    }
}

/// Reads until EOF.
pub fn read_to_end<R: Read>(conn: &mut R) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0; 4096];
    for _ in 0..BULK {
        match conn.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(err) => panic!("read failed after {} bytes: {err:?}", out.len()),
        }
    }
    panic!("no EOF");
}

impl<D: Device> Client for SmolClient<'_, D> {
    fn exchange(&self, msg: &[u8]) -> Vec<u8> {
        let mut conn = self.connect();
        conn.write_all(msg).unwrap();
        read_to_end(&mut conn)
    }

    fn concurrent(&self, msgs: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut conns: Vec<_> = msgs.iter().map(|_| self.connect()).collect();
        for (conn, msg) in conns.iter_mut().zip(msgs) {
            conn.write_all(msg).unwrap();
        }
        // Each is closed once read, so the server's close need not linger.
        conns
            .into_iter()
            .map(|mut conn| read_to_end(&mut conn))
            .collect()
    }

    fn echo(&self, data: &[u8]) -> Vec<u8> {
        let mut conn = self.connect();
        let (mut sent, mut back, mut buf) = (0, Vec::with_capacity(data.len()), [0; 4096]);
        let start = Instant::now();
        loop {
            if start.elapsed() > IO_TIMEOUT {
                let stack = self.stack.borrow();
                let socket = stack.sockets().get::<tcp::Socket>(conn.handle());
                panic!("echo stalled: {sent} sent, {} back; client socket {:?}, send queue {}, recv queue {}, timer {:?}", back.len(), socket.state(), socket.send_queue(), socket.recv_queue(), socket);
            }
            let mut progress = false;
            if sent < data.len() && conn.write_ready().unwrap() {
                sent += conn
                    .write(&data[sent..(sent + 4096).min(data.len())])
                    .unwrap();
                if sent == data.len() {
                    conn.shutdown_write().unwrap();
                }
                progress = true;
            }
            if conn.read_ready().unwrap() {
                match conn.read(&mut buf).unwrap() {
                    0 => return back,
                    n => back.extend_from_slice(&buf[..n]),
                }
                progress = true;
            }
            if !progress {
                self.stack
                    .borrow_mut()
                    .poll_wait(Duration::from_millis(1), &ShutdownFlag::new());
            }
        }
    }

    fn datagram(&self, msg: &[u8]) -> Vec<u8> {
        use socketserver::{DatagramSocket, Readiness, Transport};
        let stop = ShutdownFlag::new();
        let mut socket = UdpSocket::bind(self.stack, 40000, udp_socket(), &stop).unwrap();
        socket.send_to(msg, &(self.server, PORT).into()).unwrap();
        let mut buf = [0; 2048];
        // Take, then wait.
        let got = loop {
            if let Some(got) = socket.try_recv_from(&mut buf).unwrap() {
                break got;
            }
            let waited = socket.wait(Some(IO_TIMEOUT)).unwrap();
            assert_ne!(waited, Readiness::TimedOut, "no reply");
        };
        assert_eq!(got.addr, (self.server, PORT).into());
        buf[..got.len].to_vec()
    }

    fn address(&self) -> IpAddress {
        self.ip
    }
}

/// A client on the host kernel's sockets.
pub struct KernelClient {
    /// The server's socket address.
    pub server: std::net::SocketAddr,
    /// The host's address facing the server.
    pub ip: IpAddress,
}

impl KernelClient {
    fn connect(&self) -> std::net::TcpStream {
        let stream = std::net::TcpStream::connect_timeout(&self.server, IO_TIMEOUT).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
    }
}

fn kernel_read_to_end(stream: &mut std::net::TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(stream, &mut out).unwrap();
    out
}

impl Client for KernelClient {
    fn exchange(&self, msg: &[u8]) -> Vec<u8> {
        let mut stream = self.connect();
        std::io::Write::write_all(&mut stream, msg).unwrap();
        kernel_read_to_end(&mut stream)
    }

    fn concurrent(&self, msgs: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let barrier = std::sync::Barrier::new(msgs.len());
        std::thread::scope(|s| {
            let threads: Vec<_> = msgs
                .iter()
                .map(|msg| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        let mut stream = self.connect();
                        // Everyone connected before anyone is served.
                        barrier.wait();
                        std::io::Write::write_all(&mut stream, msg).unwrap();
                        kernel_read_to_end(&mut stream)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        })
    }

    fn echo(&self, data: &[u8]) -> Vec<u8> {
        let mut stream = self.connect();
        let mut writer = stream.try_clone().unwrap();
        std::thread::scope(|s| {
            s.spawn(move || {
                std::io::Write::write_all(&mut writer, data).unwrap();
                writer.shutdown(std::net::Shutdown::Write).unwrap();
            });
            kernel_read_to_end(&mut stream)
        })
    }

    fn datagram(&self, msg: &[u8]) -> Vec<u8> {
        let socket = std::net::UdpSocket::bind(("0.0.0.0", 0)).unwrap();
        socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        socket.send_to(msg, self.server).unwrap();
        let mut buf = [0; 2048];
        let (n, from) = socket.recv_from(&mut buf).unwrap();
        assert_eq!(from, self.server);
        buf[..n].to_vec()
    }

    fn address(&self) -> IpAddress {
        self.ip
    }
}

/// `target/<profile>/examples/<name>`: cargo builds the examples before the
/// tests, and this test binary lives in `target/<profile>/deps`.
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir.join("examples").join(name)
}

/// Waits for `child` at most `patience`, killing it past that.
pub fn wait_bounded(mut child: std::process::Child, patience: Duration) -> std::process::Output {
    let start = Instant::now();
    while start.elapsed() < patience {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    panic!(
        "{:?} did not exit in {patience:?}: {output:?}",
        child_name(&output)
    );
}

fn child_name(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}
