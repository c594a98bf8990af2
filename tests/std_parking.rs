//! The parking dispatch: message handlers on persistent connections, parked
//! in the poller between messages and served by a fixed set of workers.
#![cfg(not(target_os = "wasi"))]

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use socketserver::handlers::EchoLines;
use socketserver::os::TcpTransport;
use socketserver::{
    Connection, Error, Full, MessageHandler, MessageLoop, Next, ParkingDispatch, ServerBuilder,
    SocketServer, StreamOptions, StreamRequest, ThreadingDispatch,
};
use util::{Recorder, Serving, PATIENCE};

const POLL: Duration = Duration::from_millis(50);

fn parking<F>(
    workers: usize,
    hooks: Recorder,
    factory: F,
    tune: impl FnOnce(ParkingDispatch<F, Recorder>) -> ParkingDispatch<F, Recorder>,
) -> (
    SocketServer<TcpTransport, ParkingDispatch<F, Recorder>>,
    SocketAddr,
)
where
    F: socketserver::HandlerFactory + Send + Sync + 'static,
    F::Handler: MessageHandler<socketserver::os::TcpConnection> + Send + 'static,
{
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .request_queue_size(1024)
        .hooks(hooks)
        .build_with(|config| tune(ParkingDispatch::new(factory, config).workers(workers)))
        .expect("bind");
    let address = *server.local_addr();
    (server, address)
}

fn connect(address: SocketAddr) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    BufReader::new(stream)
}

fn round_trip(client: &mut BufReader<TcpStream>, line: &str) -> String {
    client.get_mut().write_all(line.as_bytes()).unwrap();
    let mut reply = String::new();
    client.read_line(&mut reply).expect("reply");
    reply
}

/// Reads until the server closes the connection; what it sent before.
fn read_to_eof(client: &mut BufReader<TcpStream>) -> String {
    let mut rest = String::new();
    client
        .read_to_string(&mut rest)
        .expect("EOF within PATIENCE");
    rest
}

fn threads_of_this_process() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn many_interleaved_connections_are_served_by_two_workers_without_a_thread_each() {
    let (server, address) = parking(2, Recorder::default(), || EchoLines, |d| d);
    let serving = Serving::start(server, POLL);
    let mut clients: Vec<_> = (0..300).map(|_| connect(address)).collect();
    let mut threads = Vec::new();
    for round in 0..3 {
        threads.push(threads_of_this_process());
        for (i, client) in clients.iter_mut().enumerate() {
            client
                .get_mut()
                .write_all(format!("{i} {round}\n").as_bytes())
                .unwrap();
        }
        for (i, client) in clients.iter_mut().enumerate() {
            let mut reply = String::new();
            client.read_line(&mut reply).unwrap();
            assert_eq!(reply, format!("{i} {round}\n"));
        }
    }
    // No thread per connection (other tests run beside this one, so the
    // process's count moves by a few, not by hundreds).
    let (least, most) = (threads.iter().min(), threads.iter().max());
    assert!(
        most.unwrap() - least.unwrap() < 30,
        "threads per round: {threads:?}"
    );
    serving.stop().unwrap();
}

#[test]
fn a_line_sent_in_pieces_is_one_message_and_pipelined_lines_each_get_a_turn() {
    let (server, address) = parking(1, Recorder::default(), || EchoLines, |d| d);
    let _serving = Serving::start(server, POLL);
    let mut client = connect(address);
    client.get_mut().write_all(b"hel").unwrap();
    thread::sleep(Duration::from_millis(50)); // let the piece arrive alone
    assert_eq!(round_trip(&mut client, "lo\n"), "hello\n");
    client.get_mut().write_all(b"a\nb\nc\n").unwrap();
    for expected in ["a\n", "b\n", "c\n"] {
        let mut reply = String::new();
        client.read_line(&mut reply).unwrap();
        assert_eq!(reply, expected);
    }
}

/// Records the order in which messages were served: (client tag, line).
#[derive(Clone, Default)]
struct Order(Arc<Mutex<Vec<String>>>);

struct Logged(Order);

impl<C: Connection> MessageHandler<C> for Logged {
    fn handle_message(&mut self, req: &mut StreamRequest<'_, C>) -> Result<Next, Error> {
        let line = req.rfile.read_line()?;
        self.0
             .0
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(line).into_owned());
        // A little work per message, so that a long pipeline takes a while.
        let until = Instant::now() + Duration::from_micros(200);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        req.wfile.write_all(line)?;
        Ok(Next::KeepOpen)
    }
}

#[test]
fn a_connection_with_a_message_waiting_is_served_before_a_busy_one_gets_another_turn() {
    let order = Order::default();
    let log = order.clone();
    let (server, address) = parking(1, Recorder::default(), move || Logged(log.clone()), |d| d);
    let _serving = Serving::start(server, POLL);
    let mut busy = connect(address);
    let mut other = connect(address);
    // Both parked before the flood.
    assert_eq!(round_trip(&mut busy, "busy-start\n"), "busy-start\n");
    assert_eq!(round_trip(&mut other, "other-start\n"), "other-start\n");
    let flood: String = (0..2000).map(|i| format!("busy-{i}\n")).collect();
    busy.get_mut().write_all(flood.as_bytes()).unwrap();
    assert_eq!(round_trip(&mut other, "other\n"), "other\n");
    let served = order.0.lock().unwrap().clone();
    let at = served.iter().position(|l| l == "other\n").unwrap();
    let busy_before = served[..at]
        .iter()
        .filter(|l| l.starts_with("busy-"))
        .count();
    // 2000 turns take at least 0.4 s; the other line waited a few at most.
    assert!(
        busy_before < 2000,
        "the other connection waited for the whole pipeline ({busy_before} busy messages first)"
    );
    let mut rest = 0;
    let mut line = String::new();
    while rest < 2000 {
        line.clear();
        busy.read_line(&mut line).unwrap();
        rest += 1;
    }
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let (server, address) = parking(
        1,
        Recorder::default(),
        || EchoLines,
        |d| d.idle_timeout(Some(Duration::from_millis(200))),
    );
    let serving = Serving::start(server, POLL);
    let mut client = connect(address);
    // Before the message: the server's idle time starts after its reply.
    let started = Instant::now();
    assert_eq!(round_trip(&mut client, "one\n"), "one\n");
    assert_eq!(read_to_eof(&mut client), "");
    assert!(started.elapsed() >= Duration::from_millis(200));
    serving.stop().unwrap();
}

/// An echo whose messages must arrive whole within 300 ms.
#[derive(Default)]
struct Hurried;

impl<C: Connection> MessageHandler<C> for Hurried {
    fn options(&self) -> StreamOptions {
        StreamOptions::new().request_timeout(Some(Duration::from_millis(300)))
    }

    fn handle_message(&mut self, req: &mut StreamRequest<'_, C>) -> Result<Next, Error> {
        EchoLines.handle_message(req)
    }
}

#[test]
fn a_message_that_does_not_arrive_whole_in_time_is_cut_and_reported() {
    let hooks = Recorder::default();
    let (server, address) = parking(1, hooks.clone(), || Hurried, |d| d);
    let _serving = Serving::start(server, POLL);
    let mut slow = connect(address);
    slow.get_mut().write_all(b"never ends").unwrap();
    // Meanwhile others are served at once: the slow one holds no worker.
    let mut quick = connect(address);
    assert_eq!(round_trip(&mut quick, "quick\n"), "quick\n");
    assert_eq!(read_to_eof(&mut slow), "");
    let errors = hooks.wait_errors(1);
    assert_eq!(
        errors[0].1.kind(),
        socketserver::embedded_io::ErrorKind::TimedOut
    );
}

#[test]
fn at_the_bound_the_longest_idle_connection_gives_way() {
    let hooks = Recorder::default();
    let (server, address) = parking(
        1,
        hooks.clone(),
        || EchoLines,
        |d| d.max_connections(2).when_full(Full::ShedIdlest),
    );
    let _serving = Serving::start(server, POLL);
    let mut oldest = connect(address);
    assert_eq!(round_trip(&mut oldest, "a\n"), "a\n");
    let mut newer = connect(address);
    assert_eq!(round_trip(&mut newer, "b\n"), "b\n");
    let mut third = connect(address);
    assert_eq!(round_trip(&mut third, "c\n"), "c\n");
    assert_eq!(read_to_eof(&mut oldest), "");
    assert_eq!(round_trip(&mut newer, "still\n"), "still\n");
    let errors = hooks.wait_errors(1);
    assert!(
        errors[0].1.to_string().contains("longest idle"),
        "{:?}",
        errors[0]
    );
}

#[test]
fn at_the_bound_a_refusing_dispatch_closes_the_new_connection() {
    let hooks = Recorder::default();
    let (server, address) = parking(
        1,
        hooks.clone(),
        || EchoLines,
        |d| d.max_connections(1).when_full(Full::Refuse),
    );
    let _serving = Serving::start(server, POLL);
    let mut first = connect(address);
    assert_eq!(round_trip(&mut first, "a\n"), "a\n");
    let mut second = connect(address);
    assert_eq!(read_to_eof(&mut second), "");
    assert_eq!(round_trip(&mut first, "b\n"), "b\n");
    let errors = hooks.wait_errors(1);
    assert!(
        errors[0].1.to_string().contains("refused"),
        "{:?}",
        errors[0]
    );
}

/// Counts setups and finishes, echoes, closes on "bye", fails on "fail".
#[derive(Clone, Default)]
struct Lifecycle {
    setups: Arc<AtomicUsize>,
    finishes: Arc<AtomicUsize>,
}

impl<C: Connection> MessageHandler<C> for Lifecycle {
    fn setup(&mut self, _req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        self.setups.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn handle_message(&mut self, req: &mut StreamRequest<'_, C>) -> Result<Next, Error> {
        let line = req.rfile.read_line()?;
        match &*line {
            b"bye\n" => {
                req.wfile.write_all(b"bye\n")?;
                Ok(Next::Close)
            }
            b"fail\n" => Err(Error::Handler("asked to fail")),
            _ => {
                req.wfile.write_all(line)?;
                Ok(Next::KeepOpen)
            }
        }
    }

    fn finish(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        self.finishes.fetch_add(1, Ordering::SeqCst);
        req.wfile.write_all(b"finished\n")
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn setup_once_finish_once_whether_the_handler_closes_or_fails() {
    let hooks = Recorder::default();
    let handler = Lifecycle::default();
    let factory_handler = handler.clone();
    let (server, address) = parking(2, hooks.clone(), move || factory_handler.clone(), |d| d);
    let _serving = Serving::start(server, POLL);

    let mut closing = connect(address);
    assert_eq!(round_trip(&mut closing, "x\n"), "x\n");
    assert_eq!(round_trip(&mut closing, "bye\n"), "bye\n");
    assert_eq!(read_to_eof(&mut closing), "finished\n");

    let mut failing = connect(address);
    assert_eq!(round_trip(&mut failing, "y\n"), "y\n");
    failing.get_mut().write_all(b"fail\n").unwrap();
    assert_eq!(read_to_eof(&mut failing), "finished\n");
    let errors = hooks.wait_errors(1);
    assert!(matches!(errors[0].1, Error::Handler("asked to fail")));

    // The peer closing between messages ends the session quietly.
    let mut leaving = connect(address);
    assert_eq!(round_trip(&mut leaving, "z\n"), "z\n");
    drop(leaving);
    wait_until("three finishes", || {
        handler.finishes.load(Ordering::SeqCst) == 3
    });
    assert_eq!(handler.setups.load(Ordering::SeqCst), 3);
    assert_eq!(hooks.errors().len(), 1);
}

#[test]
fn the_same_handler_serves_a_threading_server_through_message_loop() {
    let handler = Lifecycle::default();
    let factory_handler = handler.clone();
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .build_with(|config| {
            ThreadingDispatch::new(move || MessageLoop(factory_handler.clone()), config)
        })
        .unwrap();
    let address = *server.local_addr();
    let _serving = Serving::start(server, POLL);
    let mut client = connect(address);
    assert_eq!(round_trip(&mut client, "one\n"), "one\n");
    assert_eq!(round_trip(&mut client, "two\n"), "two\n");
    assert_eq!(round_trip(&mut client, "bye\n"), "bye\n");
    assert_eq!(read_to_eof(&mut client), "finished\n");
    assert_eq!(handler.setups.load(Ordering::SeqCst), 1);
}

/// Replies after a pause, to be caught by a shutdown mid-message.
#[derive(Default)]
struct Slow;

impl<C: Connection> MessageHandler<C> for Slow {
    fn handle_message(&mut self, req: &mut StreamRequest<'_, C>) -> Result<Next, Error> {
        let line = req.rfile.read_line()?;
        thread::sleep(Duration::from_millis(300));
        req.wfile.write_all(line)?;
        Ok(Next::KeepOpen)
    }
}

#[test]
fn closing_lets_the_message_in_progress_finish_and_closes_parked_connections() {
    let (server, address) = parking(1, Recorder::default(), || Slow, |d| d);
    let serving = Serving::start(server, POLL);
    let mut idle = connect(address);
    assert_eq!(round_trip(&mut idle, "first\n"), "first\n");
    let mut busy = connect(address);
    busy.get_mut().write_all(b"in flight\n").unwrap();
    thread::sleep(Duration::from_millis(100)); // the worker is in the handler
    let stopping = thread::spawn(move || serving.stop());
    let mut reply = String::new();
    busy.read_line(&mut reply).unwrap();
    assert_eq!(reply, "in flight\n");
    assert_eq!(read_to_eof(&mut idle), "");
    stopping.join().unwrap().unwrap();
}

/// Sends `SIZE` bytes for each "big" line, a piece per turn when the
/// connection can take it: a slow reader holds no worker.
#[derive(Default)]
struct Big {
    left: usize,
}

const SIZE: usize = 64 << 20;

impl<C: Connection> MessageHandler<C> for Big {
    fn handle_message(&mut self, req: &mut StreamRequest<'_, C>) -> Result<Next, Error> {
        let line = req.rfile.read_line()?;
        if line != b"big\n" {
            req.wfile.write_all(line)?;
            return Ok(Next::KeepOpen);
        }
        self.left = SIZE;
        self.resume(req)
    }

    fn resume(&mut self, req: &mut StreamRequest<'_, C>) -> Result<Next, Error> {
        let piece = [b'x'; 16 << 10];
        while self.left > 0 {
            let n = req.wfile.write_now(&piece[..piece.len().min(self.left)])?;
            if n == 0 {
                return Ok(Next::Resume);
            }
            self.left -= n;
        }
        Ok(Next::KeepOpen)
    }
}

#[test]
fn a_slow_reader_of_a_long_reply_holds_no_worker() {
    let (server, address) = parking(1, Recorder::default(), Big::default, |d| d);
    let _serving = Serving::start(server, POLL);
    let mut slow = connect(address);
    slow.get_mut().write_all(b"big\n").unwrap();
    // The one worker is not stuck writing to `slow`, which reads nothing yet.
    let mut other = connect(address);
    for i in 0..20 {
        let line = format!("{i}\n");
        assert_eq!(round_trip(&mut other, &line), line);
    }
    let mut got = 0;
    let mut chunk = vec![0u8; 64 << 10];
    while got < SIZE {
        let n = slow.read(&mut chunk).unwrap();
        assert!(n > 0, "EOF after {got} bytes");
        assert!(chunk[..n].iter().all(|&b| b == b'x'));
        got += n;
    }
    assert_eq!(round_trip(&mut slow, "after\n"), "after\n");
}

/// "slow" lines take a second to answer; others are echoed at once.
#[derive(Default)]
struct SometimesSlow;

impl<C: Connection> MessageHandler<C> for SometimesSlow {
    fn handle_message(&mut self, req: &mut StreamRequest<'_, C>) -> Result<Next, Error> {
        let line = req.rfile.read_line()?;
        if line == b"slow\n" {
            thread::sleep(Duration::from_secs(1));
        }
        req.wfile.write_all(line)?;
        Ok(Next::KeepOpen)
    }
}

#[test]
fn ready_connections_do_not_wait_behind_a_long_turn_while_a_worker_is_free() {
    let (server, address) = parking(2, Recorder::default(), || SometimesSlow, |d| d);
    let _serving = Serving::start(server, POLL);
    let mut clients: Vec<_> = (0..9).map(|_| connect(address)).collect();
    for client in &mut clients {
        assert_eq!(round_trip(client, "hi\n"), "hi\n"); // all parked
    }
    // Both workers busy, the second from 300 ms after the first.
    clients[0].get_mut().write_all(b"slow\n").unwrap();
    thread::sleep(Duration::from_millis(300));
    clients[1].get_mut().write_all(b"slow\n").unwrap();
    thread::sleep(Duration::from_millis(300));
    // Ready together while both are busy: a long turn first, then quick ones.
    clients[2].get_mut().write_all(b"slow\n").unwrap();
    for client in &mut clients[3..] {
        client.get_mut().write_all(b"quick\n").unwrap();
    }
    // The first worker free takes all of them from the poller and serves
    // the long one; the second, free 300 ms later, serves the quick ones
    // meanwhile instead of finding nothing to do.
    for client in &mut clients[3..] {
        let mut reply = String::new();
        client.read_line(&mut reply).unwrap();
        assert_eq!(reply, "quick\n");
    }
    let mut waiting = [0u8; 1];
    clients[2].get_mut().set_nonblocking(true).unwrap();
    let long = clients[2].get_mut().read(&mut waiting);
    assert!(
        long.is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "the quick replies waited for the long turn"
    );
}

/// A small xorshift generator: the splits are random, the test's seed fixed
/// per client, so a failure can be replayed.
struct Splits(u64);

impl Splits {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Keeps each line it is sent, and answers a line that starts with `!`
/// with every line kept so far (then forgets them): one reply per burst,
/// which Nagle's algorithm does not hold back behind the client's delayed
/// acknowledgement.
#[derive(Default)]
struct Collect(Vec<u8>);

impl<C: Connection> MessageHandler<C> for Collect {
    fn handle_message(&mut self, req: &mut StreamRequest<'_, C>) -> Result<Next, Error> {
        let line = req.rfile.read_line()?;
        self.0.extend_from_slice(line);
        if line.starts_with(b"!") {
            req.wfile.write_all(&self.0)?;
            self.0.clear();
        }
        Ok(Next::KeepOpen)
    }
}

/// Lost wake-ups: bytes that arrive while a worker serves the connection
/// (their event finds it busy), or that are already there when a turn
/// serves a message buffered earlier, must still get a turn, since no new
/// event comes for them. Many clients send bursts of lines (one message
/// each) cut at random points, a piece ending mid-line or holding several
/// lines, and wait for the burst's answer before the next: a lost wake-up
/// at the end of a burst leaves its client waiting for good, which the
/// read timeout turns into a failure. Bounded in count (16 clients x 1000
/// bursts) and, through the timeout, in time.
#[test]
fn bursts_of_lines_cut_at_random_points_are_never_left_unserved() {
    const CLIENTS: u64 = 16;
    const BURSTS: usize = 1000;
    let (server, address) = parking(2, Recorder::default(), Collect::default, |d| d);
    let serving = Serving::start(server, POLL);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            thread::spawn(move || {
                let mut client = connect(address);
                client.get_ref().set_nodelay(true).unwrap();
                let mut splits = Splits(0x9E37_79B9_7F4A_7C15 ^ (c + 1));
                let mut answer = vec![0; 512];
                for burst in 0..BURSTS {
                    let lines = 1 + splits.below(12);
                    let mut sent: String =
                        (1..lines).map(|i| format!("{c}:{burst}:{i}\n")).collect();
                    sent.push_str(&format!("!{c}:{burst}\n"));
                    let mut rest = sent.as_bytes();
                    while !rest.is_empty() {
                        let n = (1 + splits.below(24)).min(rest.len());
                        client.get_mut().write_all(&rest[..n]).unwrap();
                        rest = &rest[n..];
                        if splits.below(4) == 0 {
                            thread::yield_now();
                        }
                    }
                    let answer = &mut answer[..sent.len()];
                    let read = client.read_exact(answer);
                    assert!(
                        read.is_ok(),
                        "client {c}, burst {burst}: no whole answer within PATIENCE: {read:?}"
                    );
                    assert_eq!(
                        String::from_utf8_lossy(answer),
                        sent,
                        "client {c}, burst {burst}"
                    );
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    serving.stop().unwrap();
}

/// The end of the stream behind a last message: a client that sends a line
/// and closes at once (its line and its FIN may come as one event) gets
/// its echo and the server's close, not a connection held until an idle
/// timeout (here none). The read that returns the line may stop short of
/// the end, which only the next read reports.
#[test]
fn a_line_and_the_end_of_the_stream_together_are_both_seen() {
    const CLIENTS: usize = 200;
    let (server, address) = parking(
        1,
        Recorder::default(),
        || EchoLines,
        |d| d.idle_timeout(None),
    );
    let _serving = Serving::start(server, POLL);
    let mut clients: Vec<_> = (0..CLIENTS).map(|_| connect(address)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client
            .get_mut()
            .write_all(format!("{i}\n").as_bytes())
            .unwrap();
        client
            .get_ref()
            .shutdown(std::net::Shutdown::Write)
            .unwrap();
    }
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(read_to_eof(client), format!("{i}\n"), "client {i}");
    }
}
