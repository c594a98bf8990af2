//! A thread per request: Python's `ThreadingMixIn`, with detached request
//! threads that leave nothing behind and an optional bound on how many run.

use std::io;
use std::net::ToSocketAddrs;
#[cfg(unix)]
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

use socketserver_core::{DefaultHooks, HandlerFactory};

use crate::concurrent::{
    concurrent_dispatch, wait_until, Admission, Buffers, Concurrent, Drain, Job, Runner,
    ThreadOptions, Turn, ADMIT_RECHECK,
};
use crate::dispatch::{BufferSizes, DispatchConfig};
use crate::server::new_with_defaults;
use crate::shutdown::CUT_GRACE;
use crate::transport::{TcpTransport, UdpTransport};
#[cfg(unix)]
use crate::transport::{UnixDatagramTransport, UnixStreamTransport};
use crate::SocketServer;

/// Handles each request on a new thread (Python's `ThreadingMixIn`).
///
/// The serving thread accepts (or receives) and goes back to waiting while
/// the request thread runs the handler, reports its error or panic to
/// `handle_error`, and shuts the connection down. Request threads are
/// detached as they start and counted while they run, so nothing is kept
/// for a finished thread and memory stays flat however many requests pass
/// (bpo-37193); closing waits for the count to drop to zero instead of
/// joining handles.
///
/// With [`max_threads`](Self::max_threads), the serving thread, having
/// taken a request, waits while that many request threads run instead of
/// refusing it: further clients wait in the listen backlog (or the
/// socket's receive queue).
///
/// The factory and the hooks are shared by all request threads, hence
/// `Send + Sync`; the handlers themselves are built on their thread and
/// need not be `Send`. A datagram request owns a copy of its packet and
/// replies through a second descriptor of the server socket, which stays
/// open until the last request thread using it is done.
#[doc(alias = "ThreadingMixIn")]
pub struct ThreadingDispatch<F, H = DefaultHooks> {
    inner: Concurrent<Threads, F, H>,
}

impl<F: HandlerFactory, H> ThreadingDispatch<F, H> {
    /// Serves with handlers from `factory` and the config's hooks; each
    /// request thread has buffers of the config's sizes. `config` is what
    /// [`ServerBuilder::build_with`](crate::ServerBuilder::build_with)
    /// hands its closure, or [`BufferSizes`](crate::BufferSizes) for the default hooks.
    pub fn new(factory: F, config: impl Into<DispatchConfig<H>>) -> Self {
        let DispatchConfig { sizes, hooks } = config.into();
        let threads = Threads {
            daemon: false,
            block_on_close: true,
            max_threads: None,
            threads: ThreadOptions::default(),
            sizes,
            live: Arc::new(Live::default()),
            spawned: 0,
        };
        ThreadingDispatch {
            inner: Concurrent::new(factory, hooks, sizes, threads),
        }
    }

    /// Python's `daemon_threads`: with `true`, closing the server does not
    /// wait for request threads, whatever
    /// [`block_on_close`](Self::block_on_close) says. (Rust threads never
    /// keep the process alive, so this is all it changes.) Default: `false`.
    pub fn daemon_threads(mut self, on: bool) -> Self {
        self.inner.runner.daemon = on;
        self
    }

    /// Python's `block_on_close`: closing the server waits until the
    /// request threads still running have finished their requests (unless
    /// they are daemon threads). Default: `true`.
    ///
    /// The wait is bounded by the server's
    /// [drain timeout](crate::ShutdownHandle::set_drain_timeout): once it
    /// has passed, the connections still open are cut, so their handlers'
    /// reads and writes fail and the threads end; closing waits at most a
    /// second more for them. With no drain bound it waits for ever, as in
    /// Python.
    pub fn block_on_close(mut self, on: bool) -> Self {
        self.set_block_on_close(on);
        self
    }

    /// Changes [`block_on_close`](Self::block_on_close) on a built server.
    pub fn set_block_on_close(&mut self, on: bool) {
        self.inner.runner.block_on_close = on;
    }

    /// At most `max` request threads run at once; taking the next request
    /// blocks until one ends (the client waits in the listen backlog). A
    /// shutdown request ends that wait within 20 ms. `None` (Python's
    /// behaviour, the default): no bound.
    ///
    /// # Panics
    /// If `max` is `Some(0)`, which would never serve anything.
    pub fn max_threads(mut self, max: Option<usize>) -> Self {
        assert_ne!(max, Some(0), "max_threads must allow at least one thread");
        let runner = &mut self.inner.runner;
        runner.max_threads = max;
        // Taking `self` by value, this runs before any request thread.
        runner.live = Arc::new(Live {
            notify: AtomicBool::new(max.is_some()),
            ..Live::default()
        });
        self
    }

    /// Names request threads `{prefix}-1`, `{prefix}-2`, ... (Python names
    /// them `Thread-N`). Default: unnamed.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.inner.runner.threads.name = Some(prefix.into());
        self
    }

    /// The stack size of request threads, in bytes. Default: Rust's
    /// (2 MiB unless `RUST_MIN_STACK` says otherwise).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.inner.runner.threads.stack_size = Some(bytes);
        self
    }

    /// The request threads running now.
    pub fn active_threads(&self) -> usize {
        self.inner.runner.live.count()
    }

    /// The request threads closing would wait for (Python's
    /// `len(server._threads)`): the running ones, or none for daemon
    /// threads. Finished threads are never held.
    pub fn held_threads(&self) -> usize {
        if self.inner.runner.daemon {
            0
        } else {
            self.active_threads()
        }
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

concurrent_dispatch!(ThreadingDispatch);

/// At most this many bytes of buffers are kept for later request threads.
const SPARE_BYTES: usize = 256 * 1024;

/// How many request threads run, and a wake-up when one ends for whoever
/// waits: the serving thread under `max_threads`, or closing.
#[derive(Default)]
struct Live {
    count: AtomicUsize,
    /// Whether ending a thread must notify: always under a bound, and once
    /// closing waits. Otherwise nobody waits, and ending a thread costs no
    /// lock and no wake-up call.
    notify: AtomicBool,
    lock: Mutex<()>,
    ended: Condvar,
    /// Buffers of finished request threads, handed to the next ones:
    /// allocating and zeroing them is a measurable part of a short
    /// request's cost. At most [`SPARE_BYTES`] are kept.
    spare: Mutex<Vec<Buffers>>,
}

impl Live {
    fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Takes a place, first waiting while `max` threads run; gives up
    /// (`false`) once `stop` says so.
    fn enter(&self, max: Option<usize>, stop: &dyn Fn() -> bool) -> bool {
        if let Some(max) = max {
            let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            // A thread that ends between this check and the wait takes the
            // lock to notify, so the wake-up cannot be missed.
            while self.count() >= max {
                if stop() {
                    return false;
                }
                guard = self
                    .ended
                    .wait_timeout(guard, ADMIT_RECHECK)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
        self.count.fetch_add(1, Ordering::AcqRel);
        true
    }

    fn release(&self) {
        // SeqCst here and in `wait_all` (a store then a load on each side):
        // either this sees `notify` set, or `wait_all` sees the new count.
        self.count.fetch_sub(1, Ordering::SeqCst);
        if self.notify.load(Ordering::SeqCst) {
            let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.ended.notify_all();
        }
    }

    /// A spare pair of buffers, or new ones.
    fn buffers(&self, sizes: BufferSizes) -> Buffers {
        let spare = self
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        spare.unwrap_or_else(|| Buffers::new(sizes))
    }

    /// Keeps `buffers` for a later request thread, unless enough are kept.
    fn recycle(&self, buffers: Buffers, sizes: BufferSizes) {
        let room = SPARE_BYTES / (sizes.read + sizes.write).max(1);
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        if spare.len() < room {
            spare.push(buffers);
        }
    }

    /// Waits until no request thread runs, or until `deadline` (`None`:
    /// for ever); whether none runs.
    fn wait_all(&self, deadline: Option<Instant>) -> bool {
        let guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        // Set under the lock: a thread ending after the count check below
        // sees it and takes the lock to notify, so no wake-up is lost.
        self.notify.store(true, Ordering::SeqCst);
        wait_until(&self.ended, guard, deadline, |_| {
            self.count.load(Ordering::SeqCst) > 0
        })
    }
}

/// One running request thread's place in [`Live`], given back when
/// dropped: when the thread ends, even by a panic in a hook, or when the
/// thread could not be started.
struct Slot(Arc<Live>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release();
    }
}

struct Threads {
    daemon: bool,
    block_on_close: bool,
    max_threads: Option<usize>,
    threads: ThreadOptions,
    sizes: BufferSizes,
    live: Arc<Live>,
    spawned: u64,
}

impl Runner for Threads {
    fn admit(&mut self, stop: &dyn Fn() -> bool) -> Admission {
        if self.live.enter(self.max_threads, stop) {
            Admission::Room
        } else {
            Admission::Stopping
        }
    }

    fn run(&mut self, job: Job) -> io::Result<()> {
        let slot = Slot(Arc::clone(&self.live));
        self.spawned += 1;
        let sizes = self.sizes;
        // Detached at once: a finished thread leaves nothing behind, and
        // the OS thread frees its own stack. The slot counts it instead.
        drop(self.threads.builder(self.spawned).spawn(move || {
            let mut buffers = slot.0.buffers(sizes);
            job(Turn::Serve(&mut buffers));
            slot.0.recycle(buffers, sizes);
            drop(slot);
        })?);
        Ok(())
    }

    fn close(&mut self, drain: &Drain) {
        if !self.block_on_close || self.daemon || self.live.wait_all(drain.deadline()) {
            return;
        }
        drain.cut();
        if !self.live.wait_all(Some(Instant::now() + CUT_GRACE)) {
            log::warn!(
                "closing without {} request threads still running after their connections were cut",
                self.live.count()
            );
        }
    }
}

/// Python's `ThreadingTCPServer`.
pub type ThreadingTcpServer<F, H = DefaultHooks> =
    SocketServer<TcpTransport, ThreadingDispatch<F, H>>;
/// Python's `ThreadingUDPServer`.
pub type ThreadingUdpServer<F, H = DefaultHooks> =
    SocketServer<UdpTransport, ThreadingDispatch<F, H>>;
#[cfg(unix)]
/// Python's `ThreadingUnixStreamServer`.
pub type ThreadingUnixStreamServer<F, H = DefaultHooks> =
    SocketServer<UnixStreamTransport, ThreadingDispatch<F, H>>;
#[cfg(unix)]
/// Python's `ThreadingUnixDatagramServer`.
pub type ThreadingUnixDatagramServer<F, H = DefaultHooks> =
    SocketServer<UnixDatagramTransport, ThreadingDispatch<F, H>>;

new_with_defaults!(
    TcpTransport,
    ThreadingDispatch,
    tcp,
    impl ToSocketAddrs,
    "Python's `ThreadingTCPServer(address, Handler)`"
);
new_with_defaults!(
    UdpTransport,
    ThreadingDispatch,
    udp,
    impl ToSocketAddrs,
    "Python's `ThreadingUDPServer(address, Handler)`"
);
#[cfg(unix)]
new_with_defaults!(
    UnixStreamTransport,
    ThreadingDispatch,
    unix_stream,
    impl Into<PathBuf>,
    "Python's `ThreadingUnixStreamServer(address, Handler)`"
);
#[cfg(unix)]
new_with_defaults!(
    UnixDatagramTransport,
    ThreadingDispatch,
    unix_datagram,
    impl Into<PathBuf>,
    "Python's `ThreadingUnixDatagramServer(address, Handler)`"
);
