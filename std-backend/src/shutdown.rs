//! Stopping `serve_forever` from another thread: a flag, a waiter wake-up,
//! a record of which thread is serving, and the bounded drain that follows.
//!
//! # The drain: who times it, who cuts
//! A shutdown stops taking requests at once. The requests in progress get
//! the server's [drain timeout](ShutdownHandle::set_drain_timeout); the
//! connections still open after it are cut with `shutdown(2)`
//! (`SHUT_RDWR`), which ends a read or write blocked on them at once, so
//! every handler returns. Accepted connections sit in a [`Registry`] from
//! the accept until they are closed: two atomic operations per connection
//! and no system call, so the request path costs what it did, and reads and
//! writes stay plain blocking calls.
//!
//! The time is kept by whoever is not blocked in a handler:
//! - [`ShutdownHandle::shutdown`]'s caller, which waits for the loop anyway
//!   (and a thread that [`request_shutdown`](ShutdownHandle::request_shutdown)
//!   starts to do the same when it is called from outside the loop);
//! - for `SIGINT`/`SIGTERM` on Linux, a POSIX timer that the signal handler
//!   arms (`timer_settime`, async-signal-safe): its expiry comes back as a
//!   `SIGTERM` marked as the timer's, and the handler then cuts the
//!   registered connections (`shutdown(2)` is async-signal-safe too). No
//!   thread is started, which a synchronous server blocked in a handler
//!   needs, as nothing else runs in its process. On other systems the
//!   thread that already watches the signals keeps the time;
//! - `server_close` of the threading, pool and forking dispatches, which
//!   waits for their requests with the same bound, cuts the connections
//!   (forked children get `SIGTERM`, then `SIGKILL`) and waits for them to
//!   end.

use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

#[cfg(not(target_os = "wasi"))]
use crate::sys::SignalWatch;
use crate::sys::{self, Waiter};

/// [`Shared::drain`] when there is no bound.
const NO_BOUND: u64 = u64::MAX;

/// How long a dispatch waits for its requests once their connections were
/// cut (or forked children were sent `SIGTERM`), before it stops waiting
/// (or sends `SIGKILL`).
#[cfg(not(target_os = "wasi"))]
pub(crate) const CUT_GRACE: Duration = Duration::from_secs(1);

/// State shared by a transport and its [`ShutdownHandle`]s.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) waiter: Waiter,
    requested: AtomicBool,
    /// The drain bound in nanoseconds, or [`NO_BOUND`]. Atomic because the
    /// signal handler reads it.
    drain: AtomicU64,
    /// The connections being served.
    pub(crate) conns: Registry,
    serving: Mutex<Serving>,
    stopped: Condvar,
}

/// Which thread runs `serve_forever`, and how many of its loops have
/// returned: [`ShutdownHandle::shutdown`] waits for the count to move past
/// the loop it stopped, so a loop started right after it is not waited for.
#[derive(Debug, Default)]
struct Serving {
    thread: Option<ThreadId>,
    ended: u64,
    /// The loop (its `ended` count) that a drain watchdog thread times.
    watched: Option<u64>,
}

impl Shared {
    pub(crate) fn new() -> io::Result<Arc<Self>> {
        Ok(Arc::new(Shared {
            waiter: Waiter::new()?,
            requested: AtomicBool::new(false),
            drain: AtomicU64::new(bound_to_nanos(Some(DEFAULT_DRAIN_TIMEOUT))),
            conns: Registry::default(),
            serving: Mutex::new(Serving::default()),
            stopped: Condvar::new(),
        }))
    }

    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    pub(crate) fn clear(&self) {
        self.requested.store(false, Ordering::Release);
    }

    /// Sets the flag and wakes the waiter. Also run inside signal handlers
    /// ([`SignalWatch`]), so it must stay async-signal-safe: no allocation,
    /// no lock.
    pub(crate) fn request(&self) {
        self.requested.store(true, Ordering::Release);
        // A failed notify leaves the flag, which the loop still sees at its
        // next pass.
        let _ = self.waiter.notify();
    }

    /// The drain bound. Async-signal-safe (one atomic load).
    pub(crate) fn drain_timeout(&self) -> Option<Duration> {
        match self.drain.load(Ordering::Relaxed) {
            NO_BOUND => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    pub(crate) fn set_drain_timeout(&self, bound: Option<Duration>) {
        self.drain.store(bound_to_nanos(bound), Ordering::Relaxed);
    }

    fn serving(&self) -> MutexGuard<'_, Serving> {
        self.serving.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the calling thread as serving until the guard is dropped.
    pub(crate) fn enter_serving(self: &Arc<Self>) -> ServingGuard {
        self.serving().thread = Some(thread::current().id());
        ServingGuard(Arc::clone(self))
    }

    /// Waits until the loop that was running when `serving` was taken has
    /// returned. With a drain bound, the connections still registered when
    /// it runs out are cut (they are what keeps a synchronous loop inside a
    /// handler), and the wait goes on: their handlers' I/O now fails.
    fn wait_loop_end(&self, serving: MutexGuard<'_, Serving>) {
        if serving.thread.is_some() {
            let running = serving.ended;
            self.wait_ended(serving, running);
        }
    }

    /// [`wait_loop_end`](Self::wait_loop_end) for the loop that had ended
    /// `running` loops before it.
    fn wait_ended<'s>(&'s self, mut serving: MutexGuard<'s, Serving>, running: u64) {
        let mut deadline = self.drain_timeout().map(|bound| Instant::now() + bound);
        while serving.ended == running {
            let Some(at) = deadline else {
                serving = self
                    .stopped
                    .wait(serving)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(serving);
                self.conns.cut_all();
                deadline = None;
                serving = self.serving();
                continue;
            }
            serving = self
                .stopped
                .wait_timeout(serving, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

fn bound_to_nanos(bound: Option<Duration>) -> u64 {
    // A bound beyond 584 years, too long for nanoseconds, is that long.
    bound.map_or(NO_BOUND, |b| {
        u64::try_from(b.as_nanos())
            .unwrap_or(NO_BOUND)
            .min(NO_BOUND - 1)
    })
}

/// Ends the serving mark, also when `serve_forever` unwinds.
pub(crate) struct ServingGuard(Arc<Shared>);

impl Drop for ServingGuard {
    fn drop(&mut self) {
        let mut serving = self.0.serving();
        serving.thread = None;
        serving.ended += 1;
        drop(serving);
        self.0.stopped.notify_all();
    }
}

/// How many connections the [`Registry`] holds without a lock. The signal
/// handler can only cut these; a synchronous server, whose loop the handler
/// must unblock, has one connection at a time.
const SLOTS: usize = 16;
/// A free slot.
const FREE: u64 = 0;
/// Set on a slot while a cutter calls `shutdown(2)` on its descriptor.
const BUSY: u64 = 1 << 63;

/// The descriptors of the connections being served, so that a drain that
/// runs out can cut them.
///
/// The first [`SLOTS`] are atomics, which a signal handler may read; more
/// (a threading server's) wait in a locked list. A connection leaves before
/// its descriptor is closed, and a cutter marks the slot it works on, so
/// the owner waits for that one `shutdown(2)` before it closes: a number
/// is never cut after it was closed and perhaps reused.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    slots: [AtomicU64; SLOTS],
    more: Mutex<Overflow>,
}

/// The registered descriptors beyond the slots; -1 marks a free place.
#[derive(Debug, Default)]
struct Overflow {
    fds: Vec<RawFd>,
    free: Vec<usize>,
}

/// Where a connection sits in the [`Registry`].
#[derive(Debug)]
enum Place {
    /// A slot, and the value stored in it.
    Slot(usize, u64),
    More(usize),
}

impl Registry {
    fn more(&self) -> MutexGuard<'_, Overflow> {
        self.more.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enter(&self, fd: RawFd) -> Place {
        // Descriptors are never negative; +1 keeps 0 for a free slot.
        let value = u64::from(fd.unsigned_abs()) + 1;
        for (i, slot) in self.slots.iter().enumerate() {
            let taken = slot.compare_exchange(FREE, value, Ordering::AcqRel, Ordering::Relaxed);
            if taken.is_ok() {
                return Place::Slot(i, value);
            }
        }
        let mut more = self.more();
        let i = match more.free.pop() {
            Some(i) => {
                more.fds[i] = fd;
                i
            }
            None => {
                more.fds.push(fd);
                more.fds.len() - 1
            }
        };
        Place::More(i)
    }

    fn leave(&self, place: &Place) {
        match *place {
            Place::Slot(i, value) => {
                let slot = &self.slots[i];
                // Fails while a cutter holds it (`BUSY`): one system call.
                while slot
                    .compare_exchange_weak(value, FREE, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    thread::yield_now();
                }
            }
            Place::More(i) => {
                let mut more = self.more();
                more.fds[i] = -1;
                more.free.push(i);
            }
        }
    }

    /// Cuts the connections in the slots. Async-signal-safe: atomics and
    /// `shutdown(2)`.
    pub(crate) fn cut_slots(&self) {
        for slot in &self.slots {
            let value = slot.load(Ordering::Acquire);
            if value == FREE || value & BUSY != 0 {
                continue;
            }
            let held =
                slot.compare_exchange(value, value | BUSY, Ordering::AcqRel, Ordering::Relaxed);
            if held.is_ok() {
                // `value` is a descriptor + 1, so at most `u32::MAX`.
                sys::cut(RawFd::try_from(value - 1).unwrap_or(-1));
                slot.store(value, Ordering::Release);
            }
        }
    }

    /// Cuts every registered connection.
    pub(crate) fn cut_all(&self) {
        self.cut_slots();
        // Held while cutting: an owner leaves (and closes) only after.
        let more = self.more();
        for &fd in more.fds.iter().filter(|&&fd| fd >= 0) {
            sys::cut(fd);
        }
    }

    /// How many connections are registered.
    #[cfg(all(test, unix))]
    pub(crate) fn len(&self) -> usize {
        let slots = self
            .slots
            .iter()
            .filter(|s| s.load(Ordering::Acquire) != FREE)
            .count();
        slots + self.more().fds.iter().filter(|&&fd| fd >= 0).count()
    }
}

/// A connection's entry in its server's [`Registry`], left when dropped:
/// drop it before the descriptor is closed.
pub(crate) struct Registered {
    shared: Arc<Shared>,
    place: Place,
}

impl Registered {
    pub(crate) fn new(shared: &Arc<Shared>, fd: RawFd) -> Self {
        Registered {
            shared: Arc::clone(shared),
            place: shared.conns.enter(fd),
        }
    }
}

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Registered").field(&self.place).finish()
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.conns.leave(&self.place);
    }
}

/// The drain bound servers start with: [`ShutdownHandle::DEFAULT_DRAIN_TIMEOUT`].
pub(crate) const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Stops a server's `serve_forever` from any thread (Python's `shutdown()`).
///
/// Cheap to clone; `Send` and `Sync`. Obtained from
/// [`SocketServer::shutdown_handle`](crate::SocketServer::shutdown_handle).
///
/// # The drain
/// Stopping takes no new request; the requests in progress get the
/// [drain timeout](Self::set_drain_timeout) (by default
/// [`DEFAULT_DRAIN_TIMEOUT`](Self::DEFAULT_DRAIN_TIMEOUT)) to finish, and
/// the connections still open after it are cut (`shutdown(2)` with
/// `SHUT_RDWR`): the handler's blocked read returns end-of-file, its write
/// fails, and it returns. A synchronous server is drained by
/// [`shutdown`](Self::shutdown), [`request_shutdown`](Self::request_shutdown)
/// and [`stop_on_signals`](Self::stop_on_signals); the threading, pool and
/// forking dispatches drain in `server_close` (forked children get
/// `SIGTERM` when it runs out, and `SIGKILL` a second later). With no bound
/// (`None`) nothing is ever cut and closing waits for ever, as Python's
/// `block_on_close` does.
#[derive(Clone, Debug)]
pub struct ShutdownHandle(pub(crate) Arc<Shared>);

impl ShutdownHandle {
    /// How long in-flight requests may take to finish once shutdown is
    /// requested, unless set otherwise: 3 seconds.
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = DEFAULT_DRAIN_TIMEOUT;

    /// Asks `serve_forever` to stop and blocks until it has returned.
    ///
    /// The loop is woken at once, whatever its poll interval; the request
    /// being handled, if any, is finished first, within the
    /// [drain timeout](Self::set_drain_timeout): once that has passed, the
    /// connections still being served are cut, which ends the request.
    /// This returns once the loop that was running when it was called has
    /// returned, even if the serving thread has meanwhile called
    /// `serve_forever` again (as CPython's does). When no thread is serving,
    /// this returns at once and the next `serve_forever` returns as soon as
    /// it starts (as in Python, bpo-2302).
    ///
    /// Blocks at most the drain timeout plus what the handler takes to
    /// return once its connection is cut; for ever with no drain bound and
    /// a client that never finishes.
    ///
    /// # Errors
    /// [`ShutdownError::FromServingThread`] when called from the thread
    /// running `serve_forever` (for example from a handler), which would
    /// otherwise wait for itself for ever; use
    /// [`request_shutdown`](Self::request_shutdown) there.
    pub fn shutdown(&self) -> Result<(), ShutdownError> {
        let serving = self.0.serving();
        if serving.thread == Some(thread::current().id()) {
            return Err(ShutdownError::FromServingThread);
        }
        self.0.request();
        self.0.wait_loop_end(serving);
        Ok(())
    }

    /// Asks `serve_forever` to stop, without waiting. Safe to call from a
    /// handler running inside the loop.
    ///
    /// Called from another thread while a loop runs, with a drain bound, it
    /// starts a thread that cuts the connections still served when the
    /// drain runs out, as [`shutdown`](Self::shutdown) would, and ends with
    /// that loop. So it takes a lock and may start a thread: not something
    /// for a signal handler, where
    /// [`stop_on_signals`](Self::stop_on_signals) does the same safely.
    pub fn request_shutdown(&self) {
        let mut serving = self.0.serving();
        self.0.request();
        let elsewhere = serving.thread.is_some_and(|t| t != thread::current().id());
        if !elsewhere || serving.watched == Some(serving.ended) || self.drain_timeout().is_none() {
            return;
        }
        let running = serving.ended;
        serving.watched = Some(running);
        drop(serving);
        let shared = Arc::clone(&self.0);
        let watchdog = thread::Builder::new()
            .name("socketserver-drain".into())
            .spawn(move || shared.wait_ended(shared.serving(), running));
        if let Err(err) = watchdog {
            log::error!("cannot start a thread to time the drain: {err}");
        }
    }

    /// Requests shutdown whenever the process receives `SIGINT` or
    /// `SIGTERM`, until the returned guard is dropped (Python's
    /// `serve_forever` ended by `KeyboardInterrupt`). Call it before
    /// announcing the server, so no signal can kill the process meanwhile.
    ///
    /// While the guard lives the first of those signals no longer
    /// terminates the process, and a handler the program had for them still
    /// runs after the request. The requests in progress then get the
    /// [drain timeout](Self::set_drain_timeout), and the connections still
    /// served after it are cut, also when a synchronous server's only
    /// thread is blocked in a handler. A second one (while a server drains,
    /// say, or hangs) ends the process at once by that signal's default
    /// action, as if no handler were installed. The count starts again once
    /// no guard lives.
    ///
    /// Dropping the last guard puts back the dispositions it found (the
    /// default action, `SIG_IGN` or the program's handler), unless the
    /// program has installed others since. At most 32 guards may live at
    /// once.
    ///
    /// On Linux the signal handler itself makes the request (it sets a flag
    /// and writes to an eventfd) and arms a POSIX timer for the drain, whose
    /// expiry comes back to it as a `SIGTERM` marked as the timer's; so no
    /// thread is started and a synchronous server stays a single-threaded
    /// process. On other systems a thread waits for the signals and times
    /// the drain.
    ///
    /// # Errors
    /// The signal handlers or the drain timer could not be installed.
    #[cfg(not(target_os = "wasi"))]
    pub fn stop_on_signals(&self) -> io::Result<SignalGuard> {
        SignalWatch::start(&self.0).map(|watch| SignalGuard { _watch: watch })
    }

    /// Whether a shutdown was requested and `serve_forever` has not yet
    /// consumed it.
    pub fn is_shutdown_requested(&self) -> bool {
        self.0.is_requested()
    }

    /// How long the requests in progress may take once shutdown is
    /// requested before their connections are cut; `None`: no bound.
    pub fn drain_timeout(&self) -> Option<Duration> {
        self.0.drain_timeout()
    }

    /// Sets [`drain_timeout`](Self::drain_timeout) for the server (every
    /// handle of it sees the change). A drain already running keeps the
    /// bound it started with. `None` restores Python's behaviour: nothing
    /// is cut, and closing a threading or forking server waits for its
    /// requests for ever.
    pub fn set_drain_timeout(&self, bound: Option<Duration>) {
        self.0.set_drain_timeout(bound);
    }
}

/// Turns `SIGINT` and `SIGTERM` into shutdown requests while it lives; see
/// [`ShutdownHandle::stop_on_signals`].
#[cfg(not(target_os = "wasi"))]
#[derive(Debug)]
pub struct SignalGuard {
    /// Stops watching when dropped.
    _watch: SignalWatch,
}

/// Why [`ShutdownHandle::shutdown`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownError {
    /// Called from the thread running `serve_forever`.
    FromServingThread,
}

impl fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShutdownError::FromServingThread => {
                f.write_str("shutdown() called from the thread running serve_forever()")
            }
        }
    }
}

impl std::error::Error for ShutdownError {}

#[cfg(all(test, unix))]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    /// A connected pair; the first end is the one registered.
    fn pair() -> (UnixStream, UnixStream) {
        UnixStream::pair().unwrap()
    }

    /// Whether a cut reached `ours`: it reads end-of-file at once although
    /// its peer sent nothing and is still open.
    fn was_cut(ours: &mut UnixStream) -> bool {
        ours.set_nonblocking(true).unwrap();
        matches!(ours.read(&mut [0u8; 1]), Ok(0))
    }

    #[test]
    fn connections_beyond_the_slots_wait_in_the_list_and_places_are_reused() {
        let shared = Shared::new().unwrap();
        let pairs: Vec<_> = (0..SLOTS + 3).map(|_| pair()).collect();
        let mut entries: Vec<_> = pairs
            .iter()
            .map(|(ours, _)| Registered::new(&shared, ours.as_raw_fd()))
            .collect();
        assert_eq!(shared.conns.len(), SLOTS + 3);
        assert!(matches!(entries[SLOTS].place, Place::More(0)));
        entries.truncate(2);
        assert_eq!(shared.conns.len(), 2);
        let again = Registered::new(&shared, pairs[5].0.as_raw_fd());
        assert!(
            matches!(again.place, Place::Slot(2, _)),
            "the first free slot"
        );
        drop((entries, again));
        assert_eq!(shared.conns.len(), 0);
        assert!(shared.conns.more().fds.iter().all(|&fd| fd == -1));
    }

    #[test]
    fn cut_all_reaches_slots_and_list_and_cut_slots_only_the_slots() {
        let shared = Shared::new().unwrap();
        let mut pairs: Vec<_> = (0..SLOTS + 2).map(|_| pair()).collect();
        let _entries: Vec<_> = pairs
            .iter()
            .map(|(ours, _)| Registered::new(&shared, ours.as_raw_fd()))
            .collect();
        shared.conns.cut_slots();
        assert!(was_cut(&mut pairs[0].0));
        assert!(!was_cut(&mut pairs[SLOTS].0), "a listed one is left");
        shared.conns.cut_all();
        assert!(pairs.iter_mut().all(|(ours, _)| was_cut(ours)));
        // The peer sees the end too, and its writes fail.
        let peer = &mut pairs[1].1;
        assert_eq!(peer.read(&mut [0u8; 1]).unwrap(), 0);
        assert!(peer.write_all(b"x").is_err());
    }

    #[test]
    fn a_left_connection_is_not_cut() {
        let shared = Shared::new().unwrap();
        let (mut ours, _peer) = pair();
        drop(Registered::new(&shared, ours.as_raw_fd()));
        shared.conns.cut_all();
        ours.set_nonblocking(true).unwrap();
        let read = ours.read(&mut [0u8; 1]);
        assert!(matches!(read, Err(ref e) if e.kind() == io::ErrorKind::WouldBlock));
    }

    #[test]
    fn the_drain_bound_is_kept_in_nanoseconds() {
        let shared = Shared::new().unwrap();
        assert_eq!(shared.drain_timeout(), Some(DEFAULT_DRAIN_TIMEOUT));
        shared.set_drain_timeout(None);
        assert_eq!(shared.drain_timeout(), None);
        shared.set_drain_timeout(Some(Duration::from_millis(1500)));
        assert_eq!(shared.drain_timeout(), Some(Duration::from_millis(1500)));
        shared.set_drain_timeout(Some(Duration::MAX));
        assert_eq!(
            shared.drain_timeout(),
            Some(Duration::from_nanos(NO_BOUND - 1))
        );
    }
}
