//! Every `unsafe` and platform difference of the backend.

use std::io;
use std::mem::MaybeUninit;

use polling::{Event, PollMode, Poller};
use socket2::Socket;

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

/// Registers `socket` with `poller`, level-triggered, readable under `key`.
pub(crate) fn register(poller: &Poller, socket: &Socket, key: usize) -> io::Result<()> {
    // SAFETY: every transport deletes its socket from the poller before
    // closing it (`Endpoint::close`, which `Drop` also runs), so the poller
    // never holds a descriptor number that was closed and possibly reused.
    unsafe { poller.add_with_mode(socket, Event::readable(key), PollMode::Level) }
}

/// Views an initialized buffer as possibly-uninitialized bytes, the type
/// socket2's receive calls take.
pub(crate) fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the only writer
    // of the returned slice is the kernel (through socket2), which stores
    // initialized bytes; so `buf` stays fully initialized.
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
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
/// otherwise wake the *parent's* watcher thread through the pipe both
/// share, so that stopping one child would stop the server.
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
    for signal in [libc::SIGINT, libc::SIGTERM] {
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

/// Reaps the child `pid` if it has ended, or waits until it does when
/// `block`; returns whether it is gone. A pid that is no longer our child
/// (someone else reaped it) is gone too.
pub(crate) fn reap(pid: u32, block: bool) -> bool {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let Ok(raw) = i32::try_from(pid) else {
        return true;
    };
    let flags = (!block).then_some(WaitPidFlag::WNOHANG);
    loop {
        return match waitpid(nix::unistd::Pid::from_raw(raw), flags) {
            Ok(WaitStatus::StillAlive) => false,
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => true,
            Ok(_) => false,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::ECHILD) => true,
            Err(_) => false,
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
