//! What the systems with file descriptors share (Unix, and WASI): the
//! socket's number, the crate's `AsFd`/`AsRawFd` impls, error numbers and
//! cutting a connection with `shutdown(2)`.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use socket2::Socket;

/// A socket's number as the system names it: a file descriptor.
pub(crate) type Raw = RawFd;

/// The trait [`SocketTransport`](crate::SocketTransport) requires: Python's
/// `fileno()`.
pub(crate) use std::os::fd::AsRawFd as AsRaw;

/// `socket`'s descriptor.
pub(crate) fn raw(socket: &Socket) -> Raw {
    socket.as_raw_fd()
}

/// `fd` as the connection registry keeps it (descriptors are never
/// negative).
pub(crate) fn raw_to_u64(fd: Raw) -> u64 {
    u64::from(fd.unsigned_abs())
}

/// The descriptor [`raw_to_u64`] gave `n` for.
pub(crate) fn raw_from_u64(n: u64) -> Option<Raw> {
    Raw::try_from(n).ok()
}

/// Implements `AsRawFd` (Python's `fileno()`, -1 once closed) and `AsFd`
/// for a type of the crate whose socket `$socket` gives (`None` once
/// closed), with `$this` bound to `&self`.
macro_rules! socket_handles {
    ([$($generics:tt)*] $ty:ty, $this:ident => $socket:expr) => {
        impl<$($generics)*> std::os::fd::AsRawFd for $ty {
            /// Python's `fileno()`: -1 once closed.
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                let $this = self;
                $socket.map_or(-1, std::os::fd::AsRawFd::as_raw_fd)
            }
        }

        impl<$($generics)*> std::os::fd::AsFd for $ty {
            /// # Panics
            /// If the socket was closed.
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                let $this = self;
                std::os::fd::AsFd::as_fd($socket.expect("the socket is closed"))
            }
        }
    };
}
pub(crate) use socket_handles;

/// Prepares a new server socket: nothing to do on Unix.
pub(crate) fn prepare_socket(_socket: &Socket, _ty: socket2::Type) -> io::Result<()> {
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

/// Error codes besides the kinds [`is_transient_accept_error`](super::is_transient_accept_error)
/// knows that only say the pending connection went away.
pub(crate) const TRANSIENT_ACCEPT_CODES: &[i32] = &[libc::EPROTO];

/// Cuts a connection: `shutdown(2)` with `SHUT_RDWR`, which ends a read or
/// write blocked on it, in any thread, at once (end-of-file, `EPIPE`). Its
/// error (the peer reset it first, say) is of no use. Async-signal-safe.
pub(crate) fn cut(fd: Raw) {
    // SAFETY: shutdown(2) only acts on the socket `fd` names; the caller
    // (the connection registry) ensures that is still the connection's own
    // descriptor, not yet closed.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
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

/// Keeps a socket made elsewhere out of the programs this one executes
/// (close-on-exec).
pub(crate) fn no_inherit(socket: &Socket) -> io::Result<()> {
    socket.set_cloexec(true)
}
