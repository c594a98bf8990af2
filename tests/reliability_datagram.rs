//! Datagrams that misbehave, against each in-process dispatch: longer than
//! `max_packet_size`, empty, and 10,000 in a burst. Every test ends with a
//! well-behaved datagram answered.
//!
//! UDP may drop a burst in the kernel; the UDP test counts every datagram
//! as received by the server or dropped by the kernel (the socket's own
//! drop counter, and the loopback backlog's), so that only a loss inside
//! the server fails it. Unix datagram sockets drop nothing: their burst
//! test accounts for every datagram exactly.
#![cfg(feature = "std")]
#![cfg(not(target_os = "wasi"))]

#[path = "util/reliability.rs"]
mod reliability;
mod util;

use std::collections::HashSet;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use reliability::{serve, wait_until, InProcess};
use socketserver::embedded_io::{ErrorKind, Write as _};
use socketserver::{DatagramHandler, DatagramRequest, Error, Hooks, ServerBuilder, UnixAddr};
use util::{TempDir, PATIENCE};

/// The receive buffer (`max_packet_size`) of the servers here.
const MAX_PACKET: usize = 512;
/// Datagrams in a burst.
const BURST: usize = 10_000;

/// Replies `{len} {truncated} {head}`, `head` being the packet's first 32
/// bytes; counts the datagrams it handled.
#[derive(Clone, Default)]
struct Describe(Arc<AtomicUsize>);

impl Describe {
    fn handled(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl<S: socketserver::ReplySocket> DatagramHandler<S> for Describe {
    fn handle(&mut self, req: &mut DatagramRequest<'_, S>) -> Result<(), Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let packet = req.rfile.packet();
        write!(req.wfile, "{} {} ", packet.len(), req.truncated)?;
        req.wfile.write_all(&packet[..packet.len().min(32)])
    }
}

fn described(len: usize, truncated: bool, head: &[u8]) -> Vec<u8> {
    let mut reply = format!("{len} {truncated} ").into_bytes();
    reply.extend_from_slice(&head[..head.len().min(32)]);
    reply
}

/// Hooks that count the datagrams the server took from its socket
/// (`verify_request` sees each) and keep the errors.
#[derive(Clone, Default)]
struct Tally(Arc<(AtomicUsize, Mutex<Vec<Error>>)>);

impl Tally {
    fn received(&self) -> usize {
        self.0 .0.load(Ordering::SeqCst)
    }

    fn errors(&self) -> Vec<Error> {
        self.0 .1.lock().unwrap().clone()
    }
}

impl<A> Hooks<[u8], A> for Tally {
    fn verify_request(&self, _packet: &[u8], _client_address: &A) -> bool {
        self.0 .0.fetch_add(1, Ordering::SeqCst);
        true
    }

    fn handle_error(&self, _client_address: &A, error: &Error) {
        self.0 .1.lock().unwrap().push(error.clone());
    }
}

impl socketserver::ServerHooks for Tally {}

/// A client of either family: sends to the server, receives replies.
trait Client: Send + Sync + 'static {
    fn send(&self, data: &[u8]);
    /// The next reply, or `None` after a short wait for nothing.
    fn recv(&self) -> Option<Vec<u8>>;
}

struct Udp(UdpSocket, SocketAddr);

impl Client for Udp {
    fn send(&self, data: &[u8]) {
        self.0.send_to(data, self.1).expect("send a datagram");
    }

    fn recv(&self) -> Option<Vec<u8>> {
        let mut buf = [0u8; 1024];
        let (n, from) = self.0.recv_from(&mut buf).ok()?;
        assert_eq!(from, self.1, "a reply from the server's address");
        Some(buf[..n].to_vec())
    }
}

struct Unix(UnixDatagram, std::path::PathBuf);

impl Client for Unix {
    fn send(&self, data: &[u8]) {
        self.0.send_to(data, &self.1).expect("send a datagram");
    }

    fn recv(&self) -> Option<Vec<u8>> {
        let mut buf = [0u8; 1024];
        let n = self.0.recv(&mut buf).ok()?;
        Some(buf[..n].to_vec())
    }
}

fn udp_client(server: SocketAddr) -> Udp {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    Udp(socket, server)
}

fn unix_client(dir: &TempDir, server: &UnixAddr) -> Unix {
    let socket = UnixDatagram::bind(dir.path("client.sock")).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let path = server.as_pathname().expect("a socket file").to_owned();
    Unix(socket, path)
}

/// One request and its reply, waiting at most [`PATIENCE`].
fn exchange(client: &impl Client, data: &[u8]) -> Vec<u8> {
    client.send(data);
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(reply) = client.recv() {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "no reply to {} bytes",
            data.len()
        );
    }
}

/// A 60,000-byte datagram reaches the handler cut to `max_packet_size` and
/// flagged; one of exactly that size is not flagged; an empty one is a
/// request like any other.
fn oversized_and_empty(client: &impl Client, tally: &Tally) {
    let big = vec![b'b'; 60_000];
    assert_eq!(exchange(client, &big), described(MAX_PACKET, true, &big));
    let exact = vec![b'e'; MAX_PACKET];
    assert_eq!(
        exchange(client, &exact),
        described(MAX_PACKET, false, &exact)
    );
    assert_eq!(exchange(client, b""), described(0, false, b""));
    assert_eq!(exchange(client, b"hello"), described(5, false, b"hello"));
    assert!(tally.errors().is_empty(), "{:?}", tally.errors());
    assert_eq!(tally.received(), 4);
}

fn udp_oversized_and_empty(dispatch: InProcess) {
    let tally = Tally::default();
    let handler = Describe::default();
    let builder = ServerBuilder::udp("127.0.0.1:0").max_packet_size(MAX_PACKET);
    let (addr, serving) = serve(dispatch, builder, move || handler.clone(), tally.clone());
    oversized_and_empty(&udp_client(addr), &tally);
    serving.stop().unwrap();
}

#[test]
fn inline_udp_oversized_and_empty_datagrams() {
    udp_oversized_and_empty(InProcess::Inline);
}

#[test]
fn threading_udp_oversized_and_empty_datagrams() {
    udp_oversized_and_empty(InProcess::Threading);
}

#[test]
fn pool_udp_oversized_and_empty_datagrams() {
    udp_oversized_and_empty(InProcess::Pool);
}

#[test]
fn unix_oversized_and_empty_datagrams() {
    let dir = TempDir::new("rel-udgram");
    let tally = Tally::default();
    let handler = Describe::default();
    let builder = ServerBuilder::unix_datagram(dir.path("server.sock")).max_packet_size(MAX_PACKET);
    let (addr, serving) = serve(
        InProcess::Inline,
        builder,
        move || handler.clone(),
        tally.clone(),
    );
    oversized_and_empty(&unix_client(&dir, &addr), &tally);
    serving.stop().unwrap();
}

/// Collects replies on a thread of its own until stopped.
struct Replies {
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<Vec<u8>>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Replies {
    fn collect(client: Arc<impl Client>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, got) = (Arc::clone(&stop), Arc::clone(&got));
            thread::spawn(move || {
                let deadline = Instant::now() + 6 * PATIENCE;
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    if let Some(reply) = client.recv() {
                        got.lock().unwrap().push(reply);
                    }
                }
            })
        };
        Replies {
            stop,
            got,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// Stops collecting; checks that each reply answers a different
    /// datagram of the burst, and returns how many came.
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        let got = std::mem::take(&mut *self.got.lock().unwrap());
        let mut seen = HashSet::new();
        for reply in &got {
            let text = String::from_utf8_lossy(reply);
            let (len, rest) = text.split_once(" false ").expect("a described reply");
            let seq: usize = rest.parse().expect("a sequence number");
            assert!(seq < BURST, "{text}");
            assert_eq!(len.parse::<usize>().unwrap(), rest.len(), "{text}");
            assert!(seen.insert(seq), "datagram {seq} answered twice");
        }
        got.len()
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A field of this socket's line in `/proc/net/udp`: the queued bytes
/// (`rx_queue`) or the datagrams dropped for want of room (`drops`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct UdpSocketStats {
    rx_queue: usize,
    drops: usize,
}

fn udp_stats(addr: SocketAddr) -> UdpSocketStats {
    let table = fs::read_to_string("/proc/net/udp").expect("/proc/net/udp");
    let local = format!("0100007F:{:04X}", addr.port());
    let fields: Vec<&str> = table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.get(1) == Some(&local.as_str()))
        .unwrap_or_else(|| panic!("{addr} not in /proc/net/udp"));
    let rx_queue = fields[4].split(':').nth(1).expect("tx:rx queues");
    UdpSocketStats {
        rx_queue: usize::from_str_radix(rx_queue, 16).unwrap(),
        drops: fields.last().unwrap().parse().unwrap(),
    }
}

/// Packets every CPU's input backlog dropped (loopback traffic passes it).
fn backlog_drops() -> usize {
    let stats = fs::read_to_string("/proc/net/softnet_stat").expect("/proc/net/softnet_stat");
    stats
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .map(|dropped| usize::from_str_radix(dropped, 16).unwrap())
        .sum()
}

/// 10,000 datagrams as fast as the client can send them: every one the
/// server takes is handled and answered, every one it does not was
/// dropped by the kernel, and every reply that does not arrive was too.
fn udp_burst(dispatch: InProcess) {
    let tally = Tally::default();
    let handler = Describe::default();
    let counted = handler.clone();
    let builder = ServerBuilder::udp("127.0.0.1:0");
    let (addr, serving) = serve(dispatch, builder, move || handler.clone(), tally.clone());
    let client = Arc::new(udp_client(addr));
    let client_addr = client.0.local_addr().unwrap();
    let backlog_before = backlog_drops();
    let replies = Replies::collect(Arc::clone(&client));

    for seq in 0..BURST {
        client.send(seq.to_string().as_bytes());
    }
    let kernel = || backlog_drops() - backlog_before;
    let (received, server) = wait_until(
        "every datagram taken by the server or dropped by the kernel",
        || (tally.received(), udp_stats(addr)),
        |(received, server)| server.rx_queue == 0 && received + server.drops + kernel() >= BURST,
    );
    wait_until(
        "every datagram taken to be handled",
        || counted.handled(),
        |&h| h >= received,
    );
    let errors = tally.errors();
    assert!(
        errors.is_empty(),
        "replies the server failed to send: {errors:?}"
    );
    let (arrived, lost) = wait_until(
        "every reply received or dropped by the kernel",
        || (replies.count(), udp_stats(client_addr).drops),
        |(arrived, lost)| arrived + lost + kernel() >= received,
    );
    assert_eq!(counted.handled(), received, "a datagram handled twice");
    assert_eq!(replies.finish(), arrived);
    eprintln!(
        "{dispatch:?}: {BURST} sent, {received} taken by the server, {} dropped by its \
         socket, {arrived} replies, {lost} dropped by the client's socket, {} by the \
         loopback backlog",
        server.drops,
        kernel()
    );
    assert!(received > 0, "the server took nothing");

    assert_eq!(exchange(&*client, b"after"), described(5, false, b"after"));
    serving.stop().unwrap();
}

#[test]
fn inline_udp_burst_of_ten_thousand() {
    udp_burst(InProcess::Inline);
}

#[test]
fn threading_udp_burst_of_ten_thousand() {
    udp_burst(InProcess::Threading);
}

#[test]
fn pool_udp_burst_of_ten_thousand() {
    udp_burst(InProcess::Pool);
}

/// The burst over a Unix datagram socket, where the client blocks instead
/// of losing a datagram, and the server's reply to a client whose queue
/// is full fails instead of blocking: every datagram is handled, and every
/// reply arrives or its failure reaches `handle_error`.
fn unix_burst(dispatch: InProcess) {
    let dir = TempDir::new("rel-uburst");
    let tally = Tally::default();
    let handler = Describe::default();
    let counted = handler.clone();
    let builder = ServerBuilder::unix_datagram(dir.path("server.sock"));
    let (addr, serving) = serve(dispatch, builder, move || handler.clone(), tally.clone());
    let client = Arc::new(unix_client(&dir, &addr));
    let replies = Replies::collect(Arc::clone(&client));

    for seq in 0..BURST {
        client.send(seq.to_string().as_bytes());
    }
    wait_until(
        "every datagram handled",
        || counted.handled(),
        |&h| h >= BURST,
    );
    let (arrived, failed) = wait_until(
        "every reply received or reported",
        || (replies.count(), tally.errors().len()),
        |(arrived, failed)| arrived + failed >= BURST,
    );
    assert_eq!(tally.received(), BURST);
    assert_eq!(counted.handled(), BURST);
    assert_eq!(arrived + failed, BURST);
    let errors = tally.errors();
    // EAGAIN, which embedded-io, having no `WouldBlock`, calls `Other`.
    assert!(
        errors.iter().all(|e| e.kind() == ErrorKind::Other),
        "{errors:?}"
    );
    assert_eq!(replies.finish(), arrived);
    eprintln!("{dispatch:?}: {BURST} handled, {arrived} replies, {failed} to a full queue");

    assert_eq!(exchange(&*client, b"after"), described(5, false, b"after"));
    serving.stop().unwrap();
}

#[test]
fn inline_unix_datagram_burst_of_ten_thousand() {
    unix_burst(InProcess::Inline);
}

#[test]
fn threading_unix_datagram_burst_of_ten_thousand() {
    unix_burst(InProcess::Threading);
}
