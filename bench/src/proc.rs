//! Server processes: every server runs in a process of its own, which
//! announces its address on stdout and is stopped with SIGTERM.

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a server may take to announce its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The CPython script serving the same handlers (`bench/cpython_servers.py`).
pub fn cpython_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("cpython_servers.py")
}

/// The command that runs one of this program's own servers.
pub fn own(args: &[&str]) -> io::Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command.args(args);
    Ok(command)
}

/// The command that runs the CPython script with `args`.
pub fn cpython(args: &[&str]) -> Command {
    let mut command = Command::new("python3");
    command.arg(cpython_script()).args(args);
    command
}

/// A running server process.
pub struct Server {
    child: Child,
    lines: mpsc::Receiver<io::Result<String>>,
    /// The address it announced.
    pub address: SocketAddr,
}

impl Server {
    /// Starts `command` and waits for the first line on its stdout that
    /// `announce` turns into an address (by default `listening on ADDR`).
    ///
    /// # Errors
    /// The process could not start, or exited or stayed silent before
    /// announcing an address.
    pub fn start_with(
        command: &mut Command,
        announce: fn(&str) -> Option<SocketAddr>,
    ) -> io::Result<Server> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("{command:?}: {e}")))?;
        let lines = read_lines(child.stdout.take().expect("piped"));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match lines.recv_timeout(left) {
                Ok(Ok(line)) => line,
                Ok(Err(err)) => break Err(err),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    break Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{command:?} announced no address"),
                    ))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break Err(io::Error::other(format!(
                        "{command:?} exited before announcing its address"
                    )))
                }
            };
            if let Some(address) = announce(line.trim_end()) {
                return Ok(Server {
                    child,
                    lines,
                    address,
                });
            }
        }
        .inspect_err(|_| {
            let _ = child.kill();
            let _ = child.wait();
        })
    }

    /// [`start_with`](Self::start_with) for `listening on ADDR`.
    ///
    /// # Errors
    /// See [`start_with`](Self::start_with).
    pub fn start(command: &mut Command) -> io::Result<Server> {
        Self::start_with(command, |line| {
            line.strip_prefix("listening on ")?.parse().ok()
        })
    }

    /// Sends one line to the process's stdin.
    ///
    /// # Errors
    /// The process closed its stdin.
    pub fn send(&mut self, line: &str) -> io::Result<()> {
        let stdin: &mut ChildStdin = self.child.stdin.as_mut().expect("piped");
        writeln!(stdin, "{line}")?;
        stdin.flush()
    }

    /// The next line the process prints, waiting at most `timeout`.
    ///
    /// # Errors
    /// The process exited, or printed nothing in time.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the server printed nothing in time",
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(io::Error::other("the server exited")),
        }
    }

    /// Stops the process with SIGTERM (SIGKILL if it lingers) and reaps it.
    ///
    /// # Errors
    /// Waiting for the process failed.
    pub fn stop(mut self) -> io::Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> io::Result<()> {
        let Ok(pid) = i32::try_from(self.child.id()) else {
            return self.child.kill();
        };
        drop(self.child.stdin.take());
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(5));
        }
        eprintln!("warning: server {pid} ignored SIGTERM for {STOP_TIMEOUT:?}; killing it");
        self.child.kill()?;
        self.child.wait().map(drop)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.terminate();
        }
    }
}

/// Forwards the lines of `stdout` to a channel, from a thread of its own.
fn read_lines(stdout: ChildStdout) -> mpsc::Receiver<io::Result<String>> {
    let (send, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

/// Whether `command` (with `args`) runs and exits successfully.
pub fn available(command: &str, args: &[&str]) -> bool {
    Command::new(command)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
