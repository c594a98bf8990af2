//! Call-order tests of the lifecycle against a recording fake transport.
//!
//! Every hook, handler method and transport operation appends its Python
//! name to one log, so each test states the exact sequence Python's
//! `socketserver` would produce.

use core::cell::RefCell;
use core::time::Duration;
use std::collections::VecDeque;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

use embedded_io::{ErrorKind, ErrorType, Read, Write};

use crate::memory::ManualClock;
use crate::transport::kind;
use crate::*;

type Log = Rc<RefCell<Vec<&'static str>>>;

/// `assert_eq!` for values holding an [`Error`], which has no `PartialEq`:
/// compares their `Debug` forms.
macro_rules! assert_same {
    ($left:expr, $right:expr $(,)?) => {
        assert_eq!(std::format!("{:?}", $left), std::format!("{:?}", $right))
    };
}

fn new_log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

fn take(log: &Log) -> Vec<&'static str> {
    core::mem::take(&mut *log.borrow_mut())
}

struct FakeConn {
    input: Vec<u8>,
    pos: usize,
    output: Rc<RefCell<Vec<u8>>>,
    log: Log,
}

impl ErrorType for FakeConn {
    type Error = ErrorKind;
}

impl Read for FakeConn {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let n = (self.input.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for FakeConn {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        self.log.borrow_mut().push("send");
        self.output.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl Connection for FakeConn {
    type Addr = u32;
    fn set_timeout(&mut self, _: Option<Duration>) -> Result<(), ErrorKind> {
        self.log.borrow_mut().push("settimeout");
        Ok(())
    }
    fn set_request_timeout(&mut self, _: Option<Duration>) -> Result<(), ErrorKind> {
        self.log.borrow_mut().push("request timeout");
        Ok(())
    }
    fn set_nodelay(&mut self, _: bool) -> Result<(), ErrorKind> {
        self.log.borrow_mut().push("TCP_NODELAY");
        Ok(())
    }
    fn shutdown_write(&mut self) -> Result<(), ErrorKind> {
        self.log.borrow_mut().push("shutdown_request");
        Ok(())
    }
    /// Fails for a request starting with `!`, as a TLS handshake with a
    /// client that does not speak TLS.
    fn establish(&mut self) -> Result<(), ErrorKind> {
        if self.input.starts_with(b"!") {
            self.log.borrow_mut().push("establish failed");
            return Err(ErrorKind::InvalidData);
        }
        Ok(())
    }
    fn close(self) {
        self.log.borrow_mut().push("close_request");
    }
}

/// What the fake's `wait` does next; when the script is empty it times
/// out (or fails when asked to wait for ever).
enum Step {
    Ready,
    Interrupted {
        clock_advance: Duration,
    },
    TimedOut,
    /// Shutdown is requested while waiting and a request arrives too.
    ShutdownWhileReady,
    AcceptFails,
    /// Ready, but the connection is gone before it is accepted.
    Stale,
}

struct Fake {
    log: Log,
    script: VecDeque<Step>,
    pending: VecDeque<(Vec<u8>, u32)>,
    output: Rc<RefCell<Vec<u8>>>,
    shutdown: Rc<ShutdownFlag>,
    clock: Rc<ManualClock>,
    fail_accept: bool,
    /// How many of `pending` have arrived: a take finds only those.
    arrived: usize,
    sent: Vec<(Vec<u8>, u32)>,
}

impl Fake {
    fn new(log: &Log) -> Self {
        Fake {
            log: log.clone(),
            script: VecDeque::new(),
            pending: VecDeque::new(),
            output: Rc::new(RefCell::new(Vec::new())),
            shutdown: Rc::new(ShutdownFlag::new()),
            clock: Rc::new(ManualClock::new()),
            fail_accept: false,
            arrived: 0,
            sent: Vec::new(),
        }
    }

    fn with_request(mut self, input: &[u8]) -> Self {
        self.pending.push_back((input.to_vec(), 7));
        self.script.push_back(Step::Ready);
        self
    }

    /// A request already queued when the server starts: taken without a wait.
    fn with_queued(mut self, input: &[u8]) -> Self {
        self.pending.push_back((input.to_vec(), 7));
        self.arrived += 1;
        self
    }

    fn arrive(&mut self) {
        self.arrived = (self.arrived + 1).min(self.pending.len());
    }

    /// Python's `get_request` on what has arrived; a take that finds
    /// nothing is not logged (it is not a `get_request` in Python's terms).
    fn take_arrived(&mut self) -> Result<Option<(Vec<u8>, u32)>, ErrorKind> {
        if core::mem::take(&mut self.fail_accept) {
            self.log.borrow_mut().push("get_request");
            return Err(ErrorKind::ConnectionAborted);
        }
        if self.arrived == 0 {
            return Ok(None);
        }
        self.arrived -= 1;
        self.log.borrow_mut().push("get_request");
        Ok(self.pending.pop_front())
    }
}

impl Transport for Fake {
    type Kind = kind::Stream;
    type Addr = u32;
    type Error = ErrorKind;

    fn wait(&mut self, timeout: Option<Duration>) -> Result<Readiness, ErrorKind> {
        self.log.borrow_mut().push("select");
        if self.shutdown.is_requested() {
            return Ok(Readiness::Shutdown);
        }
        match self.script.pop_front() {
            Some(Step::Ready) => {
                self.arrive();
                Ok(Readiness::Ready)
            }
            Some(Step::AcceptFails) => {
                self.fail_accept = true;
                Ok(Readiness::Ready)
            }
            Some(Step::Stale) => Ok(Readiness::Ready),
            Some(Step::ShutdownWhileReady) => {
                self.arrive();
                self.shutdown.request();
                Ok(Readiness::Ready)
            }
            Some(Step::Interrupted { clock_advance }) => {
                self.clock.advance(clock_advance);
                Ok(Readiness::Interrupted)
            }
            Some(Step::TimedOut) => Ok(Readiness::TimedOut),
            None if timeout.is_some() => Ok(Readiness::TimedOut),
            None => Err(ErrorKind::TimedOut),
        }
    }
    fn shutdown_requested(&self) -> bool {
        self.shutdown.is_requested()
    }
    fn clear_shutdown(&mut self) {
        self.shutdown.clear();
    }
    fn close(&mut self) {
        self.log.borrow_mut().push("server_close");
    }
}

impl Listener for Fake {
    type Connection = FakeConn;
    fn try_accept(&mut self) -> Result<Option<(FakeConn, u32)>, ErrorKind> {
        Ok(self.take_arrived()?.map(|(input, addr)| {
            let conn = FakeConn {
                input,
                pos: 0,
                output: self.output.clone(),
                log: self.log.clone(),
            };
            (conn, addr)
        }))
    }
}

/// The same fake seen as a datagram socket.
struct FakeDgram(Fake);

impl Transport for FakeDgram {
    type Kind = kind::Datagram;
    type Addr = u32;
    type Error = ErrorKind;
    fn wait(&mut self, timeout: Option<Duration>) -> Result<Readiness, ErrorKind> {
        self.0.wait(timeout)
    }
    fn shutdown_requested(&self) -> bool {
        self.0.shutdown_requested()
    }
    fn clear_shutdown(&mut self) {
        self.0.clear_shutdown()
    }
    fn close(&mut self) {
        self.0.close()
    }
}

impl DatagramSocket for FakeDgram {
    fn try_recv_from(&mut self, buf: &mut [u8]) -> Result<Option<Received<u32>>, ErrorKind> {
        Ok(self.0.take_arrived()?.map(|(packet, addr)| {
            let len = packet.len().min(buf.len());
            buf[..len].copy_from_slice(&packet[..len]);
            Received::new(len, packet.len() > buf.len(), addr)
        }))
    }
    fn send_to(&mut self, data: &[u8], addr: &u32) -> Result<(), ErrorKind> {
        self.0.log.borrow_mut().push("sendto");
        self.0.sent.push((data.to_vec(), *addr));
        Ok(())
    }
}

struct RecHooks {
    log: Log,
    accept: bool,
    errors: RefCell<Vec<Error>>,
}

impl<R: ?Sized> Hooks<R, u32> for RecHooks {
    fn verify_request(&self, _: &R, addr: &u32) -> bool {
        assert_eq!(*addr, 7);
        self.log.borrow_mut().push("verify_request");
        self.accept
    }
    fn handle_error(&self, _: &u32, error: &Error) {
        self.log.borrow_mut().push("handle_error");
        self.errors.borrow_mut().push(error.clone());
    }
}

impl ServerHooks for RecHooks {
    fn handle_timeout(&self) {
        self.log.borrow_mut().push("handle_timeout");
    }
    fn service_actions(&self) {
        self.log.borrow_mut().push("service_actions");
    }
}

#[derive(Clone, Default)]
struct Behaviour {
    fail_setup: bool,
    fail_handle: bool,
    options: StreamOptions,
}

struct RecHandler {
    log: Log,
    how: Behaviour,
    truncated: Rc<RefCell<Option<bool>>>,
}

impl<C: crate::Connection> StreamHandler<C> for RecHandler {
    fn options(&self) -> StreamOptions {
        self.how.options
    }
    fn setup(&mut self, _: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        self.log.borrow_mut().push("setup");
        if self.how.fail_setup {
            return Err(Error::Handler("setup failed"));
        }
        Ok(())
    }
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        self.log.borrow_mut().push("handle");
        if self.how.fail_handle {
            return Err(Error::Handler("handle failed"));
        }
        let line = req.rfile.read_line()?;
        line.make_ascii_uppercase();
        req.wfile.write_all(line)
    }
    fn finish(&mut self, _: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        self.log.borrow_mut().push("finish");
        Ok(())
    }
}

impl<S: crate::ReplySocket> DatagramHandler<S> for RecHandler {
    fn setup(&mut self, _: &mut DatagramRequest<'_, S>) -> Result<(), Error> {
        self.log.borrow_mut().push("setup");
        Ok(())
    }
    fn handle(&mut self, req: &mut DatagramRequest<'_, S>) -> Result<(), Error> {
        self.log.borrow_mut().push("handle");
        *self.truncated.borrow_mut() = Some(req.truncated);
        let packet = req.rfile.packet();
        req.wfile.write_all(packet)?;
        req.wfile.write_all(b"!")
    }
    fn finish(&mut self, _: &mut DatagramRequest<'_, S>) -> Result<(), Error> {
        self.log.borrow_mut().push("finish");
        Ok(())
    }
}

type Factory = std::boxed::Box<dyn Fn() -> RecHandler>;

fn factory(log: &Log, how: Behaviour, truncated: &Rc<RefCell<Option<bool>>>) -> Factory {
    let (log, truncated) = (log.clone(), truncated.clone());
    std::boxed::Box::new(move || {
        log.borrow_mut().push("finish_request");
        RecHandler {
            log: log.clone(),
            how: how.clone(),
            truncated: truncated.clone(),
        }
    })
}

fn hooks(log: &Log, accept: bool) -> RecHooks {
    RecHooks {
        log: log.clone(),
        accept,
        errors: RefCell::new(Vec::new()),
    }
}

type StreamServer<const R: usize, const W: usize> =
    Server<Fake, SyncDispatch<Factory, RecHooks, [u8; R], [u8; W]>, Rc<ManualClock>>;

fn stream_server<const R: usize, const W: usize>(
    fake: Fake,
    how: Behaviour,
    accept: bool,
) -> StreamServer<R, W> {
    let log = fake.log.clone();
    let clock = fake.clock.clone();
    let dispatch =
        SyncDispatch::with_hooks(factory(&log, how, &Rc::default()), hooks(&log, accept));
    Server::new(fake, dispatch, clock)
}

impl Clock for Rc<ManualClock> {
    fn now(&self) -> Instant {
        (**self).now()
    }
}

fn errors<const R: usize, const W: usize>(server: &StreamServer<R, W>) -> Vec<Error> {
    server.dispatch().hooks().errors.borrow().clone()
}

const SERVED: &[&str] = &[
    "select",
    "get_request",
    "verify_request",
    "finish_request",
    "setup",
    "handle",
    "send",
    "finish",
    "shutdown_request",
    "close_request",
];

#[test]
fn success_path_runs_every_step_in_python_order() {
    let log = new_log();
    let mut server = stream_server::<64, 0>(
        Fake::new(&log).with_request(b"hi there\nrest"),
        Behaviour::default(),
        true,
    );
    server.handle_request().unwrap();
    assert_eq!(take(&log), SERVED);
    assert_eq!(*server.transport().output.borrow(), b"HI THERE\n");
    assert!(errors(&server).is_empty());
}

#[test]
fn refused_request_is_shut_down_and_never_handled() {
    // bpo-26309: shutdown_request still runs when verify_request says no.
    let log = new_log();
    let mut server = stream_server::<64, 0>(
        Fake::new(&log).with_request(b"x\n"),
        Behaviour::default(),
        false,
    );
    server.handle_request().unwrap();
    assert_eq!(
        take(&log),
        [
            "select",
            "get_request",
            "verify_request",
            "shutdown_request",
            "close_request"
        ]
    );
}

#[test]
fn handler_error_is_reported_then_request_shut_down() {
    let log = new_log();
    let how = Behaviour {
        fail_handle: true,
        ..Behaviour::default()
    };
    let mut server = stream_server::<64, 0>(Fake::new(&log).with_request(b"x\n"), how, true);
    server.handle_request().unwrap();
    assert_eq!(
        take(&log),
        [
            "select",
            "get_request",
            "verify_request",
            "finish_request",
            "setup",
            "handle",
            "finish",
            "handle_error",
            "shutdown_request",
            "close_request"
        ]
    );
    assert_same!(errors(&server), [Error::Handler("handle failed")]);
}

#[test]
fn setup_error_skips_handle_and_finish() {
    let log = new_log();
    let how = Behaviour {
        fail_setup: true,
        ..Behaviour::default()
    };
    let mut server = stream_server::<64, 0>(Fake::new(&log).with_request(b"x\n"), how, true);
    server.handle_request().unwrap();
    assert_eq!(
        take(&log),
        [
            "select",
            "get_request",
            "verify_request",
            "finish_request",
            "setup",
            "handle_error",
            "shutdown_request",
            "close_request"
        ]
    );
}

/// A connection that cannot be established (a failed TLS handshake) is
/// the request's error: reported, the connection shut down, and none of
/// `setup`, `handle`, `finish` run.
#[test]
fn establish_error_skips_the_handler() {
    let log = new_log();
    let mut server = stream_server::<64, 0>(
        Fake::new(&log).with_request(b"!not tls\n"),
        Behaviour::default(),
        true,
    );
    server.handle_request().unwrap();
    assert_eq!(
        take(&log),
        [
            "select",
            "get_request",
            "verify_request",
            "finish_request",
            "establish failed",
            "handle_error",
            "shutdown_request",
            "close_request"
        ]
    );
    assert_same!(errors(&server), [Error::io(ErrorKind::InvalidData)]);
}

#[test]
fn options_reach_the_connection_before_setup() {
    let log = new_log();
    let how = Behaviour {
        options: StreamOptions::new()
            .timeout(Some(Duration::from_secs(3)))
            .request_timeout(Some(Duration::from_secs(9)))
            .disable_nagle_algorithm(true),
        ..Behaviour::default()
    };
    let mut server = stream_server::<64, 0>(Fake::new(&log).with_request(b"x\n"), how, true);
    server.handle_request().unwrap();
    let got = take(&log);
    assert_eq!(
        got[3..8],
        [
            "finish_request",
            "settimeout",
            "request timeout",
            "TCP_NODELAY",
            "setup"
        ]
    );
}

#[test]
fn handle_request_timeout_calls_handle_timeout() {
    let log = new_log();
    let mut server = stream_server::<64, 0>(Fake::new(&log), Behaviour::default(), true);
    server.set_timeout(Some(Duration::from_millis(50)));
    server.handle_request().unwrap();
    assert_eq!(take(&log), ["select", "handle_timeout"]);
}

#[test]
fn early_wakeups_wait_again_for_the_remaining_time() {
    let log = new_log();
    let mut fake = Fake::new(&log);
    let short = Duration::from_millis(10);
    fake.script.extend([
        Step::Interrupted {
            clock_advance: short,
        },
        Step::Interrupted {
            clock_advance: short,
        },
        Step::Ready,
    ]);
    fake.pending.push_back((b"a\n".to_vec(), 7));
    let mut server = stream_server::<64, 0>(fake, Behaviour::default(), true);
    server.set_timeout(Some(Duration::from_millis(50)));
    server.handle_request().unwrap();
    let got = take(&log);
    assert_eq!(got[..4], ["select", "select", "select", "get_request"]);

    // Once the clock passes the deadline an interruption is a timeout.
    server.transport_mut().script.push_back(Step::Interrupted {
        clock_advance: Duration::from_millis(60),
    });
    server.handle_request().unwrap();
    assert_eq!(take(&log), ["select", "handle_timeout"]);
}

#[test]
fn shutdown_before_serve_forever_returns_at_once() {
    // bpo-2302: no deadlock, no wait at all.
    let log = new_log();
    let mut server = stream_server::<64, 0>(
        Fake::new(&log).with_request(b"x\n"),
        Behaviour::default(),
        true,
    );
    server.transport().shutdown.request();
    server.serve_forever(Duration::from_secs(10)).unwrap();
    assert!(take(&log).is_empty());
    assert!(
        !server.transport().shutdown_requested(),
        "request cleared on return"
    );
    assert_eq!(server.transport().pending.len(), 1);
}

#[test]
fn request_ready_during_shutdown_is_not_served() {
    // bpo-35017
    let log = new_log();
    let mut fake = Fake::new(&log);
    fake.pending.push_back((b"x\n".to_vec(), 7));
    fake.script.push_back(Step::ShutdownWhileReady);
    let mut server = stream_server::<64, 0>(fake, Behaviour::default(), true);
    server.serve_forever(Duration::from_secs(10)).unwrap();
    assert_eq!(take(&log), ["select"]);
    assert_eq!(server.transport().pending.len(), 1);
}

#[test]
fn serve_forever_runs_service_actions_every_pass() {
    let log = new_log();
    let mut fake = Fake::new(&log).with_request(b"x\n");
    fake.script.push_back(Step::TimedOut);
    fake.script.push_back(Step::ShutdownWhileReady);
    let mut server = stream_server::<64, 0>(fake, Behaviour::default(), true);
    server.serve_forever(Duration::from_millis(500)).unwrap();
    let mut expected = SERVED.to_vec();
    expected.extend(["service_actions", "select", "service_actions", "select"]);
    assert_eq!(take(&log), expected);
}

#[test]
fn stale_readiness_still_ends_the_pass_with_service_actions() {
    // A stack that reports every frame as readiness must not starve
    // service_actions: Python runs it after every select.
    let log = new_log();
    let mut fake = Fake::new(&log);
    fake.script
        .extend([Step::Stale, Step::Stale, Step::ShutdownWhileReady]);
    let mut server = stream_server::<64, 0>(fake, Behaviour::default(), true);
    server.serve_forever(Duration::from_millis(500)).unwrap();
    assert_eq!(
        take(&log),
        [
            "select",
            "service_actions",
            "select",
            "service_actions",
            "select"
        ]
    );
}

#[test]
fn failed_accept_is_dropped_and_serving_goes_on() {
    let log = new_log();
    let mut fake = Fake::new(&log);
    fake.script.push_back(Step::AcceptFails);
    let mut server = stream_server::<64, 0>(fake.with_request(b"x\n"), Behaviour::default(), true);
    server.handle_request().unwrap();
    assert_eq!(take(&log), ["select", "get_request"]);
    server.handle_request().unwrap();
    assert_eq!(take(&log), SERVED);
}

#[test]
fn stale_readiness_waits_again_instead_of_returning() {
    // Readiness with nothing to accept (the client went away first): the
    // call goes on waiting, and returns only once it served or timed out.
    let log = new_log();
    let mut fake = Fake::new(&log);
    fake.script.push_back(Step::Stale);
    let mut server = stream_server::<64, 0>(fake.with_request(b"x\n"), Behaviour::default(), true);
    server.handle_request().unwrap();
    let mut expected = vec!["select"];
    expected.extend(SERVED);
    assert_eq!(take(&log), expected);

    server.set_timeout(Some(Duration::from_millis(50)));
    server.transport_mut().script.push_back(Step::Stale);
    server.handle_request().unwrap();
    assert_eq!(take(&log), ["select", "select", "handle_timeout"]);
}

#[test]
fn a_ready_request_is_taken_without_waiting() {
    // Take, then wait: `select` only once nothing is ready.
    let log = new_log();
    let fake = Fake::new(&log).with_queued(b"a\n").with_queued(b"b\n");
    let mut server = stream_server::<64, 0>(fake, Behaviour::default(), true);
    server.handle_request().unwrap();
    assert_eq!(take(&log), SERVED[1..]);
    server
        .transport_mut()
        .script
        .push_back(Step::ShutdownWhileReady);
    server.serve_forever(Duration::from_millis(500)).unwrap();
    let mut expected = SERVED[1..].to_vec();
    expected.extend(["service_actions", "select"]);
    assert_eq!(take(&log), expected);
    assert_eq!(*server.transport().output.borrow(), b"A\nB\n");
}

#[test]
fn overlong_line_is_an_error_not_growth() {
    let log = new_log();
    let mut server = stream_server::<8, 0>(
        Fake::new(&log).with_request(b"0123456789abcdef\n"),
        Behaviour::default(),
        true,
    );
    server.handle_request().unwrap();
    assert_same!(errors(&server), [Error::LineTooLong { capacity: 8 }]);
    assert!(server.transport().output.borrow().is_empty());
}

fn conn(input: &[u8]) -> RefCell<FakeConn> {
    RefCell::new(FakeConn {
        input: input.to_vec(),
        pos: 0,
        output: Rc::default(),
        log: new_log(),
    })
}

#[test]
fn read_line_compacts_and_returns_tail_then_empty() {
    let c = conn(b"ab\ncdef\ngh");
    let mut buf = [0u8; 5];
    let mut rfile = RFile::new(&c, &mut buf);
    assert_eq!(rfile.read_line().unwrap(), b"ab\n");
    assert_eq!(rfile.read_line().unwrap(), b"cdef\n");
    assert_eq!(rfile.read_line().unwrap(), b"gh");
    assert_eq!(rfile.read_line().unwrap(), b"");
    // A line of exactly the capacity fits.
    let c = conn(b"abcd\n");
    let mut buf = [0u8; 5];
    assert_eq!(RFile::new(&c, &mut buf).read_line().unwrap(), b"abcd\n");
}

#[test]
fn rfile_read_mixes_buffered_and_direct_reads() {
    let c = conn(b"line\n0123456789");
    let mut buf = [0u8; 8];
    let mut rfile = RFile::new(&c, &mut buf);
    assert_eq!(rfile.read_line().unwrap(), b"line\n");
    let mut out = [0u8; 16];
    let n = rfile.read(&mut out).unwrap();
    assert_eq!(&out[..n], b"012"); // what was already buffered
    let n = rfile.read(&mut out).unwrap();
    assert_eq!(&out[..n], b"3456789"); // straight from the connection
    assert_eq!(rfile.read(&mut out).unwrap(), 0);
}

/// `std::io` readers (serde's `from_reader`, `read_to_end`) are bounded by
/// the request's io limit, 64 times the capacity by default, reported as
/// `Error::ReadLimit` inside an `InvalidData` io error; `set_io_limit`
/// starts a new budget; the inherent reads are not counted.
#[test]
#[cfg(feature = "std")]
fn std_io_reads_of_rfile_are_bounded() {
    use std::io::Read as _;
    let input = [b'x'; 1000];
    let c = conn(&input);
    let mut buf = [0u8; 4];
    let mut rfile = RFile::new(&c, &mut buf);
    assert_eq!(rfile.io_left(), 4 * RFile::<FakeConn>::DEFAULT_IO_LIMIT);
    let mut all = std::vec::Vec::new();
    let err = rfile.read_to_end(&mut all).unwrap_err();
    assert_eq!(all.len(), 256, "64 x the 4-byte buffer");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert_same!(Error::from(err), Error::ReadLimit { limit: 256 });
    assert_eq!(
        std::string::ToString::to_string(&Error::ReadLimit { limit: 256 }),
        "request read more than the 256-byte bound on rfile's std::io reads"
    );

    rfile.set_io_limit(10);
    let mut line = std::string::String::new();
    assert!(std::io::BufRead::read_line(&mut rfile, &mut line).is_err());
    assert_eq!(line.len(), 10);
    // Not counted: the bounded inherent reads.
    assert_eq!(
        rfile.read_line().unwrap_err().kind(),
        ErrorKind::InvalidData
    );
    rfile.set_io_limit(u64::MAX);
    let mut rest = std::vec::Vec::new();
    rfile.read_to_end(&mut rest).unwrap();
    assert_eq!(256 + 10 + 4 + rest.len(), input.len());
}

/// Found by `fuzz/` (line_reader): with a zero capacity `fill_buf`
/// returned an empty slice, which says end of stream, while bytes were
/// still to come. It is an error now; `read` still goes straight through.
#[test]
fn zero_capacity_rfile_never_fakes_end_of_stream() {
    let c = conn(b"\0x\n");
    let mut rfile = RFile::new(&c, &mut []);
    assert_same!(
        rfile.fill_buf(),
        Err::<&[u8], _>(Error::io(ErrorKind::OutOfMemory))
    );
    assert_same!(
        rfile.read_line(),
        Err::<&[u8], _>(Error::LineTooLong { capacity: 0 })
    );
    let mut out = [0u8; 8];
    assert_same!(rfile.read(&mut out), Ok::<_, Error>(3));
    assert_eq!(&out[..3], b"\0x\n");
    assert_same!(rfile.read(&mut out), Ok::<_, Error>(0));
}

#[test]
fn buffered_wfile_is_sent_after_finish() {
    let log = new_log();
    let how = Behaviour {
        options: StreamOptions::new().buffered_wfile(true),
        ..Behaviour::default()
    };
    let mut server = stream_server::<64, 64>(Fake::new(&log).with_request(b"abc\n"), how, true);
    server.handle_request().unwrap();
    let got = take(&log);
    assert_eq!(
        got[5..],
        [
            "handle",
            "finish",
            "send",
            "shutdown_request",
            "close_request"
        ]
    );
    assert_eq!(*server.transport().output.borrow(), b"ABC\n");
}

#[test]
fn buffered_wfile_sends_large_writes_whole() {
    let c = conn(b"");
    let mut buf = [0u8; 4];
    let mut wfile = WFile::new(&c, &mut buf);
    wfile.write_all(b"ab").unwrap();
    assert_eq!(wfile.pending(), 2);
    wfile.write_all(b"0123456789").unwrap();
    assert_eq!(wfile.pending(), 0);
    wfile.write_all(b"z").unwrap();
    wfile.flush().unwrap();
    assert_eq!(*c.borrow().output.borrow(), b"ab0123456789z");
}

#[test]
fn server_close_is_idempotent_and_runs_on_drop() {
    let log = new_log();
    let mut server = stream_server::<64, 0>(Fake::new(&log), Behaviour::default(), true);
    server.server_close();
    server.server_close();
    assert!(server.is_closed());
    drop(server);
    assert_eq!(take(&log), ["server_close"]);
    let server = stream_server::<64, 0>(Fake::new(&log), Behaviour::default(), true);
    drop(server);
    assert_eq!(take(&log), ["server_close"]);
}

type DgramServer<const R: usize, const W: usize> =
    Server<FakeDgram, SyncDispatch<Factory, RecHooks, [u8; R], [u8; W]>, Rc<ManualClock>>;

fn dgram_server<const R: usize, const W: usize>(
    fake: Fake,
    accept: bool,
    truncated: &Rc<RefCell<Option<bool>>>,
) -> DgramServer<R, W> {
    let log = fake.log.clone();
    let clock = fake.clock.clone();
    let dispatch = SyncDispatch::with_hooks(
        factory(&log, Behaviour::default(), truncated),
        hooks(&log, accept),
    );
    Server::new(FakeDgram(fake), dispatch, clock)
}

#[test]
fn datagram_reply_is_sent_after_finish() {
    let log = new_log();
    let truncated = Rc::default();
    let mut server =
        dgram_server::<16, 16>(Fake::new(&log).with_request(b"ping"), true, &truncated);
    server.handle_request().unwrap();
    assert_eq!(
        take(&log),
        [
            "select",
            "get_request",
            "verify_request",
            "finish_request",
            "setup",
            "handle",
            "finish",
            "sendto"
        ]
    );
    assert_eq!(server.transport().0.sent, vec![(b"ping!".to_vec(), 7)]);
    assert_eq!(*truncated.borrow(), Some(false));
}

#[test]
fn oversized_datagram_is_flagged_truncated() {
    let log = new_log();
    let truncated = Rc::default();
    let mut server = dgram_server::<8, 16>(
        Fake::new(&log).with_request(b"0123456789abc"),
        true,
        &truncated,
    );
    server.handle_request().unwrap();
    assert_eq!(*truncated.borrow(), Some(true));
    assert_eq!(server.transport().0.sent, vec![(b"01234567!".to_vec(), 7)]);
}

#[test]
fn datagram_reply_too_long_is_an_error_and_nothing_is_cut() {
    let log = new_log();
    let truncated = Rc::default();
    // The packet fits the reply buffer exactly, the "!" does not.
    let mut server = dgram_server::<8, 4>(Fake::new(&log).with_request(b"abcd"), true, &truncated);
    server.handle_request().unwrap();
    let got = take(&log);
    assert_eq!(got[got.len() - 2..], ["sendto", "handle_error"]);
    assert_eq!(server.transport().0.sent, vec![(b"abcd".to_vec(), 7)]);
    assert_same!(
        *server.dispatch().hooks().errors.borrow(),
        [Error::ReplyTooLong { capacity: 4 }]
    );
}

#[test]
fn refused_datagram_is_never_handled() {
    let log = new_log();
    let truncated = Rc::default();
    let mut server = dgram_server::<8, 8>(Fake::new(&log).with_request(b"x"), false, &truncated);
    server.handle_request().unwrap();
    assert_eq!(take(&log), ["select", "get_request", "verify_request"]);
    assert!(server.transport().0.sent.is_empty());
}

#[test]
fn packet_reader_reads_lines_and_bytes() {
    let mut r = PacketReader::new(b"one\ntwo");
    assert_eq!(r.read_line(), b"one\n");
    let mut out = [0u8; 2];
    assert_eq!(r.read(&mut out).unwrap(), 2);
    assert_eq!(r.read_line(), b"o");
    assert_eq!(r.read_line(), b"");
    assert_eq!(r.packet(), b"one\ntwo");
}

#[test]
fn ready_made_handlers_serve_the_docs_examples() {
    use crate::handlers::{Echo, UpperLine, UpperOnce};
    use crate::memory::{MemoryListener, Transcript};
    let transcript = Transcript::<64>::new();
    let shutdown = ShutdownFlag::new();
    let mut listener = MemoryListener::<4, 64>::new(&transcript, &shutdown);
    listener.push(b"  hello world with TCP \n", 1).unwrap();
    let mut server = Server::new(
        listener,
        SyncDispatch::<_, _, [u8; 64], [u8; 0]>::new(|| UpperOnce),
        ManualClock::new(),
    );
    server.handle_request().unwrap();
    transcript.with(|out| assert_eq!(out, b"HELLO WORLD WITH TCP"));

    transcript.clear();
    let mut listener = MemoryListener::<4, 64>::new(&transcript, &shutdown);
    listener.push(b" line one \nline two\n", 1).unwrap();
    let mut server = Server::new(
        listener,
        SyncDispatch::<_, _, [u8; 64], [u8; 0]>::new(|| UpperLine),
        ManualClock::new(),
    );
    server.handle_request().unwrap();
    transcript.with(|out| assert_eq!(out, b"LINE ONE"));

    transcript.clear();
    let mut listener = MemoryListener::<4, 64>::new(&transcript, &shutdown);
    listener.push(b"raw bytes\nand more", 1).unwrap();
    let mut server = Server::new(
        listener,
        SyncDispatch::<_, _, [u8; 4], [u8; 0]>::new(|| Echo),
        ManualClock::new(),
    );
    server.handle_request().unwrap();
    transcript.with(|out| assert_eq!(out, b"raw bytes\nand more"));
    assert_eq!(transcript.shutdowns(), 3);
}

#[test]
fn handlers_share_server_state_through_the_factory() {
    use crate::memory::{MemoryListener, Transcript};
    use core::cell::Cell;

    /// Python's `self.server.count`: state every handler reaches.
    struct Counting<'s>(&'s Cell<u32>);
    impl<C: crate::Connection> StreamHandler<C> for Counting<'_> {
        fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
            self.0.set(self.0.get() + 1);
            write!(
                req.wfile,
                "request {} from {:?};",
                self.0.get(),
                req.client_address
            )?;
            Ok(())
        }
    }

    let served = Cell::new(0);
    let transcript = Transcript::<64>::new();
    let shutdown = ShutdownFlag::new();
    let mut listener = MemoryListener::<4, 64>::new(&transcript, &shutdown);
    listener.push(b"", 10).unwrap();
    listener.push(b"", 11).unwrap();
    let dispatch = SyncDispatch::<_, _, [u8; 8], [u8; 0]>::new(|| Counting(&served));
    let mut server = Server::new(listener, dispatch, ManualClock::new());
    server.handle_request().unwrap();
    server.handle_request().unwrap();
    assert_eq!(served.get(), 2);
    transcript.with(|out| assert_eq!(out, b"request 1 from 10;request 2 from 11;"));
}

#[cfg(feature = "std")]
mod std_errors {
    use super::*;
    use std::string::ToString;

    #[test]
    fn an_os_error_keeps_its_code_and_the_systems_words() {
        let err = Error::from(std::io::Error::from_raw_os_error(libc_econnreset()));
        assert_eq!(err.kind(), ErrorKind::ConnectionReset);
        assert_eq!(err.os_code(), Some(libc_econnreset()));
        let text = err.to_string();
        assert_eq!(
            text,
            std::io::Error::from_raw_os_error(libc_econnreset()).to_string()
        );
        assert!(text.contains("os error"), "{text}");
    }

    #[test]
    fn an_io_error_with_a_message_keeps_it_and_its_kind() {
        let err = Error::from(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "bad frame",
        ));
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert_eq!(err.to_string(), "bad frame");
        let back = std::io::Error::from(err);
        assert_eq!(back.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_handlers_own_error_keeps_its_source_chain() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl core::fmt::Display for Outer {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("config unreadable")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let err = Error::other(Outer(std::io::Error::other("disk on fire")));
        assert_eq!(err.to_string(), "config unreadable");
        let source = std::error::Error::source(&err).expect("chained");
        assert_eq!(source.to_string(), "disk on fire");
        assert_eq!(
            Error::other("built at run time").to_string(),
            "built at run time"
        );
    }

    /// ECONNRESET, whatever the platform numbers it.
    fn libc_econnreset() -> i32 {
        let probe = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        // Find the code whose kind is ConnectionReset among the small ones.
        (1..200)
            .find(|&c| std::io::Error::from_raw_os_error(c).kind() == probe.kind())
            .expect("an errno for ECONNRESET")
    }
}

/// A message handler that logs its steps: closes on "bye", fails on "fail".
struct Messages {
    log: Log,
    fail_setup: bool,
}

impl<C: Connection> MessageHandler<C> for Messages {
    fn setup(&mut self, _: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        self.log.borrow_mut().push("setup");
        if self.fail_setup {
            return Err(Error::Handler("setup failed"));
        }
        Ok(())
    }

    fn handle_message(&mut self, req: &mut StreamRequest<'_, C>) -> Result<Next, Error> {
        self.log.borrow_mut().push("handle_one_request");
        let line = req.rfile.read_line()?;
        match &*line {
            b"bye\n" => Ok(Next::Close),
            b"fail\n" => Err(Error::Handler("handle failed")),
            _ => {
                req.wfile.write_all(line)?;
                Ok(Next::KeepOpen)
            }
        }
    }

    fn finish(&mut self, _: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        self.log.borrow_mut().push("finish");
        Ok(())
    }
}

fn session(log: &Log, fail_setup: bool) -> Session<FakeConn, Messages> {
    let conn = conn(b"").into_inner();
    let handler = Messages {
        log: log.clone(),
        fail_setup,
    };
    Session::new(
        FakeConn {
            log: log.clone(),
            ..conn
        },
        7,
        handler,
    )
}

/// Serves `input` as one turn: the buffer holds it, as a dispatch fills it.
fn turn(session: &mut Session<FakeConn, Messages>, hooks: &RecHooks, input: &[u8]) -> Turn {
    let mut rbuf = [0u8; 64];
    rbuf[..input.len()].copy_from_slice(input);
    session.serve(&mut rbuf, input.len(), &mut [0u8; 64], hooks)
}

#[test]
fn a_session_runs_setup_once_a_message_per_turn_and_finish_when_the_handler_closes() {
    let log = new_log();
    let hooks = hooks(&log, true);
    let mut session = session(&log, false);
    // Two pipelined lines: one is served, the other is left for the next turn.
    assert_eq!(turn(&mut session, &hooks, b"a\nb\n"), Turn::Park(2..4));
    assert_eq!(take(&log), ["setup", "handle_one_request", "send"]);
    assert_eq!(turn(&mut session, &hooks, b"b\n"), Turn::Park(2..2));
    assert_eq!(turn(&mut session, &hooks, b"bye\n"), Turn::Close);
    session.close();
    assert_eq!(
        take(&log),
        [
            "handle_one_request",
            "send",
            "handle_one_request",
            "finish",
            "shutdown_request",
            "close_request"
        ]
    );
    assert!(hooks.errors.borrow().is_empty());
}

#[test]
fn a_failed_message_runs_finish_and_is_reported_a_failed_setup_is_not_finished() {
    let log = new_log();
    let hooks = hooks(&log, true);
    let mut failing = session(&log, false);
    assert_eq!(turn(&mut failing, &hooks, b"fail\n"), Turn::Close);
    assert_eq!(
        take(&log),
        ["setup", "handle_one_request", "finish", "handle_error"]
    );
    let mut refused = session(&log, true);
    assert_eq!(turn(&mut refused, &hooks, b"x\n"), Turn::Close);
    assert_eq!(take(&log), ["setup", "handle_error"]);
    assert_same!(
        *hooks.errors.borrow(),
        [
            Error::Handler("handle failed"),
            Error::Handler("setup failed")
        ]
    );
}

#[test]
fn ending_a_session_finishes_it_only_if_it_began() {
    let log = new_log();
    let hooks = hooks(&log, true);
    session(&log, false).end(None, &mut [0; 8], &mut [], &hooks);
    assert_eq!(take(&log), ["shutdown_request", "close_request"]);
    let mut begun = session(&log, false);
    assert_eq!(turn(&mut begun, &hooks, b"x\n"), Turn::Park(2..2));
    take(&log);
    let late = Error::io(ErrorKind::TimedOut);
    begun.end(Some(late), &mut [0; 8], &mut [], &hooks);
    assert_eq!(
        take(&log),
        [
            "finish",
            "handle_error",
            "shutdown_request",
            "close_request"
        ]
    );
}

#[test]
fn message_loop_serves_messages_until_the_peer_closes_between_them() {
    let log = new_log();
    let conn = RefCell::new(FakeConn {
        log: log.clone(),
        ..conn(b"one\ntwo\n").into_inner()
    });
    let mut handler = MessageLoop(Messages {
        log: log.clone(),
        fail_setup: false,
    });
    let served = finish_request(&mut handler, &conn, 7, &mut [0; 64], &mut []);
    assert!(served.is_ok());
    assert_eq!(
        take(&log),
        [
            "setup",
            "handle_one_request",
            "send",
            "handle_one_request",
            "send",
            "finish"
        ]
    );
    assert_eq!(&*conn.borrow().output.borrow(), b"one\ntwo\n");
}

impl embedded_io::ReadReady for FakeConn {
    fn read_ready(&mut self) -> Result<bool, ErrorKind> {
        Ok(true)
    }
}

impl embedded_io::WriteReady for FakeConn {
    fn write_ready(&mut self) -> Result<bool, ErrorKind> {
        Ok(true)
    }
}

/// Echoes one line per message, quietly.
struct EchoLine;

impl<C: Connection> MessageHandler<C> for EchoLine {
    fn handle_message(&mut self, req: &mut StreamRequest<'_, C>) -> Result<Next, Error> {
        let line = req.rfile.read_line()?;
        req.wfile.write_all(line)?;
        Ok(Next::KeepOpen)
    }
}

#[test]
fn message_dispatch_takes_one_message_per_take_from_each_connection_in_turn() {
    let log = new_log();
    let fake = Fake::new(&log)
        .with_queued(b"a1\na2\na3\n")
        .with_queued(b"b1\nb2\n");
    let output = fake.output.clone();
    let hooks = hooks(&log, true);
    let clock = Rc::new(ManualClock::new());
    let mut dispatch =
        MessageDispatch::<FakeConn, _, _, _, 2, 16, 0>::new(|| EchoLine, &hooks, clock);
    let mut listener = fake;
    let mut takes = 0;
    while Dispatch::take(&mut dispatch, &mut listener) == Took::Request {
        takes += 1;
        assert!(takes < 20, "a take that never finds nothing");
    }
    // Both connections were accepted before either had a second turn, and
    // a connection with a message waiting went before the busier one's next.
    assert_eq!(&*output.borrow(), b"a1\nb1\na2\nb2\na3\n");
    // Each connection's end of stream ended it; a third would have a slot.
    assert_eq!(dispatch.open(), 0);
    assert!(hooks.errors.borrow().is_empty());
}

/// Without `std`, an I/O error is worded by its kind, and a code follows in
/// parentheses, a negative one with its sign.
#[cfg(not(feature = "std"))]
#[test]
fn an_io_error_in_words_without_std() {
    let shown = |code| {
        std::format!(
            "{}",
            Error::Io {
                kind: ErrorKind::ConnectionReset,
                code
            }
        )
    };
    assert_eq!(shown(None), "connection reset");
    assert_eq!(shown(Some(104)), "connection reset (os error 104)");
    assert_eq!(shown(Some(-3)), "connection reset (os error -3)");
    assert_eq!(
        shown(Some(i32::MIN)),
        "connection reset (os error -2147483648)"
    );
}
