//! TCP: a listener that keeps `N` sockets listening on one port, and the
//! blocking connections it accepts.

use core::cell::RefCell;
use core::time::Duration;

use smoltcp::socket::tcp;
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};
use socketserver_core::transport::kind;
use socketserver_core::{Listener, Readiness, ShutdownFlag, Transport};

use crate::stack::{borrow_stack, look, unwinding_while_borrowed, wait_for_change, Net};
use crate::SmoltcpError;

mod backlog;
mod connection;
#[cfg(test)]
mod tests;

use backlog::{Backlog, BacklogSocket};
pub use connection::{SmoltcpConnection, DEFAULT_LINGER};

/// The stack as transports hold it.
pub type NetRef<'s, 'a> = &'s RefCell<dyn Net<'a> + 's>;

/// Python's `TCPServer` socket on smoltcp, with a backlog of `N`.
///
/// smoltcp has no listen queue, so the backlog is `N` sockets listening on
/// the same port: each incoming connection takes one of them, and
/// [`try_accept`](Listener::try_accept) hands out the established ones in
/// socket order (not necessarily the order they arrived in). A socket
/// listens again once its connection is over: closed, aborted, or reset
/// before it was taken.
///
/// `N` counts every connection the listener holds, the ones being served
/// included. When all `N` are taken, a new client's SYN finds no listening
/// socket and smoltcp answers it with a reset: the client sees
/// *connection refused* at once, as from a port nobody listens on (a kernel
/// with a full backlog would instead drop the SYN and let the client retry).
///
/// Taking and waiting cost one poll of the stack at most:
/// [`try_accept`](Listener::try_accept) looks at the sockets once (one pass
/// that re-arms the free ones and takes the first established one), after
/// polling only if nothing polled the stack since its last look;
/// [`wait`](Transport::wait) idles and polls until a poll says that a socket
/// may have changed, and never looks at the sockets itself.
pub struct TcpListener<'s, 'a, const N: usize> {
    inner: ListenerInner<'s, 'a>,
    backlog: [BacklogSocket; N],
}

/// The part of a [`TcpListener`] that does not depend on `N`: its methods
/// take the backlog as a slice, so they exist once in the image whatever
/// the listeners' `N`.
struct ListenerInner<'s, 'a> {
    net: NetRef<'s, 'a>,
    endpoint: IpListenEndpoint,
    shutdown: &'s ShutdownFlag,
    closed: bool,
    timeout: Option<Duration>,
    linger: Duration,
    /// The stack's poll count when the listener last looked at its sockets.
    seen: u32,
}

impl<'s, 'a, const N: usize> TcpListener<'s, 'a, N> {
    /// Adds `sockets` to the stack's socket set and makes them listen on
    /// `endpoint` (a port, or an address and a port). Each socket's buffers
    /// bound the data in flight of one connection. `shutdown` ends
    /// [`wait`](Transport::wait), and the linger of the connections'
    /// close, when requested.
    ///
    /// # Errors
    /// [`SmoltcpError::Unaddressable`] for port 0, [`SmoltcpError::NoSocketSpace`] when the
    /// socket set has fewer than `N` free slots.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    pub fn bind(
        net: NetRef<'s, 'a>,
        endpoint: impl Into<IpListenEndpoint>,
        sockets: [tcp::Socket<'a>; N],
        shutdown: &'s ShutdownFlag,
    ) -> Result<Self, SmoltcpError> {
        let endpoint = endpoint.into();
        let mut backlog = [BacklogSocket::default(); N];
        // Before the listener exists: a failed bind has nothing to close.
        let seen = listen(net, endpoint, &mut backlog, &mut sockets.into_iter())?;
        Ok(TcpListener {
            inner: ListenerInner {
                net,
                endpoint,
                shutdown,
                closed: false,
                timeout: None,
                linger: DEFAULT_LINGER,
                seen,
            },
            backlog,
        })
    }

    /// The endpoint the sockets listen on (Rust's `local_addr`; its address
    /// is unspecified when they listen on every address of the interface).
    pub fn local_addr(&self) -> IpListenEndpoint {
        self.inner.endpoint
    }

    /// The timeout accepted connections start with (a handler's
    /// `StreamOptions::timeout` replaces it). Default: none, as a kernel
    /// socket's.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.inner.timeout = timeout;
    }

    /// How long closing an accepted connection waits for the peer to take
    /// the last bytes and close its side before the connection is reset:
    /// the server's close waits that long at most for the peer's
    /// acknowledgement, and the backlog then holds the socket for the
    /// peer's FIN until nothing was heard from the peer for that long
    /// (see [`SmoltcpConnection`]'s end of life). Default:
    /// [`DEFAULT_LINGER`].
    pub fn set_linger(&mut self, linger: Duration) {
        self.inner.linger = linger;
    }

    /// The listener as its `N`-independent parts.
    fn split(&mut self) -> (&mut ListenerInner<'s, 'a>, Backlog<'_>) {
        let backlog = Backlog {
            sockets: &mut self.backlog,
            endpoint: self.inner.endpoint,
        };
        (&mut self.inner, backlog)
    }
}

/// `bind` without `N`: makes `sockets` listen, adds them to the set, and
/// returns the stack's poll count.
fn listen<'a>(
    net: NetRef<'_, 'a>,
    endpoint: IpListenEndpoint,
    backlog: &mut [BacklogSocket],
    sockets: &mut dyn Iterator<Item = tcp::Socket<'a>>,
) -> Result<u32, SmoltcpError> {
    let mut net = borrow_stack(net);
    let mut backlog = Backlog {
        sockets: backlog,
        endpoint,
    };
    backlog.listen(&mut *net, sockets)?;
    Ok(net.polls())
}

impl<'s, 'a> ListenerInner<'s, 'a> {
    #[allow(clippy::type_complexity)]
    fn try_accept(
        &mut self,
        mut backlog: Backlog<'_>,
    ) -> Result<Option<(SmoltcpConnection<'s, 'a>, IpEndpoint)>, SmoltcpError> {
        if self.closed {
            return Err(SmoltcpError::Closed);
        }
        let mut net = borrow_stack(self.net);
        look(&mut *net, &mut self.seen);
        let Some((handle, peer)) = backlog.scan(net.parts().1) else {
            return Ok(None);
        };
        let conn = SmoltcpConnection::accepted(
            self.net,
            handle,
            peer,
            self.timeout,
            self.linger,
            self.shutdown,
        );
        Ok(Some((conn, peer)))
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Result<Readiness, SmoltcpError> {
        if self.closed {
            return Err(SmoltcpError::Closed);
        }
        Ok(wait_for_change(self.net, self.seen, timeout, self.shutdown))
    }

    /// Marks the listener closed; the first time, resets its connections
    /// and removes its sockets.
    fn close(&mut self, mut backlog: Backlog<'_>) {
        if !core::mem::replace(&mut self.closed, true) {
            backlog.remove(&mut *borrow_stack(self.net));
        }
    }
}

impl<const N: usize> Transport for TcpListener<'_, '_, N> {
    type Kind = kind::Stream;
    type Addr = IpEndpoint;
    type Error = SmoltcpError;

    /// Idles and polls the stack until a poll says that a connection may
    /// have come (or gone), `timeout` passes, or shutdown is requested.
    /// Reports [`Readiness::Ready`] at once when something polled the
    /// stack since the last [`try_accept`](Listener::try_accept).
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<Readiness, SmoltcpError> {
        self.inner.wait(timeout)
    }

    fn shutdown_requested(&self) -> bool {
        self.inner.shutdown.is_requested()
    }

    fn clear_shutdown(&mut self) {
        self.inner.shutdown.clear();
    }

    /// Resets the queued connections and removes every socket of the
    /// listener from the set; connections still open fail with
    /// `SmoltcpError::Closed` from then on.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    fn close(&mut self) {
        let (inner, backlog) = self.split();
        inner.close(backlog);
    }
}

impl<'s, 'a, const N: usize> Listener for TcpListener<'s, 'a, N> {
    type Connection = SmoltcpConnection<'s, 'a>;

    /// Takes an established connection, if there is one; never blocks.
    /// Polls the stack first unless something polled it since the last
    /// take, then looks at the sockets once.
    ///
    /// # Panics
    /// If the stack is borrowed elsewhere.
    fn try_accept(
        &mut self,
    ) -> Result<Option<(SmoltcpConnection<'s, 'a>, IpEndpoint)>, SmoltcpError> {
        let (inner, backlog) = self.split();
        inner.try_accept(backlog)
    }
}

impl<const N: usize> Drop for TcpListener<'_, '_, N> {
    /// Closes the listener (see [`Transport::close`]).
    fn drop(&mut self) {
        if !unwinding_while_borrowed(self.inner.net) {
            self.close();
        }
    }
}

/// Discards what a closing socket has received: unread data would close
/// the window on a peer still sending. One copy for the linger and the
/// backlog's scan.
#[inline(never)]
pub(crate) fn discard_received(socket: &mut tcp::Socket<'_>) {
    while socket.can_recv() && socket.recv(|data| (data.len(), ())).is_ok() {}
}

/// A linger time as smoltcp's duration, in whole milliseconds and without
/// `u128` arithmetic (code size).
pub(crate) fn smoltcp_duration(d: core::time::Duration) -> smoltcp::time::Duration {
    smoltcp::time::Duration::from_millis(
        d.as_secs().saturating_mul(1000) + u64::from(d.subsec_millis()),
    )
}
