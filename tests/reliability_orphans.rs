//! A forking server's children do not outlive it: when the parent is
//! killed, a child in the middle of a request ends too (on Linux, the
//! kernel's `SIGKILL` when its lifeline closes), and its client sees the
//! connection close.
// Unix only: forking.
#![cfg(all(feature = "std", unix))]

mod util;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use util::announce::announced_address;
use util::process::{example, is_running, wait_bounded, wait_first_child, Running};
use util::PATIENCE;

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
    let child = wait_first_child(server_pid);

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
