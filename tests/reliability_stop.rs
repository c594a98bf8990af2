//! A client cannot keep a server from stopping: the server examples, run
//! as processes with 50 connected clients that say nothing, exit 0 within
//! the drain timeout after `SIGTERM`; a request that completes within the
//! drain is still answered; and a second `SIGTERM` during the drain ends
//! the process at once.
//!
//! The examples keep the default drain timeout
//! ([`ShutdownHandle::DEFAULT_DRAIN_TIMEOUT`], 3 s). Linux only (the
//! tests read `/proc`).
#![cfg(all(feature = "std", target_os = "linux"))]

#[path = "util/stop.rs"]
mod stop;
mod util;

use std::time::Duration;

use socketserver::os::DEFAULT_MAX_CHILDREN;
use socketserver::ShutdownHandle;
use stop::{assert_exited_0, assert_killed_by_sigterm, exchange, IdleClients, Server};

const CLIENTS: usize = 50;
const DRAIN: Duration = ShutdownHandle::DEFAULT_DRAIN_TIMEOUT;
/// The clients a forking server holds: one per child, and one more taken
/// while it waits for a child to end.
const FORKED: usize = DEFAULT_MAX_CHILDREN + 1;
/// What exiting may take beyond the drain (cutting, reaping, closing).
const MARGIN: Duration = Duration::from_secs(1);

/// Starts `name`, connects [`CLIENTS`] idle clients, and waits until the
/// server has accepted `accepted` of them (a synchronous server takes one).
fn with_idle_clients(name: &str, accepted: usize) -> (Server, IdleClients) {
    let server = Server::start(name, &[]);
    let clients = IdleClients::connect(server.address, CLIENTS, accepted);
    (server, clients)
}

/// Idle clients hold the server no longer than the drain: it exits 0 after
/// it (not before: they were given the time), and lets go of them all.
fn exits_after_the_drain(name: &str, accepted: usize) {
    let (server, clients) = with_idle_clients(name, accepted);
    let sent = server.sigterm();
    let (status, exited) = server.exit();
    let took = exited - sent;
    eprintln!("{name}: exit {status} {took:?} after SIGTERM with {CLIENTS} idle clients");
    assert_exited_0(status, name);
    assert!(took >= DRAIN, "{name} cut its clients after {took:?}");
    assert!(took <= DRAIN + MARGIN, "{name} took {took:?} to exit");
    clients.wait_released();
}

/// A request sent after `SIGTERM`, during the drain, is answered; the
/// server still exits 0 within the drain.
fn answers_during_the_drain(name: &str, accepted: usize, reply_ok: impl Fn(&str) -> bool) {
    let (server, mut clients) = with_idle_clients(name, accepted);
    let mut client = clients.take_accepted();
    let sent = server.sigterm();
    let reply = exchange(&mut client, "in flight").expect("the reply");
    assert!(reply_ok(&reply), "{name} replied {reply:?}");
    let (status, exited) = server.exit();
    let took = exited - sent;
    eprintln!("{name}: exit {status} {took:?} after SIGTERM, one request answered");
    assert_exited_0(status, name);
    assert!(took <= DRAIN + MARGIN, "{name} took {took:?} to exit");
}

/// A second `SIGTERM` while the server drains ends it at once, by the
/// signal; nothing of it keeps any client.
fn a_second_sigterm_ends_it(name: &str, accepted: usize) {
    let (server, clients) = with_idle_clients(name, accepted);
    server.sigterm();
    let second = server.sigterm();
    let (status, exited) = server.exit();
    let took = exited - second;
    eprintln!("{name}: killed {took:?} after the second SIGTERM");
    assert_killed_by_sigterm(status, name);
    assert!(took < MARGIN, "{name} took {took:?} to die");
    clients.wait_released();
}

#[test]
fn tcp_server_exits_within_the_drain_with_idle_clients() {
    exits_after_the_drain("tcp_server", 1);
}

#[test]
fn threaded_server_exits_within_the_drain_with_idle_clients() {
    exits_after_the_drain("threaded_server", CLIENTS);
}

#[test]
fn forking_server_exits_within_the_drain_with_idle_clients() {
    exits_after_the_drain("forking_server", FORKED);
}

#[test]
fn tcp_server_answers_a_request_during_the_drain() {
    answers_during_the_drain("tcp_server", 1, |reply| reply == "IN FLIGHT");
}

#[test]
fn threaded_server_answers_a_request_during_the_drain() {
    answers_during_the_drain("threaded_server", CLIENTS, |reply| {
        reply.starts_with("Thread-") && reply.ends_with(": in flight")
    });
}

#[test]
fn forking_server_answers_a_request_during_the_drain() {
    answers_during_the_drain("forking_server", FORKED, |reply| {
        reply.ends_with(": in flight")
    });
}

#[test]
fn tcp_server_dies_at_a_second_sigterm_during_the_drain() {
    a_second_sigterm_ends_it("tcp_server", 1);
}

#[test]
fn threaded_server_dies_at_a_second_sigterm_during_the_drain() {
    a_second_sigterm_ends_it("threaded_server", CLIENTS);
}

#[test]
fn forking_server_dies_at_a_second_sigterm_during_the_drain() {
    a_second_sigterm_ends_it("forking_server", FORKED);
}
