//! The drain: shutdown stops taking requests at once, lets the requests in
//! progress finish within the drain timeout, then cuts the connections
//! still open so that stopping always ends. Without a bound, Python's
//! wait-for-ever stays.
//!
//! Servers here get a small bound ([`BOUND`]); idle clients are seen
//! accepted in the kernel's socket table (Linux only).
#![cfg(all(feature = "std", target_os = "linux"))]

#[path = "util/stop.rs"]
mod stop;
mod util;

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use socketserver::handlers::{UpperLine, UpperOnce};
use socketserver::os::TcpTransport;
use socketserver::{
    InlineDispatch, PoolDispatch, ServerBuilder, ShutdownHandle, SocketServer, ThreadingDispatch,
};
use stop::{
    assert_cut, bounded, exchange, serve_with_idle_clients, shutdown, wait_closed, IdleClients,
};
use util::process::{wait_bounded, Running};
use util::PATIENCE;

const BOUND: Duration = Duration::from_millis(300);
/// What stopping may take beyond the bound.
const MARGIN: Duration = Duration::from_millis(700);
const POLL: Duration = Duration::from_millis(50);

fn assert_took_the_bound(what: &str, took: Duration) {
    eprintln!("{what} took {took:?} (bound {BOUND:?})");
    assert!(took >= BOUND, "{what} cut after {took:?}, before the bound");
    assert!(took <= BOUND + MARGIN, "{what} took {took:?}");
}

type Sync = SocketServer<TcpTransport, InlineDispatch<fn() -> UpperOnce>>;

fn sync_server(bound: Option<Duration>) -> Sync {
    ServerBuilder::tcp("127.0.0.1:0")
        .drain_timeout(bound)
        .build((|| UpperOnce) as fn() -> UpperOnce)
        .unwrap()
}

/// Serves a synchronous server with a `bound` on a thread, with one idle
/// client it has accepted: the loop waits in that client's handler.
fn sync_serving(
    bound: Option<Duration>,
) -> (
    ShutdownHandle,
    thread::JoinHandle<std::io::Result<()>>,
    IdleClients,
) {
    let mut server = sync_server(bound);
    let address = *server.local_addr();
    let stop = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve_forever(POLL));
    (stop, serving, IdleClients::connect(address, 1, 1))
}

fn threading(
    bound: Option<Duration>,
) -> SocketServer<TcpTransport, ThreadingDispatch<fn() -> UpperLine>> {
    ServerBuilder::tcp("127.0.0.1:0")
        .drain_timeout(bound)
        .build_with(|config| ThreadingDispatch::new((|| UpperLine) as fn() -> UpperLine, config))
        .unwrap()
}

#[test]
fn the_default_bound_is_a_few_seconds() {
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .build(|| UpperOnce)
        .unwrap();
    assert_eq!(
        server.drain_timeout(),
        Some(ShutdownHandle::DEFAULT_DRAIN_TIMEOUT)
    );
    assert_eq!(
        ShutdownHandle::DEFAULT_DRAIN_TIMEOUT,
        Duration::from_secs(3)
    );
    server.shutdown_handle().set_drain_timeout(None);
    assert_eq!(server.drain_timeout(), None, "one setting per server");
}

/// The synchronous server's only thread waits on an idle client inside the
/// handler: `shutdown()` cuts that client once the bound has passed, and
/// returns when the loop has.
#[test]
fn shutdown_cuts_the_idle_client_a_synchronous_server_waits_on() {
    let (stop, serving, mut clients) = sync_serving(Some(BOUND));
    let mut client = clients.take_accepted();
    assert_took_the_bound("shutdown()", shutdown(&stop));
    serving.join().unwrap().unwrap();
    assert_cut(&mut client);
}

/// `request_shutdown()` from another thread does not wait, but the drain
/// it starts is bounded all the same.
#[test]
fn request_shutdown_from_another_thread_bounds_the_drain_too() {
    let (stop, serving, clients) = sync_serving(Some(BOUND));
    let start = Instant::now();
    stop.request_shutdown();
    bounded("serve_forever", move || serving.join().unwrap()).unwrap();
    assert_took_the_bound("serve_forever after request_shutdown()", start.elapsed());
    clients.wait_released();
}

/// A request that ends within the bound is answered, and the loop returns
/// as soon as it has.
#[test]
fn a_synchronous_request_finishing_within_the_drain_is_answered() {
    let (stop, serving, mut clients) = sync_serving(Some(Duration::from_secs(5)));
    let mut client = clients.take_accepted();
    let start = Instant::now();
    let stopped = thread::spawn(move || shutdown(&stop));
    thread::sleep(Duration::from_millis(100)); // well inside the drain
    assert_eq!(
        exchange(&mut client, "late but in time").unwrap(),
        "LATE BUT IN TIME"
    );
    stopped.join().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "returned with the request"
    );
    serving.join().unwrap().unwrap();
}

/// Without a bound (Python's behaviour) nothing is cut: `shutdown()` waits
/// for the idle client as long as it takes.
#[test]
fn without_a_bound_shutdown_waits_for_the_client_as_python_does() {
    let (stop, serving, mut clients) = sync_serving(None);
    let mut client = clients.take_accepted();
    let (done, returned) = mpsc::channel();
    thread::spawn(move || done.send(stop.shutdown()));
    // Not seeing an event can only be bounded in time: several bounds.
    assert!(
        returned.recv_timeout(3 * BOUND).is_err(),
        "the client was cut"
    );
    assert_eq!(exchange(&mut client, "no hurry").unwrap(), "NO HURRY");
    returned.recv_timeout(PATIENCE).unwrap().unwrap();
    serving.join().unwrap().unwrap();
}

/// Closing a threading server waits for its request threads at most the
/// bound, answers what finishes meanwhile, cuts the rest, and returns
/// once their threads have ended.
#[test]
fn threading_close_answers_what_finishes_and_cuts_the_rest() {
    let (stop, closed, mut clients) = serve_with_idle_clients(threading(Some(BOUND)), 5, 5);
    let mut finishing = clients.take_accepted();
    let mut idle = clients.take_accepted();
    shutdown(&stop);
    assert_eq!(
        exchange(&mut finishing, "done in time\n").unwrap(),
        "DONE IN TIME"
    );
    let (took, server) = wait_closed(&closed);
    assert_took_the_bound("threading server_close", took);
    assert_eq!(server.dispatch().active_threads(), 0);
    assert_cut(&mut idle);
    clients.wait_released();
}

/// Without a bound, closing a threading server waits for its requests for
/// ever (Python's `block_on_close`).
#[test]
fn without_a_bound_threading_close_waits_for_its_requests() {
    let (stop, closed, mut clients) = serve_with_idle_clients(threading(None), 1, 1);
    let mut client = clients.take_accepted();
    shutdown(&stop);
    // Not seeing the close return can only be bounded in time.
    assert!(
        closed.recv_timeout(3 * BOUND).is_err(),
        "closing cut the client"
    );
    assert_eq!(exchange(&mut client, "no hurry\n").unwrap(), "NO HURRY");
    wait_closed(&closed);
}

/// A pool's close cuts the requests running and those still queued; the
/// one worker then runs through the queue at once.
#[test]
fn pool_close_cuts_running_and_queued_requests() {
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .drain_timeout(Some(BOUND))
        .build_with(|config| {
            PoolDispatch::new(|| UpperLine, config)
                .workers(1)
                .queue_capacity(4)
                // The queued requests wait for the close, however slow the
                // machine: none is refused first.
                .queue_timeout(Duration::from_secs(3600))
        })
        .unwrap();
    let (stop, closed, mut clients) = serve_with_idle_clients(server, 4, 4);
    let mut taken: Vec<_> = (0..4).map(|_| clients.take_accepted()).collect();
    shutdown(&stop);
    let (took, server) = wait_closed(&closed);
    assert_took_the_bound("pool server_close", took);
    assert_eq!(server.dispatch().queued(), 0);
    taken.iter_mut().for_each(assert_cut);
}

/// Set in the copy of this test binary that plays the signalled process.
const CHILD: &str = "SS_STD_DRAIN_CHILD";

/// A guard dropped while its drain timer still runs disarms it: the
/// timer's `SIGTERM` would otherwise reach the default disposition the
/// guard puts back, and kill the process.
#[test]
fn a_guard_dropped_before_its_drain_timer_fires_leaves_the_process_alive() {
    const NAME: &str = "a_guard_dropped_before_its_drain_timer_fires_leaves_the_process_alive";
    if std::env::var_os(CHILD).is_some() {
        let mut server = sync_server(Some(BOUND));
        let guard = server.shutdown_handle().stop_on_signals().unwrap();
        println!("serving");
        server.serve_forever(POLL).unwrap();
        drop(guard);
        println!("guard dropped");
        let _ = std::io::stdin().read_line(&mut String::new());
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let lines = stop::lines(child.stdout.take().unwrap());
    stop::expect_line(&lines, "serving");
    let stdin = child.stdin.take();
    let mut running = Running(Some(child));
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    stop::expect_line(&lines, "guard dropped");
    // Past the timer's time, the process must still be there.
    thread::sleep(3 * BOUND);
    let child = running.0.as_mut().unwrap();
    assert!(
        child.try_wait().unwrap().is_none(),
        "the drain timer's SIGTERM killed it"
    );
    drop(stdin);
    let status = wait_bounded(running.0.take().unwrap());
    assert!(status.success(), "the child ended with {status}");
}
