//! Stopping ends, and leaves the process as it was: `shutdown()` returns
//! once the loop it stopped has returned, whatever the serving thread does
//! next; the stop-signal guard gives the signals back when dropped, and a
//! second stop signal ends the process at once.
//!
//! The signal tests run this binary again as the process they signal, so
//! the harness's own dispositions are never touched.
#![cfg(feature = "std")]
#![cfg_attr(not(unix), allow(dead_code, unused_imports))]
#![cfg(not(target_os = "wasi"))]

mod util;

#[cfg(unix)]
use std::io::{BufRead, BufReader};
#[cfg(unix)]
use std::os::unix::process::ExitStatusExt;
#[cfg(unix)]
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

#[cfg(unix)]
use signal_hook::consts::{SIGINT, SIGTERM};
use socketserver::handlers::UpperOnce;
use socketserver::TcpServer;
#[cfg(unix)]
use util::process::{wait_bounded, Running};
use util::PATIENCE;

/// Python's serve, reconfigure, serve loop: the serving thread calls
/// `serve_forever` again as soon as it returns. Each `shutdown()` must
/// return once the loop it asked to stop has returned, not wait for the
/// next one, whose request flag that loop already cleared (CPython's
/// `shutdown()` returns here too).
#[test]
fn shutdown_returns_when_the_serving_thread_serves_again_at_once() {
    const ROUNDS: usize = 20;
    let mut server = TcpServer::new("127.0.0.1:0", || UpperOnce).unwrap();
    let stop = server.shutdown_handle();
    let done = Arc::new(AtomicBool::new(false));
    let serving = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                server.serve_forever(Duration::from_millis(5)).unwrap();
            }
        })
    };
    let mut slowest = Duration::ZERO;
    for round in 0..ROUNDS {
        let start = Instant::now();
        let (returned, rx) = mpsc::channel();
        let handle = stop.clone();
        thread::spawn(move || {
            let _ = returned.send(handle.shutdown());
        });
        if rx.recv_timeout(PATIENCE).is_err() {
            // End the loops so the stuck shutdown and the thread return.
            done.store(true, Ordering::SeqCst);
            stop.request_shutdown();
            let _ = serving.join();
            panic!("round {round}: shutdown() waited for the next serve_forever");
        }
        slowest = slowest.max(start.elapsed());
    }
    eprintln!("slowest of {ROUNDS} shutdowns: {slowest:?}");
    done.store(true, Ordering::SeqCst);
    stop.shutdown().unwrap();
    serving.join().unwrap();
}

#[cfg(unix)]
/// Set in the copy of this test binary that plays the signalled process.
const CHILD: &str = "SS_STD_SHUTDOWN_CHILD";

#[cfg(unix)]
/// Test `name` run again in a child process with [`CHILD`] set; its stdin
/// stays open (the child may block reading it) and its stdout is read
/// line by line.
struct Rerun {
    running: Running,
    lines: mpsc::Receiver<String>,
}

#[cfg(unix)]
impl Rerun {
    fn start(name: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("rerun the test binary");
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        Rerun {
            running: Running(Some(child)),
            lines,
        }
    }

    /// Waits at most [`PATIENCE`] for a line containing `what`.
    fn expect(&self, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(what) => return,
                Ok(_) => {}
                Err(err) => panic!("the child never said {what:?} ({err})"),
            }
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.running.0.as_ref().unwrap().id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status();
        assert!(status.unwrap().success(), "kill {signal} {pid}");
    }

    /// How the child ended, at most [`PATIENCE`] from now.
    fn status(mut self) -> ExitStatus {
        let mut child = self.running.0.take().unwrap();
        // Kept open until the child has ended: it may be blocked reading.
        let stdin = child.stdin.take();
        let status = wait_bounded(child);
        drop(stdin);
        status
    }

    /// Checks that the child ends, and by `signal`.
    fn assert_killed_by(self, signal: i32) {
        let status = self.status();
        assert_eq!(
            status.signal(),
            Some(signal),
            "the child ended with {status}"
        );
    }
}

#[cfg(unix)]
/// The child's part: blocks until the test ends (its stdin closes).
fn block() {
    let _ = std::io::stdin().read_line(&mut String::new());
}

// Signals by number.
#[cfg(unix)]
/// After the `stop_on_signals` guard is dropped, `SIGTERM` ends the process
/// again by its default action: the guard gave the disposition back.
#[test]
fn a_dropped_signal_guard_leaves_sigterm_fatal() {
    const NAME: &str = "a_dropped_signal_guard_leaves_sigterm_fatal";
    if std::env::var_os(CHILD).is_some() {
        let server = TcpServer::new("127.0.0.1:0", || UpperOnce).unwrap();
        drop(server.shutdown_handle().stop_on_signals().unwrap());
        println!("guard dropped");
        block();
        return;
    }
    let child = Rerun::start(NAME);
    child.expect("guard dropped");
    child.signal("-TERM");
    child.assert_killed_by(SIGTERM);
}

// Signals by number.
#[cfg(unix)]
/// A second `SIGTERM` while the guard lives (a server draining after the
/// first) ends the process at once, by `SIGTERM`'s default action.
#[test]
fn a_second_stop_signal_ends_the_process() {
    const NAME: &str = "a_second_stop_signal_ends_the_process";
    if std::env::var_os(CHILD).is_some() {
        let mut server = TcpServer::new("127.0.0.1:0", || UpperOnce).unwrap();
        let _guard = server.shutdown_handle().stop_on_signals().unwrap();
        println!("serving");
        server.serve_forever(Duration::from_secs(60)).unwrap();
        println!("stopped by the first");
        block();
        return;
    }
    two_sigterms(NAME).assert_killed_by(SIGTERM);
}

/// Starts the child of test `name`, and sends it a `SIGTERM` once it
/// serves and another once it says the first stopped it.
#[cfg(unix)]
fn two_sigterms(name: &str) -> Rerun {
    let child = Rerun::start(name);
    child.expect("serving");
    child.signal("-TERM");
    child.expect("stopped by the first");
    child.signal("-TERM");
    child
}

/// With `SecondSignal::KeepDraining`, a second `SIGTERM` does not end the
/// process: the program's own handler sees it, and the program goes on to
/// exit 0 of its own accord.
#[cfg(unix)] // Signals by number.
#[test]
fn a_second_stop_signal_can_be_told_to_keep_draining() {
    const NAME: &str = "a_second_stop_signal_can_be_told_to_keep_draining";
    if std::env::var_os(CHILD).is_some() {
        let seen = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(SIGTERM, Arc::clone(&seen)).unwrap();
        let mut server = TcpServer::new("127.0.0.1:0", || UpperOnce).unwrap();
        let stop = server.shutdown_handle();
        let _guard = stop
            .stop_on_signals_with(socketserver::SecondSignal::KeepDraining)
            .unwrap();
        println!("serving");
        server.serve_forever(Duration::from_secs(60)).unwrap();
        // The program's own handler runs in the same delivery as the one
        // that stopped the server, which may come first and let the serving
        // thread return before the flag is set: wait for it (bounded).
        wait_for_flag(
            &seen,
            "the first signal never reached the program's handler",
        );
        seen.store(false, Ordering::SeqCst);
        println!("stopped by the first");
        wait_for_flag(&seen, "no second signal came");
        println!("survived the second");
        return;
    }
    let child = two_sigterms(NAME);
    child.expect("survived the second");
    let status = child.status();
    assert!(status.success(), "the child ended with {status}");
}

// Signals by number.
#[cfg(unix)]
/// A handler the program had for `SIGINT` still runs while the guard lives,
/// and is the one left when it is dropped.
#[test]
fn a_previous_handler_is_chained_and_given_back() {
    const NAME: &str = "a_previous_handler_is_chained_and_given_back";
    if std::env::var_os(CHILD).is_some() {
        let flag = Arc::new(AtomicBool::new(false));
        let id = signal_hook::flag::register(SIGINT, Arc::clone(&flag)).unwrap();
        let server = TcpServer::new("127.0.0.1:0", || UpperOnce).unwrap();
        let stop = server.shutdown_handle();
        let guard = stop.stop_on_signals().unwrap();
        signal_hook::low_level::raise(SIGINT).unwrap();
        assert!(stop.is_shutdown_requested(), "the guard's handler ran");
        assert!(flag.swap(false, Ordering::SeqCst), "the previous one too");
        drop(guard);
        signal_hook::low_level::raise(SIGINT).unwrap();
        assert!(flag.load(Ordering::SeqCst), "the previous handler is back");
        signal_hook::low_level::unregister(id);
        return;
    }
    let child = Rerun::start(NAME);
    let status = child.status();
    assert!(status.success(), "the child's checks failed: {status}");
}

/// Waits at most [`PATIENCE`] for `flag` to be set, failing with `why`.
#[cfg(unix)]
fn wait_for_flag(flag: &AtomicBool, why: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !flag.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "{why}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
