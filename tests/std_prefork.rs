//! Pre-forked workers on one port (`examples/prefork_server.rs`): answers
//! come from N distinct worker processes; a worker killed with `SIGKILL` is
//! replaced and no request after it fails; `SIGTERM` to the supervisor
//! drains and leaves no process behind; `SIGKILL` of the supervisor ends
//! the workers.
#![cfg(all(feature = "std", target_os = "linux"))]

#[path = "util/stop.rs"]
mod stop;
mod util;

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};

use stop::{assert_exited_0, exchange, IdleClients, Server};
use util::process::{children_of, is_running, kill, wait_for};
use util::PATIENCE;

/// `prefork_server --workers N`, once its N workers run.
fn start(workers: usize) -> Server {
    let server = Server::start("prefork_server", &["--workers", &workers.to_string()]);
    wait_for(&format!("{workers} workers"), || {
        workers_of(&server).len() == workers
    });
    server
}

/// The supervisor's running children.
fn workers_of(server: &Server) -> Vec<u32> {
    let mut workers: Vec<u32> = children_of(server.pid)
        .into_iter()
        .filter(|&pid| is_running(pid))
        .collect();
    workers.sort_unstable();
    workers
}

/// The worker pid of a `{pid}: {sent}` reply.
fn pid_of(reply: &str, sent: &str) -> u32 {
    let (pid, rest) = reply
        .split_once(": ")
        .unwrap_or_else(|| panic!("reply {reply:?}"));
    assert_eq!(rest, sent);
    pid.parse().unwrap()
}

/// One request on a new connection; the worker that answered.
fn ask(address: SocketAddr, sent: &str) -> u32 {
    let mut client = TcpStream::connect(address).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    pid_of(&exchange(&mut client, sent).unwrap(), sent)
}

#[test]
fn answers_come_from_n_distinct_worker_processes() {
    const N: usize = 3;
    let server = start(N);
    // Each synchronous worker holds one idle client; so N accepted
    // clients are held by N workers.
    let mut clients = IdleClients::connect(server.address, N, N);
    let mut pids: Vec<u32> = (0..N)
        .map(|i| {
            let sent = format!("client {i}");
            pid_of(
                &exchange(&mut clients.take_accepted(), &sent).unwrap(),
                &sent,
            )
        })
        .collect();
    pids.sort_unstable();
    assert_eq!(pids, workers_of(&server), "one answer from each worker");
    server.sigterm();
    assert_exited_0(server.exit().0, "prefork_server");
}

#[test]
fn a_killed_worker_is_replaced_and_no_request_after_it_fails() {
    let server = start(2);
    let before = workers_of(&server);
    let victim = before[0];
    kill("KILL", &victim.to_string());
    wait_for("the worker to die", || !is_running(victim));
    for i in 0..50 {
        let pid = ask(server.address, &format!("after {i}"));
        assert_ne!(pid, victim);
    }
    wait_for("a replacement", || {
        let now = workers_of(&server);
        now.len() == 2 && !now.contains(&victim)
    });
    let now = workers_of(&server);
    for i in 0..20 {
        assert!(now.contains(&ask(server.address, &format!("again {i}"))));
    }
    server.sigterm();
    assert_exited_0(server.exit().0, "prefork_server");
}

#[test]
fn sigterm_drains_the_workers_and_leaves_no_process_behind() {
    let server = start(2);
    let workers = workers_of(&server);
    let mut clients = IdleClients::connect(server.address, 1, 1);
    let mut in_flight = clients.take_accepted();
    server.sigterm();
    let reply = exchange(&mut in_flight, "in flight").expect("answered during the drain");
    assert!(workers.contains(&pid_of(&reply, "in flight")));
    let (status, _) = server.exit();
    assert_exited_0(status, "prefork_server");
    for pid in workers {
        assert!(!is_running(pid), "worker {pid} left behind");
    }
}

#[test]
fn sigkill_of_the_supervisor_ends_the_workers() {
    let server = start(2);
    let workers = workers_of(&server);
    let mut clients = IdleClients::connect(server.address, 1, 1);
    let mut held = clients.take_accepted();
    held.set_read_timeout(Some(PATIENCE)).unwrap();
    kill("KILL", &server.pid.to_string());
    let _ = server.exit();
    wait_for("the workers to end", || {
        workers.iter().all(|&pid| !is_running(pid))
    });
    let end = held.read(&mut [0u8; 16]);
    assert!(
        !matches!(&end, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the connection outlived its worker: {end:?}"
    );
}
