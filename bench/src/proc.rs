//! Server processes: every server runs in a process of its own, which
//! announces its address on stdout and is stopped with SIGTERM.

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{sysconf, Pid, SysconfVar};

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

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
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
        drop(self.child.stdin.take());
        end(&mut self.child)
    }
}

/// Stops `child` with SIGTERM (SIGKILL if it lingers) and reaps it.
///
/// # Errors
/// Waiting for the process failed.
pub fn end(child: &mut Child) -> io::Result<()> {
    let Ok(pid) = i32::try_from(child.id()) else {
        return child.kill();
    };
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(5));
    }
    eprintln!("warning: process {pid} ignored SIGTERM for {STOP_TIMEOUT:?}; killing it");
    child.kill()?;
    child.wait().map(drop)
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

/// The resident set of process `pid`, in KiB (`VmRSS` of
/// `/proc/PID/status`: its pages in memory, every thread's stack among
/// them; not the kernel's memory for its sockets and thread stacks).
///
/// # Errors
/// The process is gone, or the file is not as Linux writes it.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("no VmRSS in /proc/{pid}/status")))
}

/// The CPU time process `pid` has used so far, user and system, all its
/// threads (`utime` + `stime` of `/proc/PID/stat`), in seconds.
///
/// # Errors
/// The process is gone, or the file is not as Linux writes it.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name, in parentheses, may hold spaces: count fields
    // after its closing parenthesis (state is field 3; utime 14, stime 15).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let (Some(utime), Some(stime)) = (ticks(11), ticks(12)) else {
        return Err(io::Error::other(format!("unreadable /proc/{pid}/stat")));
    };
    let hz = sysconf(SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
    Ok((utime + stime) as f64 / hz as f64)
}

/// Makes room for `needed` open files in this process and the servers it
/// starts (they inherit the limit): raises the soft `RLIMIT_NOFILE`, and
/// the hard one when it is lower (which needs root).
///
/// # Errors
/// The limit could not be raised that far: what the limits are.
pub fn raise_fd_limit(needed: u64) -> io::Result<()> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= needed {
        return Ok(());
    }
    setrlimit(Resource::RLIMIT_NOFILE, needed, hard.max(needed)).map_err(|err| {
        io::Error::other(format!(
            "{needed} open files needed, the limit is {soft} (hard {hard}) and raising it \
             failed: {err} (run as root, or ulimit -n {needed})"
        ))
    })
}

/// Whether the system lets one process run `threads` threads: the kernel's
/// `threads-max`, `pid_max` and `max_map_count` (two maps a thread, its
/// stack and guard page), and `RLIMIT_NPROC` (which root is exempt from).
///
/// # Errors
/// Which limit is too low.
pub fn check_thread_limits(threads: u64) -> Result<(), String> {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    for (path, per_thread) in [
        ("/proc/sys/kernel/threads-max", 1),
        ("/proc/sys/kernel/pid_max", 1),
        ("/proc/sys/vm/max_map_count", 2),
    ] {
        if let Some(max) = read(path) {
            if max < threads * per_thread + 1000 {
                return Err(format!(
                    "{threads} threads need {path} above {} (it is {max})",
                    threads * per_thread + 1000
                ));
            }
        }
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NPROC).map_err(|e| e.to_string())?;
    if soft < threads + 100 && !nix::unistd::geteuid().is_root() {
        return Err(format!(
            "{threads} threads need RLIMIT_NPROC above {} (it is {soft}; ulimit -u)",
            threads + 100
        ));
    }
    Ok(())
}
