//! Every `unsafe` and platform difference of the backend.
//!
//! This file holds what every platform shares, and (marked `cfg(unix)`)
//! what all Unix systems share: forking and reaping. What differs is in
//! one file per platform family, chosen once here: `linux.rs` (Linux and
//! Android: epoll, eventfd, `MSG_TRUNC`, `SO_PEERCRED`), `other_unix.rs`
//! (macOS and the BSDs: `polling`, `recvmsg`, `getpeereid`) or `wasi.rs`
//! (WASI preview 2: `poll` over `wasi:io/poll`, no threads, no signals).
//! They offer the same items, re-exported below (the Unix ones also the
//! signal watch, peer credentials, socket file modes and children), so
//! the rest of the crate never names a platform.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

#[cfg(unix)]
use socket2::Socket;

#[cfg(unix)]
mod pages;
#[cfg_attr(any(target_os = "linux", target_os = "android"), path = "linux.rs")]
#[cfg_attr(target_os = "wasi", path = "wasi.rs")]
#[cfg_attr(
    all(unix, not(any(target_os = "linux", target_os = "android"))),
    path = "other_unix.rs"
)]
mod platform;
#[cfg(unix)]
mod signal;

#[cfg(unix)]
pub(crate) use pages::Pages;
#[cfg(not(unix))]
pub(crate) use platform::set_reuse;
#[cfg(not(target_os = "wasi"))]
pub(crate) use platform::Parker;
#[cfg(unix)]
pub(crate) use platform::{
    ended_child, mode_before_bind, peer_credentials, unix_socket_bound_to, SignalWatch,
};
pub(crate) use platform::{prepare_stream, recv_datagram, set_nonblocking, Waiter, SEND_FLAGS};

/// Python's `allow_reuse_address` and `allow_reuse_port`: `SO_REUSEADDR`
/// and `SO_REUSEPORT` before binding, as asked.
#[cfg(unix)]
pub(crate) fn set_reuse(socket: &Socket, address: bool, port: bool) -> io::Result<()> {
    if address {
        socket.set_reuse_address(true)?;
    }
    if port {
        socket.set_reuse_port(true)?;
    }
    Ok(())
}

/// Takes ownership of descriptor `fd`, which this process inherited from
/// whoever started it (socket activation), and makes it close-on-exec so
/// that programs this one starts do not inherit it in turn.
///
/// # Errors
/// `fd` is not open (`EBADF`).
#[cfg(unix)]
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

/// Whether a stream socket listens already (`SO_ACCEPTCONN`).
pub(crate) fn is_listening(socket: &socket2::Socket) -> io::Result<bool> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of the sizes given,
    // and the call only reads the option of the socket the descriptor names.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            std::ptr::addr_of_mut!(value).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value != 0)
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

/// Reads what a stream socket has received, without waiting: `Ok(n)`
/// bytes, `Ok(0)` at end of stream, `WouldBlock` when nothing is there.
/// A flag of this one call (`MSG_DONTWAIT`), so the socket stays blocking
/// for the handler's own reads.
#[cfg(not(target_os = "wasi"))]
pub(crate) fn recv_now(socket: &socket2::Socket, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match socket.recv_with_flags(as_uninit(buf), libc::MSG_DONTWAIT) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Sends what a stream socket takes now, without waiting: the count,
/// `Ok(0)` when its send buffer is full. Never raises `SIGPIPE`.
#[cfg(not(target_os = "wasi"))]
pub(crate) fn send_now(socket: &socket2::Socket, data: &[u8]) -> io::Result<usize> {
    loop {
        match socket.send_with_flags(data, SEND_FLAGS | libc::MSG_DONTWAIT) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            other => return other,
        }
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

/// Cuts a connection: `shutdown(2)` with `SHUT_RDWR`, which ends a read or
/// write blocked on it, in any thread, at once (end-of-file, `EPIPE`). Its
/// error (the peer reset it first, say) is of no use. Async-signal-safe.
pub(crate) fn cut(fd: RawFd) {
    // SAFETY: shutdown(2) only acts on the socket `fd` names; the caller
    // (the connection registry) ensures that is still the connection's own
    // descriptor, not yet closed.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

#[cfg(unix)]
/// Sends `signal` to the child `pid`, which this process has not reaped
/// yet (so the number cannot name another process).
pub(crate) fn signal_child(pid: u32, signal: nix::sys::signal::Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), signal);
    }
}

#[cfg(unix)]
/// The signals [`SignalWatch`] turns into shutdown requests.
const STOP_SIGNALS: [nix::sys::signal::Signal; 2] = [
    nix::sys::signal::Signal::SIGINT,
    nix::sys::signal::Signal::SIGTERM,
];

#[cfg(unix)]
/// Which side of a [`fork`] this is.
pub(crate) enum Forked {
    /// The parent, with the child's process id.
    Parent(u32),
    /// The new process.
    Child,
}

#[cfg(unix)]
/// Forks the process for one request (Python's `os.fork()` in
/// `ForkingMixIn`).
///
/// In the child, `SIGINT` and `SIGTERM` go back to their default action
/// when the parent had handlers for them: a handler installed through
/// [`stop_on_signals`](crate::ShutdownHandle::stop_on_signals) would
/// otherwise wake the *parent's* loop through the descriptor both share
/// (the waiter's eventfd, or the watcher thread's socket). And the child
/// ends when its parent does, where the system can say so
/// ([`platform::end_with_parent`]).
pub(crate) fn fork() -> io::Result<Forked> {
    let parent = nix::unistd::getpid();
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
            platform::end_with_parent(parent);
            Ok(Forked::Child)
        }
    }
}

#[cfg(unix)]
fn default_stop_signals() {
    for signal in STOP_SIGNALS.map(|s| s as libc::c_int) {
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

#[cfg(unix)]
/// Ends a forked child at once with `status`, running no destructors and
/// flushing no buffers that belong to the parent's copy (Python's
/// `os._exit`).
pub(crate) fn exit_child(status: i32) -> ! {
    // SAFETY: `_exit` only ends the process; skipping destructors is the
    // point, since everything the child holds is a copy of the parent's.
    unsafe { libc::_exit(status) }
}

#[cfg(unix)]
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

#[cfg(unix)]
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

#[cfg(unix)]
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
