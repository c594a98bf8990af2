//! What the systems other than Linux share: waiting through the `polling`
//! crate (the server loop's [`Waiter`], the message workers' [`Parker`])
//! and receiving a datagram with `recvmsg` (`WSARecvFrom` on
//! Windows), which reports truncation.

use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use polling::{Event, Events, PollMode, Poller};
use socket2::{SockAddr, Socket};

use super::{as_uninit, Interest, Ready};

/// Waits until one socket is readable, a timeout passes, or another thread
/// calls [`notify`](Self::notify): the server loop's `select`, over the
/// `polling` crate (kqueue on macOS and the BSDs, IOCP on Windows).
#[derive(Debug)]
pub(crate) struct Waiter {
    poller: Poller,
    events: Mutex<Events>,
}

const SOCKET: usize = 0;

impl Waiter {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Waiter {
            poller: Poller::new()?,
            events: Mutex::new(Events::new()),
        })
    }

    /// Starts watching `socket` for readability.
    pub(crate) fn add(&self, socket: &Socket) -> io::Result<()> {
        // SAFETY: every transport deletes its socket from the waiter before
        // closing it (`Endpoint::close`, which `Drop` also runs), so the
        // poller never holds a descriptor (or socket handle) that was
        // closed and possibly reused.
        unsafe {
            self.poller
                .add_with_mode(socket, Event::readable(SOCKET), PollMode::Level)
        }
    }

    /// Watches `socket` for readability again (`true`) or not (`false`) while
    /// it stays registered.
    pub(crate) fn watch(&self, socket: &Socket, readable: bool) -> io::Result<()> {
        let event = if readable {
            Event::readable(SOCKET)
        } else {
            Event::none(SOCKET)
        };
        self.poller.modify_with_mode(socket, event, PollMode::Level)
    }

    /// Stops watching `socket`; call before closing it.
    pub(crate) fn delete(&self, socket: &Socket) -> io::Result<()> {
        self.poller.delete(socket)
    }

    /// Waits at most `timeout` (`None` waits for ever) and says whether the
    /// socket is readable. A notification ends the wait early.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        events.clear();
        self.poller.wait(&mut events, timeout)?;
        let readable = events.iter().any(|e| e.key == SOCKET && e.readable);
        Ok(readable)
    }

    /// Ends the current or the next [`wait`](Self::wait) at once. Not
    /// known to be async-signal-safe.
    pub(crate) fn notify(&self) -> io::Result<()> {
        self.poller.notify()
    }
}

/// The poller a message dispatch's workers share, over the `polling`
/// crate: every parked connection is registered one-shot, so one event
/// reaches one worker, and re-armed after its turn (`polling` offers
/// edge-triggered waiting only where the system has it; one-shot serves
/// kqueue and IOCP alike). `polling` lets one thread wait at a time, so the
/// workers take turns (a lock) as leader: the one that waits takes a single
/// event and gives the lock up before serving it.
#[derive(Debug)]
pub(crate) struct Parker {
    poller: Poller,
    leader: Mutex<Events>,
    stopped: std::sync::atomic::AtomicBool,
}

impl Parker {
    /// The key [`wait`](Self::wait) reports for the stop notification.
    pub(crate) const STOP: u64 = u64::MAX;
    /// The key [`wait`](Self::wait) reports for a [`wake`](Self::wake)
    /// (never, here: a woken wait reports nothing).
    pub(crate) const WAKE: u64 = u64::MAX - 1;

    /// Registered one-shot, a connection is silent from its event until
    /// it is re-armed, which reports what is already the case: a turn need
    /// not read until the socket has nothing more.
    pub(crate) const DRAIN: bool = false;

    /// Ends the current or the next [`wait`](Self::wait) early.
    pub(crate) fn wake(&self) -> io::Result<()> {
        self.poller.notify()
    }

    pub(crate) fn new() -> io::Result<Self> {
        let one = std::num::NonZeroUsize::MIN;
        Ok(Parker {
            poller: Poller::new()?,
            leader: Mutex::new(Events::with_capacity(one)),
            stopped: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn event(key: u64, readable: bool, writable: bool) -> Event {
        let key = usize::try_from(key).unwrap_or(usize::MAX);
        match (readable, writable) {
            (true, true) => Event::all(key),
            (false, true) => Event::writable(key),
            _ => Event::readable(key),
        }
    }

    /// Parks `socket` under `key`: one event when it becomes readable.
    pub(crate) fn add(&self, socket: &Socket, key: u64) -> io::Result<()> {
        // SAFETY: the dispatch deletes every parked connection from the
        // poller before it closes it (`Parker::delete` comes before the
        // session is closed), so the poller never holds a descriptor (or
        // socket handle) that was closed and possibly reused.
        unsafe {
            self.poller
                .add_with_mode(socket, Self::event(key, true, false), PollMode::Oneshot)
        }
    }

    /// Parks `socket` after its turn until it needs another for
    /// `interest`: `idle` marks the connection idle (see the Linux twin),
    /// then the one-shot registration is re-armed, which reports at once
    /// what is already the case. `Ok(true)`: an event came during the turn
    /// (not expected while disarmed); the caller keeps the connection and
    /// queues it for another turn.
    pub(crate) fn park(
        &self,
        socket: &Socket,
        key: u64,
        interest: Interest,
        idle: impl FnOnce() -> bool,
    ) -> io::Result<bool> {
        if !idle() {
            return Ok(true);
        }
        // With readable too, writable (which comes at once unless the peer
        // stopped reading) queues a connection that holds a whole message
        // behind the events already pending; alone, it waits for a slow
        // reader to take more of a reply.
        let (readable, writable) = match interest {
            Interest::Read => (true, false),
            Interest::Again => (true, true),
            Interest::Write => (false, true),
        };
        let event = Self::event(key, readable, writable);
        self.poller
            .modify_with_mode(socket, event, PollMode::Oneshot)?;
        Ok(false)
    }

    /// Stops watching `socket`; call before closing it.
    pub(crate) fn delete(&self, socket: &Socket) -> io::Result<()> {
        self.poller.delete(socket)
    }

    /// Waits at most `timeout` (`None`: for ever) for one event, as leader;
    /// stores it in `ready`; how many (0 or 1). With a zero `timeout`,
    /// 0 at once while another thread leads.
    pub(crate) fn wait(&self, ready: &mut [Ready], timeout: Option<Duration>) -> io::Result<usize> {
        let stop = Ready {
            key: Self::STOP,
            closed: false,
        };
        if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
            ready[0] = stop;
            return Ok(1);
        }
        // A look without waiting does not wait for the leader either.
        let mut events = if timeout == Some(Duration::ZERO) {
            match self.leader.try_lock() {
                Ok(events) => events,
                Err(std::sync::TryLockError::Poisoned(events)) => events.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Ok(0),
            }
        } else {
            self.leader.lock().unwrap_or_else(PoisonError::into_inner)
        };
        events.clear();
        self.poller.wait(&mut events, timeout)?;
        if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
            ready[0] = stop;
            return Ok(1);
        }
        // One-shot: a re-arm reports what is already the case, the end of
        // the stream too, so what closed need not be told apart.
        let mut n = 0;
        for (ready, event) in ready.iter_mut().zip(events.iter()) {
            *ready = Ready {
                key: event.key as u64,
                closed: false,
            };
            n += 1;
        }
        Ok(n)
    }

    /// Wakes every current and future [`wait`](Self::wait) with
    /// [`STOP`](Self::STOP).
    pub(crate) fn stop(&self) -> io::Result<()> {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Release);
        self.poller.notify()
    }
}

/// Receives one datagram into `buf`: the bytes kept, whether the datagram
/// was longer than `buf` (`MSG_TRUNC` from `recvmsg`; `WSAEMSGSIZE` on
/// Windows), and its sender (as `sender` converts it).
#[inline]
pub(crate) fn recv_datagram<A>(
    socket: &Socket,
    buf: &mut [u8],
    sender: impl FnOnce(&SockAddr) -> A,
) -> io::Result<(usize, bool, A)> {
    let mut bufs = [socket2::MaybeUninitSlice::new(as_uninit(buf))];
    let (len, flags, addr) = socket.recv_from_vectored(&mut bufs)?;
    Ok((len, flags.is_truncated(), sender(&addr)))
}
