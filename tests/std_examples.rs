//! The Python docs' own clients, run by python3, against the Rust twins of
//! the docs' servers (`examples/`). Each example must print
//! `listening on ADDR` first, and exit 0 on SIGTERM.
#![cfg(feature = "std")]
#![cfg(not(target_os = "wasi"))]

mod util;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use util::announce::announced_address;
use util::process::{example, python_client, wait_bounded, Running};
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

/// Starts `example_name ADDRESS` with its stderr captured; returns it with
/// the address it announced.
fn start_capturing_stderr(example_name: &str, address: &str) -> (Running, String) {
    let mut child = Command::new(example(example_name))
        .arg(address)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run example {example_name}: {e}"));
    let bound = announced_address(&mut child);
    (Running(Some(child)), bound)
}

/// SIGTERMs the example, checks it exits 0, and returns what it wrote on
/// stderr.
fn stop_and_read_stderr(running: &mut Running, example_name: &str) -> String {
    let mut child = running.0.take().unwrap();
    let mut stderr = child.stderr.take().expect("stderr piped");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(killed.unwrap().success());
    let status = wait_bounded(child);
    assert!(status.success(), "{example_name} exited with {status}");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
    text
}

/// A handler written for `TcpConnection` reads its own socket: the peer
/// address (the client's own), the receive buffer, and `TCP_NODELAY` set
/// by its options.
#[test]
fn sockopt_server_reports_what_its_socket_says() {
    let (mut running, bound) = start("sockopt_server", "127.0.0.1:0", &[]);
    for _ in 0..2 {
        let stdout = python_client("sockopt_client.py", &[&bound]);
        let local = stdout
            .lines()
            .find_map(|l| l.strip_prefix("Local: "))
            .expect("the client's address");
        let reply = stdout
            .lines()
            .find_map(|l| l.strip_prefix("Received: "))
            .expect("a reply");
        let rest = reply
            .strip_prefix(&format!("peer={local} rcvbuf="))
            .unwrap_or_else(|| panic!("peer is not {local}: {reply}"));
        let (rcvbuf, nodelay) = rest.split_once(' ').expect("two fields");
        assert!(rcvbuf.parse::<u32>().unwrap() > 0, "{reply}");
        assert_eq!(nodelay, "nodelay=true", "{reply}");
    }
    stop(&mut running, "-TERM", "sockopt_server");
}

/// serde_json reads `rfile` through `std::io`; an invalid line ends that
/// connection with serde's message on stderr, and the server goes on.
#[test]
fn json_lines_greets_and_reports_invalid_json() {
    let (mut running, bound) = start_capturing_stderr("json_lines", "127.0.0.1:0");
    let stdout = python_client(
        "json_lines_client.py",
        &[
            &bound,
            r#"{"name": "Ada"}"#,
            r#"{"name": "Grace"}"#,
            "this is not json",
        ],
    );
    let replies: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Received: "))
        .collect();
    assert_eq!(replies, ["hello Ada", "hello Grace"], "{stdout}");
    let next = python_client("json_lines_client.py", &[&bound, r#"{"name": "Linus"}"#]);
    assert!(next.contains("Received: hello Linus"), "{next}");
    let stderr = stop_and_read_stderr(&mut running, "json_lines");
    assert_eq!(stderr.lines().count(), 1, "one report: {stderr}");
    assert!(
        stderr.contains("127.0.0.1:") && stderr.contains("expected"),
        "serde's message with the client's address: {stderr}"
    );
}

/// With the default hooks, a request that fails shows on stderr with the
/// system's own words, as Python prints its traceback, and the server
/// serves the next client.
#[test]
fn tcp_server_prints_a_reset_on_stderr_and_serves_on() {
    let (mut running, bound) = start_capturing_stderr("tcp_server", "127.0.0.1:0");
    let addr: std::net::SocketAddr = bound.parse().unwrap();
    use socketserver::os::socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.connect(&addr.into()).unwrap();
    // Closing with a zero linger sends a reset instead of a FIN.
    socket.set_linger(Some(std::time::Duration::ZERO)).unwrap();
    drop(socket);
    let stdout = python_client("tcp_client.py", &[&bound, "still", "serving"]);
    assert!(stdout.contains("Received: STILL SERVING"), "{stdout}");
    let stderr = stop_and_read_stderr(&mut running, "tcp_server");
    assert!(
        stderr.contains("Connection reset by peer (os error 104)"),
        "the OS error text on stderr: {stderr}"
    );
}

#[test]
fn persistent_echo_serves_keep_alive_clients_from_two_workers_and_stops_on_sigint() {
    let (mut running, bound) = start("persistent_echo", "127.0.0.1:0", &["--workers", "2"]);
    let output = python_client("persistent_client.py", &[&bound, "50", "4"]);
    assert!(output.contains("all 200 echoed"), "{output}");
    let pid = running.0.as_ref().unwrap().id();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    // The serving thread and two workers, for fifty connections.
    assert_eq!(threads, 3, "persistent_echo runs {threads} threads");
    stop(&mut running, "-INT", "persistent_echo");
}
