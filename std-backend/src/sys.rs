//! Every `unsafe` and platform difference of the backend.

use std::io;
use std::mem::MaybeUninit;

use socket2::{SockAddr, Socket};

use crate::shutdown::Shared;

/// Flags for `send` on stream sockets: a peer that closed its end makes the
/// write fail with `EPIPE` instead of raising `SIGPIPE` (Apple systems have
/// no such flag and get `SO_NOSIGPIPE` in [`prepare_stream`] instead).
#[cfg(not(target_vendor = "apple"))]
pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(target_vendor = "apple")]
pub(crate) const SEND_FLAGS: libc::c_int = 0;

/// Prepares an accepted stream socket: blocking (some systems pass
/// `O_NONBLOCK` on from the listener; Linux never does, which saves a
/// system call per connection) and, where `MSG_NOSIGNAL` is missing,
/// `SO_NOSIGPIPE`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn prepare_stream(_socket: &Socket) -> io::Result<()> {
    Ok(())
}

/// See the Linux twin above.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn prepare_stream(socket: &Socket) -> io::Result<()> {
    socket.set_nonblocking(false)?;
    #[cfg(target_vendor = "apple")]
    socket.set_nosigpipe(true)?;
    Ok(())
}

/// Gives a Unix socket the permission bits its file is to have, before it
/// is bound. Linux creates the file with the socket's own mode (less the
/// umask), so the file never allows more than `mode`, not even for the
/// moment between `bind` and the `chmod` after it.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn mode_before_bind(socket: &Socket, mode: u32) -> io::Result<()> {
    use nix::sys::stat::{fchmod, Mode};
    Ok(fchmod(
        socket,
        Mode::from_bits_truncate(mode as libc::mode_t),
    )?)
}

/// Elsewhere the socket's mode does not carry over to its file: the file
/// gets the umask's mode at `bind` and `mode` by the `chmod` right after.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn mode_before_bind(_socket: &Socket, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Whether `err` says the process or the system ran out of descriptors or
/// buffer memory: accepting again at once would fail the same way.
pub(crate) fn is_resource_exhaustion(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Whether an accept failed only because the pending connection went away
/// (or was never there): the server should simply wait again.
pub(crate) fn is_transient_accept_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) || err.raw_os_error() == Some(libc::EPROTO)
}

/// Waits until one socket is readable, a timeout passes, or another thread
/// calls [`notify`](Self::notify): the server loop's `select`.
///
/// On Linux it is an epoll instance with the socket and an eventfd in it,
/// both level-triggered, so a wait is one `epoll_wait` (and a notification
/// one `read` more). Elsewhere it is the `polling` crate.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[derive(Debug)]
pub(crate) struct Waiter {
    epoll: nix::sys::epoll::Epoll,
    wake: nix::sys::eventfd::EventFd,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod waiter {
    use std::io;
    use std::os::fd::AsFd;
    use std::time::Duration;

    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
    use nix::sys::eventfd::{EfdFlags, EventFd};

    use super::Waiter;

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

        /// Watches `fd` for readability again (`true`) or not (`false`)
        /// while it stays registered.
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

        /// Waits at most `timeout` (rounded up to a millisecond; `None`
        /// waits for ever) and says whether the socket is readable. A
        /// notification or an interrupting signal ends the wait early.
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
                Err(nix::errno::Errno::EINTR) => 0,
                Err(err) => return Err(err.into()),
            };
            let mut readable = false;
            for event in &events[..n] {
                if event.data() == SOCKET {
                    readable = true;
                } else {
                    // Level-triggered: drain it or every wait returns at
                    // once. EAGAIN means another wait drained it.
                    let _ = self.wake.read();
                }
            }
            Ok(readable)
        }

        /// Ends the current or the next [`wait`](Self::wait) at once.
        pub(crate) fn notify(&self) -> io::Result<()> {
            match self.wake.write(1) {
                // The counter is full: a wake-up is pending anyway.
                Err(nix::errno::Errno::EAGAIN) => Ok(()),
                other => other.map(drop).map_err(Into::into),
            }
        }
    }
}

/// See the Linux twin above.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[derive(Debug)]
pub(crate) struct Waiter {
    poller: polling::Poller,
    events: std::sync::Mutex<polling::Events>,
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod waiter {
    use std::io;
    use std::os::fd::{AsFd, AsRawFd};
    use std::sync::{Mutex, PoisonError};
    use std::time::Duration;

    use polling::{Event, Events, PollMode, Poller};

    use super::Waiter;

    const SOCKET: usize = 0;

    impl Waiter {
        pub(crate) fn new() -> io::Result<Self> {
            Ok(Waiter {
                poller: Poller::new()?,
                events: Mutex::new(Events::new()),
            })
        }

        pub(crate) fn add(&self, fd: impl AsFd) -> io::Result<()> {
            // SAFETY: every transport deletes its socket from the waiter
            // before closing it (`Endpoint::close`, which `Drop` also runs),
            // so the poller never holds a descriptor number that was closed
            // and possibly reused.
            unsafe {
                self.poller.add_with_mode(
                    fd.as_fd().as_raw_fd(),
                    Event::readable(SOCKET),
                    PollMode::Level,
                )
            }
        }

        pub(crate) fn watch(&self, fd: impl AsFd, readable: bool) -> io::Result<()> {
            let event = if readable {
                Event::readable(SOCKET)
            } else {
                Event::none(SOCKET)
            };
            self.poller.modify_with_mode(fd, event, PollMode::Level)
        }

        pub(crate) fn delete(&self, fd: impl AsFd) -> io::Result<()> {
            self.poller.delete(fd)
        }

        pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
            let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
            events.clear();
            self.poller.wait(&mut events, timeout)?;
            let readable = events.iter().any(|e| e.key == SOCKET && e.readable);
            Ok(readable)
        }

        pub(crate) fn notify(&self) -> io::Result<()> {
            self.poller.notify()
        }
    }
}

/// Receives one datagram into `buf`: the bytes kept, whether the datagram
/// was longer than `buf`, and its sender (as `sender` converts it).
///
/// Linux's `recvfrom` returns a datagram's full length when asked with
/// `MSG_TRUNC` (UDP and Unix datagram sockets alike), so truncation is
/// known without `recvmsg` and its message header, which the kernel would
/// copy in and out for every datagram. Elsewhere `recvmsg` reports it.
#[inline]
pub(crate) fn recv_datagram<A>(
    socket: &Socket,
    buf: &mut [u8],
    sender: impl FnOnce(&SockAddr) -> A,
) -> io::Result<(usize, bool, A)> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let capacity = buf.len();
        let (len, addr) = socket.recv_from_with_flags(as_uninit(buf), libc::MSG_TRUNC)?;
        Ok((len.min(capacity), len > capacity, sender(&addr)))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let mut bufs = [socket2::MaybeUninitSlice::new(as_uninit(buf))];
        let (len, flags, addr) = socket.recv_from_vectored(&mut bufs)?;
        Ok((len, flags.is_truncated(), sender(&addr)))
    }
}

/// Views an initialized buffer as possibly-uninitialized bytes, the type
/// socket2's receive calls take.
pub(crate) fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the only writer
    // of the returned slice is the kernel (through socket2), which stores
    // initialized bytes; so `buf` stays fully initialized.
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

/// Turns `SIGINT` and `SIGTERM` into shutdown requests of `shared` while
/// it lives ([`ShutdownHandle::stop_on_signals`](crate::ShutdownHandle::stop_on_signals)).
///
/// On Linux the signal handler itself requests the shutdown, so no thread
/// is started: a synchronous server stays a single-threaded process, whose
/// system calls take the kernel's and the C library's single-threaded
/// shortcuts. Elsewhere a thread waits for the signals, because `polling`'s
/// wake-up is not known to be async-signal-safe.
#[derive(Debug)]
pub(crate) struct SignalWatch {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ids: Vec<signal_hook::SigId>,
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    handle: signal_hook::iterator::Handle,
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    watcher: Option<std::thread::JoinHandle<()>>,
}

/// The signals [`SignalWatch`] turns into shutdown requests.
const STOP_SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

#[cfg(any(target_os = "linux", target_os = "android"))]
impl SignalWatch {
    pub(crate) fn start(shared: &std::sync::Arc<Shared>) -> io::Result<Self> {
        let mut watch = SignalWatch { ids: Vec::new() };
        for signal in STOP_SIGNALS {
            let shared = std::sync::Arc::clone(shared);
            // SAFETY: `register` requires an async-signal-safe action.
            // `Shared::request` stores to an atomic and writes 8 bytes to
            // an eventfd with write(2), which POSIX lists as
            // async-signal-safe; it allocates nothing and takes no lock, and
            // a failure only yields an errno value (signal-hook restores
            // errno after its handler). The closure, with its `Arc`, is
            // dropped by `unregister` only once no handler runs it.
            let id = unsafe { signal_hook::low_level::register(signal, move || shared.request()) }?;
            // If the next registration fails, dropping `watch` removes this.
            watch.ids.push(id);
        }
        Ok(watch)
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Drop for SignalWatch {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl SignalWatch {
    pub(crate) fn start(shared: &std::sync::Arc<Shared>) -> io::Result<Self> {
        let mut signals = signal_hook::iterator::Signals::new(STOP_SIGNALS)?;
        let handle = signals.handle();
        let shared = std::sync::Arc::clone(shared);
        let watcher = std::thread::spawn(move || {
            for _ in signals.forever() {
                shared.request();
            }
        });
        Ok(SignalWatch {
            handle,
            watcher: Some(watcher),
        })
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl Drop for SignalWatch {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
    }
}

/// Which side of a [`fork`] this is.
pub(crate) enum Forked {
    /// The parent, with the child's process id.
    Parent(u32),
    /// The new process.
    Child,
}

/// Forks the process for one request (Python's `os.fork()` in
/// `ForkingMixIn`).
///
/// In the child, `SIGINT` and `SIGTERM` go back to their default action
/// when the parent had handlers for them: a handler installed through
/// [`stop_on_signals`](crate::ShutdownHandle::stop_on_signals) would
/// otherwise wake the *parent's* loop through the descriptor both share
/// (the waiter's eventfd, or the watcher thread's pipe).
pub(crate) fn fork() -> io::Result<Forked> {
    // SAFETY: `fork` itself cannot break memory safety here: the child gets
    // a copy of this thread's memory, and the caller never lets it return
    // into the parent's loop (it ends with `exit_child`). What nix's
    // contract warns about is a multi-threaded parent whose other threads
    // held a lock at the fork: the child may then block on it. Glibc's
    // allocator and std's own locks are reset or only taken by this thread;
    // the hazard left (a lock of the program's own) is documented on
    // `ForkingDispatch`, as it is for Python's `ForkingMixIn`.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => {
            Ok(Forked::Parent(child.as_raw().unsigned_abs()))
        }
        nix::unistd::ForkResult::Child => {
            default_stop_signals();
            Ok(Forked::Child)
        }
    }
}

fn default_stop_signals() {
    for signal in STOP_SIGNALS {
        // SAFETY: `sigaction` with a null new action only reads the
        // current disposition into `old`, a zeroed plain C struct; `signal`
        // installs the default action, which needs no handler code.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction != libc::SIG_DFL
                && old.sa_sigaction != libc::SIG_IGN
            {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
    }
}

/// Ends a forked child at once with `status`, running no destructors and
/// flushing no buffers that belong to the parent's copy (Python's
/// `os._exit`).
pub(crate) fn exit_child(status: i32) -> ! {
    // SAFETY: `_exit` only ends the process; skipping destructors is the
    // point, since everything the child holds is a copy of the parent's.
    unsafe { libc::_exit(status) }
}

/// What [`reap`] found of a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Child {
    /// Still running (or waiting for it failed).
    Running,
    /// Reaped: it exited with status 0.
    Succeeded,
    /// Reaped: it exited with another status, or a signal ended it.
    Failed,
    /// No longer our child: someone else reaped it.
    Gone,
}

/// Reaps the child `pid` if it has ended, or waits until it does when
/// `block`.
pub(crate) fn reap(pid: u32, block: bool) -> Child {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let Ok(raw) = i32::try_from(pid) else {
        return Child::Gone;
    };
    let flags = (!block).then_some(WaitPidFlag::WNOHANG);
    loop {
        return match waitpid(nix::unistd::Pid::from_raw(raw), flags) {
            Ok(WaitStatus::Exited(_, 0)) => Child::Succeeded,
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => Child::Failed,
            Ok(_) => Child::Running,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::ECHILD) => Child::Gone,
            Err(_) => Child::Running,
        };
    }
}

/// Blocks until some child of this process has ended, without reaping it,
/// and returns its pid; `None` when this cannot be asked (no `waitid`
/// here) or failed.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
pub(crate) fn wait_any_ended() -> Option<u32> {
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    loop {
        return match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(status) => status.pid().map(|p| p.as_raw().unsigned_abs()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => None,
        };
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
pub(crate) fn wait_any_ended() -> Option<u32> {
    None
}

/// The `(pid, uid, gid)` of the process that connected the Unix stream
/// socket `socket` (`SO_PEERCRED`).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn peer_credentials(socket: &Socket) -> io::Result<(u32, u32, u32)> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let size = std::mem::size_of::<libc::ucred>();
    let mut len = libc::socklen_t::try_from(size).expect("ucred is a few bytes");
    // SAFETY: the descriptor is open (borrowed from `socket`); `cred` is a
    // plain C struct that outlives the call and `len` holds its exact size,
    // so the kernel writes at most `len` bytes into it and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::from_mut(&mut cred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if usize::try_from(len).ok() != Some(size) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "SO_PEERCRED returned a short struct",
        ));
    }
    Ok((u32::try_from(cred.pid).unwrap_or(0), cred.uid, cred.gid))
}

/// See the Linux twin above: other systems would need `getpeereid` or
/// `LOCAL_PEERCRED`, which this crate does not use yet.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn peer_credentials(_socket: &Socket) -> io::Result<(u32, u32, u32)> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "peer credentials are only read on Linux and Android",
    ))
}
