//! UDP: a bound socket serving datagrams.

use core::time::Duration;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp::{self, SendError};
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};
use socketserver_core::transport::kind;
use socketserver_core::{DatagramSocket, Readiness, Received, ShutdownFlag, Transport};

use crate::stack::{
    borrow_stack, deadline, drive_until, look, unwinding_while_borrowed, wait_for_change,
};
use crate::tcp::NetRef;
use crate::SmoltcpError;

/// How long [`send_to`](DatagramSocket::send_to) waits by default for room in
/// the send buffer (see [`UdpSocket::set_send_timeout`]).
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Python's `UDPServer` socket on smoltcp.
///
/// The largest datagram it can take is bounded by the smoltcp socket's
/// receive buffer: a longer one is dropped by smoltcp before the server sees
/// it. One that fits the socket but not the server's packet buffer
/// (`max_packet_size`) arrives marked `truncated`.
///
/// As a [`TcpListener`](crate::TcpListener)'s, its take and its wait cost
/// one poll of the stack at most:
/// [`try_recv_from`](DatagramSocket::try_recv_from) polls only if nothing
/// polled the stack since its last look, and [`wait`](Transport::wait)
/// idles and polls until a poll says that a socket may have changed.
pub struct UdpSocket<'s, 'a> {
    net: NetRef<'s, 'a>,
    handle: Option<SocketHandle>,
    endpoint: IpListenEndpoint,
    shutdown: &'s ShutdownFlag,
    send_timeout: Duration,
    /// The stack's poll count when the socket last looked for a datagram.
    seen: u32,
}

impl<'s, 'a> UdpSocket<'s, 'a> {
    /// Adds `socket` to the stack's socket set, bound to `endpoint` (a port,
    /// or an address and a port). `shutdown` ends [`wait`](Transport::wait)
    /// when requested.
    ///
    /// # Errors
    /// [`SmoltcpError::Unaddressable`] for port 0, [`SmoltcpError::NoSocketSpace`] when the
    /// socket set is full.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    pub fn bind(
        net: NetRef<'s, 'a>,
        endpoint: impl Into<IpListenEndpoint>,
        mut socket: udp::Socket<'a>,
        shutdown: &'s ShutdownFlag,
    ) -> Result<Self, SmoltcpError> {
        let endpoint = endpoint.into();
        socket
            .bind(endpoint)
            .map_err(|_| SmoltcpError::Unaddressable)?;
        let mut stack = borrow_stack(net);
        if stack.free_slots() == 0 {
            return Err(SmoltcpError::NoSocketSpace);
        }
        let handle = stack.parts().1.add(socket);
        Ok(UdpSocket {
            net,
            handle: Some(handle),
            endpoint,
            shutdown,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            seen: stack.polls(),
        })
    }

    /// The endpoint the socket is bound to (Rust's `local_addr`).
    pub fn local_addr(&self) -> IpListenEndpoint {
        self.endpoint
    }

    /// Bounds how long [`send_to`](DatagramSocket::send_to) waits for room
    /// in the send buffer. Default: [`DEFAULT_SEND_TIMEOUT`].
    pub fn set_send_timeout(&mut self, timeout: Duration) {
        self.send_timeout = timeout;
    }
}

impl Transport for UdpSocket<'_, '_> {
    type Kind = kind::Datagram;
    type Addr = IpEndpoint;
    type Error = SmoltcpError;

    /// Idles and polls the stack until a poll says that a datagram may
    /// have come, `timeout` passes, or shutdown is requested. Reports
    /// [`Readiness::Ready`] at once when something polled the stack since
    /// the last [`try_recv_from`](DatagramSocket::try_recv_from).
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<Readiness, SmoltcpError> {
        self.handle.ok_or(SmoltcpError::Closed)?;
        Ok(wait_for_change(self.net, self.seen, timeout, self.shutdown))
    }

    fn shutdown_requested(&self) -> bool {
        self.shutdown.is_requested()
    }

    fn clear_shutdown(&mut self) {
        self.shutdown.clear();
    }

    /// Removes the socket from the set.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    fn close(&mut self) {
        if let Some(handle) = self.handle.take() {
            borrow_stack(self.net).parts().1.remove(handle);
        }
    }
}

impl DatagramSocket for UdpSocket<'_, '_> {
    /// Takes a datagram that has arrived, if there is one; never blocks.
    /// Polls the stack first unless something polled it since the last
    /// take.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    fn try_recv_from(
        &mut self,
        buf: &mut [u8],
    ) -> Result<Option<Received<IpEndpoint>>, SmoltcpError> {
        let handle = self.handle.ok_or(SmoltcpError::Closed)?;
        let mut net = borrow_stack(self.net);
        look(&mut *net, &mut self.seen);
        let socket = net.parts().1.get_mut::<udp::Socket>(handle);
        let Ok((data, meta)) = socket.recv() else {
            return Ok(None);
        };
        let len = data.len().min(buf.len());
        buf[..len].copy_from_slice(&data[..len]);
        Ok(Some(Received::new(
            len,
            data.len() > buf.len(),
            meta.endpoint,
        )))
    }

    /// Queues the datagram, waiting for room in the send buffer at most the
    /// send timeout, and sends it.
    ///
    /// # Errors
    /// `SmoltcpError::TooLarge` when it cannot fit the send buffer even empty,
    /// `SmoltcpError::Unaddressable`, `SmoltcpError::TimedOut`.
    fn send_to(&mut self, data: &[u8], addr: &IpEndpoint) -> Result<(), SmoltcpError> {
        let handle = self.handle.ok_or(SmoltcpError::Closed)?;
        let mut net = borrow_stack(self.net);
        let socket = net.parts().1.get_mut::<udp::Socket>(handle);
        if data.len() > socket.payload_send_capacity() {
            return Err(SmoltcpError::TooLarge);
        }
        let deadline = deadline(&*net, Some(self.send_timeout));
        let mut result = Err(SmoltcpError::TimedOut);
        drive_until(&mut *net, deadline, None, &mut |sockets| {
            result = match sockets
                .get_mut::<udp::Socket>(handle)
                .send_slice(data, *addr)
            {
                Ok(()) => Ok(()),
                Err(SendError::BufferFull) => return false,
                Err(SendError::Unaddressable) => Err(SmoltcpError::Unaddressable),
            };
            true
        });
        result?;
        net.poll();
        Ok(())
    }
}

impl Drop for UdpSocket<'_, '_> {
    /// Closes the socket (see [`Transport::close`]).
    fn drop(&mut self) {
        if !unwinding_while_borrowed(self.net) {
            self.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::Net;
    use crate::testing::*;

    /// The peer sends `len` bytes from port 5000 to the server's [`PORT`].
    fn send(net: &Network, len: usize) {
        let mut peer = net.peer.borrow_mut();
        let handle = peer.sockets_mut().add(udp_socket());
        let socket = peer.sockets_mut().get_mut::<udp::Socket>(handle);
        socket.bind(5000).unwrap();
        socket
            .send_slice(&[b'x'; 1500][..len], (SERVER, PORT))
            .unwrap();
    }

    /// A take uses the last poll when something polled the stack since its
    /// last look, and polls otherwise; a wait never looks for a datagram.
    #[test]
    fn a_take_polls_only_when_needed() {
        let net = network(silent);
        let stop = ShutdownFlag::new();
        let mut socket = UdpSocket::bind(&net.server, PORT, udp_socket(), &stop).unwrap();
        send(&net, 12);
        net.settle();
        let (polls, looks) = net.counts();
        let mut buf = [0; 64];
        let got = socket.try_recv_from(&mut buf).unwrap().unwrap();
        assert_eq!((got.len, got.truncated), (12, false));
        assert_eq!(got.addr, (PEER, 5000).into());
        assert_eq!(net.counts(), (polls, looks + 1));
        assert!(socket.try_recv_from(&mut buf).unwrap().is_none());
        assert_eq!(net.counts(), (polls + 1, looks + 2));
        let waited = socket.wait(Some(Duration::from_millis(5))).unwrap();
        assert_eq!(waited, Readiness::TimedOut);
        assert_eq!(net.counts().1, looks + 2);
        net.server.borrow_mut().poll();
        assert_eq!(socket.wait(None).unwrap(), Readiness::Ready);
    }

    /// A datagram longer than the buffer fills it and says so.
    #[test]
    fn a_long_datagram_is_flagged_truncated() {
        let net = network(silent);
        let stop = ShutdownFlag::new();
        let mut socket = UdpSocket::bind(&net.server, PORT, udp_socket(), &stop).unwrap();
        send(&net, 100);
        net.settle();
        let got = socket.try_recv_from(&mut [0; 64]).unwrap().unwrap();
        assert_eq!((got.len, got.truncated), (64, true));
        socket.close();
        assert_eq!(
            socket.try_recv_from(&mut [0; 64]),
            Err(SmoltcpError::Closed)
        );
    }
}
