//! Pre-forked workers on one port: N long-lived processes serving one
//! listening socket, kept at N by a supervisor (Apache's prefork,
//! gunicorn's sync workers, nginx's worker processes).

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use socketserver_core::Dispatch;

use crate::shutdown::{Shared, ShutdownHandle, CUT_GRACE};
use crate::sys::{self, Forked, Lifeline};
use crate::transport::{
    SocketTransport, TcpTransport, UdpTransport, UnixDatagramTransport, UnixStreamTransport,
};
use crate::{SocketServer, DEFAULT_POLL_INTERVAL};

/// A worker that ended sooner than this after it started is replaced only
/// after [`RESPAWN_PAUSE`], so a worker that cannot start does not make the
/// supervisor fork in a loop.
pub const MIN_WORKER_LIFETIME: Duration = Duration::from_secs(1);

/// How long the supervisor waits before replacing a worker that lived less
/// than [`MIN_WORKER_LIFETIME`].
pub const RESPAWN_PAUSE: Duration = Duration::from_secs(1);

mod sealed {
    /// The transports a worker process can take over after the fork.
    pub trait Forkable {
        /// Gives the worker's copy of the socket its own wake-up and
        /// waiter, and leaves a Unix socket file to the supervisor.
        fn become_worker(&mut self) -> std::io::Result<()>;

        /// Stops the supervisor's waits from waking for the socket.
        fn stop_taking(&mut self) -> std::io::Result<()>;
    }
}

/// The server sockets pre-forked workers can share: every transport of
/// this crate. Sealed.
pub trait Forkable: sealed::Forkable {}

macro_rules! forkable {
    ($($transport:ty),*) => {$(
        impl sealed::Forkable for $transport {
            fn become_worker(&mut self) -> io::Result<()> {
                <$transport>::become_worker(self)
            }

            fn stop_taking(&mut self) -> io::Result<()> {
                <$transport>::stop_taking(self)
            }
        }

        impl Forkable for $transport {}
    )*};
}

forkable!(
    TcpTransport,
    UdpTransport,
    UnixStreamTransport,
    UnixDatagramTransport
);

/// Serves one built server from `N` worker processes, each running the
/// server's own loop (`serve_forever` with its dispatch: synchronous,
/// threading or pool) on the listening socket they all share, under a
/// supervisor that replaces a worker that dies.
///
/// ```no_run
/// use socketserver_core::handlers::UpperLine;
/// use socketserver_std::{Prefork, TcpServer};
///
/// let server = TcpServer::new("127.0.0.1:8000", || UpperLine)?;
/// let mut prefork = Prefork::new(server, 4);
/// // SIGINT/SIGTERM stop the supervisor, which stops the workers.
/// let _signals = prefork.shutdown_handle().stop_on_signals()?;
/// prefork.serve()?;
/// # std::io::Result::Ok(())
/// ```
///
/// # The workers
/// Each is forked from the supervisor with the server as it was built
/// (bound and listening), and takes requests from the shared socket as a
/// single server would; the kernel hands each connection to one of the
/// workers that wait. A connection still waiting in the listen backlog is
/// not lost when a worker dies: another takes it. A worker ends:
/// - when the supervisor stops it (`SIGTERM`, sent by
///   [`serve`](Self::serve) when shutdown is requested): it stops taking
///   requests and drains its own within the server's
///   [drain timeout](crate::ShutdownHandle::set_drain_timeout), as a
///   server with [`stop_on_signals`](crate::ShutdownHandle::stop_on_signals)
///   does;
/// - when the supervisor *process* dies, whichever of its threads forked
///   it (as [forked children](crate::ForkingDispatch) do; on Linux and
///   FreeBSD);
/// - never by a stop signal from anyone else: `SIGINT` and `SIGTERM` sent
///   to the whole process group (Ctrl-C, systemd's
///   `KillMode=control-group`) stop the supervisor, which stops the
///   workers after their drain.
///
/// A worker that ends otherwise (a crash, `SIGKILL`) is replaced at once,
/// or after [`RESPAWN_PAUSE`] if it lived less than
/// [`MIN_WORKER_LIFETIME`].
///
/// # Threads
/// The supervisor runs one small thread per worker, blocked in `waitpid`
/// for it. Workers are forked from the thread that calls `serve`, with the
/// caveat of [`ForkingDispatch`](crate::ForkingDispatch) about locks held
/// by other threads at the fork.
pub struct Prefork<T, D>
where
    T: SocketTransport,
    D: Dispatch<T, T::Kind>,
{
    server: SocketServer<T, D>,
    workers: usize,
    poll_interval: Duration,
    replaced: u64,
}

/// A running worker, as the supervisor sees it.
struct Worker {
    pid: u32,
    started: Instant,
    /// Closed only once the worker has been reaped.
    _lifeline: Lifeline,
}

/// The workers that have ended and been reaped, as their watchers report
/// them.
#[derive(Default)]
struct Ended {
    pids: Mutex<Vec<u32>>,
    changed: Condvar,
}

impl<T, D> Prefork<T, D>
where
    T: SocketTransport + Forkable,
    D: Dispatch<T, T::Kind>,
{
    /// `server` (built, bound and listening) served by `workers` processes.
    ///
    /// # Panics
    /// If `workers` is zero.
    pub fn new(server: SocketServer<T, D>, workers: usize) -> Self {
        assert!(workers > 0, "a prefork server needs at least one worker");
        Prefork {
            server,
            workers,
            poll_interval: DEFAULT_POLL_INTERVAL,
            replaced: 0,
        }
    }

    /// The `poll_interval` of each worker's `serve_forever`. Default:
    /// [`DEFAULT_POLL_INTERVAL`].
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Stops [`serve`](Self::serve) from another thread, or from a signal
    /// ([`ShutdownHandle::stop_on_signals`]).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.server.shutdown_handle()
    }

    /// The address the workers serve.
    pub fn local_addr(&self) -> &T::Addr {
        self.server.local_addr()
    }

    /// The server the workers run.
    pub fn server(&self) -> &SocketServer<T, D> {
        &self.server
    }

    /// How many workers ended unasked and were replaced.
    pub fn replaced(&self) -> u64 {
        self.replaced
    }

    /// Forks the workers and keeps them at the configured number until a
    /// shutdown is requested; then sends each `SIGTERM`, waits for them to
    /// drain and end (at most the drain timeout and one more second, after
    /// which the rest get `SIGKILL`), reaps them all and returns. Blocks.
    ///
    /// The supervisor itself takes no request. Call it again to start new
    /// workers; [`server_close`](SocketServer::server_close) (or dropping
    /// this) closes the socket.
    ///
    /// # Errors
    /// The socket is closed, or the supervisor could not wait; workers
    /// already started are stopped first. A failed fork is logged and
    /// retried after [`RESPAWN_PAUSE`].
    pub fn serve(&mut self) -> io::Result<()> {
        let shared = Arc::clone(&self.shutdown_handle().0);
        let _serving = shared.enter_serving();
        self.server.transport_mut().stop_taking()?;
        let ended = Arc::new(Ended::default());
        let mut live = Vec::new();
        let mut watchers = Vec::new();
        let result = self.supervise(&shared, &ended, &mut live, &mut watchers);
        stop_workers(&shared, &ended, &mut live);
        for watcher in watchers {
            let _ = watcher.join();
        }
        shared.clear();
        result
    }

    /// Keeps the workers at their number until shutdown is requested.
    fn supervise(
        &mut self,
        shared: &Arc<Shared>,
        ended: &Arc<Ended>,
        live: &mut Vec<Worker>,
        watchers: &mut Vec<JoinHandle<()>>,
    ) -> io::Result<()> {
        let mut respawn_at: Option<Instant> = None;
        loop {
            if shared.is_requested() {
                return Ok(());
            }
            for pid in take_ended(ended) {
                if let Some(i) = live.iter().position(|w| w.pid == pid) {
                    let worker = live.swap_remove(i);
                    self.replaced += 1;
                    if worker.started.elapsed() < MIN_WORKER_LIFETIME {
                        respawn_at = Some(Instant::now() + RESPAWN_PAUSE);
                    }
                }
            }
            let now = Instant::now();
            let paused = respawn_at.filter(|&at| at > now);
            if paused.is_none() {
                while live.len() < self.workers {
                    match self.fork_worker(shared, ended, live, watchers) {
                        Ok(worker) => live.push(worker),
                        Err(err) => {
                            log::error!("cannot fork a worker: {err}");
                            respawn_at = Some(Instant::now() + RESPAWN_PAUSE);
                            break;
                        }
                    }
                }
            }
            let timeout = respawn_at
                .filter(|_| live.len() < self.workers)
                .map(|at| at.saturating_duration_since(Instant::now()));
            shared.waiter.wait(timeout)?;
        }
    }

    /// Forks one worker and starts its watcher; in the child, becomes the
    /// worker and never returns.
    fn fork_worker(
        &mut self,
        shared: &Arc<Shared>,
        ended: &Arc<Ended>,
        live: &mut Vec<Worker>,
        watchers: &mut Vec<JoinHandle<()>>,
    ) -> io::Result<Worker> {
        match sys::fork()? {
            Forked::Parent(pid, lifeline) => {
                match watch(pid, Arc::clone(shared), Arc::clone(ended)) {
                    Ok(watcher) => watchers.push(watcher),
                    Err(err) => {
                        // Unwatched, it could not be replaced: not kept.
                        sys::signal_child(pid, Signal::SIGKILL);
                        let _ = sys::reap(pid, true);
                        return Err(err);
                    }
                }
                Ok(Worker {
                    pid,
                    started: Instant::now(),
                    _lifeline: lifeline,
                })
            }
            Forked::Child => {
                // The watcher threads do not exist in this process: their
                // handles must not be detached. The siblings' lifelines
                // must be closed, or they outlive the supervisor.
                std::mem::forget(std::mem::take(watchers));
                live.clear();
                run_worker(&mut self.server, self.poll_interval)
            }
        }
    }
}

/// Starts the thread that reaps worker `pid` when it ends and reports it.
fn watch(pid: u32, shared: Arc<Shared>, ended: Arc<Ended>) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("socketserver-prefork-watch".into())
        .spawn(move || {
            let _ = sys::reap(pid, true);
            ended
                .pids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(pid);
            ended.changed.notify_all();
            let _ = shared.waiter.notify();
        })
}

fn take_ended(ended: &Ended) -> Vec<u32> {
    std::mem::take(&mut *ended.pids.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Stops the workers: `SIGTERM`, then after the drain and [`CUT_GRACE`]
/// `SIGKILL` to those left; returns once all have been reaped.
fn stop_workers(shared: &Shared, ended: &Ended, live: &mut Vec<Worker>) {
    let drain = shared.drain_timeout();
    for worker in live.iter() {
        sys::signal_child(worker.pid, Signal::SIGTERM);
    }
    let deadline = drain.map(|d| Instant::now() + d + CUT_GRACE);
    let mut pids = ended.pids.lock().unwrap_or_else(PoisonError::into_inner);
    let mut killed = false;
    loop {
        live.retain(|w| !pids.contains(&w.pid));
        if live.is_empty() {
            pids.clear();
            return;
        }
        let left = deadline.map(|at| at.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) && !killed {
            for worker in live.iter() {
                sys::signal_child(worker.pid, Signal::SIGKILL);
            }
            killed = true;
        }
        pids = match left.filter(|_| !killed) {
            Some(left) => {
                ended
                    .changed
                    .wait_timeout(pids, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => ended
                .changed
                .wait(pids)
                .unwrap_or_else(PoisonError::into_inner),
        };
    }
}

/// A worker's life: its own wake-up, stop signals from the supervisor,
/// the server's loop, its close; then `_exit` (status 1 after an error or a
/// panic), never returning into the supervisor's code.
fn run_worker<T, D>(server: &mut SocketServer<T, D>, poll_interval: Duration) -> !
where
    T: SocketTransport + Forkable,
    D: Dispatch<T, T::Kind>,
{
    let run = panic::catch_unwind(AssertUnwindSafe(|| -> io::Result<()> {
        server.transport_mut().become_worker()?;
        let _signals = server.shutdown_handle().stop_on_signals()?;
        server.serve_forever(poll_interval)?;
        server.server_close();
        Ok(())
    }));
    let failed = match run {
        Ok(Ok(())) => false,
        Ok(Err(err)) => {
            log::error!("worker {} failed: {err}", std::process::id());
            true
        }
        Err(_) => true,
    };
    sys::exit_child(i32::from(failed))
}
