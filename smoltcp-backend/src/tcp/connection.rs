//! One TCP connection, accepted or connected: blocking reads and writes
//! that drive the stack while they wait, and its end of life.

use core::time::Duration;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::socket::AnySocket;
use smoltcp::wire::IpEndpoint;
use socketserver_core::embedded_io::{ErrorType, Read, ReadReady, Write, WriteReady};
use socketserver_core::{Connection, Instant, Readiness, ShutdownFlag};

use super::NetRef;
use crate::stack::{borrow_stack, deadline, drive_until, unwinding_while_borrowed, Net};
use crate::SmoltcpError;

/// How long closing a connection waits by default for the peer to take the
/// last bytes and close its side (see [`SmoltcpConnection::set_linger`]).
pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);

/// One TCP connection: blocking embedded-io [`Read`] and [`Write`] that drive
/// the stack while they wait.
///
/// Each read, write, `write_all` (as a whole, like Python's `sendall`) and
/// flush is bounded by the connection's timeout
/// ([`set_timeout`](Connection::set_timeout)); past it the operation fails
/// with [`SmoltcpError::TimedOut`]. A read returns `Ok(0)` once the peer has closed
/// its side and everything it sent was read.
///
/// Once the peer has reset the connection, every operation fails with
/// [`SmoltcpError::Reset`] (its socket may already serve another client); once the
/// listener is closed, with [`SmoltcpError::Closed`].
///
/// # End of life
///
/// - [`close`](Self::close) sends FIN after the data still queued, then
///   drives the stack until the peer has acknowledged everything and closed
///   its side too, discarding what it still sends. It waits at most the
///   linger time ([`set_linger`](Self::set_linger)), and not at all once
///   shutdown is requested (the listener's [`ShutdownFlag`]); either way
///   the connection is then reset. It returns how the connection ended.
/// - [`Connection::close`] (what the server calls, after `shutdown_write`)
///   does the same for a connected one. For an accepted one it waits only
///   until the peer has acknowledged everything, our FIN included, and
///   leaves the wait for the peer's FIN to the listener's backlog, bounded
///   by the same linger time: the server takes its next connection
///   meanwhile, as a kernel lets a server go on after `close()`.
/// - Dropping it without `close` aborts it: the connection is reset at once
///   (one poll sends the reset) and nothing waits.
///
/// Then an accepted connection's socket listens again at its listener's
/// next take; a [`connect`](Self::connect)ed one leaves the socket set.
pub struct SmoltcpConnection<'s, 'a> {
    net: NetRef<'s, 'a>,
    handle: SocketHandle,
    peer: IpEndpoint,
    timeout: Option<Duration>,
    /// The end of the request ([`Connection::set_request_timeout`]).
    request_deadline: Option<Instant>,
    linger: Duration,
    /// Ends a linger: the listener's flag (none for a client connection).
    shutdown: Option<&'s ShutdownFlag>,
    /// For a client connection (`connect`), which added its socket to the
    /// set: removes it when the connection ends. A function rather than a
    /// flag, so that an image that never connects has no code to remove
    /// sockets.
    leave_set: Option<fn(&mut SocketSet<'_>, SocketHandle)>,
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

/// A client connection's socket leaves the set (unless already gone).
fn leave_set(sockets: &mut SocketSet<'_>, handle: SocketHandle) {
    if socket_mut(sockets, handle).is_some() {
        sockets.remove(handle);
    }
}

/// The connection's socket while it still serves the connection's peer:
/// once reset or closed, its listener may re-arm it for another peer.
fn own_socket<'c, 'a>(
    sockets: &'c mut SocketSet<'a>,
    conn: &SmoltcpConnection<'_, '_>,
) -> Result<&'c mut tcp::Socket<'a>, SmoltcpError> {
    let socket = socket_mut(sockets, conn.handle).ok_or(SmoltcpError::Closed)?;
    if socket.remote_endpoint() == Some(conn.peer) {
        Ok(socket)
    } else {
        Err(SmoltcpError::Reset)
    }
}

impl<'s, 'a> SmoltcpConnection<'s, 'a> {
    /// A connection a listener took from its backlog.
    pub(crate) fn accepted(
        net: NetRef<'s, 'a>,
        handle: SocketHandle,
        peer: IpEndpoint,
        timeout: Option<Duration>,
        linger: Duration,
        shutdown: &'s ShutdownFlag,
    ) -> Self {
        SmoltcpConnection {
            net,
            handle,
            peer,
            timeout,
            request_deadline: None,
            linger,
            shutdown: Some(shutdown),
            leave_set: None,
        }
    }

    /// Opens a client connection to `remote` with `socket` (which is added
    /// to the socket set and removed again when the connection ends),
    /// waiting at most `timeout` for it to be established.
    ///
    /// The local port comes from the dynamic range. The connection starts
    /// with `timeout` as its operation timeout, and lingers
    /// [`DEFAULT_LINGER`] when closed (no shutdown flag ends it early).
    ///
    /// # Errors
    /// [`SmoltcpError::NoSocketSpace`], [`SmoltcpError::Unaddressable`], [`SmoltcpError::Refused`]
    /// (reset by the peer), [`SmoltcpError::TimedOut`].
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    pub fn connect(
        net: NetRef<'s, 'a>,
        socket: tcp::Socket<'a>,
        remote: impl Into<IpEndpoint>,
        timeout: Option<Duration>,
    ) -> Result<Self, SmoltcpError> {
        let remote = remote.into();
        let mut stack = borrow_stack(net);
        if stack.free_slots() == 0 {
            return Err(SmoltcpError::NoSocketSpace);
        }
        let port = stack.ephemeral_port();
        let (iface, sockets) = stack.parts();
        let handle = sockets.add(socket);
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        if socket.connect(iface.context(), remote, port).is_err() {
            sockets.remove(handle);
            return Err(SmoltcpError::Unaddressable);
        }
        let deadline = deadline(&*stack, timeout);
        let mut result = Err(SmoltcpError::TimedOut);
        drive_until(&mut *stack, deadline, None, &mut |sockets| {
            result = match sockets.get_mut::<tcp::Socket>(handle).state() {
                State::SynSent | State::SynReceived => return false,
                State::Closed => Err(SmoltcpError::Refused),
                _ => Ok(()),
            };
            true
        });
        if let Err(err) = result {
            stack.parts().1.remove(handle);
            return Err(err);
        }
        Ok(SmoltcpConnection {
            net,
            handle,
            peer: remote,
            timeout,
            request_deadline: None,
            linger: DEFAULT_LINGER,
            shutdown: None,
            leave_set: Some(leave_set),
        })
    }

    /// The peer's endpoint (Rust's `peer_addr`): the one the connection was
    /// accepted from or made to, known even after the connection ended.
    pub fn peer_addr(&self) -> IpEndpoint {
        self.peer
    }

    /// This end's endpoint (Rust's `local_addr`).
    ///
    /// # Errors
    /// [`SmoltcpError::Reset`] or [`SmoltcpError::Closed`] once the socket no longer
    /// serves this connection.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    pub fn local_addr(&self) -> Result<IpEndpoint, SmoltcpError> {
        self.with_socket(|socket| socket.local_endpoint())?
            .ok_or(SmoltcpError::Reset)
    }

    /// The smoltcp socket's handle in the stack's socket set.
    pub fn handle(&self) -> SocketHandle {
        self.handle
    }

    /// Sets how long [`close`](Self::close) waits for the peer.
    pub fn set_linger(&mut self, linger: Duration) {
        self.linger = linger;
    }

    /// Python's `close_request`, bounded and reported: sends FIN after the
    /// data still queued, then drives the stack until the peer has
    /// acknowledged everything and closed its side too (discarding what it
    /// still sends), for at most the linger time, and not at all once
    /// shutdown is requested. A connection that did not end cleanly is
    /// then reset. [`Connection::close`] does the same and ignores the
    /// outcome (as Python ignores `close_request`'s).
    ///
    /// # Errors
    /// - [`SmoltcpError::TimedOut`]: the linger time passed first;
    /// - [`SmoltcpError::Aborted`]: shutdown was requested (before or during the
    ///   linger);
    /// - [`SmoltcpError::Reset`]: the peer reset the connection before it
    ///   acknowledged everything (or before the close);
    /// - [`SmoltcpError::Closed`]: the listener was closed.
    ///
    /// With any of them, data the peer had not acknowledged may be lost.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    pub fn close(self) -> Result<(), SmoltcpError> {
        self.linger(false).map(drop)
        // `self` is dropped here, which resets a connection still open.
    }

    /// The body of [`close`](Self::close) and of the request path's close.
    /// With `background`, it ends once the peer has acknowledged everything
    /// including our FIN (`Ok(true)`: the socket waits in FIN-WAIT-2 for
    /// the peer's FIN, marked for the backlog by smoltcp's socket timeout,
    /// which resets it after the linger time if the peer stays silent).
    fn linger(&self, background: bool) -> Result<bool, SmoltcpError> {
        let mut net = borrow_stack(self.net);
        let socket = own_socket(net.parts().1, self)?;
        // The ACK of the peer's FIN must leave in the poll that takes the
        // FIN in: the next take of the listener re-arms the socket (there is
        // no TIME-WAIT hold), and a delayed ACK would never be sent (the
        // peer would wait out a timeout). The re-arm gives the socket
        // smoltcp's default delay back (tcp/backlog.rs).
        socket.set_ack_delay(None);
        if background {
            socket.set_timeout(Some(super::smoltcp_duration(self.linger)));
        }
        socket.close();
        let deadline = deadline(&*net, Some(self.linger));
        let outcome = run(&mut *net, self, deadline, Op::Linger { background });
        outcome.map(|n| n == 1)
    }

    /// Drives the stack until `op` is done, bounded by the connection's
    /// timeout and request deadline.
    fn run(&mut self, op: Op<'_>) -> Result<usize, SmoltcpError> {
        let mut net = borrow_stack(self.net);
        let deadline = match (deadline(&*net, self.timeout), self.request_deadline) {
            (Some(op), Some(request)) => Some(op.min(request)),
            (op, request) => op.or(request),
        };
        run(&mut *net, self, deadline, op)
    }

    /// Runs `f` on the socket once, without driving the stack.
    fn with_socket<R>(&self, f: impl FnOnce(&mut tcp::Socket<'a>) -> R) -> Result<R, SmoltcpError> {
        let mut net = borrow_stack(self.net);
        own_socket(net.parts().1, self).map(f)
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
    },
    /// The peer's acknowledgement of everything sent.
    Flush,
    /// The end of the connection after our FIN (closing); unread data is
    /// discarded. With `background`, the peer's acknowledgement of our FIN
    /// is enough (`Ok(1)`): the backlog waits for the peer's FIN.
    Linger { background: bool },
}

impl Op<'_> {
    /// Tries the operation on `socket` once: `None` while it must wait.
    fn step(&mut self, socket: &mut tcp::Socket<'_>) -> Option<Result<usize, SmoltcpError>> {
        let state = socket.state();
        match self {
            Op::Read(buf) if socket.can_recv() => {
                Some(socket.recv_slice(buf).map_err(|_| SmoltcpError::Reset))
            }
            Op::Linger { background } => {
                super::discard_received(socket);
                match state {
                    State::TimeWait => Some(Ok(0)),
                    State::FinWait2 if *background => Some(Ok(1)),
                    // After LAST-ACK (the peer closed first) or a reset:
                    // clean if the peer acknowledged everything.
                    State::Closed if socket.send_queue() == 0 => Some(Ok(0)),
                    State::Closed => Some(Err(SmoltcpError::Reset)),
                    _ => None,
                }
            }
            _ if matches!(state, State::Closed | State::Listen) => Some(Err(SmoltcpError::Reset)),
            Op::Read(_) => match state {
                State::CloseWait | State::LastAck | State::Closing | State::TimeWait => Some(Ok(0)),
                _ => None,
            },
            Op::Write { data, all, sent } => match state {
                State::Established | State::CloseWait if socket.can_send() => {
                    let Ok(n) = socket.send_slice(&data[*sent..]) else {
                        return Some(Err(SmoltcpError::WriteShut));
                    };
                    *sent += n;
                    (!*all || *sent == data.len()).then_some(Ok(*sent))
                }
                State::Established | State::CloseWait | State::SynSent | State::SynReceived => None,
                _ => Some(Err(SmoltcpError::WriteShut)),
            },
            Op::Flush => (socket.send_queue() == 0).then_some(Ok(0)),
        }
    }
}

/// Drives `net` (the stack of `conn`, borrowed) until `op` is done on the
/// connection's socket while it serves the connection's peer, or
/// `deadline` passes ([`SmoltcpError::TimedOut`]). A write that fits polls
/// not at all: its bytes leave with the next poll, which the connection's
/// next blocking operation or its end makes, so that a reply and the FIN
/// after it leave in one segment.
///
/// A linger is the exception: it follows the socket past the end of the
/// connection (when the socket forgets its peer) to tell how it ended,
/// which is safe because the stack stays borrowed from its start (when the
/// socket was the connection's) to its end, so nothing can re-arm the
/// socket meanwhile. It alone ends at a shutdown request
/// ([`SmoltcpError::Aborted`]).
fn run(
    net: &mut (dyn Net<'_> + '_),
    conn: &SmoltcpConnection<'_, '_>,
    deadline: Option<Instant>,
    mut op: Op<'_>,
) -> Result<usize, SmoltcpError> {
    let linger = matches!(op, Op::Linger { .. });
    let shutdown = if linger { conn.shutdown } else { None };
    let mut answer = Err(SmoltcpError::TimedOut);
    let ended = drive_until(net, deadline, shutdown, &mut |sockets| {
        let socket = if linger {
            socket_mut(sockets, conn.handle).ok_or(SmoltcpError::Closed)
        } else {
            own_socket(sockets, conn)
        };
        let step = match socket {
            Ok(socket) => op.step(socket),
            Err(err) => Some(Err(err)),
        };
        step.map(|result| answer = result).is_some()
    });
    if ended == Readiness::Shutdown {
        return Err(SmoltcpError::Aborted);
    }
    answer
}

impl ErrorType for SmoltcpConnection<'_, '_> {
    type Error = SmoltcpError;
}

impl Read for SmoltcpConnection<'_, '_> {
    /// Blocks until data arrives, the peer closes (`Ok(0)`), or the timeout.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, SmoltcpError> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.run(Op::Read(buf))
    }
}

impl ReadReady for SmoltcpConnection<'_, '_> {
    fn read_ready(&mut self) -> Result<bool, SmoltcpError> {
        self.with_socket(|socket| socket.can_recv() || !socket.may_recv())
    }
}

impl Write for SmoltcpConnection<'_, '_> {
    /// Blocks until some of `data` fits in the send buffer, and sends it.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    fn write(&mut self, data: &[u8]) -> Result<usize, SmoltcpError> {
        if data.is_empty() {
            return Ok(0);
        }
        self.run(Op::Write {
            data,
            all: false,
            sent: 0,
        })
    }

    /// Blocks until all of `data` is in the send buffer, in one wait bounded
    /// by the timeout as a whole (as Python's `sendall` since 3.5).
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    fn write_all(&mut self, data: &[u8]) -> Result<(), SmoltcpError> {
        if data.is_empty() {
            return Ok(());
        }
        self.run(Op::Write {
            data,
            all: true,
            sent: 0,
        })
        .map(drop)
    }

    /// Blocks until the peer has acknowledged everything written.
    fn flush(&mut self) -> Result<(), SmoltcpError> {
        self.run(Op::Flush).map(drop)
    }
}

impl WriteReady for SmoltcpConnection<'_, '_> {
    fn write_ready(&mut self) -> Result<bool, SmoltcpError> {
        self.with_socket(|socket| socket.can_send() || !socket.may_send())
    }
}

impl Connection for SmoltcpConnection<'_, '_> {
    type Addr = IpEndpoint;

    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), SmoltcpError> {
        self.timeout = timeout;
        Ok(())
    }

    /// Measured on the stack's clock.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    fn set_request_timeout(&mut self, total: Option<Duration>) -> Result<(), SmoltcpError> {
        self.request_deadline = total.map(|t| borrow_stack(self.net).now() + t);
        Ok(())
    }

    fn set_nodelay(&mut self, nodelay: bool) -> Result<(), SmoltcpError> {
        self.with_socket(|socket| socket.set_nagle_enabled(!nodelay))
    }

    /// Queues FIN after the data already written.
    fn shutdown_write(&mut self) -> Result<(), SmoltcpError> {
        self.with_socket(tcp::Socket::close)?;
        borrow_stack(self.net).poll();
        Ok(())
    }

    /// Python's `close_request`, its outcome ignored (as Python ignores
    /// it). A client connection lingers as `SmoltcpConnection::close`
    /// does. An accepted one lingers only until the peer has acknowledged
    /// everything, our FIN included, and then leaves the rest to the
    /// listener's backlog: its scans discard what the peer still sends and
    /// re-arm the socket once the peer has closed its side too, or once
    /// nothing was heard from the peer for the linger time (smoltcp's
    /// socket timeout then resets it). So the server does not wait for the
    /// client to close before it takes the next connection, as the kernel
    /// lets a server go on after `close()`. Once shutdown is requested it
    /// is reset at once.
    fn close(self) {
        if self.linger(self.leave_set.is_none()) == Ok(true) {
            // The backlog owns the socket's end now: no reset on drop.
            core::mem::forget(self);
        }
        // Otherwise `self` is dropped here, which resets a connection
        // still open.
    }
}

impl Drop for SmoltcpConnection<'_, '_> {
    /// Aborts the connection if it is still open (one poll sends the reset;
    /// nothing waits), and removes a client connection's socket from the
    /// set.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere (unless the thread is already
    /// unwinding from a panic, when the connection is left as it is).
    fn drop(&mut self) {
        if unwinding_while_borrowed(self.net) {
            return;
        }
        let mut net = borrow_stack(self.net);
        if let Ok(socket) = own_socket(net.parts().1, self) {
            if socket.is_open() {
                socket.abort();
                net.poll();
            }
        }
        if let Some(leave_set) = self.leave_set {
            leave_set(net.parts().1, self.handle);
        }
    }
}

impl core::fmt::Debug for SmoltcpConnection<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SmoltcpConnection")
            .field("handle", &self.handle)
            .field("peer", &self.peer)
            .field("timeout", &self.timeout)
            .finish()
    }
}
