//! A forking server's children do not outlive it: when the parent is
//! killed, a child in the middle of a request ends too (Linux's
//! parent-death signal), and its client sees the connection close.
#![cfg(feature = "std")]
#![cfg(not(target_os = "wasi"))]

mod util;

use std::fs;
use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use util::announce::announced_address;
use util::process::{example, wait_bounded, Running};
use util::PATIENCE;

/// The processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let parent = parent.to_string();
    fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // "pid (comm) state ppid ...": comm may hold spaces.
            let after = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
            after.split_whitespace().nth(1) == Some(parent.as_str())
        })
        .collect()
}

/// Whether `pid` still runs (a zombie has ended).
fn is_running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .is_some_and(|i| !stat[i + 1..].starts_with(" Z"))
    })
}

/// `forking_server` serves a client that connected and sent nothing, so its
/// child waits in the handler's read. `SIGKILL` to the parent must end the
/// child too; before, it kept serving its client for ever.
#[test]
fn a_killed_forking_server_takes_its_children_along() {
    let mut server = Command::new(example("forking_server"))
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("run forking_server");
    let server_pid = server.id();
    let address = announced_address(&mut server);
    let mut running = Running(Some(server));

    let mut client = TcpStream::connect(&address).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let deadline = Instant::now() + PATIENCE;
    let child = loop {
        if let Some(&child) = children_of(server_pid).first() {
            break child;
        }
        assert!(Instant::now() < deadline, "the server never forked");
        thread::sleep(Duration::from_millis(1));
    };

    let killed = Instant::now();
    let server = running.0.take().unwrap();
    let status = Command::new("kill")
        .args(["-KILL", &server_pid.to_string()])
        .status();
    assert!(status.unwrap().success());
    wait_bounded(server);
    let end = client.read(&mut [0u8; 64]);
    let after = killed.elapsed();
    let outlived = match &end {
        Ok(0) => false,
        Err(err) => matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        Ok(_) => panic!("the child replied to nothing"),
    };
    if outlived {
        let _ = Command::new("kill")
            .args(["-KILL", &child.to_string()])
            .status();
        panic!("child {child} outlived its killed parent by {after:?}");
    }
    eprintln!("the child's connection closed {after:?} after its parent was killed");
    // Its descriptors close as it exits, a moment before it is a zombie.
    let deadline = Instant::now() + PATIENCE;
    while is_running(child) {
        assert!(Instant::now() < deadline, "child {child} still runs");
        thread::sleep(Duration::from_millis(1));
    }
}
