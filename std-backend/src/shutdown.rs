//! Stopping `serve_forever` from another thread: a flag, a waiter wake-up,
//! and a record of which thread is serving.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, ThreadId};

use crate::sys::{SignalWatch, Waiter};

/// State shared by a transport and its [`ShutdownHandle`]s.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) waiter: Waiter,
    requested: AtomicBool,
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
}

impl Shared {
    pub(crate) fn new() -> io::Result<Arc<Self>> {
        Ok(Arc::new(Shared {
            waiter: Waiter::new()?,
            requested: AtomicBool::new(false),
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

    fn serving(&self) -> MutexGuard<'_, Serving> {
        self.serving.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the calling thread as serving until the guard is dropped.
    pub(crate) fn enter_serving(self: &Arc<Self>) -> ServingGuard {
        self.serving().thread = Some(thread::current().id());
        ServingGuard(Arc::clone(self))
    }
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

/// Stops a server's `serve_forever` from any thread (Python's `shutdown()`).
///
/// Cheap to clone; `Send` and `Sync`. Obtained from
/// [`SocketServer::shutdown_handle`](crate::SocketServer::shutdown_handle).
#[derive(Clone, Debug)]
pub struct ShutdownHandle(pub(crate) Arc<Shared>);

impl ShutdownHandle {
    /// Asks `serve_forever` to stop and blocks until it has returned.
    ///
    /// The loop is woken at once, whatever its poll interval; the request
    /// being handled, if any, is finished first. This returns once the loop
    /// that was running when it was called has returned, even if the
    /// serving thread has meanwhile called `serve_forever` again (as
    /// CPython's does). When no thread is serving, this returns at once and
    /// the next `serve_forever` returns as soon as it starts (as in Python,
    /// bpo-2302).
    ///
    /// # Errors
    /// [`ShutdownError::FromServingThread`] when called from the thread
    /// running `serve_forever` (for example from a handler), which would
    /// otherwise wait for itself for ever; use
    /// [`request_shutdown`](Self::request_shutdown) there.
    pub fn shutdown(&self) -> Result<(), ShutdownError> {
        let mut serving = self.0.serving();
        if serving.thread == Some(thread::current().id()) {
            return Err(ShutdownError::FromServingThread);
        }
        self.0.request();
        if serving.thread.is_none() {
            return Ok(());
        }
        let running = serving.ended;
        while serving.ended == running {
            serving = self
                .0
                .stopped
                .wait(serving)
                .unwrap_or_else(PoisonError::into_inner);
        }
        Ok(())
    }

    /// Asks `serve_forever` to stop, without waiting. Safe to call from a
    /// handler running inside the loop.
    pub fn request_shutdown(&self) {
        self.0.request();
    }

    /// Requests shutdown whenever the process receives `SIGINT` or
    /// `SIGTERM`, until the returned guard is dropped (Python's
    /// `serve_forever` ended by `KeyboardInterrupt`). Call it before
    /// announcing the server, so no signal can kill the process meanwhile.
    ///
    /// While the guard lives the first of those signals no longer
    /// terminates the process, and a handler the program had for them still
    /// runs after the request. A second one (while a server drains, say, or
    /// hangs) ends the process at once by that signal's default action, as
    /// if no handler were installed. The count starts again once no guard
    /// lives.
    ///
    /// Dropping the last guard puts back the dispositions it found (the
    /// default action, `SIG_IGN` or the program's handler), unless the
    /// program has installed others since. At most 32 guards may live at
    /// once.
    ///
    /// On Linux the signal handler itself makes the request (it sets a flag
    /// and writes to an eventfd), so no thread is started and a
    /// synchronous server stays a single-threaded process. On other
    /// systems a thread waits for the signals.
    ///
    /// # Errors
    /// The signal handlers could not be installed.
    pub fn stop_on_signals(&self) -> io::Result<SignalGuard> {
        SignalWatch::start(&self.0).map(|watch| SignalGuard { _watch: watch })
    }

    /// Whether a shutdown was requested and `serve_forever` has not yet
    /// consumed it.
    pub fn is_shutdown_requested(&self) -> bool {
        self.0.is_requested()
    }
}

/// Turns `SIGINT` and `SIGTERM` into shutdown requests while it lives; see
/// [`ShutdownHandle::stop_on_signals`].
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
