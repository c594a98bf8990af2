//! Stopping a server process that has clients: many idle clients, which of
//! them the server has accepted (the kernel's socket table says), whether
//! a signal has reached the process, and how long it took to exit.
//!
//! Include with `#[path = "util/stop.rs"] mod stop;` beside `mod util;`.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use socketserver::os::socket2::{Domain, Socket, Type};
use socketserver::os::TcpTransport;
use socketserver::{Dispatch, ShutdownHandle, SocketServer};

use crate::util::announce::announced_address;
use crate::util::process::{example, wait_bounded, Running};
use crate::util::PATIENCE;

/// A server example run as a process, with its stderr (one line per cut
/// connection) discarded.
pub struct Server {
    pub running: Running,
    pub pid: u32,
    pub address: SocketAddr,
}

impl Server {
    pub fn start(name: &str, args: &[&str]) -> Self {
        let mut child = Command::new(example(name))
            .arg("127.0.0.1:0")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("run example {name}: {e}"));
        let address = announced_address(&mut child).parse().unwrap();
        Server {
            pid: child.id(),
            running: Running(Some(child)),
            address,
        }
    }

    /// Sends `SIGTERM` and waits until it has been delivered (the
    /// handler runs or has run), so that a second one is not merged into
    /// it; returns when it was sent.
    pub fn sigterm(&self) -> Instant {
        let sent = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        assert!(status.unwrap().success(), "kill -TERM {}", self.pid);
        until("SIGTERM to be delivered", || !sigterm_pending(self.pid));
        sent
    }

    /// How the process ended, and when (at most [`PATIENCE`] from now).
    pub fn exit(mut self) -> (ExitStatus, Instant) {
        let status = wait_bounded(self.running.0.take().unwrap());
        (status, Instant::now())
    }
}

/// Whether `SIGTERM` is pending for process `pid` (for the process or its
/// main thread), from `/proc/PID/status`.
pub fn sigterm_pending(pid: u32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false; // gone
    };
    let bit = 1u64 << (15 - 1);
    status
        .lines()
        .filter_map(|l| l.strip_prefix("SigPnd:").or(l.strip_prefix("ShdPnd:")))
        .any(|mask| u64::from_str_radix(mask.trim(), 16).is_ok_and(|m| m & bit != 0))
}

/// Polls `done` (every millisecond) until it holds, at most [`PATIENCE`].
pub fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Clients that connect and then say nothing. Connecting does not block:
/// beyond the listen backlog of a server that does not accept, the kernel
/// keeps trying in the background.
pub struct IdleClients {
    pub sockets: Vec<Socket>,
    ports: HashSet<u16>,
    server: SocketAddr,
}

impl IdleClients {
    /// `n` clients, of which the first `accepted` connect one at a time,
    /// each once the server has accepted the one before (a burst would
    /// overflow the listen backlog, and the kernel retries a dropped
    /// connection only after a second).
    pub fn connect(server: SocketAddr, n: usize, accepted: usize) -> Self {
        let mut clients = IdleClients {
            sockets: Vec::new(),
            ports: HashSet::new(),
            server,
        };
        for i in 0..n {
            clients.connect_one();
            if i < accepted {
                clients.wait_accepted(i + 1);
            }
        }
        clients
    }

    fn connect_one(&mut self) {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket.set_nonblocking(true).unwrap();
        match socket.connect(&self.server.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(Errno::EINPROGRESS as i32) => {}
            Err(e) => panic!("connect: {e}"),
        }
        let port = socket.local_addr().unwrap().as_socket().unwrap().port();
        self.ports.insert(port);
        self.sockets.push(socket);
    }

    /// The local ports of the clients the server holds an accepted socket
    /// for: in `/proc/net/tcp`, a connection still in the listen backlog
    /// has no inode, an accepted one has its socket's, and one the server
    /// has closed has none again.
    pub fn accepted_ports(&self) -> Vec<u16> {
        let table = fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
        table
            .lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let port = |f: &str| u16::from_str_radix(f.rsplit(':').next()?, 16).ok();
                let (local, remote) = (port(fields.get(1)?)?, port(fields.get(2)?)?);
                let inode = fields.get(9)?;
                let ours = local == self.server.port() && self.ports.contains(&remote);
                (ours && *inode != "0").then_some(remote)
            })
            .collect()
    }

    /// Waits until the server has accepted `n` of the clients.
    pub fn wait_accepted(&self, n: usize) {
        until(&format!("{n} clients accepted"), || {
            self.accepted_ports().len() >= n
        });
    }

    /// Waits until the server holds none of the clients' connections
    /// (it closed them, or its processes are gone).
    pub fn wait_released(&self) {
        until("the server to release every client", || {
            self.accepted_ports().is_empty()
        });
    }

    /// Takes an accepted client out of the idle ones, as a blocking stream.
    pub fn take_accepted(&mut self) -> TcpStream {
        let accepted = self.accepted_ports();
        let i = self
            .sockets
            .iter()
            .position(|s| accepted.contains(&s.local_addr().unwrap().as_socket().unwrap().port()))
            .expect("an accepted client not taken yet");
        let socket = self.sockets.remove(i);
        socket.set_nonblocking(false).unwrap();
        let stream = TcpStream::from(socket);
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream
    }
}

/// Sends `request` and reads the reply to its end.
pub fn exchange(client: &mut TcpStream, request: &str) -> io::Result<String> {
    client.write_all(request.as_bytes())?;
    let mut reply = String::new();
    client.read_to_string(&mut reply)?;
    Ok(reply)
}

/// Asserts that the process exited with status 0.
pub fn assert_exited_0(status: ExitStatus, name: &str) {
    assert!(status.success(), "{name} ended with {status}");
}

/// Asserts that the process was ended by `SIGTERM`.
pub fn assert_killed_by_sigterm(status: ExitStatus, name: &str) {
    assert_eq!(status.signal(), Some(15), "{name} ended with {status}");
}

/// The lines a child prints on `stdout`, as they come.
pub fn lines(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (send, lines) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = send.send(line);
        }
    });
    lines
}

/// Waits at most [`PATIENCE`] for a line containing `what`.
pub fn expect_line(lines: &std::sync::mpsc::Receiver<String>, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(what) => return,
            Ok(_) => {}
            Err(err) => panic!("the child never said {what:?} ({err})"),
        }
    }
}

/// Runs `f` on another thread and returns what it returned, failing the
/// test if that takes longer than [`PATIENCE`] (the thread is left).
pub fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(f());
    });
    result
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("{what} never returned"))
}

/// `shutdown()` from another thread, at most [`PATIENCE`]; how long it took.
pub fn shutdown(stop: &ShutdownHandle) -> Duration {
    let stop = stop.clone();
    let start = Instant::now();
    bounded("shutdown()", move || stop.shutdown()).expect("called from another thread");
    start.elapsed()
}

/// A client the server cut: it reads end-of-file, no reply.
pub fn assert_cut(client: &mut TcpStream) {
    let mut rest = Vec::new();
    client
        .read_to_end(&mut rest)
        .expect("the end, not an error");
    assert!(rest.is_empty(), "got {rest:?}");
}

/// What [`serve_with_idle_clients`] returns: how long `server_close` took,
/// with the server, once the loop is stopped.
pub type Closed<D> = mpsc::Receiver<(Duration, SocketServer<TcpTransport, D>)>;

/// Serves `server` on a thread that closes it once the loop returns, and
/// connects `n` idle clients of which it has accepted `accepted`.
pub fn serve_with_idle_clients<D>(
    mut server: SocketServer<TcpTransport, D>,
    n: usize,
    accepted: usize,
) -> (ShutdownHandle, Closed<D>, IdleClients)
where
    D: Dispatch<TcpTransport> + Send + 'static,
{
    let address = *server.local_addr();
    let stop = server.shutdown_handle();
    let (done, closed) = mpsc::channel();
    thread::spawn(move || {
        server.serve_forever(Duration::from_millis(50)).unwrap();
        let start = Instant::now();
        server.server_close();
        let _ = done.send((start.elapsed(), server));
    });
    (stop, closed, IdleClients::connect(address, n, accepted))
}

/// Waits at most [`PATIENCE`] for `server_close` to return.
pub fn wait_closed<D: Dispatch<TcpTransport>>(
    closed: &Closed<D>,
) -> (Duration, SocketServer<TcpTransport, D>) {
    closed.recv_timeout(PATIENCE).expect("server_close returns")
}
