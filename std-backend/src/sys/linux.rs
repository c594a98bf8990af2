//! Linux and Android: epoll and an eventfd for waiting, `MSG_TRUNC` for
//! datagram lengths, a signal handler that needs no thread (with a POSIX
//! timer for the drain), `waitid`, and `SO_PEERCRED`.

use std::io;
use std::os::fd::{AsFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libc::MSG_TRUNC;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::Signal;
use nix::unistd::{getppid, Pid};
use socket2::Socket;

use super::signal::{quiesce, register, Registration};
use super::{Ended, Interest, Ready};
use crate::shutdown::Shared;

/// Flags for `send` on stream sockets: a peer that closed its end makes the
/// write fail with `EPIPE` instead of raising `SIGPIPE`.
pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;

/// Makes a server socket's accepts and receives return at once
/// (`O_NONBLOCK`), or block again.
pub(crate) fn set_nonblocking(socket: &Socket, on: bool) -> io::Result<()> {
    socket.set_nonblocking(on)
}

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

/// The poller a message dispatch's workers share: an epoll instance in
/// which every parked connection is registered once, edge-triggered, for
/// as long as it is open, and a level-triggered eventfd that, once
/// written, wakes every worker for good (the dispatch is closing).
///
/// Edge-triggered, an event says that something changed since the last
/// one (bytes arrived, room to write, the peer closed): nothing is re-armed
/// after a turn, which saves an `epoll_ctl` (the instance's lock and a poll
/// of the socket) per message. In exchange the dispatch owns two duties
/// that one-shot registration did for it: an event may come for a
/// connection a worker is serving (the dispatch's per-connection state
/// turns it into "look again" for that worker), and a turn must read until
/// the socket has nothing more ([`DRAIN`](Self::DRAIN)) before it parks the
/// connection, since bytes already there raise no new event.
#[derive(Debug)]
pub(crate) struct Parker {
    epoll: Epoll,
    stop: EventFd,
    wake: EventFd,
}

impl Parker {
    /// The key [`wait`](Self::wait) reports for the stop notification.
    pub(crate) const STOP: u64 = u64::MAX;
    /// The key [`wait`](Self::wait) reports for a [`wake`](Self::wake).
    pub(crate) const WAKE: u64 = u64::MAX - 1;
    /// A turn reads until the socket has nothing more (`EAGAIN`, or a read
    /// shorter than its room) before its connection is parked, unless the
    /// message buffer is full: edge-triggered, bytes that are already there
    /// raise no event.
    pub(crate) const DRAIN: bool = true;

    pub(crate) fn new() -> io::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let flags = EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK;
        let stop = EventFd::from_flags(flags)?;
        epoll.add(
            stop.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, Self::STOP),
        )?;
        // Edge-triggered and never read: each write is one new event, which
        // the first waiter to look takes.
        let wake = EventFd::from_flags(flags)?;
        let edge = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
        epoll.add(wake.as_fd(), EpollEvent::new(edge, Self::WAKE))?;
        Ok(Parker { epoll, stop, wake })
    }

    /// Ends one current or future [`wait`](Self::wait) with
    /// [`WAKE`](Self::WAKE).
    pub(crate) fn wake(&self) -> io::Result<()> {
        match self.wake.write(1) {
            // The counter is full: nobody reads it, so start it again.
            Err(Errno::EAGAIN) => {
                let _ = self.wake.read();
                self.wake.write(1).map(drop).map_err(Into::into)
            }
            other => other.map(drop).map_err(Into::into),
        }
    }

    /// Registers `fd` under `key` for good: an event whenever bytes arrive,
    /// room to write comes back after a write found none, or the peer
    /// closes. The registration reports at once what is already the case
    /// (a new socket is writable), so the first turn comes without waiting.
    pub(crate) fn add(&self, fd: impl AsFd, key: u64) -> io::Result<()> {
        let flags = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLOUT
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLET;
        Ok(self.epoll.add(fd, EpollEvent::new(flags, key))?)
    }

    /// Parks `fd` after its turn (read until nothing more, see
    /// [`DRAIN`](Self::DRAIN)) until it needs another for `interest`. `idle`
    /// marks the connection idle, so that the next event starts a turn; it
    /// says `false` when an event came during this turn, which the caller
    /// must then not lose. `Ok(true)`: the caller keeps the connection and
    /// queues it for another turn now (behind the connections already
    /// ready); `Ok(false)`: it is parked. Registered edge-triggered for
    /// good, so no system call, except a look at whether the socket can
    /// take more of an unfinished reply (`poll`, which also asks the kernel
    /// for the event that comes when it can).
    pub(crate) fn park(
        &self,
        fd: impl AsFd,
        _key: u64,
        interest: Interest,
        idle: impl FnOnce() -> bool,
    ) -> io::Result<bool> {
        match interest {
            Interest::Read => Ok(!idle()),
            Interest::Again => Ok(true),
            Interest::Write => {
                use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
                let ready = match poll(&mut fds, PollTimeout::ZERO) {
                    Ok(n) => n > 0,
                    Err(Errno::EINTR) => true,
                    Err(err) => return Err(err.into()),
                };
                Ok(ready || !idle())
            }
        }
    }

    /// Stops watching `fd`; call before closing it.
    pub(crate) fn delete(&self, fd: impl AsFd) -> io::Result<()> {
        Ok(self.epoll.delete(fd)?)
    }

    /// Waits at most `timeout` (`None`: for ever) for events, and stores
    /// them in `ready`; how many. An interrupting signal returns 0.
    pub(crate) fn wait(&self, ready: &mut [Ready], timeout: Option<Duration>) -> io::Result<usize> {
        let timeout = match timeout {
            None => EpollTimeout::NONE,
            Some(t) => {
                let ms = t.as_nanos().div_ceil(1_000_000);
                EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
            }
        };
        let mut events = [EpollEvent::empty(); 32];
        let max = ready.len().min(events.len());
        let n = match self.epoll.wait(&mut events[..max], timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(err) => return Err(err.into()),
        };
        let closed = EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
        for (ready, event) in ready.iter_mut().zip(&events[..n]) {
            *ready = Ready {
                key: event.data(),
                closed: event.events().intersects(closed),
            };
        }
        Ok(n)
    }

    /// Wakes every current and future [`wait`](Self::wait) with
    /// [`STOP`](Self::STOP): the eventfd is never read, so it stays ready.
    pub(crate) fn stop(&self) -> io::Result<()> {
        match self.stop.write(1) {
            Err(Errno::EAGAIN) => Ok(()),
            other => other.map(drop).map_err(Into::into),
        }
    }
}

/// `recvfrom` returns a datagram's full length when asked with `MSG_TRUNC`
/// (UDP and Unix datagram sockets alike), so truncation is known without
/// `recvmsg` and its message header, which the kernel would copy in and out
/// for every datagram.
#[path = "msg_trunc.rs"]
mod msg_trunc;
pub(crate) use msg_trunc::recv_datagram;

/// Turns `SIGINT` and `SIGTERM` into shutdown requests of `shared` while
/// it lives ([`ShutdownHandle::stop_on_signals`](crate::ShutdownHandle::stop_on_signals)),
/// and bounds the drain that follows.
///
/// The signal handler itself requests the shutdown and arms the drain's
/// timer, so no thread is started: a synchronous server stays a
/// single-threaded process, whose system calls take the kernel's and the C
/// library's single-threaded shortcuts. That also makes the drain work
/// when that only thread is blocked in a handler: the timer's expiry
/// interrupts it, and the handler cuts the connection it waits on.
#[derive(Debug)]
pub(crate) struct SignalWatch {
    // Dropped (in `drop`) before `watched`: once it is gone, no handler
    // uses `watched` any more.
    registration: Option<Registration>,
    watched: Box<Watched>,
}

impl SignalWatch {
    pub(crate) fn start(shared: &Arc<Shared>) -> io::Result<Self> {
        let mut watched = Box::new(Watched {
            shared: Arc::clone(shared),
            timer: None,
            closing: AtomicBool::new(false),
            armed: AtomicBool::new(false),
            expired: AtomicBool::new(false),
        });
        // Marked with the box's address, which no other watch has.
        watched.timer = Some(DrainTimer::new(std::ptr::from_ref(&*watched))?);
        Ok(SignalWatch {
            registration: Some(register(&watched)?),
            watched,
        })
    }
}

/// How long dropping a guard waits for the `SIGTERM` of a drain timer that
/// has just fired to reach the handler (it is pending, so it does at once
/// unless every thread blocks `SIGTERM`).
const EXPIRY_WAIT: Duration = Duration::from_secs(1);

impl Drop for SignalWatch {
    fn drop(&mut self) {
        let watched = &self.watched;
        // No handler arms the timer after this, and none is still arming.
        watched.closing.store(true, SeqCst);
        quiesce();
        // A timer that fired has sent a `SIGTERM` that must still find the
        // handler, not the disposition the registration is about to put
        // back (the default one would kill the process).
        let pending = watched.timer.as_ref().is_some_and(DrainTimer::disarm);
        if !pending && watched.armed.load(SeqCst) {
            let deadline = Instant::now() + EXPIRY_WAIT;
            while !watched.expired.load(SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        drop(self.registration.take());
    }
}

/// What the stop-signal handler wakes: a server's shutdown state, and the
/// timer of its drain.
#[derive(Debug)]
pub(super) struct Watched {
    shared: Arc<Shared>,
    /// Set once, before the watch is registered.
    timer: Option<DrainTimer>,
    /// The guard is being dropped: the timer is no longer armed.
    closing: AtomicBool,
    /// The handler armed the timer.
    armed: AtomicBool,
    /// The handler received the timer's expiry.
    expired: AtomicBool,
}

/// What the stop-signal handler wakes.
pub(super) type Target = Watched;

/// Requests the shutdown from the signal handler, and arms the drain's
/// timer. `Shared::request` stores to an atomic and writes 8 bytes to an
/// eventfd with write(2); the timer is armed with timer_settime(2). POSIX
/// lists both as async-signal-safe; nothing is allocated and no lock taken.
pub(super) fn deliver(watched: &Watched) {
    watched.shared.request();
    let bound = watched.shared.drain_timeout();
    if let (Some(bound), Some(timer)) = (bound, &watched.timer) {
        // Counted in `RUNNING` before this load: a guard being dropped
        // either sees this handler finish arming, or this sees `closing`.
        if !watched.closing.load(SeqCst) {
            watched.armed.store(true, SeqCst);
            timer.arm(bound);
        }
    }
}

/// Whether the signal described by `info` is the expiry of `watched`'s
/// drain timer, and if so cuts its server's connections (`shutdown(2)`,
/// async-signal-safe) and says so.
pub(super) fn expire(info: *const libc::siginfo_t, watched: &Watched) -> bool {
    // SAFETY: the kernel hands an `SA_SIGINFO` handler a valid `siginfo_t`
    // (or a chaining handler passes on its own); null is checked.
    let Some(info) = (unsafe { info.as_ref() }) else {
        return false;
    };
    if info.si_code != libc::SI_TIMER {
        return false;
    }
    // SAFETY: with `SI_TIMER` the kernel filled in the timer's fields, of
    // which `si_value` is the one its `sigevent` carried.
    let mark = unsafe { info.si_value() }.sival_ptr;
    if mark.cast_const() != std::ptr::from_ref(watched).cast() {
        return false;
    }
    watched.expired.store(true, SeqCst);
    watched.shared.conns.cut_slots();
    true
}

/// A one-shot POSIX timer whose expiry sends this process `SIGTERM`, with
/// a mark (its watch's address) in `si_value` to tell it from a real one.
#[derive(Debug)]
struct DrainTimer(libc::timer_t);

// SAFETY: a `timer_t` only names a timer of the process, which any thread
// may set or delete; the C library keeps no per-thread state for
// `SIGEV_SIGNAL` timers.
unsafe impl Send for DrainTimer {}
// SAFETY: as above; `timer_settime` and `timer_delete` may run concurrently.
unsafe impl Sync for DrainTimer {}

impl DrainTimer {
    fn new(mark: *const Watched) -> io::Result<Self> {
        // SAFETY: `sigevent` is a plain C struct, for which zero is valid.
        let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_SIGNAL;
        event.sigev_signo = libc::SIGTERM;
        event.sigev_value = libc::sigval {
            sival_ptr: mark.cast_mut().cast(),
        };
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: both pointers are valid for the call, which copies
        // `event` and writes the new timer's id to `id`. With
        // `SIGEV_SIGNAL` no thread is started.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut id) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(DrainTimer(id))
    }

    /// Fires once, `after` from now. Async-signal-safe.
    fn arm(&self, after: Duration) {
        // A zero time would disarm it.
        let after = after.max(Duration::from_nanos(1));
        let mut spec = zero_spec();
        spec.it_value.tv_sec = libc::time_t::try_from(after.as_secs()).unwrap_or(libc::time_t::MAX);
        spec.it_value.tv_nsec = after.subsec_nanos().into();
        // SAFETY: `self.0` is a live timer (deleted only on drop) and `spec`
        // a valid `itimerspec`; no old value is asked for.
        unsafe { libc::timer_settime(self.0, 0, &spec, std::ptr::null_mut()) };
    }

    /// Disarms it; whether it was armed and had not fired.
    fn disarm(&self) -> bool {
        let mut old = zero_spec();
        // SAFETY: as in `arm`; `old` receives the time that was left.
        let rc = unsafe { libc::timer_settime(self.0, 0, &zero_spec(), &mut old) };
        rc == 0 && (old.it_value.tv_sec != 0 || old.it_value.tv_nsec != 0)
    }
}

impl Drop for DrainTimer {
    fn drop(&mut self) {
        // SAFETY: the timer is live and deleted once, here.
        unsafe { libc::timer_delete(self.0) };
    }
}

fn zero_spec() -> libc::itimerspec {
    // SAFETY: `itimerspec` is a plain C struct; zero is a disarmed timer.
    unsafe { std::mem::zeroed() }
}

/// `fcntl`'s command to choose the signal for `O_ASYNC` (Linux's
/// `<asm-generic/fcntl.h>`; the `libc` crate does not name it).
const F_SETSIG: libc::c_int = 10;

/// Makes this forked child end when its parent *process* does, whichever
/// of its threads forked it: `alive` is the read end of its lifeline pipe,
/// whose write end only the parent holds (see `Lifeline`). Asked with
/// `O_ASYNC` and `F_SETSIG`, the kernel sends the child `SIGKILL` as soon
/// as the last write end closes, which it does itself when the parent
/// exits or is killed. (`PR_SET_PDEATHSIG` would fire when the forking
/// *thread* ends, prctl(2): a server serving from a thread that returns
/// before its children are done would lose them.)
pub(super) fn end_with_parent(parent: Pid, alive: OwnedFd) {
    let fd = alive.into_raw_fd();
    // SAFETY: fcntl(2) on `fd`, the pipe's read end that this child owns
    // (and keeps open for its life, as `into_raw_fd` leaves it), with
    // integer arguments only: the owner to signal (this process), the
    // signal, and the status flags (`O_ASYNC`; the access mode is ignored).
    let armed = unsafe {
        libc::fcntl(fd, libc::F_SETOWN, libc::getpid()) == 0
            && libc::fcntl(fd, F_SETSIG, libc::SIGKILL) == 0
            && libc::fcntl(fd, libc::F_SETFL, libc::O_ASYNC) == 0
    };
    if !armed {
        // Refused (a sandbox): the thread-bound signal is better than none.
        let _ = set_pdeathsig(Signal::SIGKILL);
    }
    // The kernel only signals a change: a parent that died before the
    // child was armed has closed its end already.
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid `pollfd`, a zero timeout.
    let polled = unsafe { libc::poll(&mut poll, 1, 0) };
    if (polled > 0 && poll.revents & libc::POLLHUP != 0) || getppid() != parent {
        super::exit_child(1);
    }
}

/// A child of this process that has ended, not reaped (it stays a zombie
/// for whoever owns it). Does not block.
pub(crate) fn ended_child() -> Ended {
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG;
    loop {
        return match waitid(Id::All, flags) {
            Ok(status) => status
                .pid()
                .map_or(Ended::NoneYet, |p| Ended::Child(p.as_raw().unsigned_abs())),
            Err(Errno::EINTR) => continue,
            Err(_) => Ended::Unknown,
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

/// Whether any socket of this network namespace is bound to the socket
/// file `file` (its metadata), whatever process holds it, bound and not
/// yet listening included: the kernel's own table, through `sock_diag`
/// (`NETLINK_SOCK_DIAG`, `UDIAG_SHOW_VFS`), or where that is not offered
/// (no `unix_diag` module) the paths of `/proc/net/unix`. `None` when
/// neither can be read.
pub(crate) fn unix_socket_bound_to(
    path: &std::path::Path,
    file: &std::fs::Metadata,
) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    // The kernel reports the inode truncated to 32 bits, and the device in
    // its own encoding (major << 20 | minor), not `stat`'s.
    let (major, minor) = (
        libc::major(file.dev()) as u64,
        libc::minor(file.dev()) as u64,
    );
    let ino = file.ino() as u32;
    match unix_diag::bound_inodes() {
        Ok(found) => Some(found.iter().any(|&(dev, bound)| {
            bound == ino && u64::from(dev >> 20) == major && u64::from(dev & 0xf_ffff) == minor
        })),
        Err(_) => unix_diag::proc_net_unix_has(path),
    }
}

/// The kernel's list of bound Unix sockets, as `sock_diag` reports it.
mod unix_diag {
    use std::io::{self, Read};
    use std::path::Path;
    use std::time::Duration;

    use socket2::{Domain, Protocol, Socket, Type};

    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_DUMP: u16 = 0x300;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const UDIAG_SHOW_VFS: u32 = 2;
    const UNIX_DIAG_VFS: u16 = 1;
    /// `struct nlmsghdr`, then `struct unix_diag_msg`.
    const HEADER: usize = 16;
    const DIAG_MSG: usize = 16;
    /// Bounds the dump: more messages than any table holds means a loop.
    const MAX_MESSAGES: usize = 1 << 22;

    /// `(device, inode)` of the file of every Unix socket bound to one,
    /// the device in the kernel's encoding (major << 20 | minor).
    pub(super) fn bound_inodes() -> io::Result<Vec<(u32, u32)>> {
        let socket = Socket::new(
            Domain::from(libc::AF_NETLINK),
            Type::DGRAM,
            Some(Protocol::from(libc::NETLINK_SOCK_DIAG)),
        )?;
        // The kernel answers at once; never hang a bind on it.
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        socket.send(&request())?;
        let mut found = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        let mut seen = 0;
        loop {
            let len = (&socket).read(&mut buf)?;
            if len == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let mut rest = &buf[..len];
            while rest.len() >= HEADER {
                let msg_len = u32_at(rest, 0) as usize;
                let kind = u16_at(rest, 4);
                if msg_len < HEADER || msg_len > rest.len() {
                    return Err(io::ErrorKind::InvalidData.into());
                }
                match kind {
                    NLMSG_DONE => return Ok(found),
                    NLMSG_ERROR => {
                        let code = i32::from_ne_bytes(
                            rest[HEADER..HEADER + 4].try_into().unwrap_or_default(),
                        );
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    _ => found.extend(vfs_of(&rest[HEADER..msg_len])),
                }
                seen += 1;
                if seen > MAX_MESSAGES {
                    return Err(io::ErrorKind::InvalidData.into());
                }
                rest = &rest[align(msg_len).min(rest.len())..];
            }
        }
    }

    /// `nlmsghdr` + `unix_diag_req`: every state, with the file's inode.
    fn request() -> Vec<u8> {
        let mut req = Vec::with_capacity(40);
        req.extend_from_slice(&40u32.to_ne_bytes());
        req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req.extend_from_slice(&[0; 8]); // sequence number, port id
        req.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]); // family, protocol, pad
        req.extend_from_slice(&u32::MAX.to_ne_bytes()); // states
        req.extend_from_slice(&0u32.to_ne_bytes()); // inode: any
        req.extend_from_slice(&UDIAG_SHOW_VFS.to_ne_bytes());
        req.extend_from_slice(&[0; 8]); // cookie: none
        req
    }

    /// The `UNIX_DIAG_VFS` attribute of one `unix_diag_msg`, if it has one
    /// (only sockets bound to a file do).
    fn vfs_of(msg: &[u8]) -> Option<(u32, u32)> {
        let mut attrs = msg.get(DIAG_MSG..)?;
        while attrs.len() >= 4 {
            let len = usize::from(u16_at(attrs, 0));
            if len < 4 || len > attrs.len() {
                return None;
            }
            if u16_at(attrs, 2) == UNIX_DIAG_VFS && len >= 12 {
                return Some((u32_at(attrs, 8), u32_at(attrs, 4)));
            }
            attrs = &attrs[align(len).min(attrs.len())..];
        }
        None
    }

    fn align(len: usize) -> usize {
        (len + 3) & !3
    }

    fn u16_at(buf: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([buf[at], buf[at + 1]])
    }

    fn u32_at(buf: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
    }

    /// Whether `/proc/net/unix` lists a socket bound to `path` (as given,
    /// or made absolute): the fallback, which cannot see a socket bound
    /// through another relative path.
    pub(super) fn proc_net_unix_has(path: &Path) -> Option<bool> {
        let table = std::fs::read_to_string("/proc/net/unix").ok()?;
        let absolute = std::path::absolute(path).ok();
        Some(table.lines().skip(1).any(|line| {
            // Num RefCount Protocol Flags Type St Inode Path
            line.split_whitespace().nth(7).is_some_and(|bound| {
                Path::new(bound) == path || absolute.as_deref() == Some(Path::new(bound))
            })
        }))
    }
}
