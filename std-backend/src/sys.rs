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
/// `O_NONBLOCK` on from the listener) and, where `MSG_NOSIGNAL` is missing,
/// `SO_NOSIGPIPE`.
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
