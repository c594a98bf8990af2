//! UDP: a bound socket serving datagrams.

use core::time::Duration;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp::{self, SendError};
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};
use socketserver_core::transport::kind;
use socketserver_core::{DatagramSocket, Readiness, Received, ShutdownFlag, Transport};

use crate::stack::{deadline, drive_until, lock, wait_ready};
use crate::tcp::NetRef;
use crate::Error;

/// How long [`send_to`](DatagramSocket::send_to) waits by default for room in
/// the send buffer (see [`UdpSocket::set_send_timeout`]).
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Python's `UDPServer` socket on smoltcp.
///
/// The largest datagram it can take is bounded by the smoltcp socket's
/// receive buffer: a longer one is dropped by smoltcp before the server sees
/// it. One that fits the socket but not the server's packet buffer
/// (`max_packet_size`) arrives marked `truncated`.
pub struct UdpSocket<'s, 'a> {
    net: NetRef<'s, 'a>,
    handle: Option<SocketHandle>,
    endpoint: IpListenEndpoint,
    shutdown: &'s ShutdownFlag,
    send_timeout: Duration,
}

impl<'s, 'a> UdpSocket<'s, 'a> {
    /// Adds `socket` to the stack's socket set, bound to `endpoint` (a port,
    /// or an address and a port). `shutdown` ends [`wait`](Transport::wait)
    /// when requested.
    ///
    /// # Errors
    /// [`Error::Unaddressable`] for port 0, [`Error::NoSocketSpace`] when the
    /// socket set is full.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    pub fn bind(
        net: NetRef<'s, 'a>,
        endpoint: impl Into<IpListenEndpoint>,
        mut socket: udp::Socket<'a>,
        shutdown: &'s ShutdownFlag,
    ) -> Result<Self, Error> {
        let endpoint = endpoint.into();
        socket.bind(endpoint).map_err(|_| Error::Unaddressable)?;
        let mut stack = lock(net);
        if stack.free_slots() == 0 {
            return Err(Error::NoSocketSpace);
        }
        let handle = stack.parts().1.add(socket);
        drop(stack);
        Ok(UdpSocket {
            net,
            handle: Some(handle),
            endpoint,
            shutdown,
            send_timeout: DEFAULT_SEND_TIMEOUT,
        })
    }

    /// The endpoint the socket is bound to.
    pub fn local_endpoint(&self) -> IpListenEndpoint {
        self.endpoint
    }

    /// Bounds how long [`send_to`](DatagramSocket::send_to) waits for room
    /// in the send buffer. Default: [`DEFAULT_SEND_TIMEOUT`].
    pub fn set_send_timeout(&mut self, timeout: Duration) {
        self.send_timeout = timeout;
    }

    /// Whether a datagram is waiting to be received.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    pub fn pending(&self) -> bool {
        let Some(handle) = self.handle else {
            return false;
        };
        lock(self.net)
            .parts()
            .1
            .get_mut::<udp::Socket>(handle)
            .can_recv()
    }
}

impl Transport for UdpSocket<'_, '_> {
    type Kind = kind::Datagram;
    type Addr = IpEndpoint;
    type Error = Error;

    /// Drives the stack until a datagram arrives, `timeout` passes, or
    /// shutdown is requested.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<Readiness, Error> {
        let handle = self.handle.ok_or(Error::Closed)?;
        Ok(wait_ready(
            self.net,
            timeout,
            self.shutdown,
            &mut |sockets| sockets.get_mut::<udp::Socket>(handle).can_recv(),
        ))
    }

    fn shutdown_requested(&self) -> bool {
        self.shutdown.is_requested()
    }

    fn clear_shutdown(&mut self) {
        self.shutdown.clear();
    }

    /// Removes the socket from the set.
    fn close(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        if let Ok(mut net) = self.net.try_borrow_mut() {
            net.parts().1.remove(handle);
        }
    }
}

impl DatagramSocket for UdpSocket<'_, '_> {
    fn recv_from(&mut self, buf: &mut [u8]) -> Result<Option<Received<IpEndpoint>>, Error> {
        let handle = self.handle.ok_or(Error::Closed)?;
        let mut net = lock(self.net);
        let socket = net.parts().1.get_mut::<udp::Socket>(handle);
        let Ok((data, meta)) = socket.recv() else {
            return Ok(None);
        };
        let len = data.len().min(buf.len());
        buf[..len].copy_from_slice(&data[..len]);
        Ok(Some(Received {
            len,
            truncated: data.len() > buf.len(),
            addr: meta.endpoint,
        }))
    }

    /// Queues the datagram, waiting for room in the send buffer at most the
    /// send timeout, and sends it.
    ///
    /// # Errors
    /// [`Error::TooLarge`] when it cannot fit the send buffer even empty,
    /// [`Error::Unaddressable`], [`Error::TimedOut`].
    fn send_to(&mut self, data: &[u8], addr: &IpEndpoint) -> Result<(), Error> {
        let handle = self.handle.ok_or(Error::Closed)?;
        let mut net = lock(self.net);
        let socket = net.parts().1.get_mut::<udp::Socket>(handle);
        if data.len() > socket.payload_send_capacity() {
            return Err(Error::TooLarge);
        }
        let deadline = deadline(&*net, Some(self.send_timeout));
        let mut result = Err(Error::TimedOut);
        drive_until(&mut *net, deadline, None, &mut |sockets| {
            result = match sockets
                .get_mut::<udp::Socket>(handle)
                .send_slice(data, *addr)
            {
                Ok(()) => Ok(()),
                Err(SendError::BufferFull) => return false,
                Err(SendError::Unaddressable) => Err(Error::Unaddressable),
            };
            true
        });
        result?;
        net.poll();
        Ok(())
    }
}

impl Drop for UdpSocket<'_, '_> {
    fn drop(&mut self) {
        self.close();
    }
}
