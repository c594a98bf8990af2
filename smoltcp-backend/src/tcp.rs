//! TCP: a listener that keeps `N` sockets listening on one port, and the
//! blocking connections it accepts.

use core::cell::RefCell;
use core::time::Duration;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::socket::AnySocket;
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};
use socketserver_core::embedded_io::{ErrorType, Read, ReadReady, Write, WriteReady};
use socketserver_core::transport::kind;
use socketserver_core::{Connection, Instant, Listener, Readiness, ShutdownFlag, Transport};

use crate::stack::{deadline, drive, wait_ready, Net, Outcome};
use crate::Error;

/// How long closing a connection waits by default for the peer to take the
/// last bytes and close its side (see [`TcpListener::set_linger`]).
pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);

/// The stack as transports hold it.
pub type NetRef<'s, 'a> = &'s RefCell<dyn Net<'a> + 's>;

/// Python's `TCPServer` socket on smoltcp, with a backlog of `N`.
///
/// smoltcp has no listen queue, so the backlog is `N` sockets listening on
/// the same port: each incoming connection takes one of them, and
/// [`accept`](Listener::accept) hands out the established ones in socket
/// order (not necessarily the order they arrived in). A socket is re-armed (listens again) as soon as it is free:
/// when its connection is closed, or when a queued connection is reset
/// before being accepted.
///
/// `N` counts every connection the listener holds, the ones being served
/// included. When all `N` are taken, a new client's SYN finds no listening
/// socket and smoltcp answers it with a reset: the client sees
/// *connection refused* at once, as from a port nobody listens on (a kernel
/// with a full backlog would instead drop the SYN and let the client retry).
pub struct TcpListener<'s, 'a, const N: usize> {
    net: NetRef<'s, 'a>,
    handles: heapless::Vec<SocketHandle, N>,
    /// The peer each socket was handed out for, while it serves that peer.
    lent: [Option<IpEndpoint>; N],
    endpoint: IpListenEndpoint,
    shutdown: &'s ShutdownFlag,
    closed: bool,
    timeout: Option<Duration>,
    linger: Duration,
}

impl<'s, 'a, const N: usize> TcpListener<'s, 'a, N> {
    /// Adds `sockets` to the stack's socket set and makes them listen on
    /// `endpoint` (a port, or an address and a port). Each socket's buffers
    /// bound the data in flight of one connection. `shutdown` ends
    /// [`wait`](Transport::wait) when requested.
    ///
    /// # Errors
    /// [`Error::Unaddressable`] for port 0, [`Error::NoSocketSpace`] when the
    /// socket set has fewer than `N` free slots.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    pub fn bind(
        net: NetRef<'s, 'a>,
        endpoint: impl Into<IpListenEndpoint>,
        sockets: [tcp::Socket<'a>; N],
        shutdown: &'s ShutdownFlag,
    ) -> Result<Self, Error> {
        let endpoint = endpoint.into();
        let mut handles = heapless::Vec::new();
        listen_all(net, endpoint, &mut sockets.into_iter(), N, &mut |handle| {
            // Cannot fail: the vector has room for the N sockets.
            let _ = handles.push(handle);
        })?;
        Ok(TcpListener {
            net,
            handles,
            lent: [None; N],
            endpoint,
            shutdown,
            closed: false,
            timeout: None,
            linger: DEFAULT_LINGER,
        })
    }

    /// The endpoint the sockets listen on.
    pub fn local_endpoint(&self) -> IpListenEndpoint {
        self.endpoint
    }

    /// The timeout accepted connections start with (a handler's
    /// `StreamOptions::timeout` replaces it). Default: none, as a kernel
    /// socket's.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// How long closing a connection waits for the peer to take the last
    /// bytes and close its side before the connection is reset.
    /// Default: [`DEFAULT_LINGER`].
    pub fn set_linger(&mut self, linger: Duration) {
        self.linger = linger;
    }

    /// Connections established and not yet accepted.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    pub fn pending(&mut self) -> usize {
        if self.closed {
            return 0;
        }
        let mut net = self.net.borrow_mut();
        self.backlog().pending(net.parts().1)
    }

    /// The code of the listener that does not depend on `N`.
    fn backlog(&mut self) -> Backlog<'_> {
        Backlog {
            handles: &self.handles,
            lent: &mut self.lent,
            endpoint: self.endpoint,
        }
    }
}

/// Makes `sockets` listen on `endpoint` and adds them to the socket set,
/// handing each handle to `keep`.
fn listen_all<'a>(
    net: NetRef<'_, 'a>,
    endpoint: IpListenEndpoint,
    sockets: &mut dyn Iterator<Item = tcp::Socket<'a>>,
    count: usize,
    keep: &mut dyn FnMut(SocketHandle),
) -> Result<(), Error> {
    if endpoint.port == 0 {
        return Err(Error::Unaddressable);
    }
    let mut stack = net.borrow_mut();
    if stack.free_slots() < count {
        return Err(Error::NoSocketSpace);
    }
    for mut socket in sockets {
        socket.listen(endpoint).map_err(|_| Error::Unaddressable)?;
        keep(stack.parts().1.add(socket));
    }
    Ok(())
}

/// Resets the connections of `handles` and removes their sockets.
fn remove_all(net: &mut (dyn Net<'_> + '_), handles: &[SocketHandle]) {
    for &handle in handles {
        net.parts().1.get_mut::<tcp::Socket>(handle).abort();
    }
    // Sends the resets.
    net.poll();
    for &handle in handles {
        net.parts().1.remove(handle);
    }
}

/// A listener's sockets and what it lent them out for, as slices: the
/// listener's logic exists once in the image whatever its `N`.
struct Backlog<'l> {
    handles: &'l [SocketHandle],
    /// The peer each socket was handed out for, while it serves that peer.
    lent: &'l mut [Option<IpEndpoint>],
    endpoint: IpListenEndpoint,
}

impl Backlog<'_> {
    /// Re-arms free sockets, and forgets lent ones that no longer serve the
    /// peer they were lent for (closed, reset, or listening again).
    fn rearm(&mut self, sockets: &mut SocketSet<'_>) {
        for (&handle, lent) in self.handles.iter().zip(self.lent.iter_mut()) {
            let socket = sockets.get_mut::<tcp::Socket>(handle);
            if lent.is_some() && socket.remote_endpoint() == *lent {
                continue;
            }
            *lent = None;
            if matches!(socket.state(), State::Closed | State::TimeWait) {
                socket.abort();
                let _ = socket.listen(self.endpoint);
            }
        }
    }

    /// Established connections not lent out, after re-arming.
    fn ready<'s, 'a>(
        &'s mut self,
        sockets: &'s mut SocketSet<'a>,
    ) -> impl Iterator<Item = usize> + use<'s, 'a> {
        self.rearm(sockets);
        let (handles, lent) = (self.handles, &*self.lent);
        (0..handles.len()).filter(move |&i| {
            lent[i].is_none()
                && matches!(
                    sockets.get::<tcp::Socket>(handles[i]).state(),
                    State::Established | State::CloseWait
                )
        })
    }

    fn pending(&mut self, sockets: &mut SocketSet<'_>) -> usize {
        self.ready(sockets).count()
    }

    fn any_ready(&mut self, sockets: &mut SocketSet<'_>) -> bool {
        self.ready(sockets).next().is_some()
    }

    /// Lends out an established connection: its socket and its peer.
    fn take(&mut self, sockets: &mut SocketSet<'_>) -> Option<(SocketHandle, IpEndpoint)> {
        let i = self.ready(sockets).next()?;
        let handle = self.handles[i];
        let peer = sockets.get::<tcp::Socket>(handle).remote_endpoint()?;
        self.lent[i] = Some(peer);
        Some((handle, peer))
    }
}

impl<const N: usize> Transport for TcpListener<'_, '_, N> {
    type Kind = kind::Stream;
    type Addr = IpEndpoint;
    type Error = Error;

    /// Drives the stack until a connection is established, `timeout`
    /// passes, or shutdown is requested.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<Readiness, Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        let (net, shutdown) = (self.net, self.shutdown);
        let mut backlog = self.backlog();
        Ok(wait_ready(net, timeout, shutdown, |sockets| {
            backlog.any_ready(sockets)
        }))
    }

    fn shutdown_requested(&self) -> bool {
        self.shutdown.is_requested()
    }

    fn clear_shutdown(&mut self) {
        self.shutdown.clear();
    }

    /// Resets the queued connections and removes every socket of the
    /// listener from the set; connections still open fail with
    /// [`Error::Closed`] from then on.
    fn close(&mut self) {
        if core::mem::replace(&mut self.closed, true) {
            return;
        }
        if let Ok(mut net) = self.net.try_borrow_mut() {
            remove_all(&mut *net, &self.handles);
            self.handles.clear();
        }
    }
}

impl<'s, 'a, const N: usize> Listener for TcpListener<'s, 'a, N> {
    type Connection = TcpConnection<'s, 'a>;

    /// Takes an established connection, if there is one; never blocks.
    fn accept(&mut self) -> Result<Option<(TcpConnection<'s, 'a>, IpEndpoint)>, Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        let net = self.net;
        let mut stack = net.borrow_mut();
        stack.poll();
        let Some((handle, peer)) = self.backlog().take(stack.parts().1) else {
            return Ok(None);
        };
        let conn = TcpConnection {
            net: self.net,
            handle,
            origin: Origin::Listener(self.endpoint),
            timeout: self.timeout,
            request_deadline: None,
            linger: self.linger,
            peer,
        };
        Ok(Some((conn, peer)))
    }
}

impl<const N: usize> Drop for TcpListener<'_, '_, N> {
    fn drop(&mut self) {
        self.close();
    }
}

#[derive(Clone, Copy, Debug)]
enum Origin {
    /// Listens on this endpoint again once closed.
    Listener(IpListenEndpoint),
    /// Leaves the socket set once closed.
    Client,
}

/// One TCP connection: blocking embedded-io [`Read`] and [`Write`] that drive
/// the stack while they wait.
///
/// Each read, write and flush is bounded by the connection's timeout
/// ([`set_timeout`](Connection::set_timeout)); past it the operation fails
/// with [`Error::TimedOut`]. A read returns `Ok(0)` once the peer has closed
/// its side and everything it sent was read.
///
/// Closing (dropping) it sends FIN after the data still queued, then drives
/// the stack until the peer has taken everything and closed its side too,
/// discarding what it still sends, for at most the linger time; past that
/// the connection is reset. Then the socket listens again (for an accepted
/// connection) or leaves the socket set (for [`connect`](Self::connect)).
///
/// Once the peer has reset the connection, every operation fails with
/// [`Error::Reset`] (its socket may already serve another client); once the
/// listener is closed, with [`Error::Closed`].
pub struct TcpConnection<'s, 'a> {
    net: NetRef<'s, 'a>,
    handle: SocketHandle,
    origin: Origin,
    timeout: Option<Duration>,
    /// The end of the request ([`Connection::set_request_timeout`]).
    request_deadline: Option<Instant>,
    linger: Duration,
    peer: IpEndpoint,
}

/// The TCP socket behind `handle`, unless its listener removed it.
fn socket_mut<'c, 'a>(
    sockets: &'c mut SocketSet<'a>,
    handle: SocketHandle,
) -> Option<&'c mut tcp::Socket<'a>> {
    sockets
        .iter_mut()
        .find(|(h, _)| *h == handle)
        .and_then(|(_, socket)| tcp::Socket::downcast_mut(socket))
}

/// The connection's socket while it still serves `peer`: once reset or
/// closed, its listener may re-arm it for another peer.
fn own_socket<'c, 'a>(
    sockets: &'c mut SocketSet<'a>,
    handle: SocketHandle,
    peer: IpEndpoint,
) -> Result<&'c mut tcp::Socket<'a>, Error> {
    let socket = socket_mut(sockets, handle).ok_or(Error::Closed)?;
    if socket.remote_endpoint() == Some(peer) {
        Ok(socket)
    } else {
        Err(Error::Reset)
    }
}

impl<'s, 'a> TcpConnection<'s, 'a> {
    /// Opens a client connection to `remote` with `socket` (which is added
    /// to the socket set and removed again when the connection is closed),
    /// waiting at most `timeout` for it to be established.
    ///
    /// The local port comes from the dynamic range. The connection starts
    /// with `timeout` as its operation timeout, and lingers
    /// [`DEFAULT_LINGER`] when closed.
    ///
    /// # Errors
    /// [`Error::NoSocketSpace`], [`Error::Unaddressable`], [`Error::Refused`]
    /// (reset by the peer), [`Error::TimedOut`].
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    pub fn connect(
        net: NetRef<'s, 'a>,
        socket: tcp::Socket<'a>,
        remote: impl Into<IpEndpoint>,
        timeout: Option<Duration>,
    ) -> Result<Self, Error> {
        let remote = remote.into();
        let mut stack = net.borrow_mut();
        if stack.free_slots() == 0 {
            return Err(Error::NoSocketSpace);
        }
        let port = stack.ephemeral_port();
        let (iface, sockets) = stack.parts();
        let handle = sockets.add(socket);
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        if socket.connect(iface.context(), remote, port).is_err() {
            sockets.remove(handle);
            return Err(Error::Unaddressable);
        }
        let deadline = deadline(&*stack, timeout);
        let outcome = drive(&mut *stack, deadline, None, |sockets| {
            match sockets.get::<tcp::Socket>(handle).state() {
                State::SynSent | State::SynReceived => None,
                State::Closed => Some(Err(Error::Refused)),
                _ => Some(Ok(())),
            }
        });
        let result = match outcome {
            Outcome::Ready(result) => result,
            Outcome::TimedOut | Outcome::Shutdown => Err(Error::TimedOut),
        };
        if let Err(err) = result {
            stack.parts().1.remove(handle);
            return Err(err);
        }
        drop(stack);
        Ok(TcpConnection {
            net,
            handle,
            origin: Origin::Client,
            timeout,
            request_deadline: None,
            linger: DEFAULT_LINGER,
            peer: remote,
        })
    }

    /// The peer's endpoint.
    pub fn peer(&self) -> IpEndpoint {
        self.peer
    }

    /// This end's endpoint, unless the socket is gone.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    pub fn local_endpoint(&self) -> Option<IpEndpoint> {
        self.with_socket(|socket| socket.local_endpoint())
            .ok()
            .flatten()
    }

    /// The smoltcp socket's handle in the stack's socket set.
    pub fn handle(&self) -> SocketHandle {
        self.handle
    }

    /// Sets how long closing waits for the peer (see the type's docs).
    pub fn set_linger(&mut self, linger: Duration) {
        self.linger = linger;
    }

    /// Drives the stack until `check` answers about the socket, bounded by
    /// the connection's timeout.
    fn drive<R>(
        &mut self,
        mut check: impl FnMut(&mut tcp::Socket<'a>) -> Option<Result<R, Error>>,
    ) -> Result<R, Error> {
        let mut net = self.net.borrow_mut();
        let deadline = match (deadline(&*net, self.timeout), self.request_deadline) {
            (Some(op), Some(request)) => Some(op.min(request)),
            (op, request) => op.or(request),
        };
        let (handle, peer) = (self.handle, self.peer);
        let outcome = drive(&mut *net, deadline, None, |sockets| {
            match own_socket(sockets, handle, peer) {
                Ok(socket) => check(socket),
                Err(err) => Some(Err(err)),
            }
        });
        match outcome {
            Outcome::Ready(result) => result,
            Outcome::TimedOut | Outcome::Shutdown => Err(Error::TimedOut),
        }
    }

    /// Runs `f` on the socket once, without driving the stack.
    fn with_socket<R>(&self, f: impl FnOnce(&mut tcp::Socket<'a>) -> R) -> Result<R, Error> {
        let mut net = self.net.borrow_mut();
        own_socket(net.parts().1, self.handle, self.peer).map(f)
    }

    /// Sends FIN, lingers, and gives the socket back (see the type's docs).
    fn release(&mut self) {
        let Ok(mut net) = self.net.try_borrow_mut() else {
            return;
        };
        let (handle, peer) = (self.handle, self.peer);
        let mut ack_delay = None;
        if let Ok(socket) = own_socket(net.parts().1, handle, peer) {
            // The ACK of the peer's FIN must leave in the poll that takes the
            // FIN in: the socket forgets its peer right after, and a delayed
            // ACK would never be sent (the peer would wait out a timeout).
            ack_delay = socket.ack_delay();
            socket.set_ack_delay(None);
            socket.close();
            let deadline = net.now() + self.linger;
            let outcome = drive(&mut *net, Some(deadline), None, |sockets| {
                let Ok(socket) = own_socket(sockets, handle, peer) else {
                    return Some(());
                };
                // Unread data would close the window on a peer still sending.
                while socket.can_recv() && socket.recv(|data| (data.len(), ())).is_ok() {}
                matches!(socket.state(), State::TimeWait | State::Closed).then_some(())
            });
            if let Ok(socket) = own_socket(net.parts().1, handle, peer) {
                socket.abort();
                if let Outcome::TimedOut = outcome {
                    // Sends the reset before the socket forgets its peer.
                    net.poll();
                }
            }
        }
        let Some(socket) = socket_mut(net.parts().1, handle) else {
            return;
        };
        match self.origin {
            // Unless the listener already re-armed it for someone else.
            Origin::Listener(endpoint) if socket.state() == State::Closed => {
                socket.set_ack_delay(ack_delay);
                let _ = socket.listen(endpoint);
            }
            Origin::Listener(_) => {}
            Origin::Client => {
                net.parts().1.remove(handle);
            }
        }
    }
}

impl ErrorType for TcpConnection<'_, '_> {
    type Error = Error;
}

impl Read for TcpConnection<'_, '_> {
    /// Blocks until data arrives, the peer closes (`Ok(0)`), or the timeout.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.drive(|socket| {
            if socket.can_recv() {
                return Some(socket.recv_slice(buf).map_err(|_| Error::Reset));
            }
            match socket.state() {
                State::CloseWait | State::LastAck | State::Closing | State::TimeWait => Some(Ok(0)),
                State::Closed | State::Listen => Some(Err(Error::Reset)),
                State::SynSent
                | State::SynReceived
                | State::Established
                | State::FinWait1
                | State::FinWait2 => None,
            }
        })
    }
}

impl ReadReady for TcpConnection<'_, '_> {
    fn read_ready(&mut self) -> Result<bool, Error> {
        self.with_socket(|socket| socket.can_recv() || !socket.may_recv())
    }
}

impl Write for TcpConnection<'_, '_> {
    /// Blocks until some of `data` fits in the send buffer, and sends it.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    fn write(&mut self, data: &[u8]) -> Result<usize, Error> {
        if data.is_empty() {
            return Ok(0);
        }
        let mut starts_burst = false;
        let n = self.drive(|socket| match socket.state() {
            State::Established | State::CloseWait if socket.can_send() => {
                starts_burst = socket.send_queue() == 0;
                Some(socket.send_slice(data).map_err(|_| Error::WriteShut))
            }
            State::Established | State::CloseWait | State::SynSent | State::SynReceived => None,
            State::Closed | State::Listen => Some(Err(Error::Reset)),
            _ => Some(Err(Error::WriteShut)),
        })?;
        // A reply goes out at once; in a stream of writes, the data queued
        // behind unacknowledged data goes out at the next poll, which the
        // write that finds the buffer full makes.
        if starts_burst {
            self.net.borrow_mut().poll();
        }
        Ok(n)
    }

    /// Blocks until the peer has acknowledged everything written.
    fn flush(&mut self) -> Result<(), Error> {
        self.drive(|socket| match socket.state() {
            State::Closed | State::Listen => Some(Err(Error::Reset)),
            _ => (socket.send_queue() == 0).then_some(Ok(())),
        })
    }
}

impl WriteReady for TcpConnection<'_, '_> {
    fn write_ready(&mut self) -> Result<bool, Error> {
        self.with_socket(|socket| socket.can_send() || !socket.may_send())
    }
}

impl Connection for TcpConnection<'_, '_> {
    type Addr = IpEndpoint;

    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        self.timeout = timeout;
        Ok(())
    }

    /// Measured on the stack's clock.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    fn set_request_timeout(&mut self, total: Option<Duration>) -> Result<(), Error> {
        self.request_deadline = total.map(|t| self.net.borrow().now() + t);
        Ok(())
    }

    fn set_nodelay(&mut self, nodelay: bool) -> Result<(), Error> {
        self.with_socket(|socket| socket.set_nagle_enabled(!nodelay))
    }

    /// Queues FIN after the data already written.
    fn shutdown_write(&mut self) -> Result<(), Error> {
        self.with_socket(tcp::Socket::close)?;
        self.net.borrow_mut().poll();
        Ok(())
    }
}

impl Drop for TcpConnection<'_, '_> {
    fn drop(&mut self) {
        self.release();
    }
}

impl core::fmt::Debug for TcpConnection<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TcpConnection")
            .field("handle", &self.handle)
            .field("peer", &self.peer)
            .field("timeout", &self.timeout)
            .finish()
    }
}
