//! A listener's backlog: the sockets kept listening on its port, and the
//! one scan that re-arms them and finds a connection to take.
//!
//! smoltcp has no listen queue, so a listener with a backlog of `N` keeps
//! `N` sockets listening on its port. Each is, by its smoltcp state and
//! whether the listener lent it out:
//!
//! | smoltcp state | not lent | lent |
//! |---|---|---|
//! | `Listen`, `SynReceived` | waiting for a client | - |
//! | `Established`, `CloseWait` | **queued**: taken by the next scan | serving a connection |
//! | `FinWait*`, `Closing`, `LastAck` | - | its connection is closing (**closed**, if its socket has a timeout: see below) |
//! | `Closed`, `TimeWait` | **free**: re-armed by the next scan | **free** (closed, reset or aborted) |
//!
//! A connection closed on the request path (`Connection::close`) waits
//! for the peer to acknowledge everything, its FIN included, but not for
//! the peer's own FIN: it leaves its socket in `FinWait2`, marked with
//! smoltcp's socket timeout (the linger time) and no ACK delay. The scan
//! discards what the peer of such a socket still sends (unread data would
//! close the window on it), and re-arms it once it is free: the peer
//! closed too, or was silent for the linger time and the timeout reset
//! the connection. So the next request is served meanwhile, and a peer
//! that never closes holds a socket for the linger time at most.
//!
//! The backlog owns its sockets' timeout and ACK delay: every re-arm gives
//! a socket smoltcp's defaults back (no timeout, 10 ms), whatever a close
//! or the socket's owner set before `bind`.
//!
//! Only the scan changes this state: it re-arms every free socket (it
//! listens again and is no longer lent) and lends out the first queued one.
//! A connection never re-arms its socket: it ends it (its close reaches
//! `TimeWait` or `Closed`, its drop aborts it), and the next scan finds it
//! free. `TimeWait` counts as free because a connection's close has waited
//! for the peer's FIN already: there is no `TIME-WAIT` hold.
//!
//! The backlog is a slice, so that this code exists once in the image
//! whatever the `N` of the listeners.

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};

use crate::stack::Net;
use crate::SmoltcpError;

/// smoltcp's default ACK delay, which a re-armed socket gets back.
const ACK_DELAY: smoltcp::time::Duration = smoltcp::time::Duration::from_millis(10);

/// One socket of a listener's backlog.
#[derive(Clone, Copy, Default)]
pub(crate) struct BacklogSocket {
    handle: SocketHandle,
    /// Handed out by a scan, and not free since.
    lent: bool,
}

/// A listener's sockets and the endpoint they listen on.
pub(crate) struct Backlog<'l> {
    pub(crate) sockets: &'l mut [BacklogSocket],
    pub(crate) endpoint: IpListenEndpoint,
}

impl Backlog<'_> {
    /// Makes `sockets` (as many as the backlog has) listen on the endpoint
    /// and adds them to the socket set.
    ///
    /// # Errors
    /// [`SmoltcpError::Unaddressable`] for port 0, [`SmoltcpError::NoSocketSpace`] when
    /// the socket set has too few free slots.
    pub(crate) fn listen<'a>(
        &mut self,
        net: &mut (dyn Net<'a> + '_),
        sockets: &mut dyn Iterator<Item = tcp::Socket<'a>>,
    ) -> Result<(), SmoltcpError> {
        if self.endpoint.port == 0 {
            return Err(SmoltcpError::Unaddressable);
        }
        if net.free_slots() < self.sockets.len() {
            return Err(SmoltcpError::NoSocketSpace);
        }
        for (entry, mut socket) in self.sockets.iter_mut().zip(sockets) {
            socket
                .listen(self.endpoint)
                .map_err(|_| SmoltcpError::Unaddressable)?;
            entry.handle = net.parts().1.add(socket);
        }
        Ok(())
    }

    /// The scan: one pass over the sockets that re-arms every free one and
    /// lends out the first queued one, returning its handle and peer.
    ///
    /// Re-arming needs no poll before the socket listens again, so a
    /// socket in `TimeWait` sends no reset; a socket its connection aborted
    /// has sent its reset already (the abort polls).
    pub(crate) fn scan(&mut self, set: &mut SocketSet<'_>) -> Option<(SocketHandle, IpEndpoint)> {
        let mut taken = None;
        for entry in self.sockets.iter_mut() {
            let socket = set.get_mut::<tcp::Socket>(entry.handle);
            match socket.state() {
                State::Closed | State::TimeWait => {
                    entry.lent = false;
                    // What a close changed (see above).
                    socket.set_timeout(None);
                    socket.set_ack_delay(Some(ACK_DELAY));
                    // Fails only for port 0 or an open socket: neither here.
                    let _ = socket.listen(self.endpoint);
                }
                State::FinWait2 if entry.lent && socket.timeout().is_some() => {
                    super::discard_received(socket);
                }
                State::Established | State::CloseWait if !entry.lent && taken.is_none() => {
                    if let Some(peer) = socket.remote_endpoint() {
                        entry.lent = true;
                        taken = Some((entry.handle, peer));
                    }
                }
                _ => {}
            }
        }
        taken
    }

    /// Resets the open connections, sends the resets, and removes every
    /// socket from the set.
    pub(crate) fn remove(&mut self, net: &mut (dyn Net<'_> + '_)) {
        for entry in self.sockets.iter() {
            let socket = net.parts().1.get_mut::<tcp::Socket>(entry.handle);
            // A socket in `TimeWait` is done: a reset would only be noise.
            if socket.is_open() {
                socket.abort();
            }
        }
        net.poll();
        for entry in self.sockets.iter() {
            net.parts().1.remove(entry.handle);
        }
    }
}
