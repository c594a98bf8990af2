//! The core's transports over OS sockets.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Socket, Type};
use socketserver_core::transport::kind;
use socketserver_core::{DatagramSocket, Listener, Readiness, Received, ReplySocket, Transport};

use crate::connection::SocketConnection;
use crate::endpoint::Endpoint;
use crate::family::{Family, Inet, Unix};
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

/// A listening stream socket: [`TcpTransport`] or [`UnixStreamTransport`].
#[derive(Debug)]
pub struct StreamTransport<F: Family> {
    base: Base<F>,
}

/// A bound datagram socket: [`UdpTransport`] or [`UnixDatagramTransport`].
#[derive(Debug)]
pub struct DatagramTransport<F: Family> {
    base: Base<F>,
}

/// The socket of a TCP server.
pub type TcpTransport = StreamTransport<Inet>;
/// The socket of a Unix stream server.
pub type UnixStreamTransport = StreamTransport<Unix>;
/// The socket of a UDP server.
pub type UdpTransport = DatagramTransport<Inet>;
/// The socket of a Unix datagram server.
pub type UnixDatagramTransport = DatagramTransport<Unix>;

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

    fn bind(&mut self) -> io::Result<()> {
        let addr = F::to_sock_addr(&self.address)?;
        let bound = self.endpoint.bind(&addr, &self.options)?;
        if self.options.keep_socket_file {
            self.endpoint.keep_file();
        }
        self.address = F::from_sock_addr(&bound);
        Ok(())
    }
}

macro_rules! common_impls {
    ($ty:ident, $kind:ty, $socket_type:expr, $activate:expr) => {
        impl<F: Family> Transport for $ty<F> {
            type Kind = $kind;
            type Addr = F::Addr;
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

        impl<F: Family> SocketTransport for $ty<F> {
            fn open(address: F::Addr, options: &Options) -> io::Result<Self> {
                Base::open(address, options, $socket_type).map(|base| $ty { base })
            }

            fn server_bind(&mut self) -> io::Result<()> {
                self.base.bind()
            }

            fn server_activate(&mut self) -> io::Result<()> {
                let activate: fn(&mut Base<F>) -> io::Result<()> = $activate;
                activate(&mut self.base)?;
                self.base.endpoint.register()
            }

            fn local_addr(&self) -> &F::Addr {
                &self.base.address
            }

            fn socket(&self) -> Option<&Socket> {
                self.base.endpoint.socket_opt()
            }

            fn shutdown_handle(&self) -> ShutdownHandle {
                self.base.endpoint.shutdown_handle()
            }
        }

        impl<F: Family> AsRawFd for $ty<F> {
            /// Python's `fileno()`: -1 once closed.
            fn as_raw_fd(&self) -> RawFd {
                self.base.endpoint.raw_fd()
            }
        }

        impl<F: Family> AsFd for $ty<F> {
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

common_impls!(StreamTransport, kind::Stream, Type::STREAM, |base| {
    let backlog = base.options.request_queue_size;
    base.endpoint.socket()?.listen(backlog)
});
common_impls!(DatagramTransport, kind::Datagram, Type::DGRAM, |_| Ok(()));

impl<F: Family> Listener for StreamTransport<F> {
    type Connection = SocketConnection<F>;

    /// Takes one pending connection without blocking (the socket is
    /// non-blocking once activated): `Ok(None)` when none is pending, or
    /// one went away before it was taken. Running out of descriptors
    /// (`EMFILE`, `ENFILE`) is returned as the error (the server logs it),
    /// and the next waits ignore the socket for 100 ms instead of spinning
    /// on it.
    fn try_accept(&mut self) -> io::Result<Option<(SocketConnection<F>, F::Addr)>> {
        if !self.base.endpoint.may_take() {
            return Ok(None);
        }
        match self.base.endpoint.socket()?.accept() {
            Ok((socket, addr)) => {
                let conn = SocketConnection::new(socket, self.base.endpoint.shared())?;
                Ok(Some((conn, F::from_sock_addr(&addr))))
            }
            Err(err) if sys::is_transient_accept_error(&err) => Ok(None),
            Err(err) if sys::is_resource_exhaustion(&err) => {
                self.base.endpoint.back_off()?;
                Err(err)
            }
            Err(err) => Err(err),
        }
    }
}

impl<F: Family> DatagramSocket for DatagramTransport<F> {
    /// Receives one pending datagram without blocking; `Ok(None)` when
    /// none is pending.
    fn try_recv_from(&mut self, buf: &mut [u8]) -> io::Result<Option<Received<F::Addr>>> {
        if !self.base.endpoint.may_take() {
            return Ok(None);
        }
        let socket = self.base.endpoint.socket()?;
        loop {
            match sys::recv_datagram(socket, buf, F::from_sock_addr) {
                // Answering the server's own address would loop for ever.
                Ok((.., addr)) if F::is_own_address(&self.base.address, &addr) => {}
                Ok((len, truncated, addr)) => return Ok(Some(Received::new(len, truncated, addr))),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(err) => return Err(err),
            }
        }
    }

    /// Sends the whole datagram. The socket does not block: a peer whose
    /// receive queue is full (Unix datagram) makes this fail rather than
    /// stall the server.
    fn send_to(&mut self, data: &[u8], addr: &F::Addr) -> io::Result<()> {
        send_datagram::<F>(self.base.endpoint.socket()?, data, addr)
    }
}

impl<F: Family> DatagramTransport<F> {
    /// A second descriptor for the server socket (close-on-exec), through
    /// which request threads send their replies while the serving thread
    /// keeps receiving on the first.
    pub(crate) fn reply_socket(&self) -> io::Result<Socket> {
        self.base.endpoint.socket()?.try_clone()
    }
}

/// The socket a request of a threaded or pooled datagram server replies
/// through (its `DatagramRequest::socket`): a second descriptor of the
/// server socket, shared by the request threads and closed when the last
/// one is done. A handler that needs the socket itself on every std
/// datagram server bounds its socket type by `AsFd` (or `AsRawFd`), which
/// this and the datagram transports implement.
#[derive(Debug)]
pub struct DatagramReply<F: Family> {
    socket: Arc<Socket>,
    family: PhantomData<F>,
}

impl<F: Family> Clone for DatagramReply<F> {
    fn clone(&self) -> Self {
        DatagramReply {
            socket: Arc::clone(&self.socket),
            family: PhantomData,
        }
    }
}

impl<F: Family> DatagramReply<F> {
    pub(crate) fn new(socket: Arc<Socket>) -> Self {
        DatagramReply {
            socket,
            family: PhantomData,
        }
    }

    /// The socket, for options this crate does not cover.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }
}

impl<F: Family> ReplySocket for DatagramReply<F> {
    type Addr = F::Addr;
    type Error = io::Error;

    /// Sends the whole datagram, without blocking (see
    /// [`DatagramSocket::send_to`]).
    fn send_to(&mut self, data: &[u8], addr: &F::Addr) -> io::Result<()> {
        send_datagram::<F>(&self.socket, data, addr)
    }
}

impl<F: Family> AsFd for DatagramReply<F> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl<F: Family> AsRawFd for DatagramReply<F> {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// [`DatagramSocket::send_to`] on any descriptor of a datagram server's
/// socket: the whole datagram or an error.
pub(crate) fn send_datagram<F: Family>(
    socket: &Socket,
    data: &[u8],
    addr: &F::Addr,
) -> io::Result<()> {
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
