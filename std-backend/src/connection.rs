//! An accepted stream connection (TCP or Unix stream).

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::Socket;
use socketserver_core::embedded_io;
use socketserver_core::Connection;

use crate::family::{Family, Inet};
#[cfg(unix)]
use crate::family::{Unix, UnixAddr};
use crate::shutdown::{Registered, Shared};
use crate::sys;

/// An accepted stream connection, the part [`TcpConnection`] and
/// [`UnixConnection`] share: one copy of the logic, wrapped by the public
/// types (which `connection!` writes), so that their names are the ones
/// user code and compiler errors see.
pub(crate) struct Accepted<F: Family> {
    /// The connection's entry among those a drain cuts; declared before
    /// `socket` so that it is left before the descriptor is closed.
    _registered: Registered,
    socket: Socket,
    timeout: Option<Duration>,
    /// The end of the request ([`Connection::set_request_timeout`]).
    deadline: Option<Instant>,
    family: PhantomData<fn() -> F>,
}

impl<F: Family> Accepted<F> {
    /// An accepted connection of the server whose shutdown state is
    /// `shared`, registered there until it is dropped.
    pub(crate) fn new(socket: Socket, shared: &Arc<Shared>) -> io::Result<Self> {
        sys::prepare_stream(&socket)?;
        Ok(Accepted {
            _registered: Registered::new(shared, socket.as_raw_fd()),
            socket,
            timeout: None,
            deadline: None,
            family: PhantomData,
        })
    }

    fn peer_addr(&self) -> io::Result<F::Addr> {
        self.socket.peer_addr().map(|a| F::from_sock_addr(&a))
    }

    fn fmt_as(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("socket", &self.socket)
            .field("timeout", &self.timeout)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }

    /// [`Connection::set_timeout`].
    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let timeout = timeout.map(|t| t.max(Duration::from_micros(1)));
        self.socket.set_read_timeout(timeout)?;
        self.socket.set_write_timeout(timeout)?;
        self.timeout = timeout;
        Ok(())
    }

    /// [`Connection::set_request_timeout`].
    fn set_request_timeout(&mut self, total: Option<Duration>) -> io::Result<()> {
        self.deadline = total.map(|t| Instant::now() + t);
        if self.deadline.is_none() {
            // Back to the per-operation timeout alone.
            self.set_timeout(self.timeout)?;
        }
        Ok(())
    }

    /// [`Connection::set_nodelay`].
    fn set_nodelay(&mut self, nodelay: bool) -> io::Result<()> {
        if self.socket.local_addr()?.as_socket().is_none() {
            return Ok(());
        }
        self.socket.set_tcp_nodelay(nodelay)
    }

    fn timed_out(&self, err: io::Error) -> io::Error {
        let bounded = self.timeout.is_some() || self.deadline.is_some();
        if bounded && err.kind() == io::ErrorKind::WouldBlock {
            io::Error::new(io::ErrorKind::TimedOut, "connection timed out")
        } else {
            err
        }
    }

    /// Under a request deadline, gives the next read (or write) the time
    /// left, or at most the per-operation timeout; fails once none is left.
    fn arm(&self, write: bool) -> io::Result<()> {
        let Some(deadline) = self.deadline else {
            return Ok(());
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request timed out"));
        }
        let wait = self.timeout.map_or(left, |t| t.min(left));
        if write {
            self.socket.set_write_timeout(Some(wait))
        } else {
            self.socket.set_read_timeout(Some(wait))
        }
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm(false)?;
        loop {
            match io::Read::read(&mut &self.socket, buf) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                other => return other.map_err(|err| self.timed_out(err)),
            }
        }
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.arm(true)?;
        loop {
            match self.socket.send_with_flags(buf, sys::SEND_FLAGS) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                other => return other.map_err(|err| self.timed_out(err)),
            }
        }
    }
}

/// Writes a public connection type around [`Accepted`]: its definition,
/// the core's [`Connection`], embedded-io's and `std::io`'s `Read` and
/// `Write`, the descriptor traits, `Debug`, `socket` and `peer_addr`.
macro_rules! connection {
    ($(#[$doc:meta])* $name:ident, $family:ty, $addr:ty) => {
        $(#[$doc])*
        ///
        /// While it is open, the server's drain can cut it
        /// ([`ShutdownHandle`](crate::ShutdownHandle)): reads then return
        /// end-of-file and writes fail.
        ///
        /// Reads and writes block, bounded by the timeout set with
        /// [`Connection::set_timeout`]; exceeding it fails with
        /// [`io::ErrorKind::TimedOut`]. Writing to a peer that has gone fails with
        /// [`io::ErrorKind::BrokenPipe`] and never raises `SIGPIPE`. Implements both
        /// embedded-io and `std::io` [`Read`](io::Read)/[`Write`](io::Write).
        pub struct $name {
            inner: Accepted<$family>,
        }

        impl $name {
            pub(crate) fn new(inner: Accepted<$family>) -> Self {
                $name { inner }
            }

            /// The underlying socket, for options this type does not cover.
            pub fn socket(&self) -> &Socket {
                &self.inner.socket
            }

            /// The peer's address.
            ///
            /// # Errors
            /// When the connection is no longer connected.
            pub fn peer_addr(&self) -> io::Result<$addr> {
                self.inner.peer_addr()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.inner.fmt_as(stringify!($name), f)
            }
        }

        impl embedded_io::ErrorType for $name {
            type Error = io::Error;
        }

        connection!(@io $name, embedded_io::Read, embedded_io::Write);
        connection!(@io $name, io::Read, io::Write);

        impl Connection for $name {
            type Addr = $addr;

            /// A zero timeout is taken as one microsecond, since sockets
            /// read zero as "no timeout".
            fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
                self.inner.set_timeout(timeout)
            }

            /// Each read and write then also sets the socket's timeout to
            /// the time left (one more system call per operation while a
            /// deadline is set).
            fn set_request_timeout(&mut self, total: Option<Duration>) -> io::Result<()> {
                self.inner.set_request_timeout(total)
            }

            /// Sets `TCP_NODELAY`; Unix sockets have no Nagle algorithm and
            /// ignore it.
            fn set_nodelay(&mut self, nodelay: bool) -> io::Result<()> {
                self.inner.set_nodelay(nodelay)
            }

            fn shutdown_write(&mut self) -> io::Result<()> {
                self.inner.socket.shutdown(Shutdown::Write)
            }

            /// `send` with `MSG_DONTWAIT`: never waits, whatever the timeout.
            #[cfg(not(target_os = "wasi"))]
            fn write_now(&mut self, data: &[u8]) -> io::Result<usize> {
                sys::send_now(&self.inner.socket, data)
            }
        }

        #[cfg(not(target_os = "wasi"))]
        impl crate::parking::Parkable for $name {
            fn socket(&self) -> &Socket {
                &self.inner.socket
            }
        }

        impl AsFd for $name {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.inner.socket.as_fd()
            }
        }

        impl AsRawFd for $name {
            fn as_raw_fd(&self) -> RawFd {
                self.inner.socket.as_raw_fd()
            }
        }
    };
    // The embedded-io and `std::io` traits, written once.
    (@io $name:ident, $read:path, $write:path) => {
        impl $read for $name {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.inner.recv(buf)
            }
        }

        impl $write for $name {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.inner.send(buf)
            }

            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
    };
}

connection!(
    /// An accepted TCP connection.
    TcpConnection,
    Inet,
    SocketAddr
);
#[cfg(unix)]
connection!(
    /// An accepted Unix stream connection.
    UnixConnection,
    Unix,
    UnixAddr
);

#[cfg(unix)]
impl UnixConnection {
    /// The credentials of the process that connected (`SO_PEERCRED`): what
    /// a [`Hooks::verify_request`](socketserver_core::Hooks::verify_request)
    /// of a Unix stream server checks to admit only some users, since its
    /// request is this connection.
    ///
    /// The kernel records them when the client calls `connect`, so they
    /// cannot be forged by the client, and stay those of the connecting
    /// process even if it later passes the socket on or changes user. The
    /// ids are as seen from this process's user and PID namespaces: a
    /// process in a PID namespace this one cannot see has pid 0, and a user
    /// with no mapping here is the overflow id (usually 65534).
    ///
    /// Unix *datagram* servers have no connection and no such option:
    /// `SO_PEERCRED` is not available per datagram, so their hooks cannot
    /// tell who sent one (restrict who may write to the socket file with
    /// [`socket_mode`](crate::ServerBuilder::socket_mode) instead).
    ///
    /// ```no_run
    /// use socketserver_core::handlers::UpperOnce;
    /// use socketserver_core::{Hooks, ServerHooks};
    /// use socketserver_std::{ServerBuilder, UnixAddr, UnixConnection};
    ///
    /// /// Serves only the user `0` (root).
    /// struct RootOnly;
    ///
    /// impl Hooks<UnixConnection, UnixAddr> for RootOnly {
    ///     fn verify_request(&self, conn: &UnixConnection, _client: &UnixAddr) -> bool {
    ///         conn.peer_credentials().is_ok_and(|peer| peer.uid == 0)
    ///     }
    /// }
    ///
    /// impl ServerHooks for RootOnly {}
    ///
    /// let server = ServerBuilder::unix_stream("/run/example.sock")
    ///     .socket_mode(0o666)
    ///     .hooks(RootOnly).build(|| UpperOnce)?;
    /// # drop(server);
    /// # std::io::Result::Ok(())
    /// ```
    ///
    /// On Linux and Android the pid, uid and gid come from `SO_PEERCRED`;
    /// on macOS and the BSDs the uid and gid come from `getpeereid`, and the
    /// pid is 0.
    ///
    /// # Errors
    /// The system call failed.
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        let (pid, uid, gid) = sys::peer_credentials(&self.inner.socket)?;
        Ok(PeerCredentials { pid, uid, gid })
    }
}

/// Who is at the other end of a Unix stream connection, as the kernel
/// recorded it when the client connected; see
/// [`peer_credentials`](UnixConnection::peer_credentials).
#[cfg(unix)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PeerCredentials {
    /// The connecting process's id (0 when it is not visible from here).
    pub pid: u32,
    /// Its effective user id.
    pub uid: u32,
    /// Its effective group id.
    pub gid: u32,
}
