//! Servers over OS sockets: the core [`Server`] with a std clock, a
//! shutdown that waits for the loop, and Python's knobs.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
#[cfg(unix)]
use std::path::PathBuf;
use std::time::Duration;

use socket2::Socket;
use socketserver_core::{DefaultHooks, Dispatch, HandlerFactory, Server, StdClock, Took};

use crate::dispatch::{BufferSizes, DispatchConfig, InlineDispatch};
#[cfg(unix)]
use crate::family::UnixAddr;
use crate::shutdown::ShutdownHandle;
use crate::sys;
use crate::transport::{SocketTransport, TcpTransport, UdpTransport};
#[cfg(unix)]
use crate::transport::{UnixDatagramTransport, UnixStreamTransport};

/// Python's default `poll_interval` for `serve_forever` (0.5 s). With this
/// crate it only paces `service_actions`; shutdown does not wait for it.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Python's socket servers (`TCPServer`, `UDPServer`, `UnixStreamServer`,
/// `UnixDatagramServer`): a [`SocketTransport`] served by a dispatch `D`.
///
/// Build one with [`ServerBuilder`], or `new` on the aliases
/// ([`TcpServer::new`] ...). Closing is idempotent and happens on drop; for
/// a Unix server it removes the socket file (unless asked to keep it).
pub struct SocketServer<T, D>
where
    T: SocketTransport,
    D: Dispatch<T, T::Kind>,
{
    inner: Server<T, D, StdClock>,
}

/// Python's `TCPServer`, with the inline (synchronous) dispatch.
#[doc(alias = "TCPServer")]
pub type TcpServer<F, H = DefaultHooks> = SocketServer<TcpTransport, InlineDispatch<F, H>>;
/// Python's `UDPServer`.
#[doc(alias = "UDPServer")]
pub type UdpServer<F, H = DefaultHooks> = SocketServer<UdpTransport, InlineDispatch<F, H>>;
#[cfg(unix)]
/// Python's `UnixStreamServer`.
#[cfg(unix)]
pub type UnixStreamServer<F, H = DefaultHooks> =
    SocketServer<UnixStreamTransport, InlineDispatch<F, H>>;
#[cfg(unix)]
/// Python's `UnixDatagramServer`.
#[cfg(unix)]
pub type UnixDatagramServer<F, H = DefaultHooks> =
    SocketServer<UnixDatagramTransport, InlineDispatch<F, H>>;

impl<T, D> SocketServer<T, D>
where
    T: SocketTransport,
    D: Dispatch<T, T::Kind>,
{
    /// A server from its parts. The transport is served as it is: bind and
    /// activate it first, or call [`server_bind`](Self::server_bind) and
    /// [`server_activate`](Self::server_activate) afterwards.
    pub fn from_parts(transport: T, dispatch: D) -> Self {
        SocketServer {
            inner: Server::new(transport, dispatch, StdClock),
        }
    }

    /// Python's `server_bind` (with `bind_and_activate = false`).
    ///
    /// # Errors
    /// See [`SocketTransport::server_bind`].
    pub fn server_bind(&mut self) -> io::Result<()> {
        self.inner.transport_mut().server_bind()
    }

    /// Python's `server_activate` (with `bind_and_activate = false`).
    ///
    /// # Errors
    /// See [`SocketTransport::server_activate`].
    pub fn server_activate(&mut self) -> io::Result<()> {
        self.inner.transport_mut().server_activate()
    }

    /// Python's `server_address`, by Rust's name (as `std::net`, socket2
    /// and tokio call it): the bound address (port 0 resolved), or before
    /// binding the address asked for.
    #[doc(alias = "server_address")]
    pub fn local_addr(&self) -> &T::Addr {
        self.inner.transport().local_addr()
    }

    /// The server socket (Python's `self.socket`); `None` once closed.
    pub fn socket(&self) -> Option<&Socket> {
        self.inner.transport().socket()
    }

    /// A cloneable, `Send` handle whose [`shutdown`](ShutdownHandle::shutdown)
    /// stops [`serve_forever`](Self::serve_forever) from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.inner.transport().shutdown_handle()
    }

    /// How long the requests in progress may take to finish once shutdown
    /// is requested, before their connections are cut; `None`: for ever.
    /// See [`ShutdownHandle`] for who cuts them, and when.
    pub fn drain_timeout(&self) -> Option<Duration> {
        self.shutdown_handle().drain_timeout()
    }

    /// Sets [`drain_timeout`](Self::drain_timeout).
    pub fn set_drain_timeout(&mut self, bound: Option<Duration>) {
        self.shutdown_handle().set_drain_timeout(bound);
    }

    /// How long [`handle_request`](Self::handle_request) waits (Python's
    /// `timeout`); `None`, the default, waits for ever.
    pub fn timeout(&self) -> Option<Duration> {
        self.inner.timeout()
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.inner.set_timeout(timeout);
    }

    /// Handles one request, waiting at most [`timeout`](Self::timeout);
    /// when none arrives, calls `handle_timeout`.
    ///
    /// # Errors
    /// Waiting failed, for example because the server is closed.
    pub fn handle_request(&mut self) -> io::Result<()> {
        self.inner.handle_request()
    }

    /// Python's `_handle_request_noblock`: takes one request if one is
    /// ready and processes it (inline, or hands it to the dispatch's
    /// threads, pool or child); never waits, and calls no hook when none
    /// is ready. For a loop of one's own that serves several servers and
    /// waits on their descriptors itself.
    #[doc(alias = "_handle_request_noblock")]
    pub fn handle_request_noblock(&mut self) -> Took {
        self.inner.handle_request_noblock()
    }

    /// Handles requests until [`ShutdownHandle::shutdown`] (Python's
    /// `serve_forever`). Blocks.
    ///
    /// Each pass waits at most `poll_interval` and then calls
    /// `service_actions`; a shutdown request wakes the wait at once.
    ///
    /// # Errors
    /// Waiting failed, for example because the server is closed.
    pub fn serve_forever(&mut self, poll_interval: Duration) -> io::Result<()> {
        let _serving = self.shutdown_handle().0.enter_serving();
        self.inner.serve_forever(poll_interval)
    }

    /// Python's `server_close`: closes the socket (and removes a Unix
    /// socket file), then lets the dispatch finish. Idempotent.
    ///
    /// A threading, pool or forking dispatch waits here for its requests
    /// (unless told not to block on close), for at most the
    /// [drain timeout](Self::drain_timeout); then it cuts their connections
    /// (or stops its children) and waits for them to end.
    pub fn server_close(&mut self) {
        self.inner.server_close();
    }

    /// Whether [`server_close`](Self::server_close) has run.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        self.inner.transport()
    }

    /// The transport, mutably (pre-forked workers prepare it after the
    /// fork).
    #[allow(dead_code)] // Used by the Unix-only pre-forked workers.
    pub(crate) fn transport_mut(&mut self) -> &mut T {
        self.inner.transport_mut()
    }

    /// The dispatch (and through it the hooks and the handler factory).
    pub fn dispatch(&self) -> &D {
        self.inner.dispatch()
    }

    /// The dispatch, mutably.
    pub fn dispatch_mut(&mut self) -> &mut D {
        self.inner.dispatch_mut()
    }
}

sys::socket_handles!(
    [T: SocketTransport, D: Dispatch<T, T::Kind>] SocketServer<T, D>,
    this => this.socket()
);

/// The listen backlog servers start with ([`ServerBuilder::request_queue_size`]):
/// 1024, where Python's `request_queue_size` is 5. The kernel caps it at
/// its own limit (`net.core.somaxconn` on Linux, 4096 by default).
pub const DEFAULT_REQUEST_QUEUE_SIZE: i32 = 1024;

/// Python's `request_queue_size`, which
/// [`ServerBuilder::python_defaults`] restores.
pub const PYTHON_REQUEST_QUEUE_SIZE: i32 = 5;

/// Python's class attributes and constructor flags for socket servers.
///
/// Defaults are current CPython's except where a deployment needs another
/// (see [`ServerBuilder::python_defaults`]).
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) allow_reuse_address: bool,
    pub(crate) allow_reuse_port: bool,
    pub(crate) request_queue_size: i32,
    pub(crate) timeout: Option<Duration>,
    pub(crate) timeout_set: bool,
    pub(crate) buffers: BufferSizes,
    pub(crate) bind_and_activate: bool,
    pub(crate) dual_stack: Option<bool>,
    pub(crate) socket_mode: Option<u32>,
    pub(crate) keep_socket_file: bool,
    pub(crate) drain_timeout: Option<Duration>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

impl Options {
    /// The listen backlog ([`ServerBuilder::request_queue_size`]).
    pub fn request_queue_size(&self) -> i32 {
        self.request_queue_size
    }

    /// The drain bound ([`ServerBuilder::drain_timeout`]).
    pub fn drain_timeout(&self) -> Option<Duration> {
        self.drain_timeout
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            allow_reuse_address: false,
            allow_reuse_port: false,
            request_queue_size: DEFAULT_REQUEST_QUEUE_SIZE,
            timeout: None,
            timeout_set: false,
            buffers: BufferSizes::default(),
            bind_and_activate: true,
            dual_stack: None,
            socket_mode: None,
            keep_socket_file: false,
            drain_timeout: Some(ShutdownHandle::DEFAULT_DRAIN_TIMEOUT),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// Configures and builds a [`SocketServer`].
///
/// ```
/// use socketserver_core::handlers::UpperOnce;
/// use socketserver_std::ServerBuilder;
///
/// let server = ServerBuilder::tcp("127.0.0.1:0")
///     .allow_reuse_address(true)
///     .request_queue_size(64)
///     .build(|| UpperOnce)?;
/// assert_ne!(server.local_addr().port(), 0);
/// # std::io::Result::Ok(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct ServerBuilder<T: SocketTransport, H = DefaultHooks> {
    address: io::Result<T::Addr>,
    options: Options,
    hooks: H,
    inherit: Inherit,
}

/// Where a builder's socket comes from when it is not bound here.
#[derive(Debug, Default)]
enum Inherit {
    /// Bound to the builder's address.
    #[default]
    No,
    /// This socket, made elsewhere.
    Socket(Socket),
    /// The next inherited socket (of this name), if the process has one.
    #[cfg(unix)]
    Activation(Option<String>),
}

impl Inherit {
    /// The socket to adopt, if any.
    fn socket(self) -> io::Result<Option<Socket>> {
        match self {
            Inherit::No => Ok(None),
            Inherit::Socket(socket) => Ok(Some(socket)),
            #[cfg(unix)]
            Inherit::Activation(name) => {
                let inherited = crate::activation::take(name.as_deref())?;
                if let (None, Some(name)) = (&inherited, &name) {
                    let left = crate::activation::unclaimed_names()?;
                    if !left.is_empty() {
                        return Err(io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("no inherited socket is named {name:?} (unclaimed: {left:?})"),
                        ));
                    }
                }
                inherited
                    .map(crate::activation::Inherited::into_socket)
                    .transpose()
            }
        }
    }
}

impl ServerBuilder<TcpTransport> {
    /// A TCP server on `address` (the first it resolves to; IPv4 or IPv6).
    pub fn tcp(address: impl ToSocketAddrs) -> Self {
        Self::with_address(resolve(address))
    }
}

impl ServerBuilder<UdpTransport> {
    /// A UDP server on `address` (the first it resolves to; IPv4 or IPv6).
    pub fn udp(address: impl ToSocketAddrs) -> Self {
        Self::with_address(resolve(address))
    }
}

#[cfg(unix)]
impl ServerBuilder<UnixStreamTransport> {
    /// A Unix stream server on the socket file `path`.
    pub fn unix_stream(path: impl Into<PathBuf>) -> Self {
        Self::with_address(Ok(UnixAddr::Pathname(path.into())))
    }
}

#[cfg(unix)]
impl ServerBuilder<UnixDatagramTransport> {
    /// A Unix datagram server on the socket file `path`.
    pub fn unix_datagram(path: impl Into<PathBuf>) -> Self {
        Self::with_address(Ok(UnixAddr::Pathname(path.into())))
    }
}

impl ServerBuilder<TcpTransport> {
    /// A TCP server on a listener the program made (or inherited some way
    /// of its own); see [`from_socket`](Self::from_socket).
    pub fn from_tcp_listener(listener: std::net::TcpListener) -> Self {
        Self::from_socket(listener)
    }
}

impl ServerBuilder<UdpTransport> {
    /// A UDP server on a bound socket; see [`from_socket`](Self::from_socket).
    pub fn from_udp_socket(socket: std::net::UdpSocket) -> Self {
        Self::from_socket(socket)
    }
}

#[cfg(unix)]
impl ServerBuilder<UnixStreamTransport> {
    /// A Unix stream server on a listener; see [`from_socket`](Self::from_socket).
    pub fn from_unix_listener(listener: std::os::unix::net::UnixListener) -> Self {
        Self::from_socket(listener)
    }
}

#[cfg(unix)]
impl ServerBuilder<UnixDatagramTransport> {
    /// A Unix datagram server on a bound socket; see
    /// [`from_socket`](Self::from_socket).
    pub fn from_unix_datagram(socket: std::os::unix::net::UnixDatagram) -> Self {
        Self::from_socket(socket)
    }
}

fn resolve(address: impl ToSocketAddrs) -> io::Result<SocketAddr> {
    address.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    })
}

impl<T: SocketTransport> ServerBuilder<T> {
    /// A server on `address` with CPython's defaults.
    pub fn new(address: T::Addr) -> Self {
        Self::with_address(Ok(address))
    }

    fn with_address(address: io::Result<T::Addr>) -> Self {
        ServerBuilder {
            address,
            options: Options::default(),
            hooks: DefaultHooks,
            inherit: Inherit::No,
        }
    }

    /// A server on `socket`, already bound (a std `TcpListener`,
    /// `UdpSocket`, `UnixListener`, `UnixDatagram`, or any socket2
    /// [`Socket`](socket2::Socket)), with the builder's other options: the one path for
    /// sockets made elsewhere, as for those bound here. `build` checks
    /// that it fits the server and serves it as
    /// [`SocketTransport::adopt`] says; [`bind_and_activate`](Self::bind_and_activate)
    /// does not apply.
    ///
    /// ```
    /// use socketserver_core::handlers::UpperLine;
    /// use socketserver_std::ServerBuilder;
    ///
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let address = listener.local_addr()?;
    /// let server = ServerBuilder::from_tcp_listener(listener).build(|| UpperLine)?;
    /// assert_eq!(*server.local_addr(), address);
    ///
    /// // A socket of another type is refused, and says why:
    /// let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
    /// let refused = ServerBuilder::<socketserver_std::TcpTransport>::from_socket(udp).build(|| UpperLine);
    /// assert!(refused.err().unwrap().to_string().contains("datagram (SOCK_DGRAM)"));
    /// # std::io::Result::Ok(())
    /// ```
    pub fn from_socket(socket: impl Into<Socket>) -> Self {
        let mut builder = Self::with_address(Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the server serves a socket made elsewhere",
        )));
        builder.inherit = Inherit::Socket(socket.into());
        builder
    }
}

impl<T: SocketTransport, H> ServerBuilder<T, H> {
    /// The server's hooks (Python's overridable server methods:
    /// `verify_request`, `handle_error`, `handle_timeout`,
    /// `service_actions`), for whichever dispatch is built next. Default:
    /// [`DefaultHooks`].
    ///
    /// ```no_run
    /// use std::net::SocketAddr;
    /// use socketserver_core::handlers::UpperLine;
    /// use socketserver_core::{Hooks, ServerHooks};
    /// use socketserver_std::{ServerBuilder, TcpConnection, ThreadingDispatch};
    ///
    /// struct LocalOnly;
    /// impl Hooks<TcpConnection, SocketAddr> for LocalOnly {
    ///     fn verify_request(&self, _: &TcpConnection, client: &SocketAddr) -> bool {
    ///         client.ip().is_loopback()
    ///     }
    /// }
    /// impl ServerHooks for LocalOnly {}
    ///
    /// // Inline, as Python's TCPServer:
    /// let inline = ServerBuilder::tcp("127.0.0.1:0").hooks(LocalOnly).build(|| UpperLine)?;
    /// // Any other dispatch, with the same hooks and builder options:
    /// let threading = ServerBuilder::tcp("127.0.0.1:0")
    ///     .hooks(LocalOnly)
    ///     .build_with(|config| ThreadingDispatch::new(|| UpperLine, config).max_threads(Some(64)))?;
    /// # drop((inline, threading));
    /// # std::io::Result::Ok(())
    /// ```
    pub fn hooks<H2>(self, hooks: H2) -> ServerBuilder<T, H2> {
        ServerBuilder {
            address: self.address,
            options: self.options,
            hooks,
            inherit: self.inherit,
        }
    }

    /// Serves the next socket the process inherited through socket
    /// activation (systemd's `LISTEN_PID`/`LISTEN_FDS`, see
    /// [`activation`](crate::activation)) when it was started that way,
    /// instead of binding the address; otherwise binds the address as
    /// usual. The inherited socket is checked as [`from_socket`](Self::from_socket)'s;
    /// a socket given to `from_socket` is served whatever this says.
    /// Default: off.
    ///
    /// Socket activation is a Unix protocol: elsewhere (Windows, WASI) this
    /// does nothing and the address is bound.
    #[cfg_attr(not(unix), allow(unused_mut))]
    pub fn socket_activation(mut self, on: bool) -> Self {
        #[cfg(unix)]
        match (&self.inherit, on) {
            (Inherit::Socket(_), _) => {}
            (_, true) => self.inherit = Inherit::Activation(None),
            (_, false) => self.inherit = Inherit::No,
        }
        #[cfg(not(unix))]
        let _ = on;
        self
    }

    /// As [`socket_activation`](Self::socket_activation), with the
    /// inherited socket named `name` in `LISTEN_FDNAMES` (systemd's
    /// `FileDescriptorName=`). `build` fails with `NotFound` when sockets
    /// were inherited but none of them, unclaimed, has that name.
    #[cfg(unix)]
    pub fn socket_activation_named(mut self, name: impl Into<String>) -> Self {
        if !matches!(self.inherit, Inherit::Socket(_)) {
            self.inherit = Inherit::Activation(Some(name.into()));
        }
        self
    }

    /// `SO_REUSEADDR` before binding (`allow_reuse_address`). Default: off.
    ///
    /// On Windows, where `SO_REUSEADDR` would let another socket take a
    /// port the server listens on, it is never set: off, the socket gets
    /// `SO_EXCLUSIVEADDRUSE` (no other socket may bind the port); on, no
    /// option (Windows then binds over connections in `TIME_WAIT` anyway).
    pub fn allow_reuse_address(mut self, on: bool) -> Self {
        self.options.allow_reuse_address = on;
        self
    }

    /// `SO_REUSEPORT` before binding (`allow_reuse_port`); IPv4 and IPv6
    /// only, ignored for Unix sockets. Default: off. Windows has no such
    /// option: there binding fails with [`Unsupported`](std::io::ErrorKind::Unsupported).
    pub fn allow_reuse_port(mut self, on: bool) -> Self {
        self.options.allow_reuse_port = on;
        self
    }

    /// The `listen` backlog of stream servers (`request_queue_size`).
    /// Default: [`DEFAULT_REQUEST_QUEUE_SIZE`] (1024; Python's is 5, which
    /// drops a burst of clients: see [`python_defaults`](Self::python_defaults)).
    pub fn request_queue_size(mut self, backlog: i32) -> Self {
        self.options.request_queue_size = backlog;
        self
    }

    /// How long `handle_request` waits (`timeout`). Default: for ever.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.options.timeout = timeout;
        self.options.timeout_set = true;
        self
    }

    /// The datagram receive buffer (`max_packet_size`); a longer datagram
    /// reaches the handler truncated and flagged so. Default: 8192.
    pub fn max_packet_size(mut self, size: usize) -> Self {
        self.options.buffers.read = size;
        self
    }

    /// The buffers the dispatch allocates: for streams the `rfile` buffer
    /// (the longest line) and the optional `wfile` buffer; for datagrams
    /// the packet and reply buffers. Default: 8192 bytes each.
    pub fn buffer_sizes(mut self, sizes: BufferSizes) -> Self {
        self.options.buffers = sizes;
        self
    }

    /// With `false`, `build` only creates the socket: set socket options
    /// through [`SocketServer::socket`], then call `server_bind` and
    /// `server_activate` (`bind_and_activate`). Default: `true`.
    pub fn bind_and_activate(mut self, on: bool) -> Self {
        self.options.bind_and_activate = on;
        self
    }

    /// For an IPv6 address, accept IPv4 clients too (`true`, so `[::]`
    /// serves both) or IPv6 only (`false`). Default: the system's setting.
    pub fn dual_stack(mut self, on: bool) -> Self {
        self.options.dual_stack = Some(on);
        self
    }

    /// The permission bits of a Unix socket file (for example `0o660`),
    /// whatever the umask. On Linux the file is created with at most these
    /// bits (the socket carries them into `bind`), so it never allows more
    /// than asked for; elsewhere they are set right after binding. Bits
    /// beyond `0o7777` make binding fail with `InvalidInput`. Default: as
    /// the umask leaves them.
    pub fn socket_mode(mut self, mode: u32) -> Self {
        self.options.socket_mode = Some(mode);
        self
    }

    /// Leaves the Unix socket file in place when the server closes.
    /// Default: the file is removed.
    pub fn keep_socket_file(mut self, keep: bool) -> Self {
        self.options.keep_socket_file = keep;
        self
    }

    /// How long the requests in progress may take to finish once shutdown
    /// is requested; the connections still open after it are cut (see
    /// [`ShutdownHandle`]). `None` waits for ever, as Python does.
    /// Default: [`ShutdownHandle::DEFAULT_DRAIN_TIMEOUT`] (3 s).
    pub fn drain_timeout(mut self, bound: Option<Duration>) -> Self {
        self.options.drain_timeout = bound;
        self
    }

    /// Serves TLS with `config` (feature `tls`): every connection is a
    /// [`TlsConnection`](crate::tls::TlsConnection) over `T`'s, served by
    /// the same handlers and dispatches. See [`tls`](crate::tls), and
    /// [`tls::server_config`](crate::tls::server_config) for a
    /// configuration from PEM files. With `None`, connections stay
    /// plaintext: a program that serves TLS only when given a certificate
    /// builds the same server type either way.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(
        self,
        config: impl Into<Option<std::sync::Arc<rustls::ServerConfig>>>,
    ) -> ServerBuilder<crate::tls::TlsTransport<T>, H>
    where
        T: SocketTransport<Kind = socketserver_core::transport::kind::Stream>,
    {
        ServerBuilder {
            address: self.address,
            options: Options {
                tls: config.into(),
                ..self.options
            },
            hooks: self.hooks,
            inherit: self.inherit,
        }
    }

    /// Python's values for the options whose defaults differ here, so that
    /// a server behaves as CPython's does:
    ///
    /// | option | default here | Python's (set by this) |
    /// |---|---|---|
    /// | [`request_queue_size`](Self::request_queue_size) | 1024 ([`DEFAULT_REQUEST_QUEUE_SIZE`]) | 5 ([`PYTHON_REQUEST_QUEUE_SIZE`]) |
    /// | [`drain_timeout`](Self::drain_timeout) | 3 s | none: closing waits for ever |
    ///
    /// A burst of clients beyond a backlog of 5 is dropped by the kernel,
    /// and each client tries again only after 1, 3, 7, 15 s...; a request
    /// that never ends keeps a Python server from stopping. Call this
    /// first: options set after it win.
    ///
    /// ```
    /// use socketserver_core::handlers::UpperOnce;
    /// use socketserver_std::{ServerBuilder, PYTHON_REQUEST_QUEUE_SIZE};
    ///
    /// let builder = ServerBuilder::tcp("127.0.0.1:0").python_defaults();
    /// assert_eq!(builder.options().request_queue_size(), PYTHON_REQUEST_QUEUE_SIZE);
    /// let server = builder.build(|| UpperOnce)?;
    /// assert_eq!(server.drain_timeout(), None);
    /// # std::io::Result::Ok(())
    /// ```
    pub fn python_defaults(mut self) -> Self {
        self.options.request_queue_size = PYTHON_REQUEST_QUEUE_SIZE;
        self.options.drain_timeout = None;
        self
    }

    /// The options so far.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Builds a server whose dispatch `make_dispatch` creates from the
    /// [`DispatchConfig`]: the buffer sizes and the hooks set on this
    /// builder. The one way to build any dispatch, for example
    /// `.build_with(|config| ThreadingDispatch::new(factory, config))`.
    ///
    /// Unless [`timeout`](Self::timeout) was set, the server's timeout is
    /// the dispatch's default: none, or for a forking dispatch
    /// [`FORKING_TIMEOUT`](crate::FORKING_TIMEOUT) (Python's
    /// `ForkingMixIn.timeout`), so that `handle_timeout` reaps children
    /// even when no request comes.
    ///
    /// # Errors
    /// The address did not resolve, or creating, binding or listening on
    /// the socket failed; the socket is then closed (bpo-22435).
    pub fn build_with<D>(
        self,
        make_dispatch: impl FnOnce(DispatchConfig<H>) -> D,
    ) -> io::Result<SocketServer<T, D>>
    where
        D: Dispatch<T, T::Kind>,
    {
        let transport = match self.inherit.socket()? {
            Some(socket) => T::adopt(socket, &self.options)?,
            None => {
                let mut transport = T::open(self.address?, &self.options)?;
                if self.options.bind_and_activate {
                    // On error `transport` is dropped here, closing the socket.
                    transport.server_bind()?;
                    transport.server_activate()?;
                }
                transport
            }
        };
        let config = DispatchConfig::new(self.options.buffers, self.hooks);
        let dispatch = make_dispatch(config);
        let timeout = if self.options.timeout_set {
            self.options.timeout
        } else {
            dispatch.default_timeout()
        };
        let mut server = SocketServer::from_parts(transport, dispatch);
        server.set_timeout(timeout);
        Ok(server)
    }

    /// Builds a server handling each request with a handler from `factory`
    /// on the serving thread (Python's `TCPServer` and its siblings).
    ///
    /// # Errors
    /// See [`build_with`](Self::build_with).
    pub fn build<F>(self, factory: F) -> io::Result<SocketServer<T, InlineDispatch<F, H>>>
    where
        F: HandlerFactory,
        InlineDispatch<F, H>: Dispatch<T, T::Kind>,
    {
        self.build_with(|config| config.inline(factory))
    }
}

/// `new(address, factory)` on the alias of a server type, as Python's
/// `Server(address, Handler)`: CPython's defaults, bound and activated.
macro_rules! new_with_defaults {
    ($transport:ty, InlineDispatch, $ctor:ident, $arg:ty, $python:literal) => {
        impl<F> $crate::SocketServer<$transport, $crate::InlineDispatch<F>>
        where
            F: socketserver_core::HandlerFactory,
            $crate::InlineDispatch<F>: socketserver_core::Dispatch<
                $transport,
                <$transport as socketserver_core::Transport>::Kind,
            >,
        {
            #[doc = concat!($python, ": bound and activated, with CPython's defaults.")]
            ///
            /// # Errors
            /// When creating, binding or listening on the socket fails.
            pub fn new(address: $arg, factory: F) -> std::io::Result<Self> {
                $crate::ServerBuilder::$ctor(address).build(factory)
            }

            #[doc = concat!("As [`new`](Self::new), but serves the socket the process inherited through socket activation (systemd's `LISTEN_FDS`), if it was started that way: Python's `", $python, "` behind systemd. Where there is no socket activation (Windows, WASI), the same as `new`.")]
            ///
            /// # Errors
            /// As `new`; or the inherited socket does not fit the server.
            pub fn inherit_or_bind(address: $arg, factory: F) -> std::io::Result<Self> {
                $crate::ServerBuilder::$ctor(address)
                    .socket_activation(true)
                    .build(factory)
            }
        }
    };
    ($transport:ty, $dispatch:ident, $ctor:ident, $arg:ty, $python:literal) => {
        impl<F> $crate::SocketServer<$transport, $dispatch<F>>
        where
            F: socketserver_core::HandlerFactory,
            $dispatch<F>: socketserver_core::Dispatch<
                $transport,
                <$transport as socketserver_core::Transport>::Kind,
            >,
        {
            #[doc = concat!($python, ": bound and activated, with CPython's defaults.")]
            ///
            /// # Errors
            /// When creating, binding or listening on the socket fails.
            pub fn new(address: $arg, factory: F) -> std::io::Result<Self> {
                $crate::ServerBuilder::$ctor(address)
                    .build_with(|config| $dispatch::new(factory, config))
            }

            #[doc = concat!("As [`new`](Self::new), but serves the socket the process inherited through socket activation (systemd's `LISTEN_FDS`), if it was started that way: Python's `", $python, "` behind systemd. Where there is no socket activation (Windows, WASI), the same as `new`.")]
            ///
            /// # Errors
            /// As `new`; or the inherited socket does not fit the server.
            pub fn inherit_or_bind(address: $arg, factory: F) -> std::io::Result<Self> {
                $crate::ServerBuilder::$ctor(address)
                    .socket_activation(true)
                    .build_with(|config| $dispatch::new(factory, config))
            }
        }
    };
}

// The threading, pool and forking dispatches' constructors (none on WASI).
#[cfg(not(target_os = "wasi"))]
pub(crate) use new_with_defaults;

new_with_defaults!(
    TcpTransport,
    InlineDispatch,
    tcp,
    impl ToSocketAddrs,
    "Python's `TCPServer(address, Handler)`"
);
new_with_defaults!(
    UdpTransport,
    InlineDispatch,
    udp,
    impl ToSocketAddrs,
    "Python's `UDPServer(address, Handler)`"
);
#[cfg(unix)]
new_with_defaults!(
    UnixStreamTransport,
    InlineDispatch,
    unix_stream,
    impl Into<PathBuf>,
    "Python's `UnixStreamServer(address, Handler)`"
);
#[cfg(unix)]
new_with_defaults!(
    UnixDatagramTransport,
    InlineDispatch,
    unix_datagram,
    impl Into<PathBuf>,
    "Python's `UnixDatagramServer(address, Handler)`"
);
