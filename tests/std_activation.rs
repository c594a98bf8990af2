//! Servers on sockets made elsewhere: std listeners and sockets through the
//! builder, and sockets inherited through socket activation (`LISTEN_PID`,
//! `LISTEN_FDS`, `LISTEN_FDNAMES`), from a Python launcher
//! (`tests/py/activate.py`) and from systemd's own `systemd-socket-activate`.
#![cfg(all(feature = "std", unix))]

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use socketserver::handlers::{UpperDatagram, UpperLine};
use socketserver::os::{activation, TcpTransport, UdpTransport};
use socketserver::{ServerBuilder, ThreadingDispatch};
use util::announce::announced_address;
use util::process::{example, output_bounded, python_client, terminate, Running};
use util::{Serving, TempDir, PATIENCE};

const POLL: Duration = Duration::from_millis(50);
/// An address the examples cannot bind (TEST-NET-1 is on no interface): an
/// example that announces the launcher's socket did not bind it.
const UNBINDABLE: &str = "192.0.2.1:9";
const UNBINDABLE_PATH: &str = "/nonexistent-socketserver-dir/server.sock";

fn tcp_exchange(address: &str, line: &str) -> String {
    let mut client = TcpStream::connect(address).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.write_all(line.as_bytes()).unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn a_std_tcp_listener_is_served_with_the_builders_options() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = ServerBuilder::from_tcp_listener(listener)
        .build_with(|config| ThreadingDispatch::new(|| UpperLine, config).max_threads(Some(2)))
        .unwrap();
    assert_eq!(*server.local_addr(), address);
    let serving = Serving::start(server, POLL);
    assert_eq!(tcp_exchange(&address.to_string(), "hi\n"), "HI");
    serving.stop().unwrap();
}

#[test]
fn a_bound_stream_socket_not_yet_listening_is_made_to_listen() {
    use socketserver::os::socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    let server = ServerBuilder::<TcpTransport>::from_socket(socket)
        .request_queue_size(8)
        // A socket given explicitly wins over socket activation.
        .socket_activation(true)
        .build(|| UpperLine)
        .unwrap();
    let address = server.local_addr().to_string();
    let serving = Serving::start(server, POLL);
    assert_eq!(tcp_exchange(&address, "listen\n"), "LISTEN");
    serving.stop().unwrap();
}

#[test]
fn a_std_udp_socket_is_served() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = ServerBuilder::from_udp_socket(socket)
        .build(|| UpperDatagram)
        .unwrap();
    let address = *server.local_addr();
    let serving = Serving::start(server, POLL);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(b"dgram\n", address).unwrap();
    let mut buf = [0; 64];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"DGRAM");
    serving.stop().unwrap();
}

/// A Unix socket file made elsewhere is not the server's: it is served,
/// and left in place when the server closes.
#[test]
fn std_unix_sockets_are_served_and_their_files_left_alone() {
    let dir = TempDir::new("adopt-unix");
    let path = dir.path("stream.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut server = ServerBuilder::from_unix_listener(listener)
        .build(|| UpperLine)
        .unwrap();
    assert_eq!(server.local_addr().as_pathname(), Some(path.as_path()));
    let stop = server.shutdown_handle();
    let serving = thread::spawn(move || {
        server.serve_forever(POLL).unwrap();
        server
    });
    let mut client = UnixStream::connect(&path).unwrap();
    client.write_all(b"unix\n").unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "UNIX");
    stop.shutdown().unwrap();
    let mut server = serving.join().unwrap();
    server.server_close();
    assert!(path.exists(), "an adopted socket's file is not removed");

    let dgram_path = dir.path("dgram.sock");
    let socket = UnixDatagram::bind(&dgram_path).unwrap();
    let server = ServerBuilder::from_unix_datagram(socket)
        .build(|| UpperDatagram)
        .unwrap();
    let serving = Serving::start(server, POLL);
    let client_path = dir.path("client.sock");
    let client = UnixDatagram::bind(&client_path).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(b"unix dgram\n", &dgram_path).unwrap();
    let mut buf = [0; 64];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"UNIX DGRAM");
    serving.stop().unwrap();
}

fn refusal(refused: Option<std::io::Error>) -> String {
    let err = refused.expect("the socket is refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    err.to_string()
}

#[test]
fn a_socket_that_does_not_fit_the_server_is_refused_with_the_reason() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let why = refusal(
        ServerBuilder::<TcpTransport>::from_socket(udp)
            .build(|| UpperLine)
            .err(),
    );
    assert!(
        why.contains(
            "is a datagram (SOCK_DGRAM) socket; a TcpTransport serves stream (SOCK_STREAM) sockets"
        ),
        "{why}"
    );
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let why = refusal(
        ServerBuilder::<UdpTransport>::from_socket(tcp)
            .build(|| UpperDatagram)
            .err(),
    );
    assert!(why.contains("is a stream (SOCK_STREAM) socket"), "{why}");

    let dir = TempDir::new("adopt-refused");
    let unix = UnixListener::bind(dir.path("s.sock")).unwrap();
    let why = refusal(
        ServerBuilder::<TcpTransport>::from_socket(unix)
            .build(|| UpperLine)
            .err(),
    );
    assert!(why.contains("is not an IPv4 or IPv6 socket"), "{why}");

    let unbound = socketserver::os::socket2::Socket::new(
        socketserver::os::socket2::Domain::IPV4,
        socketserver::os::socket2::Type::STREAM,
        None,
    )
    .unwrap();
    let why = refusal(
        ServerBuilder::<TcpTransport>::from_socket(unbound)
            .build(|| UpperLine)
            .err(),
    );
    assert!(why.contains("is not bound to a port"), "{why}");
}

// --- Socket activation, through a launcher that execs the program ---

fn launcher() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/activate.py")
}

/// The first line of `stderr`, at most [`PATIENCE`] from now.
fn stderr_line(stderr: &mut BufReader<ChildStderr>) -> String {
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

/// Runs `example ARGS` under the launcher with one socket `spec`
/// (`KIND=ADDRESS`); returns it with the address the launcher bound and
/// the one the example announced.
fn activated(example_name: &str, spec: &str, args: &[&str]) -> (Running, String, String) {
    let mut child = Command::new("python3")
        .arg(launcher())
        .arg(spec)
        .arg("--")
        .arg(example(example_name))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let bound = with_patience(move || stderr_line(&mut stderr));
    let bound = bound
        .strip_prefix("bound ")
        .unwrap_or_else(|| panic!("launcher said {bound:?}"))
        .to_owned();
    let announced = announced_address(&mut child);
    (Running(Some(child)), bound, announced)
}

fn with_patience<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PATIENCE).expect("in time")
}

/// Each server example, started with `LISTEN_PID` = its pid and
/// `LISTEN_FDS` = 1, serves the inherited socket (its own address argument
/// could not be bound) and announces that socket's address.
fn serves_the_inherited_socket(
    example_name: &str,
    spec: &str,
    argument: &str,
    client: &str,
    check: impl Fn(&str) -> bool,
) {
    let (mut running, bound, announced) = activated(example_name, spec, &[argument]);
    assert_eq!(
        announced, bound,
        "{example_name} announces the inherited socket"
    );
    let message = "hello inherited";
    let mut args = vec![bound.as_str()];
    args.extend(message.split(' '));
    let stdout = python_client(client, &args);
    assert!(
        stdout.lines().any(&check),
        "{example_name} answered:\n{stdout}"
    );
    terminate(&mut running, example_name);
}

fn upper(line: &str) -> bool {
    line == "Received: HELLO INHERITED"
}

fn tagged(line: &str) -> bool {
    line.strip_prefix("Received: ")
        .and_then(|rest| rest.split_once(": "))
        .is_some_and(|(_, data)| data == "hello inherited")
}

#[test]
fn tcp_examples_serve_an_inherited_socket() {
    let spec = "tcp=127.0.0.1:0";
    for (name, check) in [
        ("tcp_server", upper as fn(&str) -> bool),
        ("stream_server", upper),
        ("threaded_server", tagged),
        ("forking_server", tagged),
    ] {
        serves_the_inherited_socket(name, spec, UNBINDABLE, "tcp_client.py", check);
    }
}

#[test]
fn udp_server_serves_an_inherited_socket() {
    serves_the_inherited_socket(
        "udp_server",
        "udp=127.0.0.1:0",
        UNBINDABLE,
        "udp_client.py",
        upper,
    );
}

#[test]
fn unix_examples_serve_an_inherited_socket() {
    let dir = TempDir::new("activate-unix");
    for (name, kind, client) in [
        ("unix_stream_server", "unix-stream", "unix_stream_client.py"),
        ("uid_server", "unix-stream", "unix_stream_client.py"),
        (
            "unix_datagram_server",
            "unix-dgram",
            "unix_datagram_client.py",
        ),
    ] {
        let path = dir.path(&format!("{name}.sock"));
        let spec = format!("{kind}={}", path.display());
        serves_the_inherited_socket(name, &spec, UNBINDABLE_PATH, client, upper);
        assert!(
            path.exists(),
            "{name} leaves the launcher's socket file alone"
        );
    }
}

#[test]
fn json_and_sockopt_examples_serve_an_inherited_socket() {
    let (mut running, bound, announced) = activated("json_lines", "tcp=127.0.0.1:0", &[UNBINDABLE]);
    assert_eq!(announced, bound);
    let stdout = python_client("json_lines_client.py", &[&bound, r#"{"name": "Ada"}"#]);
    assert!(stdout.contains("Received: hello Ada"), "{stdout}");
    terminate(&mut running, "json_lines");

    let (mut running, bound, announced) =
        activated("sockopt_server", "tcp=127.0.0.1:0", &[UNBINDABLE]);
    assert_eq!(announced, bound);
    python_client("sockopt_client.py", &[&bound]);
    terminate(&mut running, "sockopt_server");
}

/// A UDP socket handed to a TCP server: the example fails at once, saying
/// which type it got and which it serves.
#[test]
fn an_inherited_socket_of_the_wrong_type_is_a_clear_error() {
    let child = Command::new("python3")
        .arg(launcher())
        .arg("udp=127.0.0.1:0")
        .arg("--")
        .arg(example("stream_server"))
        .arg(UNBINDABLE)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let output = output_bounded(child);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "is a datagram (SOCK_DGRAM) socket; a TcpTransport serves stream (SOCK_STREAM) sockets"
        ),
        "{stderr}"
    );
}

/// Set in the copy of this test binary that the launcher execs.
const CHILD: &str = "SOCKETSERVER_ACTIVATION_CHILD";

/// Two sockets with names: each is claimed once, by name or in order; the
/// variables are gone (so children do not inherit them) and the
/// descriptors are close-on-exec. Runs this test again, as the launched
/// program, in a process of its own.
#[test]
fn inherited_sockets_are_claimed_once_and_the_variables_unset() {
    if std::env::var_os(CHILD).is_some() {
        return claim_as_the_launched_program();
    }
    let child = Command::new("python3")
        .arg(launcher())
        .args(["tcp=127.0.0.1:0=web", "udp=127.0.0.1:0=stats"])
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "inherited_sockets_are_claimed_once_and_the_variables_unset",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let output = output_bounded(child);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("claimed as expected"), "{stdout}{stderr}");
}

fn claim_as_the_launched_program() {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    assert_eq!(activation::unclaimed_names().unwrap(), ["web", "stats"]);
    for variable in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        assert!(std::env::var_os(variable).is_none(), "{variable} is unset");
    }
    let missing = ServerBuilder::tcp(UNBINDABLE)
        .socket_activation_named("nope")
        .build(|| UpperLine)
        .err()
        .unwrap();
    assert_eq!(missing.kind(), std::io::ErrorKind::NotFound, "{missing}");

    let stats = ServerBuilder::udp(UNBINDABLE)
        .socket_activation_named("stats")
        .build(|| UpperDatagram)
        .unwrap();
    let flags = FdFlag::from_bits_truncate(fcntl(&stats, FcntlArg::F_GETFD).unwrap());
    assert!(flags.contains(FdFlag::FD_CLOEXEC));
    let web = ServerBuilder::tcp(UNBINDABLE)
        .socket_activation(true)
        .build(|| UpperLine)
        .unwrap();
    assert_eq!(
        web.socket().unwrap().local_addr().unwrap().as_socket(),
        Some(*web.local_addr())
    );
    assert!(activation::unclaimed_names().unwrap().is_empty());
    // Nothing left: the address is bound as usual.
    let bound = ServerBuilder::tcp("127.0.0.1:0")
        .socket_activation(true)
        .build(|| UpperLine)
        .unwrap();
    assert_ne!(bound.local_addr(), web.local_addr());
    println!("claimed as expected");
}

// --- systemd's own launcher ---

/// `systemd-socket-activate` (from the systemd package) listens, and execs
/// the example on the first connection; the example serves that
/// connection and the next on the inherited socket.
#[test]
fn stream_server_under_systemd_socket_activate() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let mut child = Command::new("systemd-socket-activate")
        .args(["-l", &address, "--fdname=web"])
        .arg(example("stream_server"))
        .arg(UNBINDABLE)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate (package systemd) is installed");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let said = with_patience(move || {
        let line = stderr_line(&mut stderr);
        (line, stderr)
    });
    assert_eq!(said.0, format!("Listening on {address} as 3."));
    let running = Running(Some(child));
    // The first connection starts the example.
    let client = thread::spawn({
        let address = address.clone();
        move || tcp_exchange(&address, "first\n")
    });
    let mut running = running;
    let announced = announced_address(running.0.as_mut().unwrap());
    assert_eq!(announced, address);
    assert_eq!(client.join().unwrap(), "FIRST");
    assert_eq!(tcp_exchange(&address, "second\n"), "SECOND");
    terminate(&mut running, "stream_server");
    drop(said.1);
}
