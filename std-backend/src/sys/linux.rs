//! Linux and Android: epoll and an eventfd for waiting, `MSG_TRUNC` for
//! datagram lengths, a signal handler that needs no thread, `waitid`, and
//! `SO_PEERCRED`.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::Signal;
use nix::unistd::{getppid, Pid};
use socket2::{SockAddr, Socket};

use super::as_uninit;
use super::signal::{register, Registration};
use crate::shutdown::Shared;

/// Flags for `send` on stream sockets: a peer that closed its end makes the
/// write fail with `EPIPE` instead of raising `SIGPIPE`.
pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;

/// Prepares an accepted stream socket. Nothing to do: Linux never passes
/// `O_NONBLOCK` on from the listener, and `MSG_NOSIGNAL` covers `SIGPIPE`,
/// which saves a system call per connection.
pub(crate) fn prepare_stream(_socket: &Socket) -> io::Result<()> {
    Ok(())
}

/// Gives a Unix socket the permission bits its file is to have, before it
/// is bound. Linux creates the file with the socket's own mode (less the
/// umask), so the file never allows more than `mode`, not even for the
/// moment between `bind` and the `chmod` after it.
pub(crate) fn mode_before_bind(socket: &Socket, mode: u32) -> io::Result<()> {
    use nix::sys::stat::{fchmod, Mode};
    Ok(fchmod(
        socket,
        Mode::from_bits_truncate(mode as libc::mode_t),
    )?)
}

/// Waits until one socket is readable, a timeout passes, or another thread
/// calls [`notify`](Self::notify): the server loop's `select`.
///
/// An epoll instance with the socket and an eventfd in it, both
/// level-triggered, so a wait is one `epoll_wait` (and a notification one
/// `read` more).
#[derive(Debug)]
pub(crate) struct Waiter {
    epoll: Epoll,
    wake: EventFd,
}

const SOCKET: u64 = 0;
const WAKE: u64 = 1;

impl Waiter {
    pub(crate) fn new() -> io::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        epoll.add(wake.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
        Ok(Waiter { epoll, wake })
    }

    /// Starts watching `fd` for readability.
    pub(crate) fn add(&self, fd: impl AsFd) -> io::Result<()> {
        let event = EpollEvent::new(EpollFlags::EPOLLIN, SOCKET);
        Ok(self.epoll.add(fd.as_fd(), event)?)
    }

    /// Watches `fd` for readability again (`true`) or not (`false`) while
    /// it stays registered.
    pub(crate) fn watch(&self, fd: impl AsFd, readable: bool) -> io::Result<()> {
        let flags = if readable {
            EpollFlags::EPOLLIN
        } else {
            EpollFlags::empty()
        };
        Ok(self
            .epoll
            .modify(fd.as_fd(), &mut EpollEvent::new(flags, SOCKET))?)
    }

    /// Stops watching `fd`; call before closing it.
    pub(crate) fn delete(&self, fd: impl AsFd) -> io::Result<()> {
        Ok(self.epoll.delete(fd.as_fd())?)
    }

    /// Waits at most `timeout` (rounded up to a millisecond; `None` waits
    /// for ever) and says whether the socket is readable. A notification or
    /// an interrupting signal ends the wait early.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let timeout = match timeout {
            None => EpollTimeout::NONE,
            Some(t) => {
                let ms = t.as_nanos().div_ceil(1_000_000);
                EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
            }
        };
        let mut events = [EpollEvent::empty(); 2];
        let n = match self.epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(err) => return Err(err.into()),
        };
        let mut readable = false;
        for event in &events[..n] {
            if event.data() == SOCKET {
                readable = true;
            } else {
                // Level-triggered: drain it or every wait returns at once.
                // EAGAIN means another wait drained it.
                let _ = self.wake.read();
            }
        }
        Ok(readable)
    }

    /// Ends the current or the next [`wait`](Self::wait) at once. One
    /// `write(2)` to the eventfd: async-signal-safe.
    pub(crate) fn notify(&self) -> io::Result<()> {
        match self.wake.write(1) {
            // The counter is full: a wake-up is pending anyway.
            Err(Errno::EAGAIN) => Ok(()),
            other => other.map(drop).map_err(Into::into),
        }
    }
}

/// Receives one datagram into `buf`: the bytes kept, whether the datagram
/// was longer than `buf`, and its sender (as `sender` converts it).
///
/// `recvfrom` returns a datagram's full length when asked with `MSG_TRUNC`
/// (UDP and Unix datagram sockets alike), so truncation is known without
/// `recvmsg` and its message header, which the kernel would copy in and out
/// for every datagram.
#[inline]
pub(crate) fn recv_datagram<A>(
    socket: &Socket,
    buf: &mut [u8],
    sender: impl FnOnce(&SockAddr) -> A,
) -> io::Result<(usize, bool, A)> {
    let capacity = buf.len();
    let (len, addr) = socket.recv_from_with_flags(as_uninit(buf), libc::MSG_TRUNC)?;
    Ok((len.min(capacity), len > capacity, sender(&addr)))
}

/// Turns `SIGINT` and `SIGTERM` into shutdown requests of `shared` while
/// it lives ([`ShutdownHandle::stop_on_signals`](crate::ShutdownHandle::stop_on_signals)).
///
/// The signal handler itself requests the shutdown, so no thread is
/// started: a synchronous server stays a single-threaded process, whose
/// system calls take the kernel's and the C library's single-threaded
/// shortcuts.
#[derive(Debug)]
pub(crate) struct SignalWatch {
    // Dropped first: once it is gone, no handler uses `_shared` any more.
    _registration: Registration,
    _shared: Arc<Shared>,
}

impl SignalWatch {
    pub(crate) fn start(shared: &Arc<Shared>) -> io::Result<Self> {
        let shared = Arc::clone(shared);
        Ok(SignalWatch {
            _registration: register(&shared)?,
            _shared: shared,
        })
    }
}

/// What the stop-signal handler wakes: a server's shutdown state.
pub(super) type Target = Shared;

/// Requests the shutdown from the signal handler. `Shared::request` stores
/// to an atomic and writes 8 bytes to an eventfd with write(2), which POSIX
/// lists as async-signal-safe; it allocates nothing and takes no lock.
pub(super) fn deliver(shared: &Shared) {
    shared.request();
}

/// Makes this forked child end when its parent does: the kernel sends it
/// `SIGKILL` then (`PR_SET_PDEATHSIG`), so no child keeps serving for a
/// server that was killed. Linux sends it when the *thread* that forked
/// ends, which for a server is the thread that serves (see
/// `ForkingDispatch`).
pub(super) fn end_with_parent(parent: Pid) {
    // Refused only by a sandbox: the child then serves unguarded, as
    // before, rather than not at all.
    let _ = set_pdeathsig(Signal::SIGKILL);
    if getppid() != parent {
        // The parent died before the signal was asked for.
        super::exit_child(1);
    }
}

/// Blocks until some child of this process has ended, without reaping it,
/// and returns its pid; `None` when that failed.
pub(crate) fn wait_any_ended() -> Option<u32> {
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    loop {
        return match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(status) => status.pid().map(|p| p.as_raw().unsigned_abs()),
            Err(Errno::EINTR) => continue,
            Err(_) => None,
        };
    }
}

/// The `(pid, uid, gid)` of the process that connected the Unix stream
/// socket `socket`, as the kernel recorded them at `connect`
/// (`SO_PEERCRED`).
pub(crate) fn peer_credentials(socket: &Socket) -> io::Result<(u32, u32, u32)> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let cred = getsockopt(socket, PeerCredentials)?;
    Ok((
        u32::try_from(cred.pid()).unwrap_or(0),
        cred.uid(),
        cred.gid(),
    ))
}
