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

use crate::stack::{deadline, drive_until, lock, wait_ready, Net};
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
    shared: Shared<'s, 'a>,
    slots: [Slot; N],
}

/// One socket of a listener.
#[derive(Clone, Copy, Default)]
struct Slot {
    handle: SocketHandle,
    /// The peer the socket was handed out for, while it serves that peer.
    lent: Option<IpEndpoint>,
}

/// The state of a [`TcpListener`] that does not depend on `N`, and whose
/// methods do the listener's work once in the image whatever its `N`.
struct Shared<'s, 'a> {
    net: NetRef<'s, 'a>,
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
        let mut slots = [Slot::default(); N];
        listen_all(net, endpoint, &mut sockets.into_iter(), &mut slots)?;
        Ok(TcpListener {
            shared: Shared {
                net,
                endpoint,
                shutdown,
                closed: false,
                timeout: None,
                linger: DEFAULT_LINGER,
            },
            slots,
        })
    }

    /// The endpoint the sockets listen on.
    pub fn local_endpoint(&self) -> IpListenEndpoint {
        self.shared.endpoint
    }

    /// The timeout accepted connections start with (a handler's
    /// `StreamOptions::timeout` replaces it). Default: none, as a kernel
    /// socket's.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.shared.timeout = timeout;
    }

    /// How long closing a connection waits for the peer to take the last
    /// bytes and close its side before the connection is reset.
    /// Default: [`DEFAULT_LINGER`].
    pub fn set_linger(&mut self, linger: Duration) {
        self.shared.linger = linger;
    }

    /// Connections established and not yet accepted.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    pub fn pending(&mut self) -> usize {
        let (shared, backlog) = self.split();
        shared.pending(backlog)
    }

    /// The listener as its `N`-independent parts.
    fn split(&mut self) -> (&mut Shared<'s, 'a>, Backlog<'_>) {
        let backlog = Backlog {
            slots: &mut self.slots,
            endpoint: self.shared.endpoint,
        };
        (&mut self.shared, backlog)
    }
}

impl<'s, 'a> Shared<'s, 'a> {
    fn pending(&mut self, mut backlog: Backlog<'_>) -> usize {
        if self.closed {
            return 0;
        }
        let mut net = lock(self.net);
        backlog.pending(net.parts().1)
    }

    fn wait(
        &mut self,
        mut backlog: Backlog<'_>,
        timeout: Option<Duration>,
    ) -> Result<Readiness, Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        Ok(wait_ready(
            self.net,
            timeout,
            self.shutdown,
            &mut |sockets| backlog.any_ready(sockets),
        ))
    }

    /// Marks the listener closed; the first time, resets and removes the
    /// sockets of `slots` (unless the stack is borrowed).
    fn close(&mut self, slots: &[Slot]) {
        if core::mem::replace(&mut self.closed, true) {
            return;
        }
        if let Ok(mut net) = self.net.try_borrow_mut() {
            remove_all(&mut *net, slots);
        }
    }

    #[allow(clippy::type_complexity)]
    fn accept(
        &mut self,
        mut backlog: Backlog<'_>,
    ) -> Result<Option<(TcpConnection<'s, 'a>, IpEndpoint)>, Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        let mut stack = lock(self.net);
        stack.poll();
        let Some((handle, peer)) = backlog.take(stack.parts().1) else {
            return Ok(None);
        };
        let conn = TcpConnection {
            net: self.net,
            handle,
            origin: Origin {
                endpoint: self.endpoint,
                give_back: listen_again,
            },
            timeout: self.timeout,
            request_deadline: None,
            linger: self.linger,
            peer,
        };
        Ok(Some((conn, peer)))
    }
}

/// Makes `sockets` (as many as `slots`) listen on `endpoint` and adds them
/// to the socket set, keeping their handles in `slots`.
fn listen_all<'a>(
    net: NetRef<'_, 'a>,
    endpoint: IpListenEndpoint,
    sockets: &mut dyn Iterator<Item = tcp::Socket<'a>>,
    slots: &mut [Slot],
) -> Result<(), Error> {
    if endpoint.port == 0 {
        return Err(Error::Unaddressable);
    }
    let mut stack = lock(net);
    if stack.free_slots() < slots.len() {
        return Err(Error::NoSocketSpace);
    }
    for (slot, mut socket) in slots.iter_mut().zip(sockets) {
        socket.listen(endpoint).map_err(|_| Error::Unaddressable)?;
        slot.handle = stack.parts().1.add(socket);
    }
    Ok(())
}

/// Resets the connections of `slots` and removes their sockets.
fn remove_all(net: &mut (dyn Net<'_> + '_), slots: &[Slot]) {
    for slot in slots {
        net.parts().1.get_mut::<tcp::Socket>(slot.handle).abort();
    }
    // Sends the resets.
    net.poll();
    for slot in slots {
        net.parts().1.remove(slot.handle);
    }
}

/// A listener's sockets (with what it lent them out for) as a slice: the
/// listener's logic exists once in the image whatever its `N`.
struct Backlog<'l> {
    slots: &'l mut [Slot],
    endpoint: IpListenEndpoint,
}

impl Backlog<'_> {
    /// Re-arms free sockets, and forgets lent ones that no longer serve the
    /// peer they were lent for (closed, reset, or listening again).
    fn rearm(&mut self, sockets: &mut SocketSet<'_>) {
        for slot in self.slots.iter_mut() {
            let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
            if slot.lent.is_some() && socket.remote_endpoint() == slot.lent {
                continue;
            }
            slot.lent = None;
            if matches!(socket.state(), State::Closed | State::TimeWait) {
                socket.abort();
                let _ = socket.listen(self.endpoint);
            }
        }
    }

    /// Re-arms, then calls `found` with the index of each established
    /// connection not lent out until it returns `true`; returns that index.
    /// A loop rather than iterator adapters: the smallest code.
    fn ready(
        &mut self,
        sockets: &mut SocketSet<'_>,
        found: &mut dyn FnMut(usize) -> bool,
    ) -> Option<usize> {
        self.rearm(sockets);
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.lent.is_none()
                && matches!(
                    sockets.get_mut::<tcp::Socket>(slot.handle).state(),
                    State::Established | State::CloseWait
                )
                && found(i)
            {
                return Some(i);
            }
        }
        None
    }

    fn pending(&mut self, sockets: &mut SocketSet<'_>) -> usize {
        let mut count = 0;
        self.ready(sockets, &mut |_| {
            count += 1;
            false
        });
        count
    }

    fn any_ready(&mut self, sockets: &mut SocketSet<'_>) -> bool {
        self.ready(sockets, &mut |_| true).is_some()
    }

    /// Lends out an established connection: its socket and its peer.
    fn take(&mut self, sockets: &mut SocketSet<'_>) -> Option<(SocketHandle, IpEndpoint)> {
        let i = self.ready(sockets, &mut |_| true)?;
        let slot = &mut self.slots[i];
        let peer = sockets
            .get_mut::<tcp::Socket>(slot.handle)
            .remote_endpoint()?;
        slot.lent = Some(peer);
        Some((slot.handle, peer))
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
        let (shared, backlog) = self.split();
        shared.wait(backlog, timeout)
    }

    fn shutdown_requested(&self) -> bool {
        self.shared.shutdown.is_requested()
    }

    fn clear_shutdown(&mut self) {
        self.shared.shutdown.clear();
    }

    /// Resets the queued connections and removes every socket of the
    /// listener from the set; connections still open fail with
    /// [`Error::Closed`] from then on.
    fn close(&mut self) {
        self.shared.close(&self.slots);
    }
}

impl<'s, 'a, const N: usize> Listener for TcpListener<'s, 'a, N> {
    type Connection = TcpConnection<'s, 'a>;

    /// Takes an established connection, if there is one; never blocks.
    fn accept(&mut self) -> Result<Option<(TcpConnection<'s, 'a>, IpEndpoint)>, Error> {
        let (shared, backlog) = self.split();
        shared.accept(backlog)
    }
}

impl<const N: usize> Drop for TcpListener<'_, '_, N> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Where a connection's socket goes once the connection is closed.
#[derive(Clone, Copy)]
struct Origin {
    /// The endpoint of the listener that accepted the connection (unused
    /// for a client connection).
    endpoint: IpListenEndpoint,
    /// Gives the closed socket back, with the ACK delay to restore:
    /// [`listen_again`] (accepted) or [`leave_set`] (`connect`). A function
    /// rather than an enum, so that an image that never connects has no
    /// code to remove sockets.
    give_back: fn(&mut SocketSet<'_>, SocketHandle, IpListenEndpoint, Option<AckDelay>),
}

/// smoltcp's ACK delay setting.
type AckDelay = smoltcp::time::Duration;

/// An accepted connection's socket listens again, unless its listener
/// already re-armed it for someone else.
fn listen_again(
    sockets: &mut SocketSet<'_>,
    handle: SocketHandle,
    endpoint: IpListenEndpoint,
    ack_delay: Option<AckDelay>,
) {
    if let Some(socket) = socket_mut(sockets, handle) {
        if socket.state() == State::Closed {
            socket.set_ack_delay(ack_delay);
            let _ = socket.listen(endpoint);
        }
    }
}

/// A client connection's socket leaves the socket set.
fn leave_set(
    sockets: &mut SocketSet<'_>,
    handle: SocketHandle,
    _: IpListenEndpoint,
    _: Option<AckDelay>,
) {
    if socket_mut(sockets, handle).is_some() {
        sockets.remove(handle);
    }
}

/// One TCP connection: blocking embedded-io [`Read`] and [`Write`] that drive
/// the stack while they wait.
///
/// Each read, write, `write_all` (as a whole, like Python's `sendall`) and
/// flush is bounded by the connection's timeout
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

/// The connection's socket while it still serves the connection's peer:
/// once reset or closed, its listener may re-arm it for another peer.
fn own_socket<'c, 'a>(
    sockets: &'c mut SocketSet<'a>,
    conn: &TcpConnection<'_, '_>,
) -> Result<&'c mut tcp::Socket<'a>, Error> {
    let socket = socket_mut(sockets, conn.handle).ok_or(Error::Closed)?;
    if socket.remote_endpoint() == Some(conn.peer) {
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
        let mut stack = lock(net);
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
        let mut result = Err(Error::TimedOut);
        drive_until(&mut *stack, deadline, None, &mut |sockets| {
            result = match sockets.get_mut::<tcp::Socket>(handle).state() {
                State::SynSent | State::SynReceived => return false,
                State::Closed => Err(Error::Refused),
                _ => Ok(()),
            };
            true
        });
        if let Err(err) = result {
            stack.parts().1.remove(handle);
            return Err(err);
        }
        drop(stack);
        Ok(TcpConnection {
            net,
            handle,
            origin: Origin {
                endpoint: IpListenEndpoint::default(),
                give_back: leave_set,
            },
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

    /// Drives the stack until `op` is done, bounded by the connection's
    /// timeout and request deadline.
    fn run(&mut self, op: Op<'_>) -> Result<usize, Error> {
        let mut net = lock(self.net);
        let deadline = match (deadline(&*net, self.timeout), self.request_deadline) {
            (Some(op), Some(request)) => Some(op.min(request)),
            (op, request) => op.or(request),
        };
        run(&mut *net, self, deadline, op)
    }

    /// Runs `f` on the socket once, without driving the stack.
    fn with_socket<R>(&self, f: impl FnOnce(&mut tcp::Socket<'a>) -> R) -> Result<R, Error> {
        let mut net = lock(self.net);
        own_socket(net.parts().1, self).map(f)
    }

    /// Sends FIN, lingers, and gives the socket back (see the type's docs).
    fn release(&mut self) {
        let Ok(mut net) = self.net.try_borrow_mut() else {
            return;
        };
        let mut ack_delay = None;
        if let Ok(socket) = own_socket(net.parts().1, self) {
            // The ACK of the peer's FIN must leave in the poll that takes the
            // FIN in: the socket forgets its peer right after, and a delayed
            // ACK would never be sent (the peer would wait out a timeout).
            ack_delay = socket.ack_delay();
            socket.set_ack_delay(None);
            socket.close();
            let deadline = deadline(&*net, Some(self.linger));
            let outcome = run(&mut *net, self, deadline, Op::Linger);
            if let Ok(socket) = own_socket(net.parts().1, self) {
                socket.abort();
                if outcome == Err(Error::TimedOut) {
                    // Sends the reset before the socket forgets its peer.
                    net.poll();
                }
            }
        }
        let origin = self.origin;
        (origin.give_back)(net.parts().1, self.handle, origin.endpoint, ack_delay);
    }
}

/// What a blocking operation of a connection waits for: one enum rather
/// than one closure per operation, so that the waiting code exists once in
/// the image.
enum Op<'b> {
    /// Data to read into the buffer, or the end of the stream.
    Read(&'b mut [u8]),
    /// Room for some of the data, or for all of it.
    Write {
        data: &'b [u8],
        /// Done only once all of `data` is queued (`write_all`).
        all: bool,
        /// Bytes queued so far.
        sent: usize,
        /// The last bytes queued found the send buffer empty: they start a
        /// burst and should leave at once.
        burst: bool,
    },
    /// The peer's acknowledgement of everything sent.
    Flush,
    /// The peer's FIN after ours (closing); unread data is discarded.
    Linger,
}

impl Op<'_> {
    /// Tries the operation on `socket` once: `None` while it must wait.
    fn step(&mut self, socket: &mut tcp::Socket<'_>) -> Option<Result<usize, Error>> {
        let state = socket.state();
        match self {
            Op::Read(buf) if socket.can_recv() => {
                Some(socket.recv_slice(buf).map_err(|_| Error::Reset))
            }
            Op::Linger => {
                // Unread data would close the window on a peer still sending.
                while socket.can_recv() && socket.recv(|data| (data.len(), ())).is_ok() {}
                matches!(state, State::TimeWait | State::Closed).then_some(Ok(0))
            }
            _ if matches!(state, State::Closed | State::Listen) => Some(Err(Error::Reset)),
            Op::Read(_) => match state {
                State::CloseWait | State::LastAck | State::Closing | State::TimeWait => Some(Ok(0)),
                _ => None,
            },
            Op::Write {
                data,
                all,
                sent,
                burst,
            } => match state {
                State::Established | State::CloseWait if socket.can_send() => {
                    *burst = socket.send_queue() == 0;
                    let Ok(n) = socket.send_slice(&data[*sent..]) else {
                        return Some(Err(Error::WriteShut));
                    };
                    *sent += n;
                    (!*all || *sent == data.len()).then_some(Ok(*sent))
                }
                State::Established | State::CloseWait | State::SynSent | State::SynReceived => None,
                _ => Some(Err(Error::WriteShut)),
            },
            Op::Flush => (socket.send_queue() == 0).then_some(Ok(0)),
        }
    }
}

/// Drives `net` (the stack of `conn`, borrowed) until `op` is done on the
/// connection's socket while it serves the connection's peer, or
/// `deadline` passes ([`Error::TimedOut`]). A write that started a burst
/// polls once more, so that it leaves at once.
fn run(
    net: &mut (dyn Net<'_> + '_),
    conn: &TcpConnection<'_, '_>,
    deadline: Option<Instant>,
    mut op: Op<'_>,
) -> Result<usize, Error> {
    let mut answer = Err(Error::TimedOut);
    drive_until(net, deadline, None, &mut |sockets| {
        let step = match own_socket(sockets, conn) {
            Ok(socket) => op.step(socket),
            Err(err) => Some(Err(err)),
        };
        step.map(|result| answer = result).is_some()
    });
    if let (Op::Write { burst: true, .. }, Ok(_)) = (&op, &answer) {
        // A reply goes out at once; in a stream of writes, the data queued
        // behind unacknowledged data goes out at the next poll, which the
        // write that finds the buffer full makes.
        net.poll();
    }
    answer
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
        self.run(Op::Read(buf))
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
        self.run(Op::Write {
            data,
            all: false,
            sent: 0,
            burst: false,
        })
    }

    /// Blocks until all of `data` is in the send buffer, in one wait bounded
    /// by the timeout as a whole (as Python's `sendall` since 3.5).
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    fn write_all(&mut self, data: &[u8]) -> Result<(), Error> {
        if data.is_empty() {
            return Ok(());
        }
        self.run(Op::Write {
            data,
            all: true,
            sent: 0,
            burst: false,
        })
        .map(drop)
    }

    /// Blocks until the peer has acknowledged everything written.
    fn flush(&mut self) -> Result<(), Error> {
        self.run(Op::Flush).map(drop)
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
        self.request_deadline = total.map(|t| lock(self.net).now() + t);
        Ok(())
    }

    fn set_nodelay(&mut self, nodelay: bool) -> Result<(), Error> {
        self.with_socket(|socket| socket.set_nagle_enabled(!nodelay))
    }

    /// Queues FIN after the data already written.
    fn shutdown_write(&mut self) -> Result<(), Error> {
        self.with_socket(tcp::Socket::close)?;
        lock(self.net).poll();
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
