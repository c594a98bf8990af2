//! Access control on OS sockets: an allow-list of networks as
//! `verify_request` (TCP, UDP, inline and threaded), the peer credentials
//! of Unix stream clients (one uid admitted, another refused), and the
//! permission bits of the Unix socket file.
//!
//! The cases with a client of another user need root: they run that
//! client as uid 65534 (`nobody`), and fail without root.
#![cfg(feature = "std")]
#![cfg(not(target_os = "wasi"))]

mod util;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use socketserver::handlers::{UpperDatagram, UpperOnce};
use socketserver::os::socket2::{Domain, SockAddr, Socket, Type};
use socketserver::os::{AllowList, PeerCredentials, UnixConnection};
use socketserver::{
    Hooks, ServerBuilder, ThreadingDispatch, UnixAddr, DEFAULT_POLL_INTERVAL as POLL,
};
use util::announce::first_line;
use util::process::{example, output_bounded, Running};
use util::{Builds, Recorder, Serving, TempDir, PATIENCE};

/// The user the foreign clients run as.
const NOBODY: u32 = 65534;

/// A TCP client bound to `source` first (any 127.0.0.0/8 address is this
/// machine's loopback on Linux), connected to `server`.
fn connect_from(source: &str, server: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::for_address(server), Type::STREAM, None).unwrap();
    let source: SocketAddr = source.parse().unwrap();
    socket.bind(&SockAddr::from(source)).unwrap();
    socket.connect(&SockAddr::from(server)).unwrap();
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Reads everything until EOF.
fn read_all(stream: &mut impl Read) -> Vec<u8> {
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("read to EOF");
    reply
}

/// A refused client that sent nothing reads EOF: the server shut the
/// connection down and closed it.
fn assert_refused(mut stream: impl Read) {
    assert_eq!(read_all(&mut stream), b"", "a refused client reads EOF");
}

fn exchange(mut stream: impl Read + Write, data: &[u8]) -> Vec<u8> {
    stream.write_all(data).unwrap();
    read_all(&mut stream)
}

/// Only 127.0.0.2 is allowed: a client from 127.0.0.1 is closed without a
/// handler being built, one from 127.0.0.2 is served; the guarded hooks
/// still get every other call.
#[test]
fn tcp_allow_list_refuses_before_building_a_handler() {
    let builds = Builds::default();
    let hooks = Recorder::default();
    let allow: AllowList = "127.0.0.2/32".parse().unwrap();
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .hooks(allow.guard(hooks.clone()))
        .build(builds.factory::<UpperOnce>())
        .unwrap();
    let addr = *server.local_addr();
    let serving = Serving::start(server, POLL);

    assert_refused(connect_from("127.0.0.1:0", addr));
    assert_eq!(builds.count(), 0, "no handler for a refused client");
    assert_eq!(
        exchange(connect_from("127.0.0.2:0", addr), b"hello\n"),
        b"HELLO"
    );
    assert_eq!(builds.count(), 1);
    assert_refused(connect_from("127.0.0.3:0", addr));
    assert_eq!(builds.count(), 1);
    serving.stop().unwrap();
    assert!(hooks.errors().is_empty(), "{:?}", hooks.errors());
}

/// The same through the threading dispatch, whose hooks are shared by
/// every request thread.
#[test]
fn threaded_tcp_allow_list() {
    let builds = Builds::default();
    let allow = AllowList::parse(["127.0.0.2", "::1"]).unwrap();
    let factory = builds.factory::<UpperOnce>();
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .build_with(|config| ThreadingDispatch::new(factory, config.with_hooks(allow)))
        .unwrap();
    let addr = *server.local_addr();
    let _serving = Serving::start(server, POLL);
    for _ in 0..3 {
        assert_refused(connect_from("127.0.0.1:0", addr));
        assert_eq!(exchange(connect_from("127.0.0.2:0", addr), b"x\n"), b"X");
    }
    assert_eq!(builds.count(), 3);
}

/// On IPv6 loopback, `::1` is in the loopback list and not in 127.0.0.0/8.
#[test]
fn ipv6_allow_list() {
    for (list, served) in [("127.0.0.0/8, ::1", true), ("127.0.0.0/8", false)] {
        let allow: AllowList = list.parse().unwrap();
        let server = ServerBuilder::tcp("[::1]:0")
            .hooks(allow)
            .build(|| UpperOnce)
            .unwrap_or_else(|err| panic!("bind [::1] (is IPv6 loopback configured?): {err}"));
        let addr = *server.local_addr();
        let _serving = Serving::start(server, POLL);
        let reply = if served {
            exchange(connect_from("[::1]:0", addr), b"six\n")
        } else {
            read_all(&mut connect_from("[::1]:0", addr))
        };
        assert_eq!(reply, if served { &b"SIX"[..] } else { b"" }, "{list}");
    }
}

/// A datagram from outside the list gets no reply and builds no handler;
/// the next one, from inside, is answered.
#[test]
fn udp_allow_list() {
    let builds = Builds::default();
    let allow: AllowList = "127.0.0.2".parse().unwrap();
    let server = ServerBuilder::udp("127.0.0.1:0")
        .hooks(allow)
        .build(builds.factory::<UpperDatagram>())
        .unwrap();
    let addr = *server.local_addr();
    let _serving = Serving::start(server, POLL);

    let outsider = UdpSocket::bind("127.0.0.1:0").unwrap();
    let insider = UdpSocket::bind("127.0.0.2:0").unwrap();
    insider.set_read_timeout(Some(PATIENCE)).unwrap();
    outsider.send_to(b"outside", addr).unwrap();
    insider.send_to(b"inside", addr).unwrap();
    let mut buf = [0; 64];
    let (n, from) = insider.recv_from(&mut buf).expect("a reply to the insider");
    assert_eq!((&buf[..n], from), (&b"INSIDE"[..], addr));
    // The inline server took the outsider's datagram first: had it been
    // answered, the reply would be here by now.
    outsider.set_nonblocking(true).unwrap();
    let err = outsider.recv_from(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
    assert_eq!(builds.count(), 1);
}

/// Records the credentials `verify_request` saw, and admits one uid.
#[derive(Clone)]
struct UidHooks {
    uid: u32,
    seen: Arc<Mutex<Vec<PeerCredentials>>>,
}

impl UidHooks {
    fn admitting(uid: u32) -> Self {
        UidHooks {
            uid,
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<PeerCredentials> {
        self.seen.lock().unwrap().clone()
    }
}

impl Hooks<UnixConnection, UnixAddr> for UidHooks {
    fn verify_request(&self, conn: &UnixConnection, _client: &UnixAddr) -> bool {
        let peer = conn.peer_credentials().expect("SO_PEERCRED");
        self.seen.lock().unwrap().push(peer);
        peer.uid == self.uid
    }
}

impl socketserver::ServerHooks for UidHooks {}

fn current_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

fn unix_connect(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// `verify_request` of a Unix stream server gets the connecting
/// process's pid, uid and gid.
#[test]
fn unix_peer_credentials_are_the_clients() {
    let dir = TempDir::new("access-cred");
    let path = dir.path("s.sock");
    let hooks = UidHooks::admitting(current_uid());
    let server = ServerBuilder::unix_stream(&path)
        .hooks(hooks.clone())
        .build(|| UpperOnce)
        .unwrap();
    let _serving = Serving::start(server, POLL);
    assert_eq!(exchange(unix_connect(&path), b"me\n"), b"ME");
    let seen = hooks.seen();
    assert_eq!(seen.len(), 1);
    let expected = (
        std::process::id(),
        current_uid(),
        nix::unistd::getgid().as_raw(),
    );
    assert_eq!((seen[0].pid, seen[0].uid, seen[0].gid), expected);
}

/// Panics unless this process can start clients as another user.
fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: it runs a client as uid {NOBODY} to check that \
         another user is refused (CI runs as root)"
    );
}

/// A temporary directory that every user may enter, for sockets that a
/// client of another uid connects to.
fn shared_dir(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A Unix stream client in python3, run as [`NOBODY`]: connects to
/// `argv[1]`, sends `argv[2]` if not empty, reads to EOF, and prints
/// `pid PID`, then `received REPR` or `error ERRNO`.
const FOREIGN_CLIENT: &str = r#"
import os, socket, sys
print("pid", os.getpid(), flush=True)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
    if sys.argv[2]:
        s.sendall(sys.argv[2].encode())
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    print("received", repr(data))
except OSError as e:
    print("error", e.errno)
"#;

/// Runs [`FOREIGN_CLIENT`] as uid and gid [`NOBODY`] against `path`;
/// returns its output lines after checking that it exited 0.
fn foreign_client(path: &Path, message: &str) -> (u32, String) {
    require_root();
    let child = Command::new("python3")
        .args(["-c", FOREIGN_CLIENT])
        .arg(path)
        .arg(message)
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir("/")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 as uid 65534");
    let output = output_bounded(child);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the client as uid {NOBODY} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines = stdout.lines();
    let pid = lines
        .next()
        .and_then(|l| l.strip_prefix("pid "))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {stdout:?}"));
    (pid, lines.next().unwrap_or("").to_owned())
}

/// A server admitting only the current user: a client running as another
/// uid is closed before a handler is built, and its credentials are the
/// ones the kernel recorded (its pid, uid 65534); the current user is
/// served before and after.
#[test]
fn only_one_uid_is_admitted() {
    require_root();
    let dir = shared_dir("access-uid");
    let path = dir.path("s.sock");
    let builds = Builds::default();
    let hooks = UidHooks::admitting(current_uid());
    let server = ServerBuilder::unix_stream(&path)
        .socket_mode(0o666)
        .hooks(hooks.clone())
        .build(builds.factory::<UpperOnce>())
        .unwrap();
    let _serving = Serving::start(server, POLL);

    assert_eq!(exchange(unix_connect(&path), b"before\n"), b"BEFORE");
    let (pid, outcome) = foreign_client(&path, "");
    assert_eq!(outcome, "received b''", "the other user reads EOF at once");
    assert_eq!(builds.count(), 1, "no handler for the other user");
    assert_eq!(exchange(unix_connect(&path), b"after\n"), b"AFTER");
    assert_eq!(builds.count(), 2);
    let seen = hooks.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        (seen[1].pid, seen[1].uid, seen[1].gid),
        (pid, NOBODY, NOBODY)
    );
}

fn file_mode(path: &Path) -> u32 {
    let meta = fs::symlink_metadata(path).expect("stat the socket file");
    assert!(
        meta.file_type().is_socket(),
        "{} is a socket",
        path.display()
    );
    meta.permissions().mode() & 0o7777
}

/// `socket_mode` sets the socket file's permission bits, whatever the
/// umask: 0600 keeps another user out (`EACCES` on connect), 0666 lets
/// them connect, and a datagram server's file gets its mode too.
#[test]
fn socket_file_mode_is_applied() {
    require_root();
    let dir = shared_dir("access-mode");
    for (mode, expected) in [(0o600, "error 13"), (0o666, "received b'HI'")] {
        let path = dir.path(&format!("{mode:o}.sock"));
        let server = ServerBuilder::unix_stream(&path)
            .socket_mode(mode)
            .build(|| UpperOnce)
            .unwrap();
        assert_eq!(file_mode(&path), mode);
        let _serving = Serving::start(server, POLL);
        assert_eq!(foreign_client(&path, "hi\n").1, expected, "mode {mode:o}");
    }
    let path = dir.path("dgram.sock");
    let _server = ServerBuilder::unix_datagram(&path)
        .socket_mode(0o620)
        .build(|| UpperDatagram)
        .unwrap();
    assert_eq!(file_mode(&path), 0o620);
}

/// The `uid_server` example (default uid: the user running it) serves the
/// current user, refuses uid 65534 with a line on stderr, and exits 0 on
/// SIGTERM, removing its socket file.
#[test]
fn uid_server_example() {
    require_root();
    let dir = shared_dir("access-example");
    let path = dir.path("uid.sock");
    let mut child = Command::new(example("uid_server"))
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the uid_server example");
    let line = first_line(&mut child);
    let mut running = Running(Some(child));
    assert_eq!(line.trim_end(), format!("listening on {}", path.display()));
    assert_eq!(file_mode(&path), 0o666);

    assert_eq!(exchange(unix_connect(&path), b" mine \n"), b"MINE");
    let (pid, outcome) = foreign_client(&path, "");
    assert_eq!(outcome, "received b''");
    assert_eq!(
        exchange(unix_connect(&path), b"still mine\n"),
        b"STILL MINE"
    );

    let child = running.0.take().unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(status.unwrap().success());
    let output = output_bounded(child);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exited with {}: {stderr}",
        output.status
    );
    assert!(
        stderr.contains(&format!("refused pid {pid} (uid {NOBODY}, gid {NOBODY})")),
        "stderr: {stderr}"
    );
    assert!(!path.exists(), "the socket file is removed on exit");
}
