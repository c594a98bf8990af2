//! Every `unsafe` and platform difference of the backend.
//!
//! What differs is in one file per platform family, chosen once here:
//! `linux.rs` (Linux and Android: epoll, eventfd, `MSG_TRUNC`,
//! `SO_PEERCRED`), `other_unix.rs` (macOS and the BSDs: `polling`,
//! `recvmsg`, `getpeereid`), `wasi.rs` (WASI preview 2: `poll` over
//! `wasi:io/poll`, no threads, no signals) or `windows.rs` (Winsock, a
//! console control handler, `SO_EXCLUSIVEADDRUSE`). Beside them: `fd.rs`
//! holds what the systems with file descriptors share (Unix and WASI),
//! `unix.rs` what the Unix systems share (forking, signals, reuse options),
//! `polled.rs` the waiting through the `polling` crate that macOS, the BSDs
//! and Windows share. Every platform offers the same items, re-exported
//! below, so the rest of the crate never names a platform; forking and the
//! Unix servers exist on Unix only.

use std::io;
use std::mem::MaybeUninit;

#[cfg(any(unix, target_os = "wasi"))]
mod fd;
#[cfg_attr(not(unix), path = "pages_heap.rs")]
#[cfg(not(target_os = "wasi"))]
mod pages;
#[cfg_attr(any(target_os = "linux", target_os = "android"), path = "linux.rs")]
#[cfg_attr(target_os = "wasi", path = "wasi.rs")]
#[cfg_attr(
    all(unix, not(any(target_os = "linux", target_os = "android"))),
    path = "other_unix.rs"
)]
#[cfg_attr(windows, path = "windows.rs")]
mod platform;
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "wasi")))]
mod polled;
#[cfg(unix)]
mod signal;
#[cfg(unix)]
mod unix;

#[cfg(any(unix, target_os = "wasi"))]
pub(crate) use fd::{
    cut, is_listening, is_resource_exhaustion, no_inherit, prepare_socket, raw, raw_from_u64,
    raw_to_u64, socket_handles, AsRaw, Raw, TRANSIENT_ACCEPT_CODES,
};
#[cfg(not(target_os = "wasi"))]
pub(crate) use pages::Pages;
#[cfg(not(unix))]
pub(crate) use platform::set_reuse;
#[cfg(windows)]
pub(crate) use platform::{
    cut, is_listening, is_resource_exhaustion, no_inherit, prepare_socket, raw, raw_from_u64,
    raw_to_u64, recv_now, send_now, socket_handles, AsRaw, KeepDraining, Raw,
    TRANSIENT_ACCEPT_CODES,
};
#[cfg(unix)]
pub(crate) use platform::{ended_child, mode_before_bind, peer_credentials, unix_socket_bound_to};
pub(crate) use platform::{prepare_stream, recv_datagram, set_nonblocking, Waiter, SEND_FLAGS};
#[cfg(not(target_os = "wasi"))]
pub(crate) use platform::{Parker, SignalWatch};
#[cfg(unix)]
pub(crate) use signal::KeepDraining;
#[cfg(unix)]
pub(crate) use unix::{
    exit_child, fork, reap, recv_now, send_now, set_reuse, signal_child, take_inherited_fd, Child,
    Ended, Forked, Lifeline,
};

/// What a parked connection waits for after its turn
/// ([`Parker::park`]).
#[cfg(not(target_os = "wasi"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interest {
    /// Bytes to read.
    Read,
    /// Another turn, behind the connections already ready: a whole message
    /// is buffered already (one message per turn: fairness).
    Again,
    /// Room to write more of an unfinished reply.
    Write,
}

/// What [`Parker::wait`] reports of one event.
#[cfg(not(target_os = "wasi"))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ready {
    /// The key the descriptor was registered under (or [`Parker::STOP`],
    /// [`Parker::WAKE`]).
    pub(crate) key: u64,
    /// The peer closed its end or the connection failed (`EPOLLRDHUP`,
    /// `EPOLLHUP`, `EPOLLERR`): the kernel has a last word (the end of the
    /// stream, an error) that a read must still fetch, and no later event
    /// will say so again.
    pub(crate) closed: bool,
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
    ) || err
        .raw_os_error()
        .is_some_and(|code| TRANSIENT_ACCEPT_CODES.contains(&code))
}

/// Views an initialized buffer as possibly-uninitialized bytes, the type
/// socket2's receive calls take.
pub(crate) fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the only writer
    // of the returned slice is the kernel (through socket2), which stores
    // initialized bytes; so `buf` stays fully initialized.
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
}
