//! Forked children end with their parent *process*, not with the thread
//! that forked them.
//!
//! CPython's own pattern (bpo-31151): `serve_forever()` in a thread,
//! `shutdown()`, join that thread, then `server_close()`, which waits for
//! the children; a request still in a child is answered. And once only
//! the serving thread has ended, the children still die when the process
//! is killed.
//!
//! A binary of its own, as forking servers get. The second test runs a
//! copy of this binary as the server process (the same test, told so by
//! [`HELPER`]).
#![cfg(all(feature = "std", target_os = "linux"))]

mod util;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use socketserver::{Connection, Error, ForkingTcpServer, StreamHandler, StreamRequest};
use util::gauge::{report, Gauge};
use util::process::{
    children_of, is_running, kill, wait_bounded, wait_first_child, wait_for, Running,
};
use util::PATIENCE;

/// Reads a line, tells the gauge (if any), works for 300 ms, replies
/// `done`.
struct SlowDone(Option<std::path::PathBuf>);

impl<C: Connection> StreamHandler<C> for SlowDone {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        req.rfile.read_line()?;
        if let Some(gauge) = &self.0 {
            let _ = report(gauge, "read");
        }
        thread::sleep(Duration::from_millis(300));
        req.wfile.write_all(b"done")
    }
}

/// The reproduction: the serving thread returns while the child
/// still works on the request; the client must still get `done`. With
/// `PR_SET_PDEATHSIG` alone the child was killed as that thread ended.
#[test]
fn cpython_pattern_serve_in_a_thread_shutdown_join_close_still_answers() {
    let gauge = Gauge::new();
    let path = gauge.path();
    let mut server =
        ForkingTcpServer::new("127.0.0.1:0", move || SlowDone(Some(path.clone()))).unwrap();
    let addr = *server.local_addr();
    let stop = server.shutdown_handle();
    let serving = thread::spawn(move || {
        server.serve_forever(Duration::from_millis(100)).unwrap();
        server
    });
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.write_all(b"work\n").unwrap();
    gauge.wait_note(|note| note == "read");

    stop.shutdown().unwrap();
    let mut server = serving.join().unwrap();
    server.server_close();

    let mut reply = String::new();
    let read = client.read_to_string(&mut reply);
    assert!(read.is_ok(), "{read:?}");
    assert_eq!(reply, "done");
    assert_eq!(server.dispatch().failed_children(), 0);
    assert!(server.dispatch().active_children().is_empty());
}

/// Set in the environment of the copy that plays the server.
const HELPER: &str = "SOCKETSERVER_FORK_PARENT_HELPER";

/// The server process: serves from a spawned thread, prints its address,
/// ends that thread's loop when told (`stop-loop` on stdin), says so, and
/// then waits to be killed.
fn helper() -> ! {
    let mut server = ForkingTcpServer::new("127.0.0.1:0", || SlowDone(None)).unwrap();
    let stop = server.shutdown_handle();
    println!("listening on {}", server.local_addr());
    let serving = thread::spawn(move || {
        server.serve_forever(Duration::from_millis(100)).unwrap();
        // Kept open (no server_close): the children are still running.
        std::mem::forget(server);
    });
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    assert_eq!(line, "stop-loop\n");
    stop.shutdown().unwrap();
    serving.join().unwrap();
    println!("loop ended");
    // Waits for the test's SIGKILL (stdin stays open until then).
    let _ = std::io::stdin().read_line(&mut line);
    std::process::exit(3)
}

/// Children serving clients that have not yet sent their line outlive the
/// thread that forked them (the loop ended and was joined): one still
/// answers its client. The other dies with the process when that is
/// killed with `SIGKILL`.
#[test]
fn a_child_outlives_the_forking_thread_but_not_the_killed_process() {
    if std::env::var_os(HELPER).is_some() {
        helper();
    }
    let exe = std::env::current_exe().unwrap();
    let mut parent = Command::new(exe)
        .args([
            "--exact",
            "a_child_outlives_the_forking_thread_but_not_the_killed_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let parent_pid = parent.id();
    let mut to_parent = parent.stdin.take().unwrap();
    let mut from_parent = BufReader::new(parent.stdout.take().unwrap());
    let mut running = Running(Some(parent));
    // The harness prints its own words around the server's (the test's
    // name starts the same line as the address).
    let mut read_until = |prefix: &str| -> String {
        for _ in 0..20 {
            let mut line = String::new();
            from_parent.read_line(&mut line).unwrap();
            if let Some((_, rest)) = line.trim_end().split_once(prefix) {
                return rest.to_owned();
            }
        }
        panic!("the server never said {prefix:?}");
    };
    let address = read_until("listening on ");

    // Two clients, each served by a child waiting for its line: the first
    // proves its child still serves once the forking thread has ended; the
    // second stays idle until the parent is killed.
    let connect = || {
        let client = TcpStream::connect(&address).unwrap();
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        client
    };
    let mut served = connect();
    wait_first_child(parent_pid);
    let mut idle = connect();
    wait_for("a second child", || children_of(parent_pid).len() == 2);
    to_parent.write_all(b"stop-loop\n").unwrap();
    read_until("loop ended");

    served.write_all(b"after the loop\n").unwrap();
    let mut reply = String::new();
    let read = served.read_to_string(&mut reply);
    assert!(
        read.is_ok() && reply == "done",
        "the child died with the thread that forked it: {read:?} {reply:?}"
    );
    let children = children_of(parent_pid);

    kill("KILL", &parent_pid.to_string());
    wait_bounded(running.0.take().unwrap());
    let end = idle.read(&mut [0u8; 16]);
    let outlived =
        matches!(&end, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
    if outlived {
        children
            .iter()
            .for_each(|child| kill("KILL", &child.to_string()));
        panic!("a child outlived its killed parent");
    }
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    wait_for("the children to end", || {
        children.iter().all(|&child| !is_running(child))
    });
    let _ = idle.shutdown(Shutdown::Both);
}
