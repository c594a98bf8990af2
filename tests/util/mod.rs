//! Helpers shared by the std backend's integration tests.
#![allow(dead_code)]

use std::fmt::Debug;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socketserver::os::SocketTransport;
use socketserver::{Dispatch, Error, Hooks, ServerHooks, ShutdownHandle, SocketServer};

/// The longest any test waits for a state before failing.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A server running `serve_forever` on its own thread; shut down and
/// joined on drop.
pub struct Serving {
    stop: ShutdownHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Serving {
    pub fn start<T, D>(mut server: SocketServer<T, D>, poll_interval: Duration) -> Self
    where
        T: SocketTransport + Send + 'static,
        D: Dispatch<T, T::Kind> + Send + 'static,
    {
        let stop = server.shutdown_handle();
        let thread = thread::spawn(move || server.serve_forever(poll_interval));
        Serving {
            stop,
            thread: Some(thread),
        }
    }

    /// Shuts the server down and returns what `serve_forever` returned.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> std::io::Result<()> {
        match self.thread.take() {
            Some(thread) => {
                self.stop.shutdown().expect("shutdown from the test thread");
                thread.join().expect("serve_forever panicked")
            }
            None => Ok(()),
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if !thread::panicking() {
            self.stop_inner().expect("serve_forever failed");
        }
    }
}

/// A fresh path for a Unix socket, in a directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ss-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[derive(Default)]
struct State {
    errors: Vec<(String, Error)>,
    timeouts: usize,
    passes: usize,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    refuse: AtomicBool,
}

/// Hooks that record what the server reported, and can refuse requests.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Inner>);

impl Recorder {
    pub fn refusing() -> Self {
        let recorder = Recorder::default();
        recorder.0.refuse.store(true, Ordering::Relaxed);
        recorder
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.0.state.lock().unwrap());
        self.0.changed.notify_all();
    }

    /// Waits until `ready` holds for the state, at most [`PATIENCE`].
    fn wait_for<R>(&self, what: &str, mut ready: impl FnMut(&State) -> Option<R>) -> R {
        let deadline = Instant::now() + PATIENCE;
        let mut state = self.0.state.lock().unwrap();
        loop {
            if let Some(r) = ready(&state) {
                return r;
            }
            let now = Instant::now();
            assert!(now < deadline, "timed out waiting for {what}");
            state = self
                .0
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Waits for the `n`th reported error and returns all so far.
    pub fn wait_errors(&self, n: usize) -> Vec<(String, Error)> {
        self.wait_for("handle_error", |s| {
            (s.errors.len() >= n).then(|| s.errors.clone())
        })
    }

    /// Waits until `service_actions` ran `n` times.
    pub fn wait_passes(&self, n: usize) {
        self.wait_for("service_actions", |s| (s.passes >= n).then_some(()))
    }

    pub fn errors(&self) -> Vec<(String, Error)> {
        self.0.state.lock().unwrap().errors.clone()
    }

    pub fn timeouts(&self) -> usize {
        self.0.state.lock().unwrap().timeouts
    }
}

impl<R: ?Sized, A: Debug> Hooks<R, A> for Recorder {
    fn verify_request(&self, _request: &R, _client_address: &A) -> bool {
        !self.0.refuse.load(Ordering::Relaxed)
    }

    fn handle_error(&self, client_address: &A, error: &Error) {
        let client = format!("{client_address:?}");
        self.update(|s| s.errors.push((client, error.clone())));
    }
}

impl ServerHooks for Recorder {
    fn handle_timeout(&self) {
        self.update(|s| s.timeouts += 1);
    }

    fn service_actions(&self) {
        self.update(|s| s.passes += 1);
    }
}

/// Counts the handlers a factory built.
#[derive(Clone, Default)]
pub struct Builds(Arc<AtomicUsize>);

impl Builds {
    pub fn factory<H: Default>(&self) -> impl Fn() -> H + Send + 'static {
        let count = Arc::clone(&self.0);
        move || {
            count.fetch_add(1, Ordering::SeqCst);
            H::default()
        }
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// The descriptors this process has open.
pub fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Whether descriptor `fd` is close-on-exec, from `/proc/self/fdinfo`.
pub fn is_cloexec(fd: i32) -> bool {
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).expect("fdinfo");
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .expect("flags line");
    let flags = u32::from_str_radix(flags.trim(), 8).expect("octal flags");
    flags & 0o2000000 != 0
}

impl Recorder {
    /// Waits until `handle_timeout` ran `n` times.
    pub fn wait_timeouts(&self, n: usize) {
        self.wait_for("handle_timeout", |s| (s.timeouts >= n).then_some(()))
    }
}

pub mod announce;
pub mod concurrent;
pub mod gauge;
pub mod process;
