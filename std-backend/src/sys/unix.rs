//! What every Unix system shares: reuse options, forking and reaping,
//! stop signals, and sends and receives that do not wait.

use std::io;
use std::os::fd::{OwnedFd, RawFd};

use socket2::Socket;

use super::{platform, signal};

/// Python's `allow_reuse_address` and `allow_reuse_port`: `SO_REUSEADDR`
/// and `SO_REUSEPORT` when asked for.
pub(crate) fn set_reuse(socket: &Socket, address: bool, port: bool) -> io::Result<()> {
    if address {
        socket.set_reuse_address(true)?;
    }
    if port {
        socket.set_reuse_port(true)?;
    }
    Ok(())
}

/// Sends `signal` to the child `pid`, which this process has not reaped
/// yet (so the number cannot name another process).
pub(crate) fn signal_child(pid: u32, signal: nix::sys::signal::Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), signal);
    }
}

/// The signals [`SignalWatch`] turns into shutdown requests.
pub(super) const STOP_SIGNALS: [nix::sys::signal::Signal; 2] = [
    nix::sys::signal::Signal::SIGINT,
    nix::sys::signal::Signal::SIGTERM,
];

/// Which side of a [`fork`] this is.
pub(crate) enum Forked {
    /// The parent, with the child's process id and its [`Lifeline`].
    Parent(u32, Lifeline),
    /// The new process.
    Child,
}

/// The parent's end of a forked child's lifeline: the write end of a pipe
/// whose read end only the child holds. The child ends when no process
/// holds this end any more, which is when the parent *process* has exited
/// or was killed (the kernel closes it), whichever of its threads forked
/// the child ([`platform::end_with_parent`]).
///
/// Keep it until the child is reaped: dropping it earlier ends the child.
#[derive(Debug)]
pub(crate) struct Lifeline(#[allow(dead_code)] OwnedFd);

/// Forks the process for one request (Python's `os.fork()` in
/// `ForkingMixIn`), or for a pre-forked worker.
///
/// In the child, `SIGINT` and `SIGTERM` count only when the parent sends
/// them ([`signal::in_child`]): one sent to the whole process group
/// (Ctrl-C, systemd's `KillMode=control-group`) leaves the child to the
/// parent's drain. A handler the parent installed through
/// [`stop_on_signals`](crate::ShutdownHandle::stop_on_signals) is
/// forgotten: it would wake the *parent's* loop through the descriptor
/// both share. And the child ends when its parent process does, where the
/// system can say so ([`platform::end_with_parent`]).
///
/// The child must close the [`Lifeline`]s of its siblings that it
/// inherited (the dispatch holds them): while it keeps one, that sibling
/// outlives the parent until this child ends.
pub(crate) fn fork() -> io::Result<Forked> {
    let parent = nix::unistd::getpid();
    // Close-on-exec, as std's pipes are everywhere.
    let (alive, lifeline) = std::io::pipe()?;
    let (alive, lifeline) = (OwnedFd::from(alive), OwnedFd::from(lifeline));
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
            drop(alive);
            let pid = child.as_raw().unsigned_abs();
            Ok(Forked::Parent(pid, Lifeline(lifeline)))
        }
        nix::unistd::ForkResult::Child => {
            drop(lifeline);
            signal::in_child(parent);
            platform::end_with_parent(parent, alive);
            Ok(Forked::Child)
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

/// What [`ended_child`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
// Systems without `waitid` only ever say `Unknown`.
#[cfg_attr(
    not(any(target_os = "linux", target_os = "android", target_os = "freebsd")),
    allow(dead_code)
)]
pub(crate) enum Ended {
    /// This child has ended (it may be another part of the program's).
    Child(u32),
    /// No child has ended.
    NoneYet,
    /// The system cannot say, or asking failed.
    Unknown,
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

/// Reads what a stream socket has received, without waiting: `Ok(n)`
/// bytes, `Ok(0)` at end of stream, `WouldBlock` when nothing is there.
/// A flag of this one call (`MSG_DONTWAIT`), so the socket stays blocking
/// for the handler's own reads.
pub(crate) fn recv_now(socket: &socket2::Socket, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match socket.recv_with_flags(super::as_uninit(buf), libc::MSG_DONTWAIT) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Sends what a stream socket takes now, without waiting: the count,
/// `Ok(0)` when its send buffer is full. Never raises `SIGPIPE`.
pub(crate) fn send_now(socket: &socket2::Socket, data: &[u8]) -> io::Result<usize> {
    loop {
        match socket.send_with_flags(data, platform::SEND_FLAGS | libc::MSG_DONTWAIT) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            other => return other,
        }
    }
}

/// Takes ownership of descriptor `fd`, which this process inherited from
/// whoever started it (socket activation), and makes it close-on-exec so
/// that programs this one starts do not inherit it in turn.
///
/// # Errors
/// `fd` is not open (`EBADF`).
pub(crate) fn take_inherited_fd(fd: RawFd) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD only reads the descriptor's flags; any number is a
    // valid argument (an unopened one fails with EBADF).
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above; F_SETFD only changes the descriptor's own flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is open (checked above), and the launcher handed it to
    // this process to own (the LISTEN_PID check says the variables are
    // meant for this process). The caller (`activation`) takes each
    // number once per process, under a lock, and unsets the variables,
    // so no second `OwnedFd` for it is ever made here.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}
