//! macOS and the BSDs: the `polling` crate for waiting, `recvmsg` for
//! datagram lengths, a thread that turns signals into shutdown requests
//! and times the drain, and `getpeereid`.

use std::io;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use polling::{Event, Events, PollMode, Poller};
use socket2::{SockAddr, Socket};

use super::signal::{register, Registration};
use super::{as_uninit, Ended};
use crate::shutdown::Shared;

/// Flags for `send` on stream sockets: a peer that closed its end makes the
/// write fail with `EPIPE` instead of raising `SIGPIPE`. Apple systems get
/// `SO_NOSIGPIPE` in [`prepare_stream`] instead.
pub(crate) const SEND_FLAGS: libc::c_int = if cfg!(target_vendor = "apple") {
    0
} else {
    libc::MSG_NOSIGNAL
};

/// Makes a server socket's accepts and receives return at once
/// (`O_NONBLOCK`), or block again.
pub(crate) fn set_nonblocking(socket: &Socket, on: bool) -> io::Result<()> {
    socket.set_nonblocking(on)
}

/// Prepares an accepted stream socket: blocking (these systems may pass
/// `O_NONBLOCK` on from the listener) and, on Apple systems,
/// `SO_NOSIGPIPE`.
pub(crate) fn prepare_stream(socket: &Socket) -> io::Result<()> {
    socket.set_nonblocking(false)?;
    #[cfg(target_vendor = "apple")]
    socket.set_nosigpipe(true)?;
    Ok(())
}

/// The socket's mode does not carry over to its file here: the file gets
/// the umask's mode at `bind` and `mode` by the `chmod` right after.
pub(crate) fn mode_before_bind(_socket: &Socket, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Waits until one socket is readable, a timeout passes, or another thread
/// calls [`notify`](Self::notify): the server loop's `select`, over the
/// `polling` crate (kqueue).
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

    /// Starts watching `fd` for readability.
    pub(crate) fn add(&self, fd: impl AsFd) -> io::Result<()> {
        // SAFETY: every transport deletes its socket from the waiter before
        // closing it (`Endpoint::close`, which `Drop` also runs), so the
        // poller never holds a descriptor number that was closed and
        // possibly reused.
        unsafe {
            self.poller.add_with_mode(
                fd.as_fd().as_raw_fd(),
                Event::readable(SOCKET),
                PollMode::Level,
            )
        }
    }

    /// Watches `fd` for readability again (`true`) or not (`false`) while
    /// it stays registered.
    pub(crate) fn watch(&self, fd: impl AsFd, readable: bool) -> io::Result<()> {
        let event = if readable {
            Event::readable(SOCKET)
        } else {
            Event::none(SOCKET)
        };
        self.poller.modify_with_mode(fd, event, PollMode::Level)
    }

    /// Stops watching `fd`; call before closing it.
    pub(crate) fn delete(&self, fd: impl AsFd) -> io::Result<()> {
        self.poller.delete(fd)
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
/// reaches one worker. `polling` lets one thread wait at a time, so the
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

    /// Parks `fd` under `key`: one event when it becomes readable.
    pub(crate) fn add(&self, fd: impl AsFd, key: u64) -> io::Result<()> {
        // SAFETY: the dispatch deletes every parked connection from the
        // poller before it closes it (`Parker::delete` comes before the
        // session is closed), so the poller never holds a descriptor number
        // that was closed and possibly reused.
        unsafe {
            self.poller.add_with_mode(
                fd.as_fd().as_raw_fd(),
                Self::event(key, true, false),
                PollMode::Oneshot,
            )
        }
    }

    /// Parks `fd` again after its turn, for one event when it is
    /// `readable` or `writable` (see the Linux twin).
    pub(crate) fn rearm(
        &self,
        fd: impl AsFd,
        key: u64,
        readable: bool,
        writable: bool,
    ) -> io::Result<()> {
        let event = Self::event(key, readable, writable);
        self.poller.modify_with_mode(fd, event, PollMode::Oneshot)
    }

    /// Stops watching `fd`; call before closing it.
    pub(crate) fn delete(&self, fd: impl AsFd) -> io::Result<()> {
        self.poller.delete(fd)
    }

    /// Waits at most `timeout` (`None`: for ever) for one event, as leader;
    /// stores its key in `keys`; how many (0 or 1).
    pub(crate) fn wait(&self, keys: &mut [u64], timeout: Option<Duration>) -> io::Result<usize> {
        if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
            keys[0] = Self::STOP;
            return Ok(1);
        }
        let mut events = self.leader.lock().unwrap_or_else(PoisonError::into_inner);
        events.clear();
        self.poller.wait(&mut events, timeout)?;
        if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
            keys[0] = Self::STOP;
            return Ok(1);
        }
        let mut n = 0;
        for (key, event) in keys.iter_mut().zip(events.iter()) {
            *key = event.key as u64;
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
/// was longer than `buf` (`MSG_TRUNC` from `recvmsg`), and its sender (as
/// `sender` converts it).
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

/// Turns `SIGINT` and `SIGTERM` into shutdown requests of `shared` while
/// it lives ([`ShutdownHandle::stop_on_signals`](crate::ShutdownHandle::stop_on_signals)).
///
/// The signal handler writes a byte to a socket, and a thread reading the
/// other end makes the request, because the waiter's wake-up is not known
/// to be async-signal-safe here.
#[derive(Debug)]
pub(crate) struct SignalWatch {
    registration: Option<Registration>,
    wake: Option<Box<OwnedFd>>,
    watcher: Option<JoinHandle<()>>,
}

impl SignalWatch {
    pub(crate) fn start(shared: &Arc<Shared>) -> io::Result<Self> {
        let (mut woken, wake) = UnixStream::pair()?;
        // The handler must never block on a full socket.
        wake.set_nonblocking(true)?;
        let wake = Box::new(OwnedFd::from(wake));
        let registration = register(&wake)?;
        let shared = Arc::clone(shared);
        let watcher = std::thread::spawn(move || watch(&mut woken, &shared));
        Ok(SignalWatch {
            registration: Some(registration),
            wake: Some(wake),
            watcher: Some(watcher),
        })
    }
}

/// The watcher thread: requests the shutdown for each wake-up byte, and
/// times the drain that follows (cutting the connections still served when
/// it runs out). Returns when the guard closes the other end.
fn watch(woken: &mut UnixStream, shared: &Shared) {
    let mut byte = [0u8; 1];
    let mut deadline: Option<Instant> = None;
    loop {
        let left = deadline.map(|at| at.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            shared.conns.cut_all();
            deadline = None;
            continue;
        }
        if woken.set_read_timeout(left).is_err() {
            return;
        }
        match woken.read(&mut byte) {
            // The write end is closed: the watch is over.
            Ok(0) => return,
            Ok(_) => {
                shared.request();
                let bound = shared.drain_timeout();
                deadline = deadline.or_else(|| bound.map(|b| Instant::now() + b));
            }
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        // In this order: no handler writes to `wake` once the registration
        // is gone, and closing `wake` ends the watcher.
        drop(self.registration.take());
        drop(self.wake.take());
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
    }
}

/// What the stop-signal handler wakes: the write end of a watcher's socket.
pub(super) type Target = OwnedFd;

/// Wakes the watcher from the signal handler: one write(2), which POSIX
/// lists as async-signal-safe. A full socket already holds a wake-up.
pub(super) fn deliver(wake: &OwnedFd) {
    let _ = nix::unistd::write(wake, &[1]);
}

/// No drain timer sends signals here (the watcher thread keeps the time).
pub(super) fn expire(_info: *const libc::siginfo_t, _wake: &OwnedFd) -> bool {
    false
}

/// Makes this forked child end when its parent process does, where the
/// system can: FreeBSD sends it `SIGKILL` then (`PROC_PDEATHSIG_CTL`).
/// macOS and the other BSDs have no such signal: there a child whose
/// parent was killed finishes its request first (see `ForkingDispatch`).
pub(super) fn end_with_parent(parent: Pid) {
    #[cfg(target_os = "freebsd")]
    {
        let mut signal = libc::SIGKILL;
        // SAFETY: `PROC_PDEATHSIG_CTL` on this process (`P_PID`, 0) reads
        // one `c_int`, the signal, from `data`, which points to a live one.
        // A refusal leaves the child unguarded, as on other systems.
        unsafe {
            libc::procctl(
                libc::P_PID,
                0,
                libc::PROC_PDEATHSIG_CTL,
                std::ptr::from_mut(&mut signal).cast(),
            );
        }
        if nix::unistd::getppid() != parent {
            // The parent died before the signal was asked for.
            super::exit_child(1);
        }
    }
    #[cfg(not(target_os = "freebsd"))]
    let _ = parent;
}

/// A child of this process that has ended, not reaped (it stays a zombie
/// for whoever owns it); [`Ended::Unknown`] where this cannot be asked
/// (FreeBSD has `waitid`, the others do not). Does not block.
pub(crate) fn ended_child() -> Ended {
    #[cfg(target_os = "freebsd")]
    {
        use nix::sys::wait::{waitid, Id, WaitPidFlag};
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG;
        loop {
            return match waitid(Id::All, flags) {
                Ok(status) => status
                    .pid()
                    .map_or(Ended::NoneYet, |p| Ended::Child(p.as_raw().unsigned_abs())),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => Ended::Unknown,
            };
        }
    }
    #[cfg(not(target_os = "freebsd"))]
    Ended::Unknown
}

/// The `(pid, uid, gid)` of the process that connected the Unix stream
/// socket `socket` (`getpeereid`): its effective ids as the kernel
/// recorded them at `connect`. The pid is not available here and is 0.
pub(crate) fn peer_credentials(socket: &Socket) -> io::Result<(u32, u32, u32)> {
    let (uid, gid) = nix::unistd::getpeereid(socket)?;
    Ok((0, uid.as_raw(), gid.as_raw()))
}

/// Whether any socket is bound to the socket file `file`. These systems
/// offer no portable way to ask: `None`, and the caller keeps to what a
/// connection attempt and its lock file say.
pub(crate) fn unix_socket_bound_to(
    _path: &std::path::Path,
    _file: &std::fs::Metadata,
) -> Option<bool> {
    None
}
