//! The drain of a forking server: closing waits for the children at most
//! the drain timeout, then sends them `SIGTERM`, and a second later
//! `SIGKILL`; all are reaped. A server waiting at `max_children` still
//! stops.
//!
//! A test binary of its own, as forking servers get (their children copy
//! every descriptor of the test process).
#![cfg(all(feature = "std", target_os = "linux"))]

#[path = "util/stop.rs"]
mod stop;
mod util;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::SIGTERM;
use socketserver::handlers::UpperLine;
use socketserver::os::{TcpConnection, TcpTransport};
use socketserver::{
    Error, ForkingDispatch, HandlerFactory, ServerBuilder, SocketServer, StreamHandler,
    StreamRequest,
};
use stop::{assert_cut, serve_with_idle_clients, shutdown, wait_closed};

const BOUND: Duration = Duration::from_millis(300);
/// How long after `SIGTERM` the children get `SIGKILL`.
const GRACE: Duration = Duration::from_secs(1);
const MARGIN: Duration = Duration::from_millis(700);

fn forking<F>(factory: F, max_children: usize) -> SocketServer<TcpTransport, ForkingDispatch<F>>
where
    F: HandlerFactory,
    F::Handler: StreamHandler<TcpConnection>,
{
    ServerBuilder::tcp("127.0.0.1:0")
        .drain_timeout(Some(BOUND))
        .build_with(|config| ForkingDispatch::new(factory, config).max_children(max_children))
        .unwrap()
}

/// Children waiting on idle clients get `SIGTERM` once the drain has
/// passed; closing reaps them, and their clients see the end.
#[test]
fn closing_stops_the_children_after_the_drain() {
    let (stop, closed, mut clients) = serve_with_idle_clients(forking(|| UpperLine, 8), 2, 2);
    let mut idle: Vec<_> = (0..2).map(|_| clients.take_accepted()).collect();
    shutdown(&stop);
    let (took, server) = wait_closed(&closed);
    eprintln!("forking server_close took {took:?}");
    assert!(took >= BOUND && took <= BOUND + MARGIN, "took {took:?}");
    assert!(server.dispatch().active_children().is_empty(), "all reaped");
    assert_eq!(server.dispatch().failed_children(), 2, "ended by SIGTERM");
    idle.iter_mut().for_each(assert_cut);
}

/// A server at `max_children` waits for one of its children to end, which
/// only the drain will make happen: a shutdown request must end that wait.
#[test]
fn a_forking_server_at_max_children_still_stops() {
    // One client in the child, one taken by the server waiting for room.
    let (stop, closed, mut clients) = serve_with_idle_clients(forking(|| UpperLine, 1), 2, 2);
    let mut idle: Vec<_> = (0..2).map(|_| clients.take_accepted()).collect();
    assert!(shutdown(&stop) < BOUND, "the loop returned at once");
    let (took, server) = wait_closed(&closed);
    assert!(took <= BOUND + MARGIN, "took {took:?}");
    assert!(server.dispatch().active_children().is_empty());
    idle.iter_mut().for_each(assert_cut);
}

/// Ignores `SIGTERM` (a handler that sets a flag), then waits on its
/// client.
#[derive(Default)]
struct Stubborn;

impl<C: socketserver::Connection> StreamHandler<C> for Stubborn {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let _ = signal_hook::flag::register(SIGTERM, Arc::new(AtomicBool::new(false)));
        req.rfile.read_line().map(drop)
    }
}

/// A child that survives `SIGTERM` gets `SIGKILL` a second later.
#[test]
fn a_child_ignoring_sigterm_is_killed() {
    let (stop, closed, mut clients) = serve_with_idle_clients(forking(Stubborn::default, 8), 1, 1);
    let mut idle = clients.take_accepted();
    shutdown(&stop);
    let (took, server) = wait_closed(&closed);
    eprintln!("forking server_close with a stubborn child took {took:?}");
    assert!(took >= BOUND + GRACE, "killed after {took:?}");
    assert!(took <= BOUND + GRACE + MARGIN, "took {took:?}");
    assert!(server.dispatch().active_children().is_empty());
    assert_cut(&mut idle);
}
