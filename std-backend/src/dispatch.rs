//! Processing requests on the serving thread, with handler panics caught.

use std::panic::{self, AssertUnwindSafe};

use socketserver_core::transport::{kind, Address};
use socketserver_core::{
    handle_datagram_request, handle_stream_request, Connection, DatagramHandler, DatagramRequest,
    DatagramSocket, DefaultHooks, Dispatch, Error, HandlerFactory, Hooks, Listener, StreamHandler,
    StreamOptions, StreamRequest,
};

/// The buffers a dispatch allocates once, when the server is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferSizes {
    /// Streams: the `rfile` buffer, which bounds a line. Datagrams: the
    /// receive buffer (`max_packet_size`); longer datagrams are flagged
    /// truncated.
    pub read: usize,
    /// Streams: the `wfile` buffer of handlers that ask for one. Datagrams:
    /// the largest reply.
    pub write: usize,
}

impl Default for BufferSizes {
    /// 8 KiB each, Python's `max_packet_size`.
    fn default() -> Self {
        BufferSizes {
            read: 8192,
            write: 8192,
        }
    }
}

/// Builds handlers from `F` that turn panics into [`Error::Panicked`], so
/// they reach `handle_error` through the core's usual lifecycle: `finish`
/// still runs after a panicking `handle`, and the connection is shut down.
#[derive(Clone, Copy, Debug)]
pub struct CatchUnwind<F>(pub F);

impl<F: HandlerFactory> HandlerFactory for CatchUnwind<F> {
    type Handler = Caught<F::Handler>;

    fn build(&self) -> Caught<F::Handler> {
        // A factory that panicked leaves no handler; `setup` reports it.
        Caught(panic::catch_unwind(AssertUnwindSafe(|| self.0.build())).ok())
    }
}

/// A handler built by [`CatchUnwind`].
#[derive(Debug)]
pub struct Caught<H>(Option<H>);

fn guard<R>(call: impl FnOnce() -> Result<R, Error>) -> Result<R, Error> {
    panic::catch_unwind(AssertUnwindSafe(call)).unwrap_or(Err(Error::Panicked))
}

impl<H> Caught<H> {
    fn with(&mut self, call: impl FnOnce(&mut H) -> Result<(), Error>) -> Result<(), Error> {
        match &mut self.0 {
            Some(handler) => guard(|| call(handler)),
            None => Err(Error::Panicked),
        }
    }
}

impl<H: StreamHandler> StreamHandler for Caught<H> {
    fn options(&self) -> StreamOptions {
        let options = self.0.as_ref().map(|h| guard(|| Ok(h.options())));
        options.and_then(Result::ok).unwrap_or_default()
    }

    fn setup<C: Connection>(&mut self, request: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        self.with(|h| h.setup(request))
    }

    fn handle<C: Connection>(&mut self, request: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        self.with(|h| h.handle(request))
    }

    fn finish<C: Connection>(&mut self, request: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        self.with(|h| h.finish(request))
    }
}

impl<H: DatagramHandler> DatagramHandler for Caught<H> {
    fn setup<A: Address>(&mut self, request: &mut DatagramRequest<'_, A>) -> Result<(), Error> {
        self.with(|h| h.setup(request))
    }

    fn handle<A: Address>(&mut self, request: &mut DatagramRequest<'_, A>) -> Result<(), Error> {
        self.with(|h| h.handle(request))
    }

    fn finish<A: Address>(&mut self, request: &mut DatagramRequest<'_, A>) -> Result<(), Error> {
        self.with(|h| h.finish(request))
    }
}

/// Handles each request to the end on the serving thread before taking the
/// next (Python's default `process_request`), with buffers allocated once.
///
/// A panicking handler is reported to `handle_error` as
/// [`Error::Panicked`] and the server goes on; a panic in a hook is not
/// caught.
#[derive(Debug)]
pub struct InlineDispatch<F, H = DefaultHooks> {
    factory: CatchUnwind<F>,
    hooks: H,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
}

impl<F: HandlerFactory> InlineDispatch<F> {
    /// Serves with handlers from `factory` and the default hooks.
    pub fn new(factory: F, sizes: BufferSizes) -> Self {
        Self::with_hooks(factory, DefaultHooks, sizes)
    }
}

impl<F: HandlerFactory, H> InlineDispatch<F, H> {
    /// Serves with handlers from `factory`, calling `hooks`.
    pub fn with_hooks(factory: F, hooks: H, sizes: BufferSizes) -> Self {
        InlineDispatch {
            factory: CatchUnwind(factory),
            hooks,
            rbuf: vec![0; sizes.read],
            wbuf: vec![0; sizes.write],
        }
    }

    /// The hooks.
    pub fn hooks(&self) -> &H {
        &self.hooks
    }

    /// The handler factory.
    pub fn factory(&self) -> &F {
        &self.factory.0
    }
}

impl<L, F, H> Dispatch<L, kind::Stream> for InlineDispatch<F, H>
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

impl<S, F, H> Dispatch<S, kind::Datagram> for InlineDispatch<F, H>
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
