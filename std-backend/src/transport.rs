//! The core's transports over OS sockets.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Socket, Type};
use socketserver_core::transport::kind;
use socketserver_core::{DatagramSocket, Listener, Readiness, Received, ReplySocket, Transport};

#[cfg(unix)]
use crate::connection::UnixConnection;
use crate::connection::{Accepted, TcpConnection};
use crate::endpoint::Endpoint;
use crate::family::{Family, Inet};
#[cfg(unix)]
use crate::family::{Unix, UnixAddr};
use crate::shutdown::ShutdownHandle;
use crate::{sys, Options};

/// What the OS-socket transports offer beyond the core's [`Transport`]:
/// Python's `server_bind`, `server_activate`, `server_address` (as `local_addr`), `socket`
/// and `fileno`, and the shutdown handle.
pub trait SocketTransport: Transport<Error = io::Error> + AsRawFd + Sized {
    /// Creates the socket for `address` (close-on-exec), not yet bound.
    ///
    /// # Errors
    /// When the socket cannot be created.
    fn open(address: Self::Addr, options: &Options) -> io::Result<Self>;

    /// A transport over `socket`, bound elsewhere (inherited through
    /// [socket activation](crate::activation), or a std listener or socket
    /// the program made): made close-on-exec and served as it is. A stream
    /// socket that is not listening yet is made to listen with
    /// `request_queue_size`; one already listening keeps its backlog. The
    /// options that act on binding (reuse, dual stack, socket mode) do not
    /// apply, and a Unix socket file is never removed on close: it is not
    /// this server's.
    ///
    /// # Errors
    /// `InvalidInput` when the socket does not fit this transport: of
    /// another type (a datagram socket for a stream server), another
    /// family, or not bound; else when an option cannot be set.
    fn adopt(socket: Socket, options: &Options) -> io::Result<Self>;

    /// Python's `server_bind`: applies the reuse options and binds; the
    /// [`local_addr`](Self::local_addr) becomes the bound one.
    ///
    /// # Errors
    /// When an option cannot be set or the bind fails (address in use,
    /// permission denied, ...).
    fn server_bind(&mut self) -> io::Result<()>;

    /// Python's `server_activate`: listens (streams, with
    /// `request_queue_size`) and makes the socket ready to be served.
    ///
    /// # Errors
    /// When listening fails.
    fn server_activate(&mut self) -> io::Result<()>;

    /// The address asked for, or once bound the real one (port 0 resolved).
    fn local_addr(&self) -> &Self::Addr;

    /// The socket, for options this crate does not cover; `None` once closed.
    fn socket(&self) -> Option<&Socket>;

    /// A handle that stops `serve_forever` from another thread.
    fn shutdown_handle(&self) -> ShutdownHandle;
}

/// The state every server socket keeps, whatever its family and type: one
/// copy of the logic, wrapped by the public transports (which `transport!`
/// writes) so that their names are the ones user code and compiler errors
/// see.
#[derive(Debug)]
struct Base<F: Family> {
    endpoint: Endpoint,
    address: F::Addr,
    options: Options,
}

impl<F: Family> Base<F> {
    fn open(address: F::Addr, options: &Options, ty: Type) -> io::Result<Self> {
        let mut endpoint = Endpoint::new(F::domain(&address), ty, options)?;
        if options.keep_socket_file {
            endpoint.keep_file();
        }
        Ok(Base {
            endpoint,
            address,
            options: options.clone(),
        })
    }

    fn adopt(socket: Socket, options: &Options, ty: Type, server: &str) -> io::Result<Self> {
        let unfit = |why: String| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the socket given to a {server} (descriptor {}) {why}",
                    socket.as_raw_fd()
                ),
            )
        };
        let found = socket.r#type()?;
        if found != ty {
            return Err(unfit(format!(
                "is a {} socket; a {server} serves {} sockets",
                type_name(found),
                type_name(ty)
            )));
        }
        let address = F::bound_address(&socket.local_addr()?).map_err(|why| unfit(why.into()))?;
        socket.set_cloexec(true)?;
        if ty == Type::STREAM && !sys::is_listening(&socket)? {
            socket.listen(options.request_queue_size)?;
        }
        let mut endpoint = Endpoint::adopt(socket, options)?;
        endpoint.register()?;
        Ok(Base {
            endpoint,
            address,
            options: options.clone(),
        })
    }

    fn bind(&mut self) -> io::Result<()> {
        let addr = F::to_sock_addr(&self.address)?;
        let bound = self.endpoint.bind(&addr, &self.options)?;
        if self.options.keep_socket_file {
            self.endpoint.keep_file();
        }
        self.address = F::from_sock_addr(&bound);
        Ok(())
    }

    fn listen(&mut self) -> io::Result<()> {
        let backlog = self.options.request_queue_size;
        self.endpoint.socket()?.listen(backlog)
    }

    /// [`Listener::try_accept`].
    fn try_accept(&mut self) -> io::Result<Option<(Accepted<F>, F::Addr)>> {
        if !self.endpoint.may_take() {
            return Ok(None);
        }
        match self.endpoint.socket()?.accept() {
            Ok((socket, addr)) => {
                let conn = Accepted::new(socket, self.endpoint.shared())?;
                Ok(Some((conn, F::from_sock_addr(&addr))))
            }
            Err(err) if sys::is_transient_accept_error(&err) => Ok(None),
            Err(err) if sys::is_resource_exhaustion(&err) => {
                self.endpoint.back_off()?;
                Err(err)
            }
            Err(err) => Err(err),
        }
    }

    /// [`DatagramSocket::try_recv_from`].
    fn try_recv_from(&mut self, buf: &mut [u8]) -> io::Result<Option<Received<F::Addr>>> {
        if !self.endpoint.may_take() {
            return Ok(None);
        }
        let socket = self.endpoint.socket()?;
        loop {
            match sys::recv_datagram(socket, buf, F::from_sock_addr) {
                // Answering the server's own address would loop for ever.
                Ok((.., addr)) if F::is_own_address(&self.address, &addr) => {}
                Ok((len, truncated, addr)) => return Ok(Some(Received::new(len, truncated, addr))),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(err) => return Err(err),
            }
        }
    }
}

/// A datagram transport and the socket its threaded and pooled requests
/// reply through, for the dispatches generic over both.
#[cfg(not(target_os = "wasi"))]
pub(crate) trait Replies: DatagramSocket + SocketTransport {
    /// [`UdpReply`] or [`UnixDatagramReply`].
    type Reply: ReplySocket<Addr = Self::Addr, Error = io::Error> + Send + 'static;

    /// A second descriptor for the server socket (close-on-exec), through
    /// which request threads send their replies while the serving thread
    /// keeps receiving on the first.
    fn reply_socket(&self) -> io::Result<Socket>;

    /// The reply socket over `socket`, from [`reply_socket`](Self::reply_socket).
    fn reply(socket: Arc<Socket>) -> Self::Reply;
}

/// Writes a public transport around [`Base`]: its definition, the core's
/// [`Transport`], [`SocketTransport`] and the descriptor traits.
macro_rules! transport {
    (
        $(#[$doc:meta])*
        $name:ident($family:ty, $addr:ty), $kind:ty, $socket_type:expr, $activate:expr
    ) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            base: Base<$family>,
        }

        impl Transport for $name {
            type Kind = $kind;
            type Addr = $addr;
            type Error = io::Error;

            /// Waits on the OS for the socket to be readable; a shutdown
            /// request wakes it. After running out of descriptors the
            /// socket is left out of the wait for 100 ms.
            fn wait(&mut self, timeout: Option<Duration>) -> io::Result<Readiness> {
                self.base.endpoint.wait(timeout)
            }

            fn shutdown_requested(&self) -> bool {
                self.base.endpoint.shared().is_requested()
            }

            fn clear_shutdown(&mut self) {
                self.base.endpoint.shared().clear();
            }

            fn close(&mut self) {
                self.base.endpoint.close();
            }
        }

        impl SocketTransport for $name {
            fn open(address: $addr, options: &Options) -> io::Result<Self> {
                Base::open(address, options, $socket_type).map(|base| $name { base })
            }

            fn adopt(socket: Socket, options: &Options) -> io::Result<Self> {
                Base::adopt(socket, options, $socket_type, stringify!($name))
                    .map(|base| $name { base })
            }

            fn server_bind(&mut self) -> io::Result<()> {
                self.base.bind()
            }

            fn server_activate(&mut self) -> io::Result<()> {
                let activate: fn(&mut Base<$family>) -> io::Result<()> = $activate;
                activate(&mut self.base)?;
                self.base.endpoint.register()
            }

            fn local_addr(&self) -> &$addr {
                &self.base.address
            }

            fn socket(&self) -> Option<&Socket> {
                self.base.endpoint.socket_opt()
            }

            fn shutdown_handle(&self) -> ShutdownHandle {
                self.base.endpoint.shutdown_handle()
            }
        }

        impl AsRawFd for $name {
            /// Python's `fileno()`: -1 once closed.
            fn as_raw_fd(&self) -> RawFd {
                self.base.endpoint.raw_fd()
            }
        }

        impl AsFd for $name {
            /// # Panics
            /// If the socket was closed.
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.base
                    .endpoint
                    .socket_opt()
                    .expect("the server socket is closed")
                    .as_fd()
            }
        }
    };
}

/// A listening stream socket: `transport!` and the core's [`Listener`],
/// accepting `$conn`s.
macro_rules! stream_transport {
    ($(#[$doc:meta])* $name:ident($family:ty, $addr:ty), $conn:ident) => {
        transport!(
            $(#[$doc])*
            $name($family, $addr), kind::Stream, Type::STREAM, Base::listen
        );

        impl Listener for $name {
            type Connection = $conn;

            /// Takes one pending connection without blocking (the socket is
            /// non-blocking once activated): `Ok(None)` when none is pending, or
            /// one went away before it was taken. Running out of descriptors
            /// (`EMFILE`, `ENFILE`) is returned as the error (the server logs it),
            /// and the next waits ignore the socket for 100 ms instead of spinning
            /// on it.
            fn try_accept(&mut self) -> io::Result<Option<($conn, $addr)>> {
                let accepted = self.base.try_accept()?;
                Ok(accepted.map(|(conn, addr)| ($conn::new(conn), addr)))
            }
        }
    };
}

/// A bound datagram socket: `transport!`, the core's [`DatagramSocket`],
/// and the `$reply` type its threaded and pooled requests reply through.
macro_rules! datagram_transport {
    (
        $(#[$doc:meta])* $name:ident($family:ty, $addr:ty),
        $(#[$reply_doc:meta])* $reply:ident
    ) => {
        transport!(
            $(#[$doc])*
            $name($family, $addr), kind::Datagram, Type::DGRAM, |_| Ok(())
        );

        impl DatagramSocket for $name {
            /// Receives one pending datagram without blocking; `Ok(None)` when
            /// none is pending.
            fn try_recv_from(&mut self, buf: &mut [u8]) -> io::Result<Option<Received<$addr>>> {
                self.base.try_recv_from(buf)
            }

            /// Sends the whole datagram. The socket does not block: a peer whose
            /// receive queue is full (Unix datagram) makes this fail rather than
            /// stall the server.
            fn send_to(&mut self, data: &[u8], addr: &$addr) -> io::Result<()> {
                send_datagram::<$family>(self.base.endpoint.socket()?, data, addr)
            }
        }

        #[cfg(not(target_os = "wasi"))]
        impl Replies for $name {
            type Reply = $reply;

            fn reply_socket(&self) -> io::Result<Socket> {
                self.base.endpoint.socket()?.try_clone()
            }

            fn reply(socket: Arc<Socket>) -> $reply {
                $reply { socket }
            }
        }

        $(#[$reply_doc])*
        ///
        /// A second descriptor of the server socket, shared by the request
        /// threads and closed when the last one is done. A handler that needs
        /// the socket itself on every std datagram server bounds its socket
        /// type by `AsFd` (or `AsRawFd`), which this and the datagram
        /// transports implement.
        #[derive(Clone, Debug)]
        pub struct $reply {
            socket: Arc<Socket>,
        }

        impl $reply {
            /// The socket, for options this crate does not cover.
            pub fn socket(&self) -> &Socket {
                &self.socket
            }
        }

        impl ReplySocket for $reply {
            type Addr = $addr;
            type Error = io::Error;

            /// Sends the whole datagram, without blocking (see
            /// [`DatagramSocket::send_to`]).
            fn send_to(&mut self, data: &[u8], addr: &$addr) -> io::Result<()> {
                send_datagram::<$family>(&self.socket, data, addr)
            }
        }

        impl AsFd for $reply {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.socket.as_fd()
            }
        }

        impl AsRawFd for $reply {
            fn as_raw_fd(&self) -> RawFd {
                self.socket.as_raw_fd()
            }
        }
    };
}

stream_transport!(
    /// The listening socket of a TCP server.
    TcpTransport(Inet, SocketAddr),
    TcpConnection
);
#[cfg(unix)]
stream_transport!(
    /// The listening socket of a Unix stream server.
    UnixStreamTransport(Unix, UnixAddr),
    UnixConnection
);
datagram_transport!(
    /// The socket of a UDP server.
    UdpTransport(Inet, SocketAddr),
    /// The socket a request of a threaded or pooled UDP server replies
    /// through (its `DatagramRequest::socket`).
    UdpReply
);
#[cfg(unix)]
datagram_transport!(
    /// The socket of a Unix datagram server.
    UnixDatagramTransport(Unix, UnixAddr),
    /// The socket a request of a threaded or pooled Unix datagram server
    /// replies through (its `DatagramRequest::socket`).
    UnixDatagramReply
);

/// How errors name a socket type.
fn type_name(ty: Type) -> String {
    match ty {
        Type::STREAM => "stream (SOCK_STREAM)".into(),
        Type::DGRAM => "datagram (SOCK_DGRAM)".into(),
        #[cfg(unix)]
        Type::SEQPACKET => "seqpacket (SOCK_SEQPACKET)".into(),
        other => format!("type {}", libc::c_int::from(other)),
    }
}

/// [`DatagramSocket::send_to`] on any descriptor of a datagram server's
/// socket: the whole datagram or an error.
fn send_datagram<F: Family>(socket: &Socket, data: &[u8], addr: &F::Addr) -> io::Result<()> {
    let dest = F::to_sock_addr(addr)?;
    loop {
        match socket.send_to(data, &dest) {
            Ok(n) if n == data.len() => return Ok(()),
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "datagram sent in part",
                ))
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}
