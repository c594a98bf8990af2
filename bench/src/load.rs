//! The load generator: client threads over loopback sockets, counting what
//! completes inside a measurement window that follows a warm-up.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::stats::Sample;

/// How long a client waits for any reply before counting an error.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a UDP client waits for a reply before counting it lost.
const DATAGRAM_TIMEOUT: Duration = Duration::from_millis(200);
/// The line every `conn` client sends, and the reply it expects.
pub(crate) const LINE: &[u8] = b" hello world \n";
pub(crate) const UPPER: &[u8] = b"HELLO WORLD";
/// The `rr` line: 64 bytes, newline included.
const RR_LINE: &[u8; 64] = b"the quick brown fox jumps over the lazy dog 0123456789abcdefghi\n";
/// What a `bulk` client writes per call.
const BULK_CHUNK: usize = 64 * 1024;

/// How long and how hard to load a server.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Client threads.
    pub clients: usize,
    /// Running before the window opens (connections made, caches warm).
    pub warm_up: Duration,
    /// The measurement window.
    pub window: Duration,
}

/// What the clients count.
#[derive(Default)]
pub(crate) struct Counters {
    done: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

impl Counters {
    fn snapshot(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }

    /// Whether the window has closed.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Counts one request, done or failed.
    pub(crate) fn count(&self, ok: bool) {
        let counter = if ok { &self.done } else { &self.errors };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` done (bytes, say).
    pub(crate) fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
}

/// Runs `load.clients` threads of `client` and returns the rate of `done`
/// inside the window, divided by `scale`.
pub(crate) fn drive(
    load: Load,
    scale: f64,
    client: impl Fn(&Counters) + Send + Sync + Clone + 'static,
) -> Sample {
    let counters = Arc::new(Counters::default());
    let threads: Vec<_> = (0..load.clients)
        .map(|_| {
            let (counters, client) = (counters.clone(), client.clone());
            thread::spawn(move || client(&counters))
        })
        .collect();
    thread::sleep(load.warm_up);
    let (done0, errors0) = counters.snapshot();
    let start = Instant::now();
    thread::sleep(load.window);
    let (done1, errors1) = counters.snapshot();
    let elapsed = start.elapsed();
    counters.stop.store(true, Ordering::Relaxed);
    for thread in threads {
        if thread.join().is_err() {
            counters.count(false);
        }
    }
    Sample {
        value: (done1 - done0) as f64 / elapsed.as_secs_f64() / scale,
        errors: errors1 - errors0,
    }
}

/// `conn`: connect, send a line, read the reply to EOF, close. Counts
/// connections.
pub fn conn(address: SocketAddr, load: Load) -> Sample {
    drive(load, 1.0, move |counters| conn_client(address, counters))
}

fn conn_client(address: SocketAddr, counters: &Counters) {
    let mut reply = Vec::with_capacity(64);
    while !counters.stopped() {
        reply.clear();
        let ok = one_connection(address, &mut reply).is_ok() && reply == UPPER;
        counters.count(ok);
    }
}

fn one_connection(address: SocketAddr, reply: &mut Vec<u8>) -> io::Result<()> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    stream.write_all(LINE)?;
    stream.read_to_end(reply)?;
    Ok(())
}

/// `conn` clients running in the background until dropped (the load of
/// the `shutdown` workload).
pub struct Background {
    counters: Arc<Counters>,
    threads: Vec<JoinHandle<()>>,
}

impl Background {
    /// Starts `clients` `conn` clients against `address`.
    pub fn conn(address: SocketAddr, clients: usize) -> Background {
        let counters = Arc::new(Counters::default());
        let threads = (0..clients)
            .map(|_| {
                let counters = counters.clone();
                thread::spawn(move || conn_client(address, &counters))
            })
            .collect();
        Background { counters, threads }
    }

    /// Connections completed and failed so far.
    pub fn counts(&self) -> (u64, u64) {
        self.counters.snapshot()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.counters.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// `rr`: one persistent connection per client, a 64-byte line sent and its
/// echo awaited, again and again. Counts round trips.
pub fn rr(address: SocketAddr, load: Load) -> Sample {
    drive(load, 1.0, move |counters| {
        while !counters.stopped() {
            match rr_connection(address, counters) {
                Ok(()) => return,
                // Counted, then a fresh connection.
                Err(_) => counters.count(false),
            }
        }
    })
}

fn rr_connection(address: SocketAddr, counters: &Counters) -> io::Result<()> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut reply = [0; RR_LINE.len()];
    while !counters.stopped() {
        stream.write_all(RR_LINE)?;
        stream.read_exact(&mut reply)?;
        if reply != *RR_LINE {
            return Err(io::Error::other("wrong echo"));
        }
        counters.count(true);
    }
    stream.shutdown(Shutdown::Write)
}

/// `udp`: a datagram sent and its reply awaited; a reply missing after
/// [`DATAGRAM_TIMEOUT`] counts as an error. Counts replies.
pub fn udp(address: SocketAddr, load: Load) -> Sample {
    drive(load, 1.0, move |counters| {
        if let Err(err) = udp_client(address, counters) {
            eprintln!("udp client: {err}");
            counters.count(false);
        }
    })
}

fn udp_client(address: SocketAddr, counters: &Counters) -> io::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(address)?;
    socket.set_read_timeout(Some(DATAGRAM_TIMEOUT))?;
    let mut reply = [0; 64];
    while !counters.stopped() {
        socket.send(LINE)?;
        let ok = match socket.recv(&mut reply) {
            Ok(n) => reply[..n] == *UPPER,
            Err(err) if is_timeout(&err) => false,
            Err(err) => return Err(err),
        };
        counters.count(ok);
    }
    Ok(())
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// `bulk`: one connection, one thread writing as fast as the server takes
/// it and one reading the echo. Returns MB/s (10^6 bytes) echoed.
pub fn bulk(address: SocketAddr, load: Load) -> Sample {
    let load = Load { clients: 1, ..load };
    let stream = match TcpStream::connect(address).and_then(|s| {
        s.set_read_timeout(Some(REPLY_TIMEOUT))?;
        Ok(s)
    }) {
        Ok(stream) => Arc::new(stream),
        Err(err) => {
            eprintln!("bulk: connect: {err}");
            return Sample {
                value: 0.0,
                errors: 1,
            };
        }
    };
    let stop_writing = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stream, stop) = (stream.clone(), stop_writing.clone());
        thread::spawn(move || -> io::Result<()> {
            let chunk = vec![0x5a; BULK_CHUNK];
            while !stop.load(Ordering::Relaxed) {
                (&*stream).write_all(&chunk)?;
            }
            stream.shutdown(Shutdown::Write)
        })
    };
    // The reader is the measured client: `done` counts bytes. Once the
    // window closes it stops the writer and reads the rest, to EOF.
    let sample = drive(load, 1e6, move |counters| {
        let mut buf = vec![0; BULK_CHUNK];
        loop {
            match (&*stream).read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    counters.done.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(_) => {
                    // Unblocks the writer too.
                    stop_writing.store(true, Ordering::Relaxed);
                    let _ = stream.shutdown(Shutdown::Both);
                    return counters.count(false);
                }
            }
            if counters.stopped() {
                stop_writing.store(true, Ordering::Relaxed);
            }
        }
    });
    let wrote = writer.join();
    let errors = u64::from(!matches!(wrote, Ok(Ok(()))));
    Sample {
        errors: sample.errors + errors,
        ..sample
    }
}
