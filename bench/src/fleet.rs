//! The `scale` client: a few threads, each driving its share of many
//! non-blocking connections on an epoll instance of its own (mio), so that
//! thousands of persistent connections cost the client no thread each.
//!
//! Every connection is opened, sends the 64-byte `rr` line and waits for
//! its echo. An *active* connection then sends again at once, round trip
//! after round trip; an *idle* one stays open and silent after its first
//! echo, as a keep-alive client between requests. A connection whose first
//! echo never comes was never served; one the server closes or resets
//! before its first echo was refused.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::proc;
use crate::stats::percentile;

/// The line every connection sends, and the echo it expects.
const LINE: &[u8; 64] = b"the quick brown fox jumps over the lazy dog 0123456789abcdefghi\n";
/// Client threads (fewer when there are fewer connections).
const THREADS: usize = 2;
/// Connections a thread has opened and not yet seen served or refused:
/// opening more at once only overflows the server's listen backlog, and
/// the kernel then drops connection attempts, to retry them a second later.
const MAX_OPENING: usize = 64;
/// How long a thread's epoll wait lasts before it looks at the phase.
const TICK: Duration = Duration::from_millis(5);

/// How many connections, of which kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Connections in a loop of round trips.
    pub active: usize,
    /// Connections silent after their first round trip.
    pub idle: usize,
}

/// How long each phase may or must last.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// The longest wait for the connections of a phase to be served (or
    /// refused) before going on without them.
    pub setup: Duration,
    /// Round trips before the window opens.
    pub warm_up: Duration,
    /// The measurement window.
    pub window: Duration,
}

/// What one run against one server measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    /// Round trips per second of the active connections, in the window.
    pub rate: f64,
    /// The 99th percentile of their round trips in the window, in ms.
    pub p99_ms: f64,
    /// The server's CPU time (user + system) per round trip in the
    /// window, in microseconds.
    pub cpu_us: f64,
    /// The server's resident set at the end of the window, KiB.
    pub rss_kib: u64,
    /// The growth of the server's resident set while the idle connections
    /// were opened and served once, per idle connection, in KiB; `None`
    /// without idle connections or when not all of them were served.
    pub idle_kib: Option<f64>,
    /// Connections never served: no echo, and not refused either (still
    /// waiting at the end, or never opened because those before them still
    /// waited).
    pub never_served: usize,
    /// Connections the server closed or reset before their first echo.
    pub refused: usize,
    /// Wrong echoes, and connections that failed after being served.
    pub errors: u64,
}

/// The phases every client thread follows, set by the measuring thread.
const OPEN_ACTIVE: u8 = 0;
const OPEN_IDLE: u8 = 1;
const STOP: u8 = 2;

#[derive(Default)]
struct Shared {
    phase: AtomicU8,
    measuring: AtomicBool,
    /// Round trips of active connections.
    done: AtomicU64,
    errors: AtomicU64,
    /// Connections served once or refused, by kind.
    settled_active: AtomicUsize,
    settled_idle: AtomicUsize,
    served_idle: AtomicUsize,
}

/// What one client thread hands back.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<f64>,
    served: usize,
    refused: usize,
}

/// Runs `shape` against the server at `address` (process `pid`).
///
/// # Errors
/// A client thread could not start, or `/proc` could not be read for the
/// server.
pub fn run(address: SocketAddr, pid: u32, shape: Shape, timing: Timing) -> io::Result<Outcome> {
    let shared = Arc::new(Shared::default());
    shared.phase.store(OPEN_ACTIVE, Ordering::Release);
    let total = shape.active + shape.idle;
    let threads = THREADS.min(total).max(1);
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let share = Shape {
                active: split(shape.active, threads, i),
                idle: split(shape.idle, threads, i),
            };
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("scale-client-{i}"))
                .spawn(move || Client::new(address, share, shared).drive())
        })
        .collect::<io::Result<_>>()?;
    let outcome = measure(pid, shape, timing, &shared);
    shared.phase.store(STOP, Ordering::Release);
    let mut tally = Tally::default();
    for handle in handles {
        let t = handle
            .join()
            .map_err(|_| io::Error::other("a scale client thread panicked"))??;
        tally.latencies_us.extend(t.latencies_us);
        tally.served += t.served;
        tally.refused += t.refused;
    }
    let mut outcome = outcome?;
    outcome.p99_ms = percentile(tally.latencies_us, 99.0) / 1000.0;
    outcome.refused = tally.refused;
    outcome.never_served = total - tally.served - tally.refused;
    outcome.errors = shared.errors.load(Ordering::Relaxed);
    Ok(outcome)
}

/// Thread `i`'s share of `n` connections over `threads` threads.
fn split(n: usize, threads: usize, i: usize) -> usize {
    n / threads + usize::from(i < n % threads)
}

/// The measuring thread's part: the phases, `/proc` and the window.
fn measure(pid: u32, shape: Shape, timing: Timing, shared: &Shared) -> io::Result<Outcome> {
    let mut outcome = Outcome::default();
    wait_for(&shared.settled_active, shape.active, timing.setup);
    if shape.idle > 0 {
        let before = proc::rss_kib(pid)?;
        shared.phase.store(OPEN_IDLE, Ordering::Release);
        wait_for(&shared.settled_idle, shape.idle, timing.setup);
        let after = proc::rss_kib(pid)?;
        if shared.served_idle.load(Ordering::Acquire) == shape.idle {
            outcome.idle_kib = Some(after.saturating_sub(before) as f64 / shape.idle as f64);
        }
    }
    thread::sleep(timing.warm_up);
    let (done0, cpu0) = (shared.done.load(Ordering::Relaxed), proc::cpu_seconds(pid)?);
    let start = Instant::now();
    shared.measuring.store(true, Ordering::Relaxed);
    thread::sleep(timing.window);
    shared.measuring.store(false, Ordering::Relaxed);
    let (done1, cpu1) = (shared.done.load(Ordering::Relaxed), proc::cpu_seconds(pid)?);
    let elapsed = start.elapsed().as_secs_f64();
    let trips = done1 - done0;
    outcome.rate = trips as f64 / elapsed;
    outcome.cpu_us = if trips > 0 {
        (cpu1 - cpu0) * 1e6 / trips as f64
    } else {
        f64::NAN
    };
    outcome.rss_kib = proc::rss_kib(pid)?;
    Ok(outcome)
}

/// Waits until `counter` reaches `target`, or `limit` has passed. The
/// client threads count as they go; this looks every millisecond.
fn wait_for(counter: &AtomicUsize, target: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while counter.load(Ordering::Acquire) < target && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    /// Bytes of the line written so far.
    Sending(usize),
    /// Bytes of the echo read so far.
    Receiving(usize),
    /// An idle connection after its first echo.
    Parked,
    Closed,
}

struct Conn {
    stream: TcpStream,
    active: bool,
    state: State,
    sent_at: Instant,
    echoes: u64,
    echo: [u8; 64],
}

/// What handling an event did to the connection's standing.
enum Settled {
    No,
    /// Its first echo arrived.
    Served,
    /// Closed or reset before its first echo.
    Refused,
}

struct Client {
    address: SocketAddr,
    share: Shape,
    shared: Arc<Shared>,
    conns: Vec<Conn>,
    opened: Shape,
    /// Opened and neither served nor refused yet.
    opening: usize,
    tally: Tally,
}

impl Client {
    fn new(address: SocketAddr, share: Shape, shared: Arc<Shared>) -> Self {
        Client {
            address,
            share,
            shared,
            conns: Vec::with_capacity(share.active + share.idle),
            opened: Shape { active: 0, idle: 0 },
            opening: 0,
            tally: Tally::default(),
        }
    }

    fn drive(mut self) -> io::Result<Tally> {
        let mut poll = Poll::new()?;
        let mut events = Events::with_capacity(1024);
        loop {
            let phase = self.shared.phase.load(Ordering::Acquire);
            if phase == STOP {
                break;
            }
            self.open(&poll, phase)?;
            poll.poll(&mut events, Some(TICK))?;
            for event in &events {
                let i = event.token().0;
                match self.step(i) {
                    Settled::No => {}
                    Settled::Served => self.settle(i, true),
                    Settled::Refused => self.settle(i, false),
                }
            }
        }
        Ok(self.tally)
    }

    /// Opens connections while fewer than [`MAX_OPENING`] are opening:
    /// the active ones first, the idle ones once the phase allows.
    fn open(&mut self, poll: &Poll, phase: u8) -> io::Result<()> {
        while self.opening < MAX_OPENING {
            let active = if self.opened.active < self.share.active {
                true
            } else if phase >= OPEN_IDLE && self.opened.idle < self.share.idle {
                false
            } else {
                return Ok(());
            };
            let mut stream = TcpStream::connect(self.address)?;
            let token = Token(self.conns.len());
            poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            )?;
            self.conns.push(Conn {
                stream,
                active,
                state: State::Connecting,
                sent_at: Instant::now(),
                echoes: 0,
                echo: [0; 64],
            });
            if active {
                self.opened.active += 1;
            } else {
                self.opened.idle += 1;
            }
            self.opening += 1;
        }
        Ok(())
    }

    fn settle(&mut self, i: usize, served: bool) {
        self.opening -= 1;
        if served {
            self.tally.served += 1;
        } else {
            self.tally.refused += 1;
        }
        let counter = if self.conns[i].active {
            &self.shared.settled_active
        } else {
            if served {
                self.shared.served_idle.fetch_add(1, Ordering::AcqRel);
            }
            &self.shared.settled_idle
        };
        counter.fetch_add(1, Ordering::AcqRel);
    }

    /// Moves connection `i` on as far as its socket allows (edge-triggered:
    /// until a call would block).
    fn step(&mut self, i: usize) -> Settled {
        let shared = &*self.shared;
        let latencies = &mut self.tally.latencies_us;
        let conn = &mut self.conns[i];
        let mut settled = Settled::No;
        loop {
            match conn.state {
                State::Closed => return settled,
                State::Connecting => match conn.stream.take_error() {
                    Ok(None) => match conn.stream.peer_addr() {
                        Ok(_) => {
                            let _ = conn.stream.set_nodelay(true);
                            conn.sent_at = Instant::now();
                            conn.state = State::Sending(0);
                        }
                        Err(err) if err.kind() == io::ErrorKind::NotConnected => return settled,
                        Err(_) => return conn.fail(shared),
                    },
                    _ => return conn.fail(shared),
                },
                State::Sending(sent) => match conn.stream.write(&LINE[sent..]) {
                    Ok(n) if sent + n == LINE.len() => conn.state = State::Receiving(0),
                    Ok(n) => conn.state = State::Sending(sent + n),
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => return settled,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return conn.fail(shared),
                },
                State::Receiving(got) => match conn.stream.read(&mut conn.echo[got..]) {
                    Ok(0) => return conn.fail(shared),
                    Ok(n) if got + n < LINE.len() => conn.state = State::Receiving(got + n),
                    Ok(_) => {
                        if conn.echo != *LINE {
                            shared.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        if conn.echoes == 0 {
                            settled = Settled::Served;
                        }
                        conn.echoes += 1;
                        if conn.active {
                            shared.done.fetch_add(1, Ordering::Relaxed);
                            if shared.measuring.load(Ordering::Relaxed) {
                                latencies.push(conn.sent_at.elapsed().as_secs_f64() * 1e6);
                            }
                            conn.sent_at = Instant::now();
                            conn.state = State::Sending(0);
                        } else {
                            conn.state = State::Parked;
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => return settled,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return conn.fail(shared),
                },
                State::Parked => {
                    let mut byte = [0];
                    match conn.stream.read(&mut byte) {
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => return settled,
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                        // Closed, or spoke unasked: either is wrong.
                        _ => return conn.fail(shared),
                    }
                }
            }
        }
    }
}

impl Conn {
    /// The connection ended: refused if it was never served, otherwise an
    /// error.
    fn fail(&mut self, shared: &Shared) -> Settled {
        self.state = State::Closed;
        if self.echoes == 0 {
            Settled::Refused
        } else {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            Settled::No
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for (n, threads) in [(8, 2), (5001, 2), (1, 2), (7, 3)] {
            let sum: usize = (0..threads).map(|i| split(n, threads, i)).sum();
            assert_eq!(sum, n);
        }
    }
}
