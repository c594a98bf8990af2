//! A fixed set of worker threads fed through a bounded queue: a threading
//! server without the cost of starting a thread per request, for short
//! connections.

use std::collections::VecDeque;
use std::io;
use std::net::ToSocketAddrs;
use std::panic::{self, AssertUnwindSafe};
#[cfg(unix)]
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socketserver_core::{DefaultHooks, Error, HandlerFactory};

use crate::concurrent::{
    concurrent_dispatch, wait_until, Admission, Buffers, Concurrent, Drain, Job, Runner,
    ThreadOptions, Turn, ADMIT_RECHECK,
};
use crate::dispatch::{BufferSizes, DispatchConfig};
use crate::server::new_with_defaults;
use crate::shutdown::CUT_GRACE;
use crate::transport::TcpTransport;
#[cfg(unix)]
use crate::transport::UnixStreamTransport;
use crate::SocketServer;

/// Hands each request to one of a fixed number of worker threads (beyond
/// Python; a `ThreadingMixIn` whose threads are started once).
///
/// **For short connections.** A worker owns its connection until the
/// handler returns, so `workers` persistent connections (keep-alive
/// clients) hold every worker for as long as they stay open. For those,
/// use a thread per connection ([`ThreadingDispatch`](crate::ThreadingDispatch))
/// or a dispatch that parks idle connections.
///
/// The workers start with the first request and each allocates its
/// buffers once. Requests taken while every worker is busy wait in a queue
/// of [`queue_capacity`](Self::queue_capacity); when it is full, taking the
/// next request waits until a worker frees a place, while further clients
/// wait in the listen backlog. At most `workers` handlers run at once and
/// at most `workers + queue_capacity` requests are held.
///
/// No client waits for ever: a request is **refused** when it has waited
/// [`queue_timeout`](Self::queue_timeout) for a worker (in the queue, or
/// for a place in it), and, while the queue is full and no worker has
/// taken a request for that long, each new request is refused at once,
/// which empties the listen backlog instead of leaving clients in it. A refused
/// request is reported to `handle_error` (by default a line on stderr with
/// the client's address), its connection closed unserved, and counted
/// ([`refused`](Self::refused)).
///
/// Closing the server stops the queue; the workers serve what is already
/// queued and end. With [`block_on_close`](Self::block_on_close) (the
/// default) closing waits for that, within the server's drain timeout. Errors and panics are reported to
/// `handle_error` as with [`ThreadingDispatch`](crate::ThreadingDispatch);
/// a worker survives a panicking hook.
pub struct PoolDispatch<F, H = DefaultHooks> {
    inner: Concurrent<Pool, F, H>,
}

/// The default number of pool workers: the available parallelism plus
/// four, at most 32 (the default of Python's `ThreadPoolExecutor`), since
/// handlers mostly wait on their clients.
pub fn default_workers() -> usize {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    (cpus + 4).min(32)
}

impl<F: HandlerFactory, H> PoolDispatch<F, H> {
    /// Serves with handlers from `factory` and the config's hooks, on
    /// [`default_workers`] workers with buffers of the config's sizes each
    /// (`config` as for [`ThreadingDispatch::new`](crate::ThreadingDispatch::new)).
    pub fn new(factory: F, config: impl Into<DispatchConfig<H>>) -> Self {
        let DispatchConfig { sizes, hooks } = config.into();
        let workers = default_workers();
        let pool = Pool {
            workers,
            capacity: workers,
            timeout: DEFAULT_QUEUE_TIMEOUT,
            block_on_close: true,
            threads: ThreadOptions::default(),
            sizes,
            queue: Arc::new(Queue::default()),
            handles: Vec::new(),
            started: false,
        };
        PoolDispatch {
            inner: Concurrent::new(factory, hooks, sizes, pool),
        }
    }

    /// The number of worker threads. Default: [`default_workers`].
    ///
    /// # Panics
    /// If `n` is zero, or the workers have already started.
    pub fn workers(mut self, n: usize) -> Self {
        assert!(n > 0, "a pool needs at least one worker");
        assert!(!self.inner.runner.started, "the workers already started");
        self.inner.runner.workers = n;
        self
    }

    /// How many taken requests may wait for a worker. Default: as many as
    /// there are workers. When the queue is full, taking the next request
    /// blocks until a worker frees a place (a shutdown request ends that
    /// wait within 20 ms).
    ///
    /// # Panics
    /// If `n` is zero: a request taken while every worker is busy must have
    /// a place to wait.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        assert!(n > 0, "the queue must hold at least one request");
        self.inner.runner.capacity = n;
        self
    }

    /// The longest a request waits for a worker before it is refused (see
    /// the [type's documentation](Self)). Default: 5 s (as HAProxy's
    /// `timeout queue` commonly is).
    ///
    /// # Panics
    /// If `timeout` is zero.
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        assert!(!timeout.is_zero(), "the queue timeout must be above zero");
        self.inner.runner.timeout = timeout;
        self
    }

    /// Requests refused so far because no worker took them in time.
    pub fn refused(&self) -> u64 {
        self.inner.runner.queue.refused.load(Ordering::Relaxed)
    }

    /// A counter of [`refused`](Self::refused) requests that can be read
    /// from another thread while the server serves.
    pub fn refused_counter(&self) -> RefusedCounter {
        RefusedCounter(Arc::clone(&self.inner.runner.queue))
    }

    /// Closing the server waits until the workers have served the queue
    /// and ended. Default: `true`.
    ///
    /// The wait is bounded by the server's
    /// [drain timeout](crate::ShutdownHandle::set_drain_timeout): once it
    /// has passed, the connections of the requests running or queued are
    /// cut, so their handlers end at once; closing waits at most a second
    /// more. With no drain bound it waits for ever.
    pub fn block_on_close(mut self, on: bool) -> Self {
        self.set_block_on_close(on);
        self
    }

    /// Changes [`block_on_close`](Self::block_on_close) on a built server.
    pub fn set_block_on_close(&mut self, on: bool) {
        self.inner.runner.block_on_close = on;
    }

    /// Names the workers `{prefix}-1` ... `{prefix}-N`. Default: unnamed.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.inner.runner.threads.name = Some(prefix.into());
        self
    }

    /// The workers' stack size, in bytes. Default: Rust's.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.inner.runner.threads.stack_size = Some(bytes);
        self
    }

    /// The number of workers serving (or to serve, before the first
    /// request).
    pub fn worker_count(&self) -> usize {
        let pool = &self.inner.runner;
        if pool.started {
            pool.handles.len()
        } else {
            pool.workers
        }
    }

    /// Requests taken and waiting for a worker.
    pub fn queued(&self) -> usize {
        self.inner.runner.queue.state().jobs.len()
    }

    /// The hooks.
    pub fn hooks(&self) -> &H {
        self.inner.hooks()
    }

    /// The handler factory.
    pub fn factory(&self) -> &F {
        self.inner.factory()
    }
}

concurrent_dispatch!(PoolDispatch);

/// How long a request may wait for a worker by default.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads a pool's count of refused requests from any thread (see
/// [`PoolDispatch::refused_counter`]).
#[derive(Clone)]
pub struct RefusedCounter(Arc<Queue>);

impl RefusedCounter {
    /// Requests refused so far.
    pub fn get(&self) -> u64 {
        self.0.refused.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for RefusedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RefusedCounter").field(&self.get()).finish()
    }
}

/// A request waiting for a worker, and since when.
struct Queued {
    job: Job,
    since: Instant,
}

struct QueueState {
    jobs: VecDeque<Queued>,
    closed: bool,
    /// Workers started and not yet ended.
    workers: usize,
    /// Workers running a request.
    busy: usize,
    /// When a worker last took a request (or the pool started).
    last_taken: Instant,
}

impl Default for QueueState {
    fn default() -> Self {
        QueueState {
            jobs: VecDeque::new(),
            closed: false,
            workers: 0,
            busy: 0,
            last_taken: Instant::now(),
        }
    }
}

#[derive(Default)]
struct Queue {
    refused: AtomicU64,
    state: Mutex<QueueState>,
    /// Workers wait here for a job (or the close).
    filled: Condvar,
    /// The serving thread waits here for a place in a full queue.
    drained: Condvar,
    /// Closing waits here for the workers to end.
    ended: Condvar,
}

/// Counts a worker out when it ends, even by a panic.
struct Worker<'q>(&'q Queue);

impl Drop for Worker<'_> {
    fn drop(&mut self) {
        self.0.state().workers -= 1;
        self.0.ended.notify_all();
    }
}

impl Queue {
    fn state(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A worker: runs jobs until the queue is closed and empty.
    fn work(&self, mut bufs: Buffers) {
        let _counted = Worker(self);
        let mut state = self.state();
        loop {
            if let Some(queued) = state.jobs.pop_front() {
                state.busy += 1;
                state.last_taken = Instant::now();
                drop(state);
                self.drained.notify_one();
                // Handler panics are caught inside the job; this catches a
                // panicking hook, so the worker stays.
                let job = queued.job;
                let _ = panic::catch_unwind(AssertUnwindSafe(|| job(Turn::Serve(&mut bufs))));
                state = self.state();
                state.busy -= 1;
            } else if state.closed {
                return;
            } else {
                state = self
                    .filled
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }

    /// Waits until every worker has ended, or until `deadline` (`None`:
    /// for ever); whether they have.
    fn wait_workers(&self, deadline: Option<Instant>) -> bool {
        wait_until(&self.ended, self.state(), deadline, |state| {
            state.workers > 0
        })
    }
}

struct Pool {
    workers: usize,
    capacity: usize,
    timeout: Duration,
    block_on_close: bool,
    threads: ThreadOptions,
    sizes: BufferSizes,
    queue: Arc<Queue>,
    handles: Vec<JoinHandle<()>>,
    started: bool,
}

impl Pool {
    fn start(&mut self) {
        self.started = true;
        for n in 1..=self.workers as u64 {
            let queue = Arc::clone(&self.queue);
            let sizes = self.sizes;
            // Counted before it starts, so that it can count itself out.
            self.queue.state().workers += 1;
            match self
                .threads
                .builder(n)
                .spawn(move || queue.work(Buffers::new(sizes)))
            {
                Ok(handle) => self.handles.push(handle),
                Err(err) => {
                    self.queue.state().workers -= 1;
                    log::error!("starting pool worker {n} failed: {err}");
                    break;
                }
            }
        }
    }
}

impl Drop for Pool {
    /// A pool dropped without `server_close` (outside a server) still lets
    /// its workers end once the queue is served.
    fn drop(&mut self) {
        self.queue.state().closed = true;
        self.queue.filled.notify_all();
    }
}

impl Queue {
    /// Counts a refusal and says why: no worker free within `timeout`.
    fn refusal(&self, timeout: Duration, workers: usize) -> Error {
        self.refused.fetch_add(1, Ordering::Relaxed);
        Error::from(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!(
                "refused: no pool worker free within {timeout:?} (all {workers} busy; a pool \
                 is for short connections)"
            ),
        ))
    }

    /// Refuses the queued requests that have waited `timeout`: reported
    /// and closed, with the queue unlocked.
    fn expire<'q>(
        &'q self,
        mut state: MutexGuard<'q, QueueState>,
        timeout: Duration,
        workers: usize,
    ) -> MutexGuard<'q, QueueState> {
        let now = Instant::now();
        let waited = |q: &Queued| now.saturating_duration_since(q.since) >= timeout;
        let mut expired = Vec::new();
        while state.jobs.front().is_some_and(waited) {
            expired.extend(state.jobs.pop_front());
        }
        if expired.is_empty() {
            return state;
        }
        drop(state);
        for queued in expired {
            let why = self.refusal(timeout, workers);
            (queued.job)(Turn::Refuse(&why));
        }
        self.state()
    }
}

impl Pool {
    /// Every worker busy, and none has taken a request for the timeout:
    /// the pool is held by long connections.
    fn stuck(&self, state: &QueueState) -> bool {
        state.busy >= self.handles.len() && state.last_taken.elapsed() >= self.timeout
    }
}

impl Runner for Pool {
    fn admit(&mut self, stop: &dyn Fn() -> bool) -> Admission {
        if !self.started {
            self.start();
        }
        let (queue, timeout, workers) = (&*self.queue, self.timeout, self.handles.len());
        let mut state = queue.state();
        loop {
            state = queue.expire(state, timeout, workers);
            if state.jobs.len() < self.capacity {
                return Admission::Room;
            }
            if self.stuck(&state) {
                drop(state);
                return Admission::Refuse(queue.refusal(timeout, workers));
            }
            if stop() {
                return Admission::Stopping;
            }
            // The queue is full, so it has a first request: wait at most
            // until that one has waited the timeout.
            let now = Instant::now();
            let oldest = state.jobs.front().map_or(now, |q| q.since);
            let wait = (oldest + timeout)
                .saturating_duration_since(now)
                .min(ADMIT_RECHECK);
            state = queue
                .drained
                .wait_timeout(state, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn run(&mut self, job: Job) -> io::Result<()> {
        if self.handles.is_empty() {
            return Err(io::Error::other("no pool worker could be started"));
        }
        let since = Instant::now();
        self.queue.state().jobs.push_back(Queued { job, since });
        self.queue.filled.notify_one();
        Ok(())
    }

    /// Requests that waited the timeout in the queue are refused even when
    /// no new client comes.
    fn service_actions(&mut self) {
        let queue = &*self.queue;
        drop(queue.expire(queue.state(), self.timeout, self.handles.len()));
    }

    fn close(&mut self, drain: &Drain) {
        self.queue.state().closed = true;
        self.queue.filled.notify_all();
        let handles = std::mem::take(&mut self.handles);
        if !self.block_on_close {
            return;
        }
        if !self.queue.wait_workers(drain.deadline()) {
            // Queued requests' connections too: their handlers end at once.
            drain.cut();
            if !self.queue.wait_workers(Some(Instant::now() + CUT_GRACE)) {
                log::warn!(
                    "closing without pool workers still serving after their connections were cut"
                );
                return;
            }
        }
        for handle in handles {
            let _ = handle.join();
        }
    }
}

/// A TCP server on a [`PoolDispatch`] (the pool twin of
/// `ThreadingTCPServer`).
pub type PoolTcpServer<F, H = DefaultHooks> = SocketServer<TcpTransport, PoolDispatch<F, H>>;
#[cfg(unix)]
/// A Unix stream server on a [`PoolDispatch`].
pub type PoolUnixStreamServer<F, H = DefaultHooks> =
    SocketServer<UnixStreamTransport, PoolDispatch<F, H>>;

new_with_defaults!(
    TcpTransport,
    PoolDispatch,
    tcp,
    impl ToSocketAddrs,
    "Like Python's `ThreadingTCPServer(address, Handler)`, on [`default_workers`] workers"
);
#[cfg(unix)]
new_with_defaults!(
    UnixStreamTransport,
    PoolDispatch,
    unix_stream,
    impl Into<PathBuf>,
    "Like Python's `ThreadingUnixStreamServer(address, Handler)`, on [`default_workers`] workers"
);
