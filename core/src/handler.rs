//! Request handlers (Python's `BaseRequestHandler` family), the factory that
//! builds one per request, and the server hooks.

use core::time::Duration;

use crate::datagram::DatagramRequest;
use crate::stream::StreamRequest;
use crate::transport::{Address, Connection, ReplySocket};
use crate::Error;

/// Per-request settings of a stream handler: Python's `StreamRequestHandler`
/// class attributes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct StreamOptions {
    /// Bound on each read and write of the connection (`timeout`); a request
    /// that exceeds it fails with `ErrorKind::TimedOut`. Default: none.
    pub timeout: Option<Duration>,
    /// Bound on the whole request, from `setup` to the end of `finish`
    /// (beyond Python): a client that trickles bytes just fast enough to
    /// keep each read within [`timeout`](Self::timeout) is still cut off
    /// here with `ErrorKind::TimedOut`. Default: none.
    pub request_timeout: Option<Duration>,
    /// Sets `TCP_NODELAY` (`disable_nagle_algorithm`). Default: off.
    pub disable_nagle_algorithm: bool,
    /// Buffers `wfile` in the server's write buffer and flushes it after
    /// [`StreamHandler::finish`] (`wbufsize != 0`). Default: unbuffered, every
    /// write goes out whole before it returns.
    pub buffered_wfile: bool,
}

impl StreamOptions {
    /// The defaults: no timeout, Nagle on, unbuffered `wfile`.
    pub const fn new() -> Self {
        StreamOptions {
            timeout: None,
            request_timeout: None,
            disable_nagle_algorithm: false,
            buffered_wfile: false,
        }
    }

    /// Sets [`timeout`](Self::timeout).
    pub const fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`request_timeout`](Self::request_timeout).
    pub const fn request_timeout(mut self, total: Option<Duration>) -> Self {
        self.request_timeout = total;
        self
    }

    /// Sets [`disable_nagle_algorithm`](Self::disable_nagle_algorithm).
    pub const fn disable_nagle_algorithm(mut self, on: bool) -> Self {
        self.disable_nagle_algorithm = on;
        self
    }

    /// Sets [`buffered_wfile`](Self::buffered_wfile).
    pub const fn buffered_wfile(mut self, on: bool) -> Self {
        self.buffered_wfile = on;
        self
    }
}

/// Handles one stream request over a connection `C` (Python's
/// `StreamRequestHandler`).
///
/// A new handler is built for every request by a [`HandlerFactory`]. The
/// handler chooses how portable it is:
///
/// - `impl<C: Connection> StreamHandler<C> for MyHandler` serves every
///   backend (std sockets, smoltcp, firmware) from one impl;
/// - `impl StreamHandler<TcpConnection> for MyHandler` (a backend's
///   connection type) serves only that backend, and reaches its socket
///   through [`StreamRequest::connection`] with no downcast: socket
///   options, the descriptor, peer credentials, `client_address` as the
///   backend's address type.
///
/// The lifecycle follows Python: [`setup`](Self::setup), then
/// [`handle`](Self::handle), then [`finish`](Self::finish), which runs even
/// when `handle` failed but not when `setup` did. The first error is passed
/// to the server's [`Hooks::handle_error`].
///
/// A wrapper around another handler (logging, metrics), generic over `C`
/// too, delegates each method as it is: `self.inner.handle(request)`. One
/// written for a single connection type `T` around a portable handler
/// calls `options`, whose arguments do not name `C`, as
/// `StreamHandler::<T>::options(&self.inner)`; a plain
/// `self.inner.options()` is error E0283 ("type annotations needed"). The
/// guide's page on porting from Python has both wrappers, compiled.
#[doc(alias = "StreamRequestHandler", alias = "BaseRequestHandler")]
pub trait StreamHandler<C: Connection> {
    /// The settings applied to the connection before `setup`.
    fn options(&self) -> StreamOptions {
        StreamOptions::new()
    }

    /// Prepares the request. An error here skips `handle` and `finish`.
    fn setup(&mut self, request: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let _ = request;
        Ok(())
    }

    /// Serves the request.
    fn handle(&mut self, request: &mut StreamRequest<'_, C>) -> Result<(), Error>;

    /// Cleans up after `handle`, whether it succeeded or not. A buffered
    /// `wfile` is flushed after this returns.
    fn finish(&mut self, request: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let _ = request;
        Ok(())
    }
}

/// Handles one datagram received on a socket `S` (Python's
/// `DatagramRequestHandler`).
///
/// `rfile` reads the packet, `wfile` collects the reply, which is sent to the
/// client after [`finish`](Self::finish) if anything was written (or if the
/// handler asked for an empty one, [`PacketWriter::send_empty`]). The
/// server's socket is there too ([`DatagramRequest::socket`], Python's
/// `self.request[1]`), to send more datagrams or to other addresses. As
/// with [`StreamHandler`], `impl<S: ReplySocket> DatagramHandler<S>` serves
/// every backend, and a bound such as `S: AsFd` or a concrete socket type
/// makes a handler specific. Same lifecycle rules as [`StreamHandler`].
///
/// [`PacketWriter::send_empty`]: crate::PacketWriter::send_empty
#[doc(alias = "DatagramRequestHandler")]
pub trait DatagramHandler<S: ReplySocket> {
    /// Prepares the request. An error here skips `handle` and `finish`.
    fn setup(&mut self, request: &mut DatagramRequest<'_, S>) -> Result<(), Error> {
        let _ = request;
        Ok(())
    }

    /// Serves the request.
    fn handle(&mut self, request: &mut DatagramRequest<'_, S>) -> Result<(), Error>;

    /// Cleans up after `handle`, whether it succeeded or not.
    fn finish(&mut self, request: &mut DatagramRequest<'_, S>) -> Result<(), Error> {
        let _ = request;
        Ok(())
    }
}

/// Builds a new handler for each request (Python's `RequestHandlerClass`).
///
/// Any `Fn() -> H` is a factory; state shared by all requests (Python's
/// `self.server` attributes) is whatever the closure captures, for example an
/// `Arc` on std or a `&'static` on firmware.
#[doc(alias = "RequestHandlerClass", alias = "finish_request")]
pub trait HandlerFactory {
    /// The handler built.
    type Handler;

    /// Builds the handler for one request (Python's `finish_request`).
    fn build(&self) -> Self::Handler;
}

impl<H, F: Fn() -> H> HandlerFactory for F {
    type Handler = H;

    fn build(&self) -> H {
        self()
    }
}

/// The per-request overridable methods of Python's `BaseServer`.
///
/// `R` is what a request is before it is handled: the [`Connection`] for
/// stream servers, the packet (`[u8]`) for datagram servers; `A` is the
/// client address. Hooks take `&self` because threaded dispatch calls them
/// from several threads; keep counters in atomics or cells.
///
/// A type used as a server's hooks also implements [`ServerHooks`] (the
/// methods that concern the server, not a request), often with an empty
/// `impl ServerHooks for MyHooks {}`.
pub trait Hooks<R: ?Sized, A> {
    /// Decides whether to serve a request. On `false` the request is shut
    /// down and closed and no handler is built. Default: `true`.
    fn verify_request(&self, request: &R, client_address: &A) -> bool {
        let _ = (request, client_address);
        true
    }

    /// Reports a request that ended in `error`. The server keeps serving.
    /// Default: [`report_error`], one line with the client address and the
    /// error: on stderr with the core's `std` feature (which the std
    /// backend and the facade's `std` feature turn on), through `log` when
    /// that feature is on and a logger is installed, through `defmt` with
    /// that feature, nowhere without any of them.
    fn handle_error(&self, client_address: &A, error: &Error)
    where
        A: Address,
    {
        report_error(client_address, error);
    }
}

/// The server-level overridable methods of Python's `BaseServer`: they
/// concern no request, so they carry no request or address type.
pub trait ServerHooks {
    /// Called when [`handle_request`](crate::Server::handle_request) waited
    /// its whole timeout for nothing.
    fn handle_timeout(&self) {}

    /// Called once per pass of the [`serve_forever`](crate::Server::serve_forever) loop.
    fn service_actions(&self) {}
}

/// Python's default hooks: accept everyone, report errors with
/// [`report_error`] (stderr with `std`; see there for `log` and `defmt`),
/// do nothing else.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultHooks;

impl<R: ?Sized, A> Hooks<R, A> for DefaultHooks {}

impl ServerHooks for DefaultHooks {}

impl<R: ?Sized, A, H: Hooks<R, A> + ?Sized> Hooks<R, A> for &H {
    fn verify_request(&self, request: &R, client_address: &A) -> bool {
        (**self).verify_request(request, client_address)
    }
    fn handle_error(&self, client_address: &A, error: &Error)
    where
        A: Address,
    {
        (**self).handle_error(client_address, error)
    }
}

impl<H: ServerHooks + ?Sized> ServerHooks for &H {
    fn handle_timeout(&self) {
        (**self).handle_timeout()
    }
    fn service_actions(&self) {
        (**self).service_actions()
    }
}

/// The default `handle_error` report, for hooks that extend rather than
/// replace it: one line, the same words wherever it goes and on every
/// backend, as Python words it:
///
/// ```text
/// Exception occurred during processing of request from 127.0.0.1:58068: Connection reset by peer (os error 104)
/// Exception occurred during processing of request from 192.168.69.1:56468: connection reset
/// ```
///
/// The client address is its `Display`; the error is its `Display`
/// followed by its `source()` chain.
///
/// Where it goes depends on the core's features (the facade's `std`
/// feature turns on the core's `std`):
///
/// | features | where |
/// |---|---|
/// | `std` | stderr, as Python prints its traceback |
/// | `std` + `log`, a logger installed (`log::max_level()` above `Off`) | `log::error!` instead of stderr |
/// | `log` without `std` | `log::error!` |
/// | `defmt` | `defmt::error!` (as well as the above) |
/// | none | nowhere |
///
/// It never panics and never fails the server: a failed write to stderr
/// (a closed pipe, a supervisor gone) is dropped. (A stderr that blocks,
/// a full pipe nobody reads, blocks it as it blocks `eprintln!`.)
pub fn report_error<A: Address>(client_address: &A, error: &Error) {
    #[cfg(feature = "log")]
    if log::max_level() != log::LevelFilter::Off {
        log::error!("{REPORT}{client_address}: {}", crate::diag::Chain(error));
        return;
    }
    #[cfg(feature = "std")]
    {
        use std::io::Write as _;
        // Not `eprintln!`, which panics when stderr is gone.
        let _ = std::writeln!(
            std::io::stderr().lock(),
            "{REPORT}{client_address}: {}",
            crate::diag::Chain(error)
        );
    }
    #[cfg(feature = "defmt")]
    defmt::error!(
        "Exception occurred during processing of request from {}: {}",
        defmt::Display2Format(client_address),
        defmt::Display2Format(error)
    );
    let _ = (client_address, error);
}

/// The words of the default report, before the client address (Python 3's).
#[cfg(any(feature = "log", feature = "std"))]
const REPORT: &str = "Exception occurred during processing of request from ";
