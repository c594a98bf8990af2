//! The forking dispatch under the reliability cases: 10,000 connections
//! leave the parent's descriptor count unchanged, a panic in one request
//! of ten is reported once (from the child that served it), and ten times
//! `max_children` clients leave no zombie and never more children than
//! the bound.
//!
//! In a binary of its own, as forking a test harness that runs other tests
//! on other threads is best avoided, and its tests take turns ([`serial`]):
//! they count the process's descriptors and children.
#![cfg(feature = "std")]
#![cfg(not(target_os = "wasi"))]

#[path = "util/reliability.rs"]
mod reliability;
mod util;

use std::fmt::Debug;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

use reliability::{
    ask, ask_tenth_panics, assert_each_panic_reported_once, children, drive, fd_table, new_fds,
    quiet_planned_panics, serial, wait_until, zombie_children, Peak, TenthPanics, POLL,
};
use socketserver::handlers::UpperLine;
use socketserver::{Error, ForkingDispatch, Hooks, ServerBuilder};
use util::gauge::{report, Gauge, Gauged};
use util::{Serving, PATIENCE};

#[test]
fn forking_ten_thousand_connections_leave_no_descriptor() {
    const CONNECTIONS: usize = 10_000;
    let _serial = serial();
    let before = fd_table();
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .request_queue_size(128)
        .build_with(|config| ForkingDispatch::new(|| UpperLine, config))
        .unwrap();
    let addr = *server.local_addr();
    let serving = Serving::start(server, POLL);
    let idle = fd_table();

    drive(CONNECTIONS, 4, |_| assert_eq!(ask(addr, b"fd\n").1, b"FD"));
    // The parent closes its copy as soon as the child is forked.
    wait_until(
        "the parent's descriptors to close",
        || new_fds(&idle),
        Vec::is_empty,
    );

    serving.stop().unwrap();
    assert_eq!(new_fds(&before), [], "descriptors left after close");
    assert_eq!(children(), [], "children left after close");
}

/// Hooks that tell the gauge about each error, from inside the child.
#[derive(Clone)]
struct ReportErrors(PathBuf);

impl<R: ?Sized, A: Debug> Hooks<R, A> for ReportErrors {
    fn handle_error(&self, client_address: &A, error: &Error) {
        let _ = report(&self.0, &format!("error {client_address:?} {error:?}"));
    }
}

impl socketserver::ServerHooks for ReportErrors {}

#[test]
fn forking_one_request_in_ten_panics() {
    let _serial = serial();
    quiet_planned_panics();
    let gauge = Gauge::new();
    let hooks = ReportErrors(gauge.path());
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .request_queue_size(64)
        .build_with(|config| ForkingDispatch::new(|| TenthPanics, config.with_hooks(hooks)))
        .unwrap();
    let addr = *server.local_addr();
    let serving = Serving::start(server, POLL);

    let panicked = ask_tenth_panics(addr);
    // Every child reported before its client read EOF; the gauge keeps
    // the order of what was sent to it, so this note comes after them.
    report(&gauge.path(), "end").unwrap();
    gauge.wait_note(|n| n == "end");
    let reports: Vec<(String, Error)> = gauge
        .wait_notes(0)
        .iter()
        .filter(|note| *note != "end")
        .map(|note| {
            let (client, error) = note
                .strip_prefix("error ")
                .and_then(|n| n.split_once(' '))
                .unwrap_or_else(|| panic!("unexpected note {note:?}"));
            let error = match error {
                "Panicked" => Error::Panicked,
                _ => Error::Handler("another error (see the report)"),
            };
            (client.to_owned(), error)
        })
        .collect();
    assert_each_panic_reported_once(&reports, &panicked);

    assert_eq!(ask(addr, b"7\n").1, b"ok 7", "still serving");
    serving.stop().unwrap();
    assert_eq!(zombie_children(), []);
}

#[test]
fn forking_bound_holds_under_ten_times_as_many_clients() {
    const MAX: usize = 4;
    const CLIENTS: usize = 10 * MAX;
    let _serial = serial();
    let gauge = Gauge::new();
    let path = gauge.path();
    let factory = move || Gauged {
        gauge: path.clone(),
        tag: || std::process::id().to_string(),
    };
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .request_queue_size(128)
        .build_with(|config| ForkingDispatch::new(factory, config).max_children(MAX))
        .unwrap();
    let addr = *server.local_addr();
    let serving = Serving::start(server, POLL);
    let sampler = Peak::start(|| children().len());

    // All connect; MAX children start and wait for their client's line.
    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let client = TcpStream::connect(addr).unwrap();
            client.set_read_timeout(Some(PATIENCE)).unwrap();
            client
        })
        .collect();
    gauge.wait_running(MAX);
    assert_eq!(
        children().len(),
        MAX,
        "children with {MAX} requests running"
    );
    for (i, client) in clients.iter_mut().enumerate() {
        writeln!(client, "client {i}").unwrap();
    }
    let mut served_by = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        let mut reply = String::new();
        client
            .read_to_string(&mut reply)
            .expect("every client answered");
        let (pid, line) = reply.split_once(": ").expect("a pid-tagged reply");
        assert_eq!(line, format!("client {i}\n"));
        served_by.push(pid.parse::<u32>().unwrap());
    }
    assert_eq!(gauge.wait_ended(CLIENTS), MAX, "requests running at once");
    served_by.sort_unstable();
    served_by.dedup();
    assert_eq!(served_by.len(), CLIENTS, "a child per client");

    // The running server reaps what has ended as it goes.
    wait_until("the ended children to be reaped", children, |c| {
        c.is_empty()
    });
    let peak = sampler.finish();
    assert!(
        peak <= MAX,
        "{peak} children at once, at most {MAX} allowed"
    );
    let reply = ask(addr, b"after\n").1;
    assert!(reply.ends_with(b": after\n"), "still serving: {reply:?}");
    serving.stop().unwrap();
    assert_eq!(children(), [], "children left after close");
}
