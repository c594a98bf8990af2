//! Receiving a datagram with `MSG_TRUNC`, for the platforms whose `recvfrom`
//! then returns the datagram's full length (Linux, and wasi-libc on WASI):
//! truncation is known without `recvmsg` and its message header. Included
//! by those platform files, which define `MSG_TRUNC`.

use std::io;

use socket2::{SockAddr, Socket};

use super::super::as_uninit;
use super::MSG_TRUNC;

/// Receives one datagram into `buf`: the bytes kept, whether the datagram
/// was longer than `buf`, and its sender (as `sender` converts it).
#[inline]
pub(crate) fn recv_datagram<A>(
    socket: &Socket,
    buf: &mut [u8],
    sender: impl FnOnce(&SockAddr) -> A,
) -> io::Result<(usize, bool, A)> {
    let capacity = buf.len();
    let (len, addr) = socket.recv_from_with_flags(as_uninit(buf), MSG_TRUNC)?;
    Ok((len.min(capacity), len > capacity, sender(&addr)))
}
