//! The backend's error type.

use core::fmt;
use socketserver_core::embedded_io::{self, ErrorKind};

/// Why a smoltcp transport or connection operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SmoltcpError {
    /// The operation's timeout passed first.
    TimedOut,
    /// The peer reset the connection, or smoltcp gave up on it.
    Reset,
    /// The connection could not be established.
    Refused,
    /// The sending side was already shut down.
    WriteShut,
    /// The transport was closed.
    Closed,
    /// The socket set has no free slot for the sockets asked for.
    NoSocketSpace,
    /// Port 0, or an address the interface cannot reach.
    Unaddressable,
    /// The datagram does not fit in the socket's send buffer at all.
    TooLarge,
    /// Closing was cut short by a shutdown request, and the connection
    /// reset: data the peer had not acknowledged yet may be lost.
    Aborted,
}

impl fmt::Display for SmoltcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmoltcpError::TimedOut => "timed out",
            SmoltcpError::Reset => "connection reset",
            SmoltcpError::Refused => "connection refused",
            SmoltcpError::WriteShut => "sending side already shut down",
            SmoltcpError::Closed => "transport closed",
            SmoltcpError::NoSocketSpace => "no free slot in the socket set",
            SmoltcpError::Unaddressable => "unaddressable endpoint",
            SmoltcpError::TooLarge => "datagram larger than the send buffer",
            SmoltcpError::Aborted => "close cut short by a shutdown request",
        })
    }
}

impl core::error::Error for SmoltcpError {}

impl embedded_io::Error for SmoltcpError {
    fn kind(&self) -> ErrorKind {
        match self {
            SmoltcpError::TimedOut => ErrorKind::TimedOut,
            SmoltcpError::Reset => ErrorKind::ConnectionReset,
            SmoltcpError::Refused => ErrorKind::ConnectionRefused,
            SmoltcpError::WriteShut => ErrorKind::BrokenPipe,
            SmoltcpError::Closed => ErrorKind::NotConnected,
            SmoltcpError::NoSocketSpace | SmoltcpError::TooLarge => ErrorKind::OutOfMemory,
            SmoltcpError::Unaddressable => ErrorKind::AddrNotAvailable,
            SmoltcpError::Aborted => ErrorKind::ConnectionAborted,
        }
    }
}

/// Into the core's error, by its kind (the core's error needs no
/// allocator to carry it, and the kinds name these failures).
impl From<SmoltcpError> for socketserver_core::Error {
    fn from(err: SmoltcpError) -> Self {
        socketserver_core::Error::from_io(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socketserver_core::embedded_io::Error as _;

    #[test]
    fn kinds_match_the_os_errors() {
        assert_eq!(SmoltcpError::TimedOut.kind(), ErrorKind::TimedOut);
        assert_eq!(SmoltcpError::Reset.kind(), ErrorKind::ConnectionReset);
        assert_eq!(SmoltcpError::Refused.kind(), ErrorKind::ConnectionRefused);
        assert_eq!(SmoltcpError::WriteShut.kind(), ErrorKind::BrokenPipe);
        assert_eq!(SmoltcpError::Closed.kind(), ErrorKind::NotConnected);
        assert_eq!(SmoltcpError::TooLarge.kind(), ErrorKind::OutOfMemory);
        assert_eq!(SmoltcpError::Aborted.kind(), ErrorKind::ConnectionAborted);
    }
}
