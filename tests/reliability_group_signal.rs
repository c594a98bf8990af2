//! A signal to the whole process group (Ctrl-C in a terminal, systemd's
//! `KillMode=control-group`) reaches a forking server's children, and a
//! pre-forked server's workers, too. They leave their stop to the parent:
//! a request in progress is still answered within the drain, and the
//! server exits 0.
#![cfg(all(feature = "std", target_os = "linux"))]

#[path = "util/stop.rs"]
mod stop;
mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use stop::sigterm_pending;
use util::announce::announced_address;
use util::process::{example, is_running, kill, wait_bounded, wait_first_child, wait_for, Running};
use util::PATIENCE;

/// Runs `name ARGS` in a process group of its own, connects a client
/// (served by the one child the server has then), sends `SIGTERM` to the
/// group, and sends the request once every process has taken the signal.
fn group_sigterm_leaves_the_request_to_the_drain(name: &str, args: &[&str]) {
    let mut server = Command::new(example(name))
        .arg("127.0.0.1:0")
        .args(args)
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = server.id();
    let address = announced_address(&mut server);
    let mut running = Running(Some(server));

    let mut client = TcpStream::connect(&address).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let child = wait_first_child(pid);
    // The group's id is the server's pid (`process_group(0)`).
    kill("TERM", &format!("-{pid}"));
    // (The child's copy of the listening socket keeps accepting into the
    // backlog, so a refused connection cannot tell when the parent stopped.)
    wait_for("both to take the signal", || {
        !sigterm_pending(pid) && !sigterm_pending(child)
    });
    assert!(is_running(child), "the child died with the group's signal");

    client.write_all(b"in flight").unwrap();
    let mut reply = String::new();
    let read = client.read_to_string(&mut reply);
    assert!(
        read.is_ok(),
        "the child died with the group's signal: {read:?}"
    );
    assert_eq!(reply, format!("{child}: in flight"));
    let status = wait_bounded(running.0.take().unwrap());
    assert!(status.success(), "{status}");
}

#[test]
fn a_group_sigterm_leaves_the_forked_children_to_the_drain() {
    group_sigterm_leaves_the_request_to_the_drain("forking_server", &[]);
}

#[test]
fn a_group_sigterm_leaves_the_pre_forked_workers_to_the_drain() {
    group_sigterm_leaves_the_request_to_the_drain("prefork_server", &["--workers", "1"]);
}
