//! The Python docs' own clients, run by python3, against the Rust twins of
//! the docs' servers (`examples/`). Each example must print
//! `listening on ADDR` first, and exit 0 on SIGTERM.
#![cfg(feature = "std")]

mod util;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use util::announce::announced_address;
use util::process::{example, wait_bounded, Running};
use util::TempDir;

fn run(example_name: &str, client: &str, address: &str, message: &str) {
    let expected = format!("Received: {}", message.to_uppercase());
    run_checked(example_name, &[], client, address, message, |line, _| {
        line == expected
    });
}

/// Runs `example_name ADDRESS ARGS...`, then `client` against it; one line
/// the client prints must satisfy `received`, which also gets the
/// example's process id.
fn run_checked(
    example_name: &str,
    args: &[&str],
    client: &str,
    address: &str,
    message: &str,
    received: impl Fn(&str, u32) -> bool,
) {
    let (mut running, bound) = start(example_name, address, args);
    let server_pid = running.0.as_ref().unwrap().id();

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(client);
    let output = Command::new("python3")
        .arg(script)
        .arg(&bound)
        .args(message.split(' '))
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{client}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.lines().any(|line| received(line, server_pid)),
        "{client} printed:\n{stdout}"
    );

    stop(&mut running, "-TERM", example_name);
}

/// Starts `example_name ADDRESS ARGS...`; returns it with the address it
/// announced.
fn start(example_name: &str, address: &str, args: &[&str]) -> (Running, String) {
    let mut child = Command::new(example(example_name))
        .arg(address)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run example {example_name}: {e}"));
    let bound = announced_address(&mut child);
    (Running(Some(child)), bound)
}

/// Sends `signal` (`-TERM`, `-INT`) to the example; it must exit 0.
fn stop(running: &mut Running, signal: &str, example_name: &str) {
    let child = running.0.take().unwrap();
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
    assert!(status.unwrap().success());
    let status = wait_bounded(child);
    assert!(status.success(), "{example_name} exited with {status}");
}

/// `stop_on_signals` starts no thread on Linux (the signal handler makes
/// the request), so a synchronous server is a one-thread process; and
/// `SIGINT` ends it as cleanly as `SIGTERM`.
#[test]
fn a_synchronous_example_is_one_thread_and_stops_on_sigint() {
    let (mut running, _) = start("tcp_server", "127.0.0.1:0", &[]);
    let pid = running.0.as_ref().unwrap().id();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    assert_eq!(threads, 1, "tcp_server runs {threads} threads");
    stop(&mut running, "-INT", "tcp_server");
}

#[test]
fn tcp_server_with_the_docs_tcp_client() {
    run(
        "tcp_server",
        "tcp_client.py",
        "127.0.0.1:0",
        "hello world with TCP",
    );
}

#[test]
fn stream_server_with_the_docs_tcp_client() {
    run(
        "stream_server",
        "tcp_client.py",
        "127.0.0.1:0",
        "python is nice",
    );
}

#[test]
fn udp_server_with_the_docs_udp_client() {
    run(
        "udp_server",
        "udp_client.py",
        "127.0.0.1:0",
        "hello world with UDP",
    );
}

#[test]
fn unix_stream_server_with_a_unix_client() {
    let dir = TempDir::new("ex-ustream");
    let path = dir.path("server.sock");
    run(
        "unix_stream_server",
        "unix_stream_client.py",
        path.to_str().unwrap(),
        "hello unix stream",
    );
    assert!(!path.exists(), "the socket file is removed on exit");
}

#[test]
fn unix_datagram_server_with_a_unix_client() {
    let dir = TempDir::new("ex-udgram");
    let path = dir.path("server.sock");
    run(
        "unix_datagram_server",
        "unix_datagram_client.py",
        path.to_str().unwrap(),
        "hello unix datagram",
    );
    assert!(!path.exists(), "the socket file is removed on exit");
}

/// Whether `line` is `Received: {tag}: {message}` with a `tag` that
/// `tag_ok` accepts.
fn tagged_reply(line: &str, message: &str, tag_ok: impl Fn(&str) -> bool) -> bool {
    line.strip_prefix("Received: ")
        .and_then(|rest| rest.split_once(": "))
        .is_some_and(|(tag, data)| tag_ok(tag) && data == message)
}

#[test]
fn threaded_server_answers_from_a_request_thread() {
    let message = "hello threads";
    run_checked(
        "threaded_server",
        &[],
        "tcp_client.py",
        "127.0.0.1:0",
        message,
        |line, _| tagged_reply(line, message, |tag| tag.starts_with("Thread-")),
    );
}

#[test]
fn threaded_server_with_a_pool_answers_from_a_worker() {
    let message = "hello pool";
    run_checked(
        "threaded_server",
        &["--pool", "2"],
        "tcp_client.py",
        "127.0.0.1:0",
        message,
        |line, _| tagged_reply(line, message, |tag| tag == "Worker-1" || tag == "Worker-2"),
    );
}

#[test]
fn forking_server_answers_from_a_child_process() {
    let message = "hello processes";
    run_checked(
        "forking_server",
        &[],
        "tcp_client.py",
        "127.0.0.1:0",
        message,
        |line, server_pid| {
            tagged_reply(line, message, |tag| {
                tag.parse::<u32>().is_ok_and(|pid| pid != server_pid)
            })
        },
    );
}
