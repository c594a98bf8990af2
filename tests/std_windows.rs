//! What Windows does differently: the port held exclusively
//! (`SO_EXCLUSIVEADDRUSE` instead of the port-stealing `SO_REUSEADDR`), no
//! `SO_REUSEPORT`, and Ctrl-C, Ctrl-Break and closing the console as the
//! stop signals. Run under Wine by the test command.
#![cfg(all(feature = "std", windows))]

mod util;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use socketserver::handlers::{UpperDatagram, UpperOnce};
use socketserver::{Connection, Error, ServerBuilder, StreamHandler, StreamRequest, TcpServer};
use util::{Recorder, Serving, TempDir, PATIENCE};
use windows_sys::Win32::System::Console;

/// A second server cannot bind a port a server holds, even when it asks
/// for address reuse (which Windows would otherwise let take the port).
#[test]
fn a_held_port_cannot_be_taken_by_another_server() {
    for allow in [false, true] {
        let first = ServerBuilder::tcp("127.0.0.1:0")
            .allow_reuse_address(allow)
            .build(|| UpperOnce)
            .unwrap();
        assert!(!first.socket().unwrap().reuse_address().unwrap());
        let taker = ServerBuilder::tcp(*first.local_addr())
            .allow_reuse_address(true)
            .build(|| UpperOnce);
        assert_eq!(taker.err().map(|e| e.kind()), Some(ErrorKind::AddrInUse));
    }
}

#[test]
fn reuse_port_is_unsupported() {
    let err = ServerBuilder::udp("127.0.0.1:0")
        .allow_reuse_port(true)
        .build(|| UpperDatagram)
        .err()
        .expect("no SO_REUSEPORT on Windows");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

/// A reply to a client that has gone brings an ICMP "port unreachable"
/// back; on Windows that would fail the server's next receive with
/// `WSAECONNRESET` unless the server turns it off. The next client is
/// served, and nothing is reported. (Wine, over Linux sockets, never
/// reports it: there this only checks that serving goes on.)
#[test]
fn a_reply_to_a_departed_udp_client_leaves_the_server_serving() {
    let hooks = Recorder::default();
    let server = ServerBuilder::udp("127.0.0.1:0")
        .hooks(hooks.clone())
        .build(|| UpperDatagram)
        .unwrap();
    let addr = *server.local_addr();
    let _serving = Serving::start(server, Duration::from_millis(500));
    for _ in 0..3 {
        let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
        gone.send_to(b"bye\n", addr).unwrap();
    }
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    for _ in 0..3 {
        client.send_to(b"hello\n", addr).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = client.recv_from(&mut buf).expect("an answer");
        assert_eq!(&buf[..n], b"HELLO", "stripped and upper-cased");
    }
    assert!(hooks.errors().is_empty(), "{:?}", hooks.errors());
}

/// Greets, then waits for a line that never comes.
struct GreetThenRead;

impl<C: Connection> StreamHandler<C> for GreetThenRead {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        req.wfile.write_all(b"ready\n")?;
        req.wfile.flush()?;
        req.rfile.read_line().map(drop)
    }
}

/// The drain's cut (`shutdown` with `SD_BOTH`) ends a handler blocked in
/// a receive on another thread: stopping a synchronous server whose
/// client says nothing ends soon after the drain timeout, and the client
/// sees the connection end.
#[test]
fn the_drain_cuts_a_handler_blocked_in_a_receive() {
    const BOUND: Duration = Duration::from_millis(300);
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .drain_timeout(Some(BOUND))
        .build(|| GreetThenRead)
        .unwrap();
    let addr = *server.local_addr();
    let stop = server.shutdown_handle();
    let serving = Serving::start(server, Duration::from_millis(500));
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut greeting = [0u8; 6];
    client.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"ready\n");

    let start = Instant::now();
    stop.shutdown().expect("from the test thread");
    let took = start.elapsed();
    assert!(took >= BOUND, "the request got its drain: {took:?}");
    assert!(took < PATIENCE, "the cut ended it: {took:?}");
    let mut rest = Vec::new();
    let end = client.read_to_end(&mut rest);
    assert!(
        matches!(&end, Ok(0))
            || end
                .as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::ConnectionReset),
        "the client sees the end: {end:?}"
    );
    serving.stop().unwrap();
}

/// Set in the copy of this test binary that receives the console events.
const CHILD: &str = "SS_STD_WINDOWS_CHILD";

/// The exit status of a process ended by Ctrl-C's default handler.
const STATUS_CONTROL_C_EXIT: u32 = 0xC000_013A;
/// Wine's default handler ends the process with status 0 instead.
const WINE_CONTROL_C_EXIT: u32 = 0;

/// What the child exits with when the process outlived an event that
/// should have ended it.
const OUTLIVED: i32 = 3;

/// Runs test `name` again in a child process with [`CHILD`] set to a
/// file it writes its steps to, and returns its exit code and those
/// steps: events raised there reach no other test. Killed (and failed)
/// after [`PATIENCE`].
fn rerun(name: &str) -> (u32, String) {
    let dir = TempDir::new("console");
    let steps = dir.path("steps");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1"])
        .env(CHILD, &steps)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rerun the test binary");
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let code = status.code().expect("an exit code") as u32;
            return (code, fs::read_to_string(&steps).unwrap_or_default());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Gives the child a console of its own, whose events it can raise. (Wine
/// starts the first Windows process on the terminal's console, where
/// `GenerateConsoleCtrlEvent` fails.) The test harness's output is lost
/// with the old console: the child reports through its exit code.
fn own_console() {
    // SAFETY: both calls take no arguments; FreeConsole fails harmlessly
    // without a console.
    unsafe { Console::FreeConsole() };
    // SAFETY: as above.
    assert_ne!(unsafe { Console::AllocConsole() }, 0, "a console");
}

/// Sends `event` to every process of this console (this one included).
fn raise(event: u32) {
    // SAFETY: GenerateConsoleCtrlEvent only reads its two integers.
    let sent = unsafe { Console::GenerateConsoleCtrlEvent(event, 0) };
    assert_ne!(sent, 0, "{}", std::io::Error::last_os_error());
}

/// Notes `step` in the file the parent reads.
fn step(step: &str) {
    let path = std::env::var_os(CHILD).expect("in the child");
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(file, "{step}").unwrap();
}

/// Checks that the child took `steps` and was then ended by Ctrl-C's
/// default handler.
fn assert_ended_by_ctrl_c((code, taken): (u32, String), steps: &str) {
    assert_eq!(taken, steps, "the child's steps");
    assert!(
        code == STATUS_CONTROL_C_EXIT || code == WINE_CONTROL_C_EXIT,
        "the child's exit code {code:#x}"
    );
}

/// Waits for the process to be ended by an event; exits with [`OUTLIVED`]
/// if it is not.
fn expect_the_end() -> ! {
    std::thread::sleep(PATIENCE / 2);
    std::process::exit(OUTLIVED);
}

/// Ctrl-C stops a server whose guard lives (its handler makes the request,
/// and the process goes on); a second Ctrl-C ends the process at once, by
/// the default handler.
#[test]
fn ctrl_c_requests_shutdown_and_a_second_one_ends_the_process() {
    if std::env::var_os(CHILD).is_none() {
        let child = rerun("ctrl_c_requests_shutdown_and_a_second_one_ends_the_process");
        assert_ended_by_ctrl_c(child, "stopped\nraising again\n");
        return;
    }
    own_console();
    let mut server = TcpServer::new("127.0.0.1:0", || UpperOnce).unwrap();
    let _guard = server.shutdown_handle().stop_on_signals().unwrap();
    raise(Console::CTRL_C_EVENT);
    let start = Instant::now();
    server.serve_forever(Duration::from_secs(60)).unwrap();
    assert!(start.elapsed() < PATIENCE / 2, "the loop was not stopped");
    step("stopped");
    step("raising again");
    raise(Console::CTRL_C_EVENT);
    expect_the_end();
}

/// Once the last guard is dropped, Ctrl-C ends the process again: the
/// handler is removed.
#[test]
fn a_dropped_guard_gives_ctrl_c_back() {
    if std::env::var_os(CHILD).is_none() {
        let child = rerun("a_dropped_guard_gives_ctrl_c_back");
        assert_ended_by_ctrl_c(child, "dropped\n");
        return;
    }
    own_console();
    let server = TcpServer::new("127.0.0.1:0", || UpperOnce).unwrap();
    let first = server.shutdown_handle().stop_on_signals().unwrap();
    let second = server.shutdown_handle().stop_on_signals().unwrap();
    drop((first, second));
    step("dropped");
    raise(Console::CTRL_C_EVENT);
    expect_the_end();
}
