//! The smoltcp backend on a lossy in-memory cable: 1 MiB echoed through a
//! server whose device (smoltcp's `FaultInjector`) drops 0%, 5% or 20% of
//! the frames and corrupts 1%, both ways. Every byte must come back intact
//! and in order, or the connection must report an error: a transfer that
//! ends short with no error anywhere, or any byte that differs, fails.
//!
//! Both stacks' clocks run [`SPEED`] times faster than real time, so that
//! each retransmission timeout (at least 1 s for smoltcp, backing off to
//! 60 s) costs at most 60 ms of real time; the connection and linger
//! timeouts are scaled alike (30 s of real time each), and every loop of
//! the client is bounded by [`REAL_LIMIT`] of real time.
#![cfg(all(feature = "smoltcp", feature = "std"))]

#[path = "util/smoltcp.rs"]
#[allow(unused_imports, unused_macros)]
mod util;

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use socketserver::embedded_io::{Read, ReadReady, Write, WriteReady};
use socketserver::handlers::Echo;
use socketserver::smoltcp::memory::Cable;
use socketserver::smoltcp::phy::{Device, FaultInjector};
use socketserver::smoltcp::wire::IpAddress;
use socketserver::smoltcp::{SmoltcpConnection, SmoltcpError, TcpListener};
use socketserver::{Connection, Server, ShutdownFlag, SyncDispatch};
use util::*;

const SERVER: IpAddress = IpAddress::v4(10, 0, 0, 1);
const CLIENT: IpAddress = IpAddress::v4(10, 0, 0, 2);

/// How much faster than real time both stacks' clocks run.
const SPEED: u64 = 1000;
/// The longest one transfer may take in real time before the test calls it
/// a stall: the connection timeouts (`IO_TIMEOUT` of stack time per
/// operation) report an error long before that.
const REAL_LIMIT: Duration = Duration::from_secs(120);
/// Corrupted frames, in percent, at every drop rate.
const CORRUPT_PCT: u8 = 1;

/// How the client's side of the echo ended.
struct Echoed {
    /// Everything read back, in order.
    back: Vec<u8>,
    /// Bytes of `data` the client managed to send.
    sent: usize,
    /// The error the connection reported, if any.
    error: Option<SmoltcpError>,
    /// Real time from the start to EOF or the error.
    took: Duration,
}

/// Connects, echoes `data` (see [`transfer`]), then keeps the connection
/// and the client's stack running until the server is `done`.
fn echo<D: Device>(stack: &RefCell<MemStack<D>>, data: &[u8], done: &AtomicBool) -> Echoed {
    let start = Instant::now();
    let mut out = Echoed {
        back: Vec::with_capacity(data.len()),
        sent: 0,
        error: None,
        took: Duration::ZERO,
    };
    let timeout = Some(IO_TIMEOUT * SPEED as u32);
    match SmoltcpConnection::connect(stack, tcp_socket(), (SERVER, PORT), timeout) {
        Ok(mut conn) => {
            out.error = transfer(stack, &mut conn, data, &mut out).err();
            out.took = start.elapsed();
            run_until(stack, done);
        }
        Err(err) => out.error = Some(err),
    }
    out
}

/// Sends `data` while reading the echo into `out`, shuts the sending
/// side, and reads until EOF or an error. Panics only when nothing at all
/// happens for [`REAL_LIMIT`].
fn transfer<D: Device>(
    stack: &RefCell<MemStack<D>>,
    conn: &mut SmoltcpConnection<'_, 'static>,
    data: &[u8],
    out: &mut Echoed,
) -> Result<(), SmoltcpError> {
    let start = Instant::now();
    let mut buf = [0; 4096];
    loop {
        assert!(
            start.elapsed() < REAL_LIMIT,
            "stalled with no error: {} sent, {} back after {REAL_LIMIT:?}",
            out.sent,
            out.back.len()
        );
        let mut progress = false;
        if out.sent < data.len() && conn.write_ready()? {
            let end = (out.sent + buf.len()).min(data.len());
            out.sent += conn.write(&data[out.sent..end])?;
            if out.sent == data.len() {
                conn.shutdown_write()?;
            }
            progress = true;
        }
        if conn.read_ready()? {
            match conn.read(&mut buf)? {
                0 => return Ok(()),
                n => out.back.extend_from_slice(&buf[..n]),
            }
            progress = true;
        }
        if !progress {
            stack
                .borrow_mut()
                .poll_wait(Duration::from_millis(1), &ShutdownFlag::new());
        }
    }
}

/// Keeps the client's stack running until the server is `done` with the
/// request, its close included: should the ACK of its FIN be lost, the
/// retransmitted FIN must be answered, or the server's close would wait
/// out its linger time.
fn run_until<D: Device>(stack: &RefCell<MemStack<D>>, done: &AtomicBool) {
    let start = Instant::now();
    while !done.load(Ordering::Acquire) {
        assert!(
            start.elapsed() < REAL_LIMIT,
            "the server was not done {REAL_LIMIT:?} after the client"
        );
        stack
            .borrow_mut()
            .poll_wait(Duration::from_millis(1), &ShutdownFlag::new());
    }
}

/// Serves one echo request, close included, on `net`. Waiting for the
/// client, each operation of the connection and its close are each
/// bounded by `IO_TIMEOUT` of real time (`SPEED` times that of the
/// stack's).
fn serve_one<D: Device>(
    net: &RefCell<MemStack<D>>,
    stop: &ShutdownFlag,
    bound: SyncSender<()>,
) -> Report {
    let timeout = IO_TIMEOUT * SPEED as u32;
    let mut listener = TcpListener::bind(net, PORT, [tcp_socket()], stop).unwrap();
    listener.set_timeout(Some(timeout));
    listener.set_linger(timeout);
    bound.send(()).unwrap();
    let (hooks, served) = (TestHooks::default(), Cell::new(0));
    let factory = || {
        served.set(served.get() + 1);
        Echo
    };
    let mut server = Server::new(
        listener,
        SyncDispatch::<_, _>::with_hooks(factory, &hooks),
        FastClock::new(SPEED),
    );
    server.set_timeout(Some(timeout));
    server.handle_request().unwrap();
    server.server_close();
    drop(server);
    Report {
        served: served.get(),
        rejected: Vec::new(),
        errors: hooks.errors.get(),
        panics: hooks.panics.get(),
        passes: 0,
    }
}

/// The index of the first byte where `back` and `data` differ, if any.
fn first_difference(back: &[u8], data: &[u8]) -> Option<usize> {
    back.iter().zip(data).position(|(a, b)| a != b)
}

/// Echoes [`BULK`] bytes through a server whose device drops `drop_pct`%
/// of the frames and corrupts [`CORRUPT_PCT`]%, and checks that nothing
/// was lost or changed without an error saying so.
fn bulk_through_faults(drop_pct: u8, seed: u32) {
    let data = pattern(BULK);
    let mut cable = Cable::<64>::new();
    let (server_end, client_end) = cable.split();
    let stack = fast_memory_stack(client_end, 2, CLIENT, SPEED);
    let start = Instant::now();
    let done = AtomicBool::new(false);
    let mut echoed = None;
    let report = run_server(
        || echoed = Some(echo(&stack, &data, &done)),
        |stop, bound| {
            let mut faulty = FaultInjector::new(server_end, seed);
            faulty.set_drop_chance(drop_pct);
            faulty.set_corrupt_chance(CORRUPT_PCT);
            let net = fast_memory_stack(faulty, 1, SERVER, SPEED);
            let report = serve_one(&net, stop, bound);
            done.store(true, Ordering::Release);
            report
        },
    );
    let echoed = echoed.expect("the client ran");
    eprintln!(
        "{drop_pct}% drop, {CORRUPT_PCT}% corrupt: {} of {} bytes back in {:?} \
         (server done after {:?}); client error {:?}, server errors {}",
        echoed.back.len(),
        data.len(),
        echoed.took,
        start.elapsed(),
        echoed.error,
        report.errors
    );

    // Whatever arrived is the data, in order: nothing corrupted, reordered
    // or skipped, whether or not the transfer completed.
    assert!(
        echoed.back.len() <= data.len(),
        "more came back than was sent"
    );
    if let Some(i) = first_difference(&echoed.back, &data) {
        panic!(
            "byte {i} came back as {:#04x}, sent {:#04x}",
            echoed.back[i], data[i]
        );
    }
    let complete = echoed.back.len() == data.len();
    if complete {
        assert_eq!(echoed.sent, data.len());
        assert_eq!(echoed.error, None, "a complete transfer reports no error");
        assert_eq!(report.errors, 0, "a complete transfer reports no error");
        assert_eq!(report.served, 1);
    } else {
        assert!(
            echoed.error.is_some() || report.errors > 0,
            "the transfer ended short ({} of {} bytes back, {} sent) and nobody reported an error",
            echoed.back.len(),
            data.len(),
            echoed.sent
        );
    }
}

#[test]
fn bulk_with_corruption_and_no_drops() {
    bulk_through_faults(0, 0x5eed);
}

#[test]
fn bulk_with_5_percent_drops() {
    bulk_through_faults(5, 0x5eed_0005);
}

#[test]
fn bulk_with_20_percent_drops() {
    bulk_through_faults(20, 0x5eed_0020);
}
