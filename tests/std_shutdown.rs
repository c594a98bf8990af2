//! Stopping ends, and leaves the process as it was: `shutdown()` returns
//! once the loop it stopped has returned, whatever the serving thread does
//! next; the stop-signal guard gives the signals back when dropped.
#![cfg(feature = "std")]

mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use socketserver::handlers::UpperOnce;
use socketserver::TcpServer;
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
