//! The server lifecycle (Python's `BaseServer`) and the synchronous dispatch.

use core::time::Duration;

use crate::datagram::serve_datagram;
use crate::handler::{DatagramHandler, DefaultHooks, HandlerFactory, Hooks, StreamHandler};
use crate::stream::{serve_with, shutdown_request, Factory, Serve};
use crate::time::{Clock, Instant};
use crate::transport::{
    kind, Connection, DatagramSocket, Listener, Readiness, Received, Transport,
};
use crate::Error;

/// How a ready request is taken and processed (Python's `process_request`
/// and the mix-ins that override it).
///
/// `K` is the transport's [`kind`], so one strategy type can serve both
/// stream and datagram transports. A dispatch owns the handler factory and
/// the [`Hooks`], and forwards `handle_timeout` and `service_actions` to
/// them after its own work (a forking dispatch reaps children there).
pub trait Dispatch<T: Transport, K = <T as Transport>::Kind> {
    /// Python's `_handle_request_noblock`: `get_request`, `verify_request`,
    /// then `process_request`, for a transport that reported readiness.
    /// Errors are reported through the hooks, never returned.
    ///
    /// Returns whether a request was taken (and served, refused, or failed);
    /// `false` when the readiness was stale and there was nothing to take
    /// ([`Taken::Nothing`]), so that [`Server::handle_request`] waits again
    /// instead of returning having done nothing.
    fn handle_request_noblock(&mut self, transport: &mut T) -> bool;

    /// [`Server::handle_request`] waited its whole timeout for nothing.
    fn handle_timeout(&mut self);

    /// One pass of [`Server::serve_forever`] is done.
    fn service_actions(&mut self);

    /// The server is closing, after its transport was closed
    /// (`server_close`; a threaded dispatch joins its threads here).
    fn server_close(&mut self);
}

/// What [`get_stream_request`] or [`get_datagram_request`] found.
#[derive(Debug)]
#[must_use]
pub enum Taken<R> {
    /// A verified request, to be processed.
    Request(R),
    /// A request was taken and already dealt with: `verify_request` refused
    /// it (a refused connection has been shut down and closed, as in
    /// Python), or taking it failed (logged).
    Handled,
    /// There was nothing to take after all: the readiness was stale.
    Nothing,
}

impl<R> Taken<R> {
    /// Whether a request was taken ([`Request`](Self::Request) or
    /// [`Handled`](Self::Handled)): what
    /// [`Dispatch::handle_request_noblock`] returns.
    pub fn took(&self) -> bool {
        !matches!(self, Taken::Nothing)
    }
}

/// Python's `get_request` and `verify_request` for stream transports:
/// accepts a connection and returns it if `verify_request` accepts it too.
pub fn get_stream_request<L, H>(listener: &mut L, hooks: &H) -> Taken<(L::Connection, L::Addr)>
where
    L: Listener,
    H: Hooks<L::Connection, L::Addr> + ?Sized,
{
    verify_connection(listener.accept(), hooks)
}

/// [`get_stream_request`] after the accept: generic over the connection,
/// not the listener, so that listeners of one connection type share it.
fn verify_connection<C, E, H>(
    accepted: Result<Option<(C, C::Addr)>, E>,
    hooks: &H,
) -> Taken<(C, C::Addr)>
where
    C: Connection,
    E: embedded_io::Error,
    H: Hooks<C, C::Addr> + ?Sized,
{
    let (conn, addr) = match accepted {
        Ok(Some(request)) => request,
        Ok(None) => return Taken::Nothing,
        Err(err) => {
            crate::diag::accept_failed(&err);
            return Taken::Handled;
        }
    };
    if hooks.verify_request(&conn, &addr) {
        Taken::Request((conn, addr))
    } else {
        shutdown_request(conn);
        Taken::Handled
    }
}

/// Python's `get_request` and `verify_request` for datagram transports:
/// receives into `buf` and returns what arrived if `verify_request`
/// accepts it.
pub fn get_datagram_request<S, H>(
    socket: &mut S,
    hooks: &H,
    buf: &mut [u8],
) -> Taken<Received<S::Addr>>
where
    S: DatagramSocket,
    H: Hooks<[u8], S::Addr> + ?Sized,
{
    let received = match socket.recv_from(buf) {
        Ok(Some(received)) => received,
        Ok(None) => return Taken::Nothing,
        Err(err) => {
            crate::diag::accept_failed(&err);
            return Taken::Handled;
        }
    };
    if hooks.verify_request(&buf[..received.len], &received.addr) {
        Taken::Request(received)
    } else {
        Taken::Handled
    }
}

/// One synchronous pass of Python's `_handle_request_noblock` for streams:
/// takes and verifies a connection, then serves it to the end with the
/// given buffers. What every inline dispatch runs; returns what
/// [`Dispatch::handle_request_noblock`] does.
pub fn handle_stream_request<L, F, H>(
    listener: &mut L,
    factory: &F,
    hooks: &H,
    rbuf: &mut [u8],
    wbuf: &mut [u8],
) -> bool
where
    L: Listener,
    F: HandlerFactory + ?Sized,
    F::Handler: StreamHandler,
    H: Hooks<L::Connection, L::Addr> + ?Sized,
{
    serve_accepted(listener.accept(), &Factory(factory), hooks, rbuf, wbuf)
}

/// The body of [`handle_stream_request`] after the accept, with the
/// handler factory behind a trait object: generic over the connection and
/// hooks types only, so that servers of different handlers and listeners
/// of one connection type share it (never inlined, or each would have its
/// copy again).
#[inline(never)]
fn serve_accepted<C, E, H>(
    accepted: Result<Option<(C, C::Addr)>, E>,
    factory: &dyn Serve<C>,
    hooks: &H,
    rbuf: &mut [u8],
    wbuf: &mut [u8],
) -> bool
where
    C: Connection,
    E: embedded_io::Error,
    H: Hooks<C, C::Addr> + ?Sized,
{
    match verify_connection(accepted, hooks) {
        Taken::Request((conn, addr)) => {
            serve_with(conn, addr, factory, hooks, rbuf, wbuf);
            true
        }
        other => other.took(),
    }
}

/// The datagram twin of [`handle_stream_request`]: receives into `rbuf`,
/// verifies, serves, and sends the reply (bounded by `wbuf`) through the
/// same socket.
pub fn handle_datagram_request<S, F, H>(
    socket: &mut S,
    factory: &F,
    hooks: &H,
    rbuf: &mut [u8],
    wbuf: &mut [u8],
) -> bool
where
    S: DatagramSocket,
    F: HandlerFactory + ?Sized,
    F::Handler: DatagramHandler,
    H: Hooks<[u8], S::Addr> + ?Sized,
{
    let rx = match get_datagram_request(socket, hooks, rbuf) {
        Taken::Request(rx) => rx,
        other => return other.took(),
    };
    serve_datagram(
        &rbuf[..rx.len],
        rx.truncated,
        rx.addr,
        factory,
        hooks,
        wbuf,
        |reply, addr| socket.send_to(reply, addr).map_err(Error::from_io),
    );
    true
}

/// Handles each request to the end before taking the next (Python's
/// default `process_request`). Needs no threads, no heap and no OS.
///
/// `RBUF` is the `rfile` capacity (the longest line) for streams and the
/// packet buffer (`max_packet_size`) for datagrams; `WBUF` is the buffered
/// `wfile` for streams and the largest reply for datagrams. Both live inside
/// this value, so on small targets choose them to fit the stack or place the
/// server in a `static`.
pub struct SyncDispatch<F, H = DefaultHooks, const RBUF: usize = 8192, const WBUF: usize = 8192> {
    factory: F,
    hooks: H,
    rbuf: [u8; RBUF],
    wbuf: [u8; WBUF],
}

impl<F: HandlerFactory, const RBUF: usize, const WBUF: usize>
    SyncDispatch<F, DefaultHooks, RBUF, WBUF>
{
    /// Serves with handlers from `factory` and the default hooks.
    pub fn new(factory: F) -> Self {
        Self::with_hooks(factory, DefaultHooks)
    }
}

impl<F: HandlerFactory, H, const RBUF: usize, const WBUF: usize> SyncDispatch<F, H, RBUF, WBUF> {
    /// Serves with handlers from `factory`, calling `hooks`.
    pub fn with_hooks(factory: F, hooks: H) -> Self {
        SyncDispatch {
            factory,
            hooks,
            rbuf: [0; RBUF],
            wbuf: [0; WBUF],
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
}

impl<L, F, H, const RBUF: usize, const WBUF: usize> Dispatch<L, kind::Stream>
    for SyncDispatch<F, H, RBUF, WBUF>
where
    L: Listener,
    F: HandlerFactory,
    F::Handler: StreamHandler,
    H: Hooks<L::Connection, L::Addr>,
{
    fn handle_request_noblock(&mut self, listener: &mut L) -> bool {
        handle_stream_request(
            listener,
            &self.factory,
            &self.hooks,
            &mut self.rbuf,
            &mut self.wbuf,
        )
    }

    fn handle_timeout(&mut self) {
        self.hooks.handle_timeout();
    }

    fn service_actions(&mut self) {
        self.hooks.service_actions();
    }

    fn server_close(&mut self) {}
}

impl<S, F, H, const RBUF: usize, const WBUF: usize> Dispatch<S, kind::Datagram>
    for SyncDispatch<F, H, RBUF, WBUF>
where
    S: DatagramSocket,
    F: HandlerFactory,
    F::Handler: DatagramHandler,
    H: Hooks<[u8], S::Addr>,
{
    fn handle_request_noblock(&mut self, socket: &mut S) -> bool {
        handle_datagram_request(
            socket,
            &self.factory,
            &self.hooks,
            &mut self.rbuf,
            &mut self.wbuf,
        )
    }

    fn handle_timeout(&mut self) {
        self.hooks.handle_timeout();
    }

    fn service_actions(&mut self) {
        self.hooks.service_actions();
    }

    fn server_close(&mut self) {}
}

/// Python's `BaseServer`: a transport, a dispatch strategy and a clock.
///
/// Closing ([`server_close`](Self::server_close)) is idempotent and also
/// happens on drop.
pub struct Server<T, D, K>
where
    T: Transport,
    D: Dispatch<T, T::Kind>,
    K: Clock,
{
    transport: T,
    dispatch: D,
    clock: K,
    timeout: Option<Duration>,
    closed: bool,
}

impl<T, D, K> Server<T, D, K>
where
    T: Transport,
    D: Dispatch<T, T::Kind>,
    K: Clock,
{
    /// A server taking requests from `transport`, processing them with
    /// `dispatch`, and measuring [`timeout`](Self::timeout) with `clock`.
    /// The transport is expected to be bound and, for streams, listening.
    pub fn new(transport: T, dispatch: D, clock: K) -> Self {
        Server {
            transport,
            dispatch,
            clock,
            timeout: None,
            closed: false,
        }
    }

    /// How long [`handle_request`](Self::handle_request) waits; `None`
    /// (Python's default) waits for ever.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The transport, mutably.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// The dispatch strategy (and through it the hooks).
    pub fn dispatch(&self) -> &D {
        &self.dispatch
    }

    /// The dispatch strategy, mutably.
    pub fn dispatch_mut(&mut self) -> &mut D {
        &mut self.dispatch
    }

    /// The clock.
    pub fn clock(&self) -> &K {
        &self.clock
    }

    /// Whether [`server_close`](Self::server_close) has run.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Handles one request, waiting at most [`timeout`](Self::timeout) for
    /// it; when none arrives in time, calls `handle_timeout` instead.
    ///
    /// Early wake-ups, and readiness that turned out stale (the connection
    /// was gone before it was accepted), wait again for the remaining time.
    /// A shutdown request
    /// ends the wait without handling anything and is left set for
    /// [`serve_forever`](Self::serve_forever).
    ///
    /// # Errors
    /// Only the transport's wait fails this call (for example after close);
    /// a failed request is reported to `handle_error` instead.
    pub fn handle_request(&mut self) -> Result<(), T::Error> {
        let timeout = self.timeout;
        let mut steps = Steps {
            server: self,
            error: None,
        };
        if wait_and_handle(&mut steps, timeout) {
            steps.server.dispatch.handle_timeout();
        }
        match steps.error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Handles requests until shutdown is requested (Python's
    /// `serve_forever`), calling `service_actions` after every pass.
    ///
    /// Each pass waits at most `poll_interval`, but a shutdown request ends
    /// the wait at once, and one made before this call makes it return at
    /// once. A request that became ready while shutdown was being requested
    /// is left unserved. The shutdown request is cleared on return, so the
    /// server can be served again.
    ///
    /// # Errors
    /// The transport's wait failed (for example after close).
    pub fn serve_forever(&mut self, poll_interval: Duration) -> Result<(), T::Error> {
        let result = loop {
            if self.transport.shutdown_requested() {
                break Ok(());
            }
            match self.transport.wait(Some(poll_interval)) {
                Err(err) => break Err(err),
                Ok(Readiness::Shutdown) => break Ok(()),
                Ok(Readiness::Ready) => {
                    // bpo-35017: shutdown requested during the wait wins.
                    if self.transport.shutdown_requested() {
                        break Ok(());
                    }
                    self.dispatch.handle_request_noblock(&mut self.transport);
                }
                Ok(Readiness::TimedOut | Readiness::Interrupted) => {}
            }
            self.dispatch.service_actions();
        };
        self.transport.clear_shutdown();
        result
    }

    /// Closes the transport, then lets the dispatch finish (Python's
    /// `server_close`). Idempotent.
    pub fn server_close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.transport.close();
            self.dispatch.server_close();
        }
    }
}

/// What [`Server::handle_request`] does that depends on the server's
/// types, behind a trait object: the waiting loop ([`wait_and_handle`])
/// exists once in the binary however many server types it has.
trait RequestSteps {
    /// The clock's time.
    fn now(&self) -> Instant;
    /// The transport's wait; `None` when it failed (the error is kept).
    fn wait(&mut self, timeout: Option<Duration>) -> Option<Readiness>;
    /// `handle_request_noblock`: whether a request was taken.
    fn take(&mut self) -> bool;
}

/// A server lent to [`wait_and_handle`], with the wait's error if any.
struct Steps<'s, T: Transport, D: Dispatch<T, T::Kind>, K: Clock> {
    server: &'s mut Server<T, D, K>,
    error: Option<T::Error>,
}

impl<T: Transport, D: Dispatch<T, T::Kind>, K: Clock> RequestSteps for Steps<'_, T, D, K> {
    fn now(&self) -> Instant {
        self.server.clock.now()
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Option<Readiness> {
        self.server
            .transport
            .wait(timeout)
            .map_err(|err| self.error = Some(err))
            .ok()
    }

    fn take(&mut self) -> bool {
        let server = &mut *self.server;
        server
            .dispatch
            .handle_request_noblock(&mut server.transport)
    }
}

/// The body of [`Server::handle_request`]: waits for a request at most
/// `timeout` and handles it. Returns `true` when the whole timeout passed
/// with nothing handled (`handle_timeout` is due).
fn wait_and_handle(steps: &mut dyn RequestSteps, timeout: Option<Duration>) -> bool {
    let deadline = timeout.map(|t| steps.now() + t);
    loop {
        let remaining = deadline.map(|d| d - steps.now());
        let Some(readiness) = steps.wait(remaining) else {
            return false;
        };
        match readiness {
            Readiness::Ready if steps.take() => return false,
            Readiness::TimedOut if deadline.is_some() => return true,
            Readiness::Shutdown => return false,
            // An early wake-up, or stale readiness (nothing was taken).
            Readiness::Ready | Readiness::TimedOut | Readiness::Interrupted => {
                if deadline.is_some_and(|d| steps.now() >= d) {
                    return true;
                }
            }
        }
    }
}

impl<T, D, K> Drop for Server<T, D, K>
where
    T: Transport,
    D: Dispatch<T, T::Kind>,
    K: Clock,
{
    fn drop(&mut self) {
        self.server_close();
    }
}
