//! What a server is served from: the abstract transports a backend implements.
//!
//! A backend provides a [`Listener`] (Python's `TCPServer`/`UnixStreamServer`
//! socket) whose connections are [`Connection`]s, or a [`DatagramSocket`]
//! (`UDPServer`/`UnixDatagramServer`). Both share [`Transport`]: waiting for
//! the next request with a timeout that a shutdown request interrupts, and
//! closing.
//!
//! Requests are *taken, then waited for*, as with a readiness API such as
//! mio's: [`Listener::try_accept`] and [`DatagramSocket::try_recv_from`]
//! take a request that is ready or say at once that none is, and the
//! server calls [`Transport::wait`] only after a take found nothing. A
//! transport therefore keeps no state guessing what its next wait should
//! report.

use core::fmt::Debug;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use embedded_io::{ErrorType, Read, Write};

/// Marker types naming the two kinds of transport.
pub mod kind {
    mod sealed {
        pub trait Sealed {}
    }

    /// The kind of a transport: [`Stream`] or [`Datagram`]. Sealed.
    pub trait Kind: sealed::Sealed {}

    /// Connection-oriented transports ([`Listener`](super::Listener)).
    #[derive(Debug)]
    pub enum Stream {}

    /// Message-oriented transports ([`DatagramSocket`](super::DatagramSocket)).
    #[derive(Debug)]
    pub enum Datagram {}

    impl sealed::Sealed for Stream {}
    impl sealed::Sealed for Datagram {}
    impl Kind for Stream {}
    impl Kind for Datagram {}
}

/// An address a client is known by: an IP endpoint, a Unix socket path, ...
pub trait Address: Clone + Debug {}

impl<T: Clone + Debug> Address for T {}

/// What waiting for a request found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Readiness {
    /// A request is probably ready: the next take may still find nothing
    /// (the client went away, or the wake-up was spurious).
    Ready,
    /// The timeout passed with nothing to take.
    TimedOut,
    /// The wait ended early for no request: a signal, a spurious wake-up.
    /// The caller waits again for what remains of its timeout.
    Interrupted,
    /// Shutdown was requested (see [`Transport::shutdown_requested`]).
    Shutdown,
}

/// What [`Listener`] and [`DatagramSocket`] have in common.
pub trait Transport {
    /// [`kind::Stream`] or [`kind::Datagram`].
    type Kind: kind::Kind;
    /// How clients are addressed.
    type Addr: Address;
    /// The error of waiting, accepting, receiving and sending; it converts
    /// into the core's [`Error`](crate::Error) keeping what it knows.
    type Error: embedded_io::Error + Into<crate::Error>;

    /// Blocks until a request may be ready, `timeout` passes (`None`: no
    /// limit), or shutdown is requested. The server calls it only after a
    /// take found nothing ready, so it always asks the system (or polls the
    /// stack); it need not be exact: a [`Readiness::Ready`] that a take then
    /// finds stale only costs the take.
    ///
    /// A shutdown request made while this waits must end the wait promptly
    /// with [`Readiness::Shutdown`]; that is how `shutdown()` avoids Python's
    /// poll-interval latency. After [`close`](Self::close) it returns an error.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<Readiness, Self::Error>;

    /// Whether shutdown has been requested through this transport's handle.
    fn shutdown_requested(&self) -> bool;

    /// Forgets a shutdown request, so the transport can be served again.
    fn clear_shutdown(&mut self);

    /// Releases the socket (Python's `server_close`). Idempotent.
    fn close(&mut self);
}

/// A listening stream socket: the source of [`Connection`]s.
pub trait Listener: Transport<Kind = kind::Stream> {
    /// An accepted connection.
    type Connection: Connection<Addr = Self::Addr>;

    /// Python's `get_request`, without blocking: takes one connection that
    /// is ready, or returns `Ok(None)` at once when none is (none arrived,
    /// or one was reset before it was taken); the server then
    /// [`wait`](Transport::wait)s.
    ///
    /// An error means taking failed (for example the process ran out of
    /// descriptors); the server reports it and waits before trying again,
    /// so a transport that fails persistently should make its next wait
    /// sleep rather than report readiness at once.
    #[allow(clippy::type_complexity)]
    fn try_accept(&mut self) -> Result<Option<(Self::Connection, Self::Addr)>, Self::Error>;
}

/// One accepted stream connection.
///
/// Reads and writes block (each bounded by the timeout last set with
/// [`set_timeout`](Self::set_timeout)); a read returning `Ok(0)` means the
/// peer has closed its side.
pub trait Connection: Read + Write + ErrorType<Error: Into<crate::Error>> {
    /// How the peer is addressed.
    type Addr: Address;

    /// Bounds every later read and write; `None` removes the bound.
    /// An operation that exceeds it fails with `ErrorKind::TimedOut`.
    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), Self::Error>;

    /// Bounds the rest of the request as a whole, beyond Python: once
    /// `total` has passed from now, every read and write fails with
    /// `ErrorKind::TimedOut`, however the peer paces its bytes. `None`
    /// removes the bound. Combines with [`set_timeout`](Self::set_timeout):
    /// whichever ends first.
    fn set_request_timeout(&mut self, total: Option<Duration>) -> Result<(), Self::Error>;

    /// Turns Nagle's algorithm off (`true`) or on. Transports without one
    /// accept the call and do nothing.
    fn set_nodelay(&mut self, nodelay: bool) -> Result<(), Self::Error>;

    /// Shuts the sending side (`SHUT_WR`), so the peer reads EOF after
    /// everything written so far.
    fn shutdown_write(&mut self) -> Result<(), Self::Error>;

    /// Writes as much of `data` as the connection takes now, without
    /// waiting for the peer: the count, `Ok(0)` when it takes nothing.
    /// What a message handler resuming a long reply writes with
    /// ([`WFile::write_now`](crate::WFile::write_now)).
    ///
    /// Default: a blocking [`write`](embedded_io::Write::write), for
    /// transports that cannot tell; the std backend sends with
    /// `MSG_DONTWAIT`.
    fn write_now(&mut self, data: &[u8]) -> Result<usize, Self::Error> {
        self.write(data)
    }

    /// Completes what must happen before the handler's first byte, such as
    /// a TLS handshake. The server calls it once per request, after the
    /// handler's timeouts are set (so they bound it) and before `setup`;
    /// its error is the request's, reported to `handle_error`, and the
    /// handler's `setup`, `handle` and `finish` then do not run. Plain
    /// connections have nothing to do: the default returns `Ok(())`.
    fn establish(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Python's `close_request`: releases this end of the connection without
    /// shutting it down first. Dropping the connection does the same.
    fn close(self)
    where
        Self: Sized,
    {
    }
}

/// What [`DatagramSocket::try_recv_from`] received.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Received<A> {
    /// Bytes stored in the buffer.
    pub len: usize,
    /// The datagram was longer than the buffer and its tail was lost.
    pub truncated: bool,
    /// Who sent it.
    pub addr: A,
}

impl<A> Received<A> {
    /// `len` bytes from `addr`, `truncated` if the datagram did not fit.
    pub fn new(len: usize, truncated: bool, addr: A) -> Self {
        Received {
            len,
            truncated,
            addr,
        }
    }
}

/// What a datagram handler sends through (Python's `self.request[1]`):
/// the server's socket, or on a threaded server a second descriptor of it.
/// Every [`DatagramSocket`] is one.
pub trait ReplySocket {
    /// How peers are addressed.
    type Addr: Address;
    /// The error of sending.
    type Error: embedded_io::Error + Into<crate::Error>;

    /// Sends one datagram to `addr`, whole or not at all.
    fn send_to(&mut self, data: &[u8], addr: &Self::Addr) -> Result<(), Self::Error>;
}

impl<T: DatagramSocket> ReplySocket for T {
    type Addr = T::Addr;
    type Error = T::Error;

    fn send_to(&mut self, data: &[u8], addr: &T::Addr) -> Result<(), T::Error> {
        DatagramSocket::send_to(self, data, addr)
    }
}

/// A bound datagram socket.
pub trait DatagramSocket: Transport<Kind = kind::Datagram> {
    /// Python's `get_request`, without blocking: receives one datagram
    /// that is ready into `buf`, or returns `Ok(None)` at once when none is.
    ///
    /// A datagram longer than `buf` fills it and is reported with
    /// `truncated: true`, never silently cut.
    fn try_recv_from(
        &mut self,
        buf: &mut [u8],
    ) -> Result<Option<Received<Self::Addr>>, Self::Error>;

    /// Sends one datagram to `addr`, whole or not at all.
    fn send_to(&mut self, data: &[u8], addr: &Self::Addr) -> Result<(), Self::Error>;
}

/// A shutdown request that any thread or interrupt handler may raise.
///
/// Backends without a wake-up mechanism of their own (smoltcp, firmware,
/// test fakes) check it from their [`Transport::wait`]. It uses only atomic
/// loads and stores, so it works on cores without compare-and-swap.
#[derive(Debug, Default)]
pub struct ShutdownFlag(AtomicBool);

impl ShutdownFlag {
    /// A flag with no shutdown requested.
    pub const fn new() -> Self {
        ShutdownFlag(AtomicBool::new(false))
    }

    /// Requests shutdown. Safe to call from an interrupt handler.
    pub fn request(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether shutdown has been requested and not yet cleared.
    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Forgets the request.
    pub fn clear(&self) {
        self.0.store(false, Ordering::Release);
    }
}
