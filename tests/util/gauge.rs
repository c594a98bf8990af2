//! Counting requests in progress across threads and processes.
//!
//! Handlers send `+` when they start and `-` before they return to one Unix
//! datagram socket owned by the test. Its queue keeps the order in which
//! the events happened, also between forked children: a request's `-` is
//! queued before its thread or process ends, hence before the dispatch can
//! start the next request in its place. So the running count computed here
//! is exact, and its peak shows whether a bound held.
//!
//! Windows has no Unix datagram sockets here (and no forking): there the
//! gauge is a UDP socket on the loopback, which keeps the order of the
//! datagrams from one host as well.

use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use socketserver::{Connection, Error, StreamHandler, StreamRequest};

use super::PATIENCE;

#[cfg(unix)]
mod socket {
    use std::os::unix::net::UnixDatagram;
    use std::path::PathBuf;

    use crate::util::TempDir;

    /// Where a gauge is reached: its socket file.
    pub type Addr = PathBuf;

    /// The gauge's socket, in a directory of its own.
    pub fn bind() -> (UnixDatagram, Addr, TempDir) {
        let dir = TempDir::new("gauge");
        let path = dir.path("gauge.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the gauge");
        (socket, path, dir)
    }

    pub fn send(gauge: &Addr, message: &[u8]) -> std::io::Result<()> {
        UnixDatagram::unbound()?.send_to(message, gauge).map(drop)
    }
}

#[cfg(not(unix))]
mod socket {
    use std::net::{SocketAddr, UdpSocket};

    /// Where a gauge is reached: its loopback address (not `Copy`, so
    /// that code cloning the Unix path reads the same here).
    #[derive(Clone)]
    pub struct Addr(SocketAddr);

    pub fn bind() -> (UdpSocket, Addr, ()) {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the gauge");
        let addr = socket.local_addr().expect("the gauge's address");
        (socket, Addr(addr), ())
    }

    pub fn send(gauge: &Addr, message: &[u8]) -> std::io::Result<()> {
        UdpSocket::bind("127.0.0.1:0")?
            .send_to(message, gauge.0)
            .map(drop)
    }
}

pub use socket::Addr as GaugeAddr;

#[derive(Default)]
struct Counts {
    running: usize,
    peak: usize,
    ended: usize,
    notes: Vec<String>,
}

/// The test's end: a thread receives the events as they come, so senders
/// never block on a full queue.
pub struct Gauge {
    path: GaugeAddr,
    _dir: Box<dyn std::any::Any>,
    counts: Arc<(Mutex<Counts>, Condvar)>,
}

impl Gauge {
    pub fn new() -> Self {
        let (socket, path, dir) = socket::bind();
        let counts = Arc::new((Mutex::new(Counts::default()), Condvar::new()));
        let shared = Arc::clone(&counts);
        // Ends when the test drops the gauge: the directory goes, and a
        // final empty datagram from `drop` wakes it.
        thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok(n) = socket.recv(&mut buf) {
                let (counts, changed) = &*shared;
                let mut c = counts.lock().unwrap();
                match &buf[..n] {
                    b"" => return,
                    b"+" => {
                        c.running += 1;
                        c.peak = c.peak.max(c.running);
                    }
                    b"-" => {
                        c.ended += 1;
                        c.running -= 1;
                    }
                    other => c.notes.push(String::from_utf8_lossy(other).into_owned()),
                }
                changed.notify_all();
            }
        });
        Gauge {
            path,
            _dir: Box::new(dir),
            counts,
        }
    }

    /// Where handlers send their events.
    pub fn path(&self) -> GaugeAddr {
        self.path.clone()
    }

    fn until<R>(&self, what: &str, done: impl Fn(&Counts) -> Option<R>) -> R {
        let (counts, changed) = &*self.counts;
        let mut result = None;
        let (c, timeout) = changed
            .wait_timeout_while(counts.lock().unwrap(), PATIENCE, |c| {
                result = done(c);
                result.is_none()
            })
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "timed out waiting for {what}: {} running, {} ended",
            c.running,
            c.ended
        );
        result.unwrap()
    }

    /// Waits until `n` requests run at the same time.
    pub fn wait_running(&self, n: usize) {
        self.until("requests to start", |c| (c.running >= n).then_some(()));
    }

    /// Waits until `n` requests have ended; returns the peak of requests
    /// running at once.
    pub fn wait_ended(&self, n: usize) -> usize {
        self.until("requests to end", |c| (c.ended >= n).then_some(c.peak))
    }

    /// Waits for a note that satisfies `wanted` and returns it.
    pub fn wait_note(&self, wanted: impl Fn(&str) -> bool) -> String {
        self.until("a note", |c| c.notes.iter().find(|n| wanted(n)).cloned())
    }

    /// Waits for `n` notes and returns them all.
    pub fn wait_notes(&self, n: usize) -> Vec<String> {
        self.until("notes", |c| (c.notes.len() >= n).then(|| c.notes.clone()))
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        let _ = report(&self.path, "");
    }
}

/// Sends one message to a gauge; usable from any thread or process.
pub fn report(gauge: &GaugeAddr, message: &str) -> io::Result<()> {
    socket::send(gauge, message.as_bytes())
}

/// Reports `+`, reads one line, replies `{tag}: {line}`, reports `-`.
pub struct Gauged {
    pub gauge: GaugeAddr,
    /// What the reply starts with (a thread name, a pid).
    pub tag: fn() -> String,
}

impl<C: Connection> StreamHandler<C> for Gauged {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let gauge_error = |_| Error::Handler("gauge unreachable");
        report(&self.gauge, "+").map_err(gauge_error)?;
        let reply = {
            let line = req.rfile.read_line()?;
            format!("{}: {}", (self.tag)(), String::from_utf8_lossy(line))
        };
        let written = req.wfile.write_all(reply.as_bytes());
        report(&self.gauge, "-").map_err(gauge_error)?;
        written
    }
}
