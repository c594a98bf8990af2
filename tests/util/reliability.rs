//! What the reliability tests share: servers on each in-process dispatch,
//! many clients at once, a handler that panics on request, the process's
//! own figures from `/proc` (descriptors, threads, memory, CPU time,
//! children), a lock for tests that measure the whole process, bounded
//! waits on states, and the test binary rerun as a child process.
//!
//! Declared by each `reliability_*` test with
//! `#[path = "util/reliability.rs"] mod reliability;` next to `mod util;`.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::thread;
use std::time::{Duration, Instant};

use socketserver::os::{SocketTransport, TcpConnection, TcpTransport};
use socketserver::{
    Connection, Dispatch, Error, HandlerFactory, InlineDispatch, PoolDispatch, ServerBuilder,
    SocketServer, StreamHandler, StreamRequest, ThreadingDispatch,
};

use crate::util::{Recorder, Serving, PATIENCE};

/// How `serve_forever` paces `service_actions` in these tests.
pub const POLL: Duration = Duration::from_millis(100);

/// The dispatches that serve inside the test process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InProcess {
    /// `InlineDispatch`: one request at a time on the serving thread.
    Inline,
    /// `ThreadingDispatch`, unbounded.
    Threading,
    /// `PoolDispatch` with its default workers.
    Pool,
}

/// Builds `builder` with `dispatch`, `factory` and `hooks`, and serves it
/// on a thread of its own until the returned [`Serving`] is dropped.
pub fn serve<T, F, H>(
    dispatch: InProcess,
    builder: ServerBuilder<T>,
    factory: F,
    hooks: H,
) -> (T::Addr, Serving)
where
    T: SocketTransport + Send + 'static,
    InlineDispatch<F, H>: Dispatch<T, T::Kind> + Send + 'static,
    ThreadingDispatch<F, H>: Dispatch<T, T::Kind> + Send + 'static,
    PoolDispatch<F, H>: Dispatch<T, T::Kind> + Send + 'static,
    F: HandlerFactory,
{
    fn start<T, D>(server: std::io::Result<SocketServer<T, D>>) -> (T::Addr, Serving)
    where
        T: SocketTransport + Send + 'static,
        D: Dispatch<T, T::Kind> + Send + 'static,
    {
        let server = server.expect("build the server");
        (server.local_addr().clone(), Serving::start(server, POLL))
    }
    match dispatch {
        InProcess::Inline => {
            start(builder.build_with(|config| config.with_hooks(hooks).inline(factory)))
        }
        InProcess::Threading => start(
            builder.build_with(|config| ThreadingDispatch::new(factory, config.with_hooks(hooks))),
        ),
        InProcess::Pool => {
            start(builder.build_with(|config| PoolDispatch::new(factory, config.with_hooks(hooks))))
        }
    }
}

/// [`serve`] for TCP with recording hooks.
pub fn serve_tcp<F>(
    dispatch: InProcess,
    builder: ServerBuilder<TcpTransport>,
    factory: F,
    hooks: Recorder,
) -> (SocketAddr, Serving)
where
    F: HandlerFactory + Send + Sync + 'static,
    F::Handler: StreamHandler<TcpConnection>,
{
    serve(dispatch, builder, factory, hooks)
}

/// The payload of the panics the tests ask for; the panic hook keeps quiet
/// about them (see [`quiet_planned_panics`]).
pub const PLANNED: &str = "planned panic";

/// Takes the lock that runs one test at a time in binaries whose tests
/// measure the whole process (descriptors, threads, memory). A test that
/// failed holding it does not stop the others.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Installs, once per process, a panic hook that prints nothing for
/// [`PLANNED`] panics and defers to the previous hook for any other.
pub fn quiet_planned_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&PLANNED) {
                previous(info);
            }
        }));
    });
}

/// Polls `probe` every millisecond until `done` accepts its value, which
/// it returns; after [`PATIENCE`], fails naming `what` and the last value.
pub fn wait_until<T: std::fmt::Debug>(
    what: &str,
    mut probe: impl FnMut() -> T,
    mut done: impl FnMut(&T) -> bool,
) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let value = probe();
        if done(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: last seen {value:?}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `client(i)` for every `i` in `0..total`, spread over `threads`
/// client threads; a failing client fails the caller.
pub fn drive(total: usize, threads: usize, client: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(0);
    thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                client(i);
            });
        }
    });
}

/// Sends `line`, shuts the sending side, and reads the reply to EOF;
/// returns the client's port with it. Reads give up after [`PATIENCE`].
pub fn ask(addr: SocketAddr, line: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(line).expect("send");
    stream.shutdown(Shutdown::Write).expect("shutdown");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("a reply, then EOF");
    (stream.local_addr().unwrap().port(), reply)
}

/// The port of a client address as hooks print it (`127.0.0.1:40000`).
pub fn port_of(client: &str) -> u16 {
    client
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {client:?}"))
}

/// Reads a number on a line; panics ([`PLANNED`]) when it is a multiple of
/// ten, else replies `ok {n}`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TenthPanics;

impl<C: Connection> StreamHandler<C> for TenthPanics {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let line = socketserver::handlers::strip(req.rfile.read_line()?);
        let n: u64 = std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(Error::Handler("not a number"))?;
        if n.is_multiple_of(10) {
            std::panic::panic_any(PLANNED);
        }
        req.wfile.write_all(format!("ok {n}").as_bytes())
    }
}

/// Requests of the panic tests.
pub const PANIC_REQUESTS: usize = 1000;

/// Sends [`PANIC_REQUESTS`] numbered requests to a [`TenthPanics`] server
/// from four clients at once, checks every reply (`ok {n}`, or nothing
/// after a panic), and returns the ports of the clients whose request
/// panicked.
pub fn ask_tenth_panics(addr: SocketAddr) -> Vec<u16> {
    let panicked = Mutex::new(Vec::new());
    drive(PANIC_REQUESTS, 4, |n| {
        let (port, reply) = ask(addr, format!("{n}\n").as_bytes());
        if n.is_multiple_of(10) {
            assert_eq!(reply, b"", "request {n} panicked: closed without a reply");
            panicked.lock().unwrap().push(port);
        } else {
            assert_eq!(reply, format!("ok {n}").as_bytes(), "request {n}");
        }
    });
    let mut panicked = panicked.into_inner().unwrap();
    panicked.sort_unstable();
    assert_eq!(panicked.len(), PANIC_REQUESTS / 10);
    panicked
}

/// Checks that `reports` (client address, error) are one
/// `Error::Panicked` for each client in `panicked`, and nothing else.
pub fn assert_each_panic_reported_once(reports: &[(String, Error)], panicked: &[u16]) {
    let others: Vec<_> = reports
        .iter()
        .filter(|(_, e)| !matches!(e, Error::Panicked))
        .collect();
    assert!(others.is_empty(), "errors other than panics: {others:?}");
    let mut reported: Vec<u16> = reports.iter().map(|(client, _)| port_of(client)).collect();
    reported.sort_unstable();
    assert_eq!(
        reported, panicked,
        "each panic reported once, by its client"
    );
}

/// Samples a count on a thread of its own until [`finish`](Self::finish),
/// and keeps the highest (the first sample is taken at once).
pub struct Peak {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicUsize>,
    sampler: thread::JoinHandle<()>,
}

impl Peak {
    /// Starts sampling `count` every half millisecond, for at most a minute.
    pub fn start(count: impl Fn() -> usize + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicUsize::new(count()));
        let sampler = {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            thread::spawn(move || {
                let deadline = Instant::now() + 6 * PATIENCE;
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    peak.fetch_max(count(), Ordering::SeqCst);
                    thread::sleep(Duration::from_micros(500));
                }
            })
        };
        Peak {
            stop,
            peak,
            sampler,
        }
    }

    /// Stops sampling; the highest count seen.
    pub fn finish(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.sampler.join().expect("the sampler");
        self.peak.load(Ordering::SeqCst)
    }
}

/// The descriptors open in this process: number and what it refers to
/// (`socket:[inode]`, a path, ...).
pub type FdTable = std::collections::BTreeSet<(String, String)>;

/// A snapshot of this process's descriptors, without the one reading them.
pub fn fd_table() -> FdTable {
    let listing = format!("/proc/{}/fd", std::process::id());
    fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let target = fs::read_link(entry.path()).ok()?.display().to_string();
            let fd = entry.file_name().to_string_lossy().into_owned();
            (target != listing).then_some((fd, target))
        })
        .collect()
}

/// The descriptors open now that were not in `earlier`. Comparing what
/// they refer to, not only how many there are, keeps descriptors that
/// earlier tests' threads close meanwhile from hiding a leak, and a
/// reused number from passing for an old descriptor.
pub fn new_fds(earlier: &FdTable) -> Vec<(String, String)> {
    fd_table().difference(earlier).cloned().collect()
}

/// The threads of this process whose name starts with `prefix` (threads
/// are named at start; names longer than 15 bytes are cut).
pub fn threads_named(prefix: &str) -> usize {
    fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(Result::ok)
        .filter(|task| {
            fs::read_to_string(task.path().join("comm")).is_ok_and(|name| name.starts_with(prefix))
        })
        .count()
}

fn status_kib(field: &str) -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// This process's resident memory, in KiB.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// The highest resident memory since the last [`reset_peak_rss`], in KiB.
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

/// Starts measuring the resident memory peak afresh (Linux 4.0 and later).
pub fn reset_peak_rss() {
    fs::write("/proc/self/clear_refs", "5")
        .expect("resetting the RSS peak needs a writable /proc/self/clear_refs (Linux >= 4.0)");
}

/// The fields of `/proc/{pid}/stat` after the command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    Some(after.split(' ').map(str::to_owned).collect())
}

/// CPU time (user and system) process `pid` has used, in clock ticks of
/// 10 ms (Linux's `USER_HZ` is 100 on every architecture it runs on).
pub fn cpu_ticks(pid: u32) -> u64 {
    let fields = stat_fields(pid).unwrap_or_else(|| panic!("/proc/{pid}/stat"));
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let tick = |i: usize| fields[i].parse::<u64>().expect("a tick count");
    tick(11) + tick(12)
}

/// Length of a clock tick of [`cpu_ticks`].
pub const TICK: Duration = Duration::from_millis(10);

/// The processes whose parent is this one, each with whether it is a
/// zombie (ended and not reaped).
pub fn children() -> Vec<(u32, bool)> {
    let me = std::process::id().to_string();
    fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let fields = stat_fields(pid)?;
            (fields.get(1)? == &me).then(|| (pid, fields[0] == "Z"))
        })
        .collect()
}

/// The zombie children of this process.
pub fn zombie_children() -> Vec<u32> {
    children()
        .into_iter()
        .filter_map(|(pid, zombie)| zombie.then_some(pid))
        .collect()
}

/// This test binary run again as a child process for one test, driven
/// through its stdin and read through its stdout. Killed if still running
/// when dropped.
pub struct Rerun {
    process: std::process::Child,
    commands: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Rerun {
    /// Runs test `name` alone in a child with the environment variable
    /// `marker` set (its sign to play the child's part) and `env` added,
    /// under `ulimit -n {nofile}` when given.
    pub fn start(name: &str, marker: &str, nofile: Option<u32>, env: &[(&str, &str)]) -> Self {
        use std::process::{Command, Stdio};
        let limit = nofile.map_or(String::new(), |n| format!("ulimit -n {n} && "));
        let mut process = Command::new("sh")
            .arg("-c")
            .arg(format!("{limit}exec \"$0\" \"$@\""))
            .arg(std::env::current_exe().expect("the test binary"))
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(marker, "1")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("rerun the test binary");
        let commands = process.stdin.take().unwrap();
        let stdout = process.stdout.take().unwrap();
        let (send, lines) = std::sync::mpsc::channel();
        let reader = thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Rerun {
            process,
            commands,
            lines,
            reader: Some(reader),
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.process.id()
    }

    /// Sends one command line.
    pub fn send(&mut self, command: &str) {
        writeln!(self.commands, "{command}").expect("the child reads its commands");
    }

    /// What follows `prefix` in the next line of the child's output that
    /// has it (the first may follow the harness's `test NAME ... `);
    /// waits at most [`PATIENCE`].
    pub fn expect(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some((_, rest)) = line.split_once(prefix) {
                        return rest.to_owned();
                    }
                }
                Err(err) => panic!("no {prefix:?} from the child ({err}; its errors are above)"),
            }
        }
    }

    /// Waits for the child to end and checks that its test passed.
    pub fn finish(mut self) {
        let result = self.expect("test result: ");
        assert!(
            result.starts_with("ok"),
            "the child's test failed: {result}"
        );
        let status = self.process.wait().expect("the child's status");
        assert!(status.success(), "the child failed: {status}");
    }
}

impl Drop for Rerun {
    /// Also waits for the thread reading the child's output, so that its
    /// end of the pipe is closed when the test ends.
    fn drop(&mut self) {
        if self.process.try_wait().ok().flatten().is_none() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The command lines a [`Rerun`] child receives.
pub fn commands() -> impl Iterator<Item = String> {
    std::io::stdin()
        .lines()
        .map(|line| line.expect("a command"))
}
