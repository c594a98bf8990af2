//! What clients cannot make an in-process server use up: descriptors
//! (10,000 connections per dispatch; the table running full), memory (a
//! 1 MiB line; 100,000 requests), threads (ten times as many clients as
//! the bound), CPU (accepting while out of descriptors).
//!
//! The tests measure the whole process, so they take turns ([`serial`]);
//! those about memory and a full descriptor table put the server in a
//! child process of its own (this binary, rerun for one test). The
//! forking dispatch has its own binary.
#![cfg(feature = "std")]
#![cfg(not(target_os = "wasi"))]

#[path = "util/accept_log.rs"]
mod accept_log;
#[path = "util/reliability.rs"]
mod reliability;
mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use reliability::{
    ask, commands, cpu_ticks, drive, fd_table, new_fds, peak_rss_kib, reset_peak_rss, rss_kib,
    serial, serve_tcp, threads_named, wait_until, InProcess, Peak, Rerun, POLL, TICK,
};
use socketserver::handlers::{EchoLines, UpperLine, UpperOnce};
use socketserver::{BufferSizes, Error, PoolDispatch, ServerBuilder, ThreadingDispatch};
use util::gauge::{Gauge, Gauged};
use util::{Recorder, Serving, PATIENCE};

/// Connections per dispatch in the descriptor tests.
const CONNECTIONS: usize = 10_000;

/// 10,000 connections leave no descriptor open that was not open with the
/// server idle, and closing the server none that was not open before.
fn connections_leave_no_descriptor(dispatch: InProcess) {
    let _serial = serial();
    let before = fd_table();
    let hooks = Recorder::default();
    let builder = ServerBuilder::tcp("127.0.0.1:0").request_queue_size(128);
    let (addr, serving) = serve_tcp(dispatch, builder, || UpperLine, hooks.clone());
    let idle = fd_table();

    drive(CONNECTIONS, 4, |_| assert_eq!(ask(addr, b"fd\n").1, b"FD"));
    // The server closes its end just after the client read EOF.
    wait_until(
        "the server's descriptors to close",
        || new_fds(&idle),
        Vec::is_empty,
    );
    assert!(hooks.errors().is_empty(), "{:?}", hooks.errors());

    assert_eq!(ask(addr, b"still\n").1, b"STILL");
    serving.stop().unwrap();
    assert_eq!(new_fds(&before), [], "descriptors left after close");
}

#[test]
fn inline_ten_thousand_connections_leave_no_descriptor() {
    connections_leave_no_descriptor(InProcess::Inline);
}

#[test]
fn threading_ten_thousand_connections_leave_no_descriptor() {
    connections_leave_no_descriptor(InProcess::Threading);
}

#[test]
fn pool_ten_thousand_connections_leave_no_descriptor() {
    connections_leave_no_descriptor(InProcess::Pool);
}

/// The `rfile` capacity of the overlong-line test.
const LINE_CAPACITY: usize = 4096;
const OVERLONG_CHILD: &str = "SOCKETSERVER_RELIABILITY_OVERLONG_CHILD";
const OVERLONG_TEST: &str = "a_one_mib_line_is_refused_within_the_line_buffer";

/// Sends `line` (no newline in it), expecting the server to close.
fn send_overlong(addr: SocketAddr, line: &[u8]) {
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    // The server stops reading at its capacity and closes with data unread,
    // which resets the connection: the write may fail, or fit in the
    // kernel's buffers first.
    let _ = client.write_all(line);
    let mut rest = Vec::new();
    match client.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{} bytes echoed", rest.len()),
        Err(err) => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset),
    }
}

/// The server runs in a fresh child process, whose resident memory peak
/// shows what the line cost it: memory freed by earlier tests in this
/// process could otherwise hold a whole line without the peak moving.
#[test]
fn a_one_mib_line_is_refused_within_the_line_buffer() {
    if std::env::var_os(OVERLONG_CHILD).is_some() {
        return overlong_child();
    }
    let _serial = serial();
    let line = vec![b'x'; 1 << 20];
    for dispatch in ["inline", "threading"] {
        let mut child = Rerun::start(OVERLONG_TEST, OVERLONG_CHILD, None, &[]);
        child.send(dispatch);
        let addr: SocketAddr = child.expect("addr ").parse().unwrap();
        // Every code path but the overlong line's, before measuring.
        assert_eq!(ask(addr, b"warm\n").1, b"warm\n");
        child.send("reset");
        let base: u64 = child.expect("base ").parse().unwrap();
        send_overlong(addr, &line);
        child.send("peak");
        let peak: u64 = child.expect("peak ").parse().unwrap();
        assert_eq!(ask(addr, b"fine\n").1, b"fine\n", "still serving");
        child.send("stop");
        child.finish();

        let growth = peak.saturating_sub(base);
        eprintln!("{dispatch}: a 1 MiB line raised the resident peak by {growth} KiB");
        assert!(
            growth < 512,
            "{dispatch}: resident memory peaked {growth} KiB above its level for a \
             1 MiB line into a {LINE_CAPACITY}-byte buffer"
        );
    }
}

fn overlong_child() {
    let mut commands = commands();
    let hooks = Recorder::default();
    let sizes = BufferSizes::new(LINE_CAPACITY, LINE_CAPACITY);
    let builder = ServerBuilder::tcp("127.0.0.1:0").buffer_sizes(sizes);
    let dispatch = match commands.next().as_deref() {
        Some("inline") => InProcess::Inline,
        Some("threading") => InProcess::Threading,
        other => panic!("unknown dispatch {other:?}"),
    };
    let (addr, serving) = serve_tcp(dispatch, builder, || EchoLines, hooks.clone());
    println!("addr {addr}");
    for command in commands {
        match command.as_str() {
            "reset" => {
                reset_peak_rss();
                println!("base {}", rss_kib());
            }
            "peak" => {
                let errors = hooks.wait_errors(1);
                let peak = peak_rss_kib();
                assert!(
                    matches!(
                        errors[..],
                        [(
                            _,
                            Error::LineTooLong {
                                capacity: LINE_CAPACITY
                            }
                        )]
                    ),
                    "{errors:?}"
                );
                println!("peak {peak}");
            }
            "stop" => {
                serving.stop().unwrap();
                assert_eq!(hooks.errors().len(), 1, "{:?}", hooks.errors());
                return;
            }
            other => panic!("unknown command {other:?}"),
        }
    }
    panic!("stdin closed without a stop");
}

/// The overload tests' clients: ten times the bound.
const OVERLOAD: usize = 10;

/// Connects `n` clients (all wait in the backlog or in a handler reading
/// their line), checks that `running` threads named `prefix` serve them,
/// then sends every line and checks every reply. Returns the peak of
/// threads named `prefix` meanwhile.
fn overload(
    addr: SocketAddr,
    n: usize,
    gauge: &Gauge,
    prefix: &'static str,
    running: usize,
) -> usize {
    let mut clients: Vec<TcpStream> = (0..n)
        .map(|_| {
            let client = TcpStream::connect(addr).unwrap();
            client.set_read_timeout(Some(PATIENCE)).unwrap();
            client
        })
        .collect();
    gauge.wait_running(running);
    assert_eq!(
        threads_named(prefix),
        running,
        "threads with {running} requests running"
    );
    let sampler = Peak::start(move || threads_named(prefix));
    for (i, client) in clients.iter_mut().enumerate() {
        writeln!(client, "client {i}").unwrap();
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let mut reply = String::new();
        client
            .read_to_string(&mut reply)
            .expect("every client answered");
        assert!(reply.starts_with(prefix), "{reply:?}");
        assert!(reply.ends_with(&format!(": client {i}\n")), "{reply:?}");
    }
    assert_eq!(gauge.wait_ended(n), running, "handlers running at once");
    sampler.finish()
}

fn gauged(gauge: &Gauge) -> impl Fn() -> Gauged + Send + Sync + 'static {
    let path = gauge.path();
    move || Gauged {
        gauge: path.clone(),
        tag: || thread::current().name().unwrap_or("?").to_owned(),
    }
}

#[test]
fn threading_bound_holds_under_ten_times_as_many_clients() {
    const MAX: usize = 4;
    const NAME: &str = "rel-req";
    let _serial = serial();
    let gauge = Gauge::new();
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .request_queue_size(128)
        .build_with(|config| {
            ThreadingDispatch::new(gauged(&gauge), config)
                .max_threads(Some(MAX))
                .thread_name(NAME)
        })
        .unwrap();
    let addr = *server.local_addr();
    let serving = Serving::start(server, POLL);

    let peak = overload(addr, OVERLOAD * MAX, &gauge, NAME, MAX);
    // A request thread that gave its place back may still be winding down
    // in the OS when the next one starts: allow one such per place.
    eprintln!("{peak} request threads at the peak, {MAX} handlers");
    assert!(peak <= 2 * MAX, "{peak} request threads at once");
    serving.stop().unwrap();
    wait_until(
        "the request threads to end",
        || threads_named(NAME),
        |&n| n == 0,
    );
}

#[test]
fn pool_bound_holds_under_ten_times_as_many_clients() {
    const WORKERS: usize = 2;
    const NAME: &str = "rel-pool";
    let _serial = serial();
    let gauge = Gauge::new();
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .request_queue_size(128)
        .build_with(|config| {
            PoolDispatch::new(gauged(&gauge), config)
                .workers(WORKERS)
                .queue_capacity(WORKERS)
                .thread_name(NAME)
        })
        .unwrap();
    let addr = *server.local_addr();
    let serving = Serving::start(server, POLL);

    let peak = overload(addr, OVERLOAD * WORKERS, &gauge, NAME, WORKERS);
    assert_eq!(peak, WORKERS, "workers at the peak");
    serving.stop().unwrap();
    assert_eq!(threads_named(NAME), 0, "the workers ended");
}

/// Requests of the soak test, and after how many its memory is the
/// reference.
const SOAK: usize = 100_000;
const SOAK_REFERENCE: usize = 10_000;
const SOAK_CHILD: &str = "SOCKETSERVER_RELIABILITY_SOAK_CHILD";
const SOAK_TEST: &str = "soak_a_hundred_thousand_requests_through_the_threading_server";
const SOAK_THREADS: &str = "rel-soak";

/// The server runs in a child process of its own, so that its resident
/// memory is all that is measured; the clients run here.
///
/// Glibc gives threads up to eight malloc arenas per core, creating one
/// whenever every existing one is in use at that instant: with a thread
/// per request, their number (each up to 132 KiB resident) creeps up for
/// as long as the process runs, whatever the server does. The child is
/// held to two, so that what grows here grows with requests.
#[test]
fn soak_a_hundred_thousand_requests_through_the_threading_server() {
    if std::env::var_os(SOAK_CHILD).is_some() {
        return soak_child();
    }
    let _serial = serial();
    let arenas = [
        ("MALLOC_ARENA_MAX", "2"),
        ("GLIBC_TUNABLES", "glibc.malloc.arena_max=2"),
    ];
    let mut child = Rerun::start(SOAK_TEST, SOAK_CHILD, None, &arenas);
    let addr: SocketAddr = child.expect("addr ").parse().unwrap();
    let client = |i: usize| {
        let (_, reply) = ask(addr, format!("soak {i}\n").as_bytes());
        assert_eq!(reply, format!("SOAK {i}").as_bytes());
    };

    // Cached thread stacks grow with the threads at once, not with the
    // requests: the reference phase has twice as many clients as the rest.
    let start = Instant::now();
    drive(SOAK_REFERENCE, 8, client);
    child.send("rss");
    let reference: u64 = child.expect("rss ").parse().unwrap();
    drive(SOAK - SOAK_REFERENCE, 4, |i| client(SOAK_REFERENCE + i));
    child.send("rss");
    let end: u64 = child.expect("rss ").parse().unwrap();
    child.send("stop");
    child.finish();
    eprintln!(
        "soak: {SOAK} requests in {:?}; the server's resident memory {reference} KiB \
         after {SOAK_REFERENCE}, {end} KiB at the end",
        start.elapsed()
    );
    assert!(
        end * 10 <= reference * 11,
        "resident memory grew from {reference} KiB to {end} KiB"
    );
}

fn soak_child() {
    let hooks = Recorder::default();
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .request_queue_size(128)
        .build_with(|config| {
            ThreadingDispatch::new(|| UpperLine, config.with_hooks(hooks.clone()))
                .thread_name(SOAK_THREADS)
        })
        .unwrap();
    println!("addr {}", server.local_addr());
    let serving = Serving::start(server, POLL);
    for command in commands() {
        match command.as_str() {
            "rss" => {
                // Once the last request threads are gone.
                let running = || threads_named(SOAK_THREADS);
                wait_until("the request threads to end", running, |&n| n == 0);
                println!("rss {}", rss_kib());
            }
            "stop" => {
                serving.stop().unwrap();
                assert!(hooks.errors().is_empty(), "{:?}", hooks.errors());
                return;
            }
            other => panic!("unknown command {other:?}"),
        }
    }
    panic!("stdin closed without a stop");
}

const EMFILE_CHILD: &str = "SOCKETSERVER_RELIABILITY_EMFILE_CHILD";
const EMFILE_TEST: &str = "running_out_of_descriptors_neither_spins_nor_stops_serving";
/// The clients that come while the descriptor table is full.
const EMFILE_CLIENTS: usize = 200;
/// How long the server's CPU time is measured with clients pending.
const EMFILE_WINDOW: Duration = Duration::from_millis(1500);

/// Reruns this test in a child whose descriptor limit is 64; the child
/// serves, fills its table, and obeys commands on stdin. The clients, in
/// this process, find the server's backlog, not its descriptors.
#[test]
fn running_out_of_descriptors_neither_spins_nor_stops_serving() {
    if std::env::var_os(EMFILE_CHILD).is_some() {
        return emfile_child();
    }
    let _serial = serial();
    let mut child = Rerun::start(EMFILE_TEST, EMFILE_CHILD, Some(64), &[]);
    let addr: SocketAddr = child.expect("addr ").parse().unwrap();
    child.expect("full");

    let mut clients: Vec<TcpStream> = (0..EMFILE_CLIENTS)
        .map(|i| {
            let mut client = TcpStream::connect(addr).expect("room in the backlog");
            client.set_read_timeout(Some(PATIENCE)).unwrap();
            write!(client, "client {i}").unwrap();
            client
        })
        .collect();
    let cpu_before = cpu_ticks(child.id());
    let start = Instant::now();
    thread::sleep(EMFILE_WINDOW); // the period measured, not a wait for a state
    let cpu = TICK * u32::try_from(cpu_ticks(child.id()) - cpu_before).unwrap();
    let wall = start.elapsed();

    child.send("free");
    child.expect("freed");
    for (i, client) in clients.iter_mut().enumerate() {
        let mut reply = String::new();
        client
            .read_to_string(&mut reply)
            .expect("served once descriptors are free");
        assert_eq!(reply, format!("CLIENT {i}"));
    }
    let mut fresh = TcpStream::connect(addr).unwrap();
    fresh.set_read_timeout(Some(PATIENCE)).unwrap();
    fresh.write_all(b"fresh").unwrap();
    let mut reply = String::new();
    fresh.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "FRESH");

    child.send("stop");
    let failures: usize = child.expect("accept failures ").parse().unwrap();
    child.finish();
    eprintln!("out of descriptors: {failures} failed accepts, {cpu:?} of CPU in {wall:?}");
    assert!(failures > 0, "the server never ran out of descriptors");
    assert!(
        cpu * 10 <= wall,
        "the server used {cpu:?} of CPU in {wall:?} with {EMFILE_CLIENTS} clients \
         it could not accept: it spins"
    );
}

fn emfile_child() {
    accept_log::install();
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .request_queue_size(EMFILE_CLIENTS as i32 + 56)
        .build(|| UpperOnce)
        .unwrap();
    println!("addr {}", server.local_addr());
    let serving = Serving::start(server, POLL);

    let mut hogs = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => hogs.push(file),
            Err(err) if err.raw_os_error() == Some(24) => break, // EMFILE
            Err(err) => panic!("open: {err}"),
        }
        assert!(hogs.len() < 64, "the descriptor limit was not lowered");
    }
    println!("full");

    for command in commands() {
        match command.as_str() {
            "free" => {
                hogs.clear();
                println!("freed");
            }
            "stop" => {
                serving.stop().unwrap();
                println!("accept failures {}", accept_log::failures());
                return;
            }
            other => panic!("unknown command {other:?}"),
        }
    }
    panic!("stdin closed without a stop");
}
