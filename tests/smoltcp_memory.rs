//! The smoltcp backend on an in-memory cable, no root needed: the cases of
//! the TAP harness against a client on a second smoltcp stack, and the
//! lifecycle details (the same under smoltcp's FaultInjector is
//! `smoltcp_faults.rs`).
#![cfg(all(feature = "smoltcp", feature = "std"))]

#[path = "util/smoltcp.rs"]
mod util;

use std::cell::Cell;
use std::time::{Duration, Instant};

use socketserver::embedded_io::Write;
use socketserver::handlers::UpperOnce;
use socketserver::smoltcp::memory::Cable;
use socketserver::smoltcp::wire::IpAddress;
use socketserver::smoltcp::{SmoltcpConnection, SmoltcpError, StdClock, TcpListener};
use socketserver::{Server, SyncDispatch};
use util::*;

const SERVER: IpAddress = IpAddress::v4(10, 0, 0, 1);
const CLIENT: IpAddress = IpAddress::v4(10, 0, 0, 2);

/// One test per case, each on a fresh cable.
macro_rules! on_cable {
    ($($case:ident),* $(,)?) => {$(
        #[test]
        fn $case() {
            let mut cable = Cable::<64>::new();
            let (server_end, client_end) = cable.split();
            let stack = memory_stack(client_end, 2, CLIENT);
            let client = SmolClient { stack: &stack, server: SERVER, ip: CLIENT };
            cases::$case(&client, ServeOn(move || memory_stack(server_end, 1, SERVER), IO_TIMEOUT));
        }
    )*};
}

util::all_cases!(on_cable);

/// With all `N` sockets of the backlog taken, the next client is refused
/// at once; the queued ones are still served.
#[test]
fn full_backlog_refuses() {
    let mut cable = Cable::<64>::new();
    let (server_end, client_end) = cable.split();
    let stack = memory_stack(client_end, 2, CLIENT);
    let client = SmolClient {
        stack: &stack,
        server: SERVER,
        ip: CLIENT,
    };
    let served = Cell::new(0);
    run_server(
        || {
            let mut first =
                SmoltcpConnection::connect(&stack, tcp_socket(), (SERVER, PORT), Some(IO_TIMEOUT))
                    .unwrap();
            let mut second =
                SmoltcpConnection::connect(&stack, tcp_socket(), (SERVER, PORT), Some(IO_TIMEOUT))
                    .unwrap();
            let third =
                SmoltcpConnection::connect(&stack, tcp_socket(), (SERVER, PORT), Some(IO_TIMEOUT));
            assert_eq!(third.unwrap_err(), SmoltcpError::Refused);
            first.write_all(b"first\n").unwrap();
            second.write_all(b"second\n").unwrap();
            assert_eq!(read_to_end(&mut first), b"FIRST");
            drop(first);
            assert_eq!(read_to_end(&mut second), b"SECOND");
            drop(second);
            // A socket of the backlog is free again.
            assert_eq!(client.exchange(b"third\n"), b"THIRD");
            served.set(3);
        },
        |stop, bound| {
            let stack = memory_stack(server_end, 1, SERVER);
            let listener =
                TcpListener::bind(&stack, PORT, [tcp_socket(), tcp_socket()], stop).unwrap();
            bound.send(()).unwrap();
            let mut server = Server::new(listener, SyncDispatch::<_>::new(|| UpperOnce), StdClock);
            server.serve_forever(POLL_INTERVAL).unwrap();
            Report::default()
        },
    );
    assert_eq!(served.get(), 3);
}

/// A client that reads its reply to EOF but keeps its socket open does not
/// hold up the next client: the server waits only for the acknowledgement
/// of its FIN, not for the client's own FIN, which would take the whole
/// linger time here (an hour).
#[test]
fn a_client_that_never_closes_does_not_hold_up_the_next() {
    let mut cable = Cable::<64>::new();
    let (server_end, client_end) = cable.split();
    let stack = memory_stack(client_end, 2, CLIENT);
    let client = SmolClient {
        stack: &stack,
        server: SERVER,
        ip: CLIENT,
    };
    let took = Cell::new(Duration::MAX);
    run_server(
        || {
            let mut lingering =
                SmoltcpConnection::connect(&stack, tcp_socket(), (SERVER, PORT), Some(IO_TIMEOUT))
                    .unwrap();
            lingering.write_all(b"first\n").unwrap();
            assert_eq!(read_to_end(&mut lingering), b"FIRST");
            let start = Instant::now();
            assert_eq!(client.exchange(b"second\n"), b"SECOND");
            took.set(start.elapsed());
            drop(lingering);
        },
        |stop, bound| {
            let stack = memory_stack(server_end, 1, SERVER);
            let mut listener =
                TcpListener::bind(&stack, PORT, [tcp_socket(), tcp_socket()], stop).unwrap();
            listener.set_linger(Duration::from_secs(3600));
            bound.send(()).unwrap();
            let mut server = Server::new(listener, SyncDispatch::<_>::new(|| UpperOnce), StdClock);
            server.serve_forever(POLL_INTERVAL).unwrap();
            Report::default()
        },
    );
    // The exchange itself is bounded by IO_TIMEOUT (30 s); without the
    // early return it would not finish before the hour's linger.
    assert!(
        took.get() < IO_TIMEOUT,
        "the second client waited {:?}",
        took.get()
    );
}

/// `handle_request` with a timeout and no client: `handle_timeout` runs
/// once the timeout has passed, not before.
#[test]
fn handle_request_times_out() {
    let mut cable = Cable::<64>::new();
    let (server_end, _client_end) = cable.split();
    let stack = memory_stack(server_end, 1, SERVER);
    let stop = socketserver::ShutdownFlag::new();
    let listener = TcpListener::bind(&stack, PORT, [tcp_socket()], &stop).unwrap();
    let hooks = TestHooks::default();
    let mut server = Server::new(
        listener,
        SyncDispatch::<_, _>::with_hooks(|| UpperOnce, &hooks),
        StdClock,
    );
    server.set_timeout(Some(Duration::from_millis(200)));
    let start = Instant::now();
    server.handle_request().unwrap();
    let waited = start.elapsed();
    assert_eq!(hooks.timeouts.get(), 1);
    assert!(
        waited >= Duration::from_millis(200),
        "returned after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "returned after {waited:?}");
}

/// A shutdown requested from another thread ends `serve_forever` at once,
/// although its poll interval is an hour; a closed server fails to serve.
#[test]
fn shutdown_is_prompt() {
    let mut cable = Cable::<64>::new();
    let (server_end, _client_end) = cable.split();
    let start = Instant::now();
    let report = ServeOn(move || memory_stack(server_end, 1, SERVER), IO_TIMEOUT).stream(
        UpperOnce,
        None,
        || {},
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(report.served, 0);

    let mut cable = Cable::<64>::new();
    let (server_end, _client_end) = cable.split();
    let stack = memory_stack(server_end, 1, SERVER);
    let stop = socketserver::ShutdownFlag::new();
    let listener = TcpListener::bind(&stack, PORT, [tcp_socket()], &stop).unwrap();
    let mut server = Server::new(listener, SyncDispatch::<_>::new(|| UpperOnce), StdClock);
    server.server_close();
    server.server_close();
    assert_eq!(
        server.serve_forever(POLL_INTERVAL),
        Err(SmoltcpError::Closed)
    );
    // Closing gave the sockets back.
    TcpListener::bind(&stack, PORT, [tcp_socket(), tcp_socket()], &stop).unwrap();
}

/// The `smoltcp_loopback` example serves both handlers to its in-memory
/// client in one thread and prints the exchange.
#[test]
fn loopback_example() {
    let child = std::process::Command::new(example("smoltcp_loopback"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the smoltcp_loopback example");
    let output = wait_bounded(child, IO_TIMEOUT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.starts_with("listening on 10.0.0.1:9999"), "{stdout}");
    assert!(
        stdout.contains("(TCP): \"HELLO WORLD\", then EOF"),
        "{stdout}"
    );
    assert!(stdout.contains("(UDP): \"HELLO WORLD\""), "{stdout}");
}
