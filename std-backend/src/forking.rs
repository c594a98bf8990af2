//! A process per request: Python's `ForkingMixIn`, reaping only its own
//! children.

use std::cell::Cell;
use std::net::ToSocketAddrs;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use socketserver_core::transport::{kind, Address};
use socketserver_core::{
    serve_connection, serve_datagram, shutdown_request, take_datagram_request, take_stream_request,
    DatagramHandler, DatagramSocket, DefaultHooks, Dispatch, Error, HandlerFactory, Hooks,
    Incoming, Lifecycle, Listener, ServerHooks, StreamHandler, Took,
};

use crate::concurrent::ADMIT_RECHECK;
use crate::dispatch::DispatchConfig;
use crate::server::new_with_defaults;
use crate::shutdown::{ShutdownHandle, CUT_GRACE};
use crate::sys::{self, Child, Ended, Forked, Lifeline};
use crate::transport::{
    SocketTransport, TcpTransport, UdpTransport, UnixDatagramTransport, UnixStreamTransport,
};
use crate::SocketServer;

/// Python's `ForkingMixIn.max_children`.
pub const DEFAULT_MAX_CHILDREN: usize = 40;

/// The longest pause between two looks at the children while closing
/// waits for them within the drain.
const REAP_POLL: Duration = Duration::from_millis(20);

/// Python's `ForkingMixIn.timeout`: how long `handle_request` of a forking
/// server waits by default, so that children are reaped (in
/// `handle_timeout`) even when no request comes.
pub const FORKING_TIMEOUT: Duration = Duration::from_secs(300);

/// Handles each request in a new process (Python's `ForkingMixIn`).
///
/// The child builds the handler, serves the request, reports an error or a
/// panic to `handle_error` (whose log output comes from the child), shuts
/// the connection down and leaves with `_exit`: status 0, or 1 after an
/// error. It never returns into the server's loop, and runs none of the
/// parent's destructors. The parent closes its copy of the connection at
/// once and goes back to waiting; a datagram's reply is sent by the child
/// through its copy of the server socket.
///
/// Finished children are reaped in `service_actions` and `handle_timeout`
/// (hence Python's [`FORKING_TIMEOUT`]), and before each request: at
/// [`max_children`](Self::max_children) the server waits until one of its
/// children ends (a shutdown request ends that wait within 20 ms, and the
/// request is dropped unserved). Only children this dispatch forked are ever waited for,
/// so other children of the program keep their exit status for it
/// (bpo-1540386). Closing the server waits for the children
/// ([`block_on_close`](Self::block_on_close), bpo-31151) within the drain
/// timeout, then stops them; without that, a background thread reaps them
/// as they end, so no zombie is left either.
///
/// # When the parent dies
/// A child ends with its parent *process*: whether the server exits or is
/// killed (`SIGKILL`, `SIGHUP`), it takes its children along, so none
/// keeps serving a client for a server that is gone. The thread that
/// forked a child may end before it (CPython's pattern: `serve_forever` in
/// a thread, `shutdown`, join, `server_close`): the child goes on. On
/// Linux each child holds the read end of a pipe whose write end only the
/// parent holds, and the kernel sends the child `SIGKILL` when that end
/// closes; so does a parent that `exec`s. FreeBSD sends it per process
/// (`PROC_PDEATHSIG_CTL`). macOS and the other BSDs have no such signal:
/// there a child finishes its request first.
///
/// # Stop signals
/// A child obeys `SIGINT` and `SIGTERM` only from its parent (which sends
/// `SIGTERM` when the drain runs out): one sent to the whole process group
/// (Ctrl-C in a terminal, systemd's `KillMode=control-group`) stops the
/// parent, whose drain then lets the request in progress finish. A parent
/// that ignores them has children that ignore them too.
///
/// # Threads
/// The child is a copy of the serving thread only. If other threads of the
/// program may hold a lock at the moment of the fork (a logger's, say), a
/// child that takes that lock blocks for ever; this is the same caveat as
/// Python's. The crate's own locks are not used in the child.
#[derive(Debug)]
#[doc(alias = "ForkingMixIn")]
pub struct ForkingDispatch<F, H = DefaultHooks> {
    factory: F,
    hooks: H,
    rbuf: Box<[u8]>,
    wbuf: Box<[u8]>,
    max_children: usize,
    block_on_close: bool,
    /// Python's `active_children`, oldest first.
    children: Vec<u32>,
    /// Each child's lifeline, kept until it is reaped.
    lifelines: Vec<(u32, Lifeline)>,
    failed: u64,
    /// The server's shutdown handle, seen at the first request: its drain
    /// timeout bounds the wait for the children when closing.
    stop: Option<ShutdownHandle>,
}

impl<F, H> ForkingDispatch<F, H> {
    /// Serves with handlers from `factory` and the config's hooks; the
    /// buffers of the config's sizes are allocated once and copied into
    /// each child (`config` as for
    /// [`ThreadingDispatch::new`](crate::ThreadingDispatch::new)).
    pub fn new(factory: F, config: impl Into<DispatchConfig<H>>) -> Self {
        let DispatchConfig { sizes, hooks } = config.into();
        ForkingDispatch {
            factory,
            hooks,
            rbuf: sizes.read_buffer(),
            wbuf: sizes.write_buffer(),
            max_children: DEFAULT_MAX_CHILDREN,
            block_on_close: true,
            children: Vec::new(),
            lifelines: Vec::new(),
            failed: 0,
            stop: None,
        }
    }

    /// Python's `max_children`: at most `max` children run at once; taking
    /// the next request waits for one to end. Default:
    /// [`DEFAULT_MAX_CHILDREN`].
    ///
    /// # Panics
    /// If `max` is zero.
    pub fn max_children(mut self, max: usize) -> Self {
        assert!(max > 0, "max_children must allow at least one child");
        self.max_children = max;
        self
    }

    /// Python's `block_on_close`: closing the server waits until every
    /// child has ended. Default: `true`.
    ///
    /// The wait is bounded by the server's
    /// [drain timeout](crate::ShutdownHandle::set_drain_timeout): the
    /// children still running when it has passed are sent `SIGTERM`, and
    /// those still running a second later `SIGKILL`; all are reaped. With no
    /// drain bound it waits for ever, as in Python.
    pub fn block_on_close(mut self, on: bool) -> Self {
        self.set_block_on_close(on);
        self
    }

    /// Changes [`block_on_close`](Self::block_on_close) on a built server.
    pub fn set_block_on_close(&mut self, on: bool) {
        self.block_on_close = on;
    }

    /// The process ids of the children not yet reaped (Python's
    /// `active_children`), oldest first.
    pub fn active_children(&self) -> &[u32] {
        &self.children
    }

    /// Python's `collect_children`: reaps the children that have ended, or
    /// with `blocking` waits for all of them.
    pub fn collect_children(&mut self, blocking: bool) {
        let mut failed = 0;
        self.children.retain(|&pid| match sys::reap(pid, blocking) {
            Child::Running => true,
            Child::Failed => {
                failed += 1;
                false
            }
            Child::Succeeded | Child::Gone => false,
        });
        self.failed += failed;
        self.drop_lifelines();
    }

    /// Closes the lifelines of the children no longer listed (reaped).
    fn drop_lifelines(&mut self) {
        let children = &self.children;
        self.lifelines.retain(|(pid, _)| children.contains(pid));
    }

    /// How many of the children this dispatch reaped ended with a non-zero
    /// status (a request that failed: its `handle_error` ran in the child)
    /// or by a signal. Children left to the background reaper by a close
    /// without [`block_on_close`](Self::block_on_close) are not counted.
    pub fn failed_children(&self) -> u64 {
        self.failed
    }

    /// Reaps `pid`, blocking, and counts it if it failed.
    fn reap_blocking(&mut self, pid: u32) {
        if sys::reap(pid, true) == Child::Failed {
            self.failed += 1;
        }
    }

    /// The hooks.
    pub fn hooks(&self) -> &H {
        &self.hooks
    }

    /// The handler factory.
    pub fn factory(&self) -> &F {
        &self.factory
    }

    /// Reaps the children as they end until none is left (`true`) or
    /// `deadline` has passed (`false`).
    fn reap_until(&mut self, deadline: Instant) -> bool {
        // Polled: waiting with a timeout for some of our children only has
        // no portable call. Closing is the only caller.
        let mut pause = Duration::from_millis(1);
        loop {
            self.collect_children(false);
            let left = deadline.saturating_duration_since(Instant::now());
            if self.children.is_empty() || left.is_zero() {
                return self.children.is_empty();
            }
            thread::sleep(pause.min(left));
            pause = (pause * 2).min(REAP_POLL);
        }
    }

    /// Lists a child just forked.
    fn forked(&mut self, pid: u32, lifeline: Lifeline) {
        self.children.push(pid);
        self.lifelines.push((pid, lifeline));
    }

    /// Notes the server's shutdown handle, at the first request.
    fn note_server<T: SocketTransport>(&mut self, transport: &T) {
        if self.stop.is_none() {
            self.stop = Some(transport.shutdown_handle());
        }
    }

    /// Reaps, then waits until fewer than `max_children` children run:
    /// called with a request in hand, so the wait is for one that exists.
    /// Returns `false`, making no room, once `stop` says shutdown was
    /// requested: the children being served may end only when the drain
    /// that follows cuts them. It is asked every [`ADMIT_RECHECK`] at most,
    /// as under the threading bound.
    fn make_room(&mut self, stop: &dyn Fn() -> bool) -> bool {
        self.collect_children(false);
        let mut pause = Duration::from_millis(1);
        while self.children.len() >= self.max_children {
            if stop() {
                return false;
            }
            // Waiting for any child could reap someone else's (the bug of
            // bpo-1540386), so only look at which one has ended.
            match sys::ended_child() {
                Ended::Child(pid) if self.children.contains(&pid) => {
                    self.reap_blocking(pid);
                    self.children.retain(|&p| p != pid);
                    self.drop_lifelines();
                    pause = Duration::from_millis(1);
                    continue;
                }
                Ended::NoneYet => {}
                // Another part of the program has an ended child to reap,
                // or the system cannot say: look at ours one by one.
                Ended::Child(_) | Ended::Unknown => self.collect_children(false),
            }
            thread::sleep(pause);
            pause = (pause * 2).min(ADMIT_RECHECK);
        }
        true
    }
}

/// The child's side of a request: closes its siblings' lifelines, serves
/// the request, then `_exit`s with 1 after an error or a panic (a
/// panicking hook must not unwind into the parent's loop either), else 0.
fn in_child<H>(
    siblings: &mut Vec<(u32, Lifeline)>,
    hooks: &H,
    serve: impl FnOnce(&NoteErrors<'_, H>),
) -> ! {
    siblings.clear();
    let noted = NoteErrors {
        inner: hooks,
        failed: Cell::new(false),
    };
    let served = panic::catch_unwind(AssertUnwindSafe(|| serve(&noted)));
    sys::exit_child(i32::from(served.is_err() || noted.failed.get()))
}

/// Forwards to the server's hooks and notes whether `handle_error` was
/// called, which makes the child's exit status 1.
struct NoteErrors<'a, H> {
    inner: &'a H,
    failed: Cell<bool>,
}

impl<R: ?Sized, A, H: Hooks<R, A>> Hooks<R, A> for NoteErrors<'_, H> {
    fn verify_request(&self, request: &R, client_address: &A) -> bool {
        self.inner.verify_request(request, client_address)
    }

    fn handle_error(&self, client_address: &A, error: &Error)
    where
        A: Address,
    {
        self.failed.set(true);
        self.inner.handle_error(client_address, error);
    }
}

impl<F, H: ServerHooks> Lifecycle for ForkingDispatch<F, H> {
    type Hooks = H;

    fn hooks(&self) -> &H {
        &self.hooks
    }

    fn handle_timeout(&mut self) {
        self.collect_children(false);
    }

    fn service_actions(&mut self) {
        self.collect_children(false);
    }

    fn server_close(&mut self) {
        close_children(self);
    }

    /// [`FORKING_TIMEOUT`]: Python's `ForkingMixIn.timeout`.
    fn default_timeout(&self) -> Option<Duration> {
        Some(FORKING_TIMEOUT)
    }
}

impl<L, F, H> Dispatch<L, kind::Stream> for ForkingDispatch<F, H>
where
    L: Listener + SocketTransport,
    F: HandlerFactory,
    F::Handler: StreamHandler<L::Connection>,
    H: Hooks<L::Connection, L::Addr> + ServerHooks,
{
    fn take(&mut self, listener: &mut L) -> Took {
        let (conn, addr) = match take_stream_request(listener, &self.hooks) {
            Incoming::Request(request) => request,
            other => return other.took(),
        };
        self.note_server(listener);
        if !self.make_room(&|| listener.shutdown_requested()) {
            // Dropped unserved, as a request arriving during a shutdown.
            return Took::Request;
        }
        match sys::fork() {
            Ok(Forked::Parent(pid, lifeline)) => {
                self.forked(pid, lifeline);
                // The parent's `close_request`: the child has its own copy.
                drop(conn);
            }
            Ok(Forked::Child) => in_child(&mut self.lifelines, &self.hooks, |hooks| {
                let (rbuf, wbuf) = (&mut self.rbuf, &mut self.wbuf);
                serve_connection(conn, addr, &self.factory, hooks, rbuf, wbuf);
            }),
            Err(err) => {
                self.hooks.handle_error(&addr, &Error::from_io(err));
                shutdown_request(conn);
            }
        }
        Took::Request
    }
}

impl<S, F, H> Dispatch<S, kind::Datagram> for ForkingDispatch<F, H>
where
    S: DatagramSocket + SocketTransport,
    F: HandlerFactory,
    F::Handler: DatagramHandler<S>,
    H: Hooks<[u8], S::Addr> + ServerHooks,
{
    fn take(&mut self, socket: &mut S) -> Took {
        let rx = match take_datagram_request(socket, &self.hooks, &mut self.rbuf) {
            Incoming::Request(rx) => rx,
            other => return other.took(),
        };
        self.note_server(socket);
        if !self.make_room(&|| socket.shutdown_requested()) {
            return Took::Request;
        }
        match sys::fork() {
            Ok(Forked::Parent(pid, lifeline)) => self.forked(pid, lifeline),
            Ok(Forked::Child) => in_child(&mut self.lifelines, &self.hooks, |hooks| {
                serve_datagram(
                    &self.rbuf[..rx.len],
                    rx.truncated,
                    rx.addr,
                    &self.factory,
                    hooks,
                    &mut self.wbuf,
                    socket,
                );
            }),
            Err(err) => self.hooks.handle_error(&rx.addr, &Error::from_io(err)),
        }
        Took::Request
    }
}

/// Python's `server_close` part of `ForkingMixIn`, leaving no zombie even
/// when it does not wait; with a drain bound, the children still running
/// after it get `SIGTERM`, and [`CUT_GRACE`] later `SIGKILL`.
fn close_children<F, H>(dispatch: &mut ForkingDispatch<F, H>) {
    let bound = dispatch
        .stop
        .as_ref()
        .and_then(ShutdownHandle::drain_timeout);
    if let (true, Some(bound)) = (dispatch.block_on_close, bound) {
        for (signal, wait) in [(Signal::SIGTERM, bound), (Signal::SIGKILL, CUT_GRACE)] {
            if dispatch.reap_until(Instant::now() + wait) {
                break;
            }
            for &pid in &dispatch.children {
                sys::signal_child(pid, signal);
            }
        }
    }
    dispatch.collect_children(dispatch.block_on_close);
    dispatch.children.clear();
    // Each lifeline is closed once its child is reaped, not before: that
    // would end the child.
    let rest = std::mem::take(&mut dispatch.lifelines);
    if rest.is_empty() {
        return;
    }
    let reaper = thread::Builder::new()
        .name("socketserver-reaper".into())
        .spawn(move || {
            for (pid, lifeline) in rest {
                let _ = sys::reap(pid, true);
                drop(lifeline);
            }
        });
    if let Err(err) = reaper {
        log::error!("cannot start a thread to reap the forked children: {err}");
    }
}

/// Python's `ForkingTCPServer`.
pub type ForkingTcpServer<F, H = DefaultHooks> = SocketServer<TcpTransport, ForkingDispatch<F, H>>;
/// Python's `ForkingUDPServer`.
pub type ForkingUdpServer<F, H = DefaultHooks> = SocketServer<UdpTransport, ForkingDispatch<F, H>>;
/// Python's `ForkingUnixStreamServer`.
pub type ForkingUnixStreamServer<F, H = DefaultHooks> =
    SocketServer<UnixStreamTransport, ForkingDispatch<F, H>>;
/// Python's `ForkingUnixDatagramServer`.
pub type ForkingUnixDatagramServer<F, H = DefaultHooks> =
    SocketServer<UnixDatagramTransport, ForkingDispatch<F, H>>;

new_with_defaults!(
    TcpTransport,
    ForkingDispatch,
    tcp,
    impl ToSocketAddrs,
    "Python's `ForkingTCPServer(address, Handler)`"
);
new_with_defaults!(
    UdpTransport,
    ForkingDispatch,
    udp,
    impl ToSocketAddrs,
    "Python's `ForkingUDPServer(address, Handler)`"
);
new_with_defaults!(
    UnixStreamTransport,
    ForkingDispatch,
    unix_stream,
    impl Into<PathBuf>,
    "Python's `ForkingUnixStreamServer(address, Handler)`"
);
new_with_defaults!(
    UnixDatagramTransport,
    ForkingDispatch,
    unix_datagram,
    impl Into<PathBuf>,
    "Python's `ForkingUnixDatagramServer(address, Handler)`"
);
