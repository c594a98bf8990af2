//! The server lifecycle (Python's `BaseServer`) and the synchronous dispatch.

use core::time::Duration;

use crate::handler::{
    DatagramHandler, DefaultHooks, HandlerFactory, Hooks, ServerHooks, StreamHandler,
};
use crate::seam::{self, RequestSteps};
use crate::stream::shutdown_request;
use crate::time::{Clock, Instant};
use crate::transport::{
    kind, Connection, DatagramSocket, Listener, Readiness, Received, Transport,
};

/// How a ready request is taken and processed (Python's `process_request`
/// and the mix-ins that override it).
///
/// `K` is the transport's [`kind`], so one strategy type can serve both
/// stream and datagram transports: [`take`](Self::take) is written per
/// kind, and everything that does not depend on the kind is in the
/// [`Lifecycle`] supertrait, written once per dispatch type.
#[doc(alias = "process_request")]
pub trait Dispatch<T: Transport, K = <T as Transport>::Kind>: Lifecycle {
    /// Python's `_handle_request_noblock`, without blocking: takes one
    /// request that is ready (`get_request`, `verify_request`) and
    /// processes it (`process_request`). Errors are reported through the
    /// hooks, never returned.
    ///
    /// [`Took::Nothing`] when no request was ready and [`Took::Failed`] when
    /// taking one failed: in both cases the server waits on the transport
    /// before it takes again, so a failure that persists (no descriptors
    /// left) never makes it spin.
    fn take(&mut self, transport: &mut T) -> Took;
}

/// What a dispatch does besides taking requests, whatever the transport:
/// it owns the hooks, and has work of its own at the server's
/// `service_actions`, `handle_timeout` and `server_close`. The [`Server`]
/// calls the hooks' [`ServerHooks`] methods itself, after the dispatch's.
pub trait Lifecycle {
    /// The hooks of the server: the request-level [`Hooks`] the dispatch
    /// calls, and the [`ServerHooks`] the server calls.
    type Hooks: ServerHooks;

    /// The hooks.
    fn hooks(&self) -> &Self::Hooks;

    /// The dispatch's own work once per pass of
    /// [`serve_forever`](Server::serve_forever), before the hooks'
    /// `service_actions` (a forking dispatch reaps its children here).
    /// Default: nothing.
    fn service_actions(&mut self) {}

    /// The dispatch's own work when [`handle_request`](Server::handle_request)
    /// timed out, before the hooks' `handle_timeout` (a forking dispatch
    /// reaps its children here). Default: nothing.
    fn handle_timeout(&mut self) {}

    /// The server is closing, after its transport was closed
    /// (`server_close`; a threaded dispatch waits for its threads here).
    /// Default: nothing.
    fn server_close(&mut self) {}

    /// The `timeout` a server built with this dispatch starts with, when
    /// its builder sets none (Python's class attribute, which a mix-in may
    /// override: `ForkingMixIn.timeout` is 300 s). Default: `None`, wait
    /// for ever.
    fn default_timeout(&self) -> Option<Duration> {
        None
    }
}

/// What [`Dispatch::take`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
#[non_exhaustive]
pub enum Took {
    /// A request was taken from the transport, and processed or refused.
    Request,
    /// Taking a request failed (and was reported). As in Python,
    /// [`Server::handle_request`] returns after it.
    Failed,
    /// No request was ready.
    Nothing,
}

/// What [`take_stream_request`] or [`take_datagram_request`] found.
#[derive(Debug)]
#[must_use]
#[non_exhaustive]
pub enum Incoming<R> {
    /// A verified request, to be processed.
    Request(R),
    /// `verify_request` refused the request; a refused connection has been
    /// shut down and closed, as in Python.
    Refused,
    /// Taking a request failed (reported through the `log` or `defmt`
    /// diagnostics, as Python ignores these errors).
    Failed,
    /// No request was ready.
    Nothing,
}

impl<R> Incoming<R> {
    /// What [`Dispatch::take`] reports for this: [`Took::Request`] when a
    /// request left the transport (served or refused).
    pub fn took(&self) -> Took {
        match self {
            Incoming::Request(_) | Incoming::Refused => Took::Request,
            Incoming::Failed => Took::Failed,
            Incoming::Nothing => Took::Nothing,
        }
    }
}

/// Python's `get_request` and `verify_request` for stream transports:
/// takes a ready connection and returns it if `verify_request` accepts it.
pub fn take_stream_request<L, H>(listener: &mut L, hooks: &H) -> Incoming<(L::Connection, L::Addr)>
where
    L: Listener,
    H: Hooks<L::Connection, L::Addr> + ?Sized,
{
    verify_connection(listener.try_accept(), hooks)
}

/// [`take_stream_request`] after the accept: generic over the connection,
/// not the listener, so that listeners of one connection type share it.
pub(crate) fn verify_connection<C, E, H>(
    accepted: Result<Option<(C, C::Addr)>, E>,
    hooks: &H,
) -> Incoming<(C, C::Addr)>
where
    C: Connection,
    E: embedded_io::Error,
    H: Hooks<C, C::Addr> + ?Sized,
{
    let (conn, addr) = match accepted {
        Ok(Some(request)) => request,
        Ok(None) => return Incoming::Nothing,
        Err(err) => {
            crate::diag::accept_failed(&err);
            return Incoming::Failed;
        }
    };
    if hooks.verify_request(&conn, &addr) {
        Incoming::Request((conn, addr))
    } else {
        shutdown_request(conn);
        Incoming::Refused
    }
}

/// Python's `get_request` and `verify_request` for datagram transports:
/// receives a ready datagram into `buf` and returns what arrived if
/// `verify_request` accepts it.
pub fn take_datagram_request<S, H>(
    socket: &mut S,
    hooks: &H,
    buf: &mut [u8],
) -> Incoming<Received<S::Addr>>
where
    S: DatagramSocket,
    H: Hooks<[u8], S::Addr> + ?Sized,
{
    let received = match socket.try_recv_from(buf) {
        Ok(Some(received)) => received,
        Ok(None) => return Incoming::Nothing,
        Err(err) => {
            crate::diag::accept_failed(&err);
            return Incoming::Failed;
        }
    };
    if hooks.verify_request(&buf[..received.len], &received.addr) {
        Incoming::Request(received)
    } else {
        Incoming::Refused
    }
}

/// One synchronous `_handle_request_noblock` for streams: takes and
/// verifies a ready connection, then serves it to the end with the given
/// buffers. What [`SyncDispatch`] runs.
pub fn handle_stream_request<L, F, H>(
    listener: &mut L,
    factory: &F,
    hooks: &H,
    rbuf: &mut [u8],
    wbuf: &mut [u8],
) -> Took
where
    L: Listener,
    F: HandlerFactory + ?Sized,
    F::Handler: StreamHandler<L::Connection>,
    H: Hooks<L::Connection, L::Addr> + ?Sized,
{
    seam::serve_accepted(
        listener.try_accept(),
        &seam::Factory(factory),
        hooks,
        rbuf,
        wbuf,
    )
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
) -> Took
where
    S: DatagramSocket,
    F: HandlerFactory + ?Sized,
    F::Handler: DatagramHandler<S>,
    H: Hooks<[u8], S::Addr> + ?Sized,
{
    let rx = match take_datagram_request(socket, hooks, rbuf) {
        Incoming::Request(rx) => rx,
        other => return other.took(),
    };
    crate::datagram::serve_datagram(
        &rbuf[..rx.len],
        rx.truncated,
        rx.addr,
        factory,
        hooks,
        wbuf,
        socket,
    );
    Took::Request
}

/// Handles each request to the end before taking the next (Python's
/// default `process_request`). Needs no threads, no heap and no OS.
///
/// `R` and `W` are the buffers' storage: arrays (the default, 8 KiB each)
/// on firmware, where they live inside this value, or heap slices on std
/// (the std backend's servers use `Box<[u8]>`). `R` is the `rfile`
/// capacity (the longest line) for streams and the packet buffer
/// (`max_packet_size`) for datagrams; `W` is the buffered `wfile` for
/// streams and the largest reply for datagrams. With arrays on small
/// targets, choose sizes that fit the stack or place the server in a
/// `static`.
///
/// A panicking handler is reported to `handle_error` as
/// [`Error::Panicked`](crate::Error::Panicked) when the core's `std` feature is on (the std
/// backend turns it on); without it, panics follow the target's panic
/// strategy (firmware aborts).
pub struct SyncDispatch<F, H = DefaultHooks, R = [u8; 8192], W = [u8; 8192]> {
    factory: F,
    hooks: H,
    rbuf: R,
    wbuf: W,
}

impl<F: HandlerFactory, const RN: usize, const WN: usize>
    SyncDispatch<F, DefaultHooks, [u8; RN], [u8; WN]>
{
    /// Serves with handlers from `factory` and the default hooks, with
    /// array buffers.
    pub fn new(factory: F) -> Self {
        Self::with_hooks(factory, DefaultHooks)
    }
}

impl<F: HandlerFactory, H, const RN: usize, const WN: usize>
    SyncDispatch<F, H, [u8; RN], [u8; WN]>
{
    /// Serves with handlers from `factory`, calling `hooks`, with array
    /// buffers.
    pub fn with_hooks(factory: F, hooks: H) -> Self {
        Self::with_buffers(factory, hooks, [0; RN], [0; WN])
    }
}

impl<F: HandlerFactory, H, R, W> SyncDispatch<F, H, R, W> {
    /// Serves with handlers from `factory`, calling `hooks`, reading
    /// through `rbuf` and writing through `wbuf` (any storage: arrays,
    /// `Box<[u8]>`, `&'static mut [u8]`, ...).
    pub fn with_buffers(factory: F, hooks: H, rbuf: R, wbuf: W) -> Self {
        SyncDispatch {
            factory,
            hooks,
            rbuf,
            wbuf,
        }
    }

    /// The handler factory.
    pub fn factory(&self) -> &F {
        &self.factory
    }
}

impl<F, H: ServerHooks, R, W> Lifecycle for SyncDispatch<F, H, R, W> {
    type Hooks = H;

    fn hooks(&self) -> &H {
        &self.hooks
    }
}

impl<L, F, H, R, W> Dispatch<L, kind::Stream> for SyncDispatch<F, H, R, W>
where
    L: Listener,
    F: HandlerFactory,
    F::Handler: StreamHandler<L::Connection>,
    H: Hooks<L::Connection, L::Addr> + ServerHooks,
    R: AsMut<[u8]>,
    W: AsMut<[u8]>,
{
    fn take(&mut self, listener: &mut L) -> Took {
        let (rbuf, wbuf) = (self.rbuf.as_mut(), self.wbuf.as_mut());
        handle_stream_request(listener, &self.factory, &self.hooks, rbuf, wbuf)
    }
}

impl<S, F, H, R, W> Dispatch<S, kind::Datagram> for SyncDispatch<F, H, R, W>
where
    S: DatagramSocket,
    F: HandlerFactory,
    F::Handler: DatagramHandler<S>,
    H: Hooks<[u8], S::Addr> + ServerHooks,
    R: AsMut<[u8]>,
    W: AsMut<[u8]>,
{
    fn take(&mut self, socket: &mut S) -> Took {
        let (rbuf, wbuf) = (self.rbuf.as_mut(), self.wbuf.as_mut());
        handle_datagram_request(socket, &self.factory, &self.hooks, rbuf, wbuf)
    }
}

/// Python's `BaseServer`: a transport, a dispatch strategy and a clock.
///
/// Closing ([`server_close`](Self::server_close)) is idempotent and also
/// happens on drop.
#[doc(alias = "BaseServer")]
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
    /// A request that is ready is taken at once; otherwise the transport is
    /// waited on, and readiness that turned out stale (the connection was
    /// gone before it was taken) or an early wake-up waits again for the
    /// remaining time. A shutdown request ends the wait without handling
    /// anything and is left set for [`serve_forever`](Self::serve_forever).
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
        if seam::take_or_wait(&mut steps, timeout) {
            let dispatch = &mut steps.server.dispatch;
            dispatch.handle_timeout();
            dispatch.hooks().handle_timeout();
        }
        match steps.error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Python's `_handle_request_noblock`: takes one request if one is
    /// ready and processes it; never waits, and calls no hook when none is
    /// ready. For a loop that serves several servers (on one smoltcp stack,
    /// say) and sleeps only when none of them took anything.
    #[doc(alias = "_handle_request_noblock")]
    pub fn handle_request_noblock(&mut self) -> Took {
        self.dispatch.take(&mut self.transport)
    }

    /// Handles requests until shutdown is requested (Python's
    /// `serve_forever`), calling `service_actions` after every pass.
    ///
    /// A pass takes one request that is ready, or, when none is, waits at
    /// most `poll_interval` for one and takes it, then calls
    /// `service_actions` (so once per request or per quiet `poll_interval`,
    /// as in Python); a shutdown request ends the wait at once, and one made before this call makes it return at once. A
    /// request that became ready while shutdown was being requested is left
    /// unserved. The shutdown request is cleared on return, so the server
    /// can be served again.
    ///
    /// # Errors
    /// The transport's wait failed (for example after close).
    pub fn serve_forever(&mut self, poll_interval: Duration) -> Result<(), T::Error> {
        let result = loop {
            if self.transport.shutdown_requested() {
                break Ok(());
            }
            if self.dispatch.take(&mut self.transport) != Took::Request {
                match self.transport.wait(Some(poll_interval)) {
                    Err(err) => break Err(err),
                    Ok(Readiness::Shutdown) => break Ok(()),
                    Ok(Readiness::Ready) => {
                        // bpo-35017: a shutdown requested during the wait wins.
                        if self.transport.shutdown_requested() {
                            break Ok(());
                        }
                        // Stale readiness takes nothing; the pass ends anyway.
                        let _ = self.dispatch.take(&mut self.transport);
                    }
                    Ok(_) => {}
                }
            }
            self.dispatch.service_actions();
            self.dispatch.hooks().service_actions();
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

/// A server lent to [`seam::take_or_wait`], with the wait's error if any.
struct Steps<'s, T: Transport, D: Dispatch<T, T::Kind>, K: Clock> {
    server: &'s mut Server<T, D, K>,
    error: Option<T::Error>,
}

impl<T: Transport, D: Dispatch<T, T::Kind>, K: Clock> RequestSteps for Steps<'_, T, D, K> {
    fn now(&self) -> Instant {
        self.server.clock.now()
    }

    fn shutdown_requested(&self) -> bool {
        self.server.transport.shutdown_requested()
    }

    fn take(&mut self) -> bool {
        let server = &mut *self.server;
        server.dispatch.take(&mut server.transport) != Took::Nothing
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Option<Readiness> {
        self.server
            .transport
            .wait(timeout)
            .map_err(|err| self.error = Some(err))
            .ok()
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
