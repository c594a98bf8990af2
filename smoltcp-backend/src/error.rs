//! The backend's error type.

use core::fmt;
use socketserver_core::embedded_io::{self, ErrorKind};

/// Why a smoltcp transport or connection operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::TimedOut => "timed out",
            Error::Reset => "connection reset",
            Error::Refused => "connection refused",
            Error::WriteShut => "sending side already shut down",
            Error::Closed => "transport closed",
            Error::NoSocketSpace => "no free slot in the socket set",
            Error::Unaddressable => "unaddressable endpoint",
            Error::TooLarge => "datagram larger than the send buffer",
            Error::Aborted => "close cut short by a shutdown request",
        })
    }
}

impl core::error::Error for Error {}

impl embedded_io::Error for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::TimedOut => ErrorKind::TimedOut,
            Error::Reset => ErrorKind::ConnectionReset,
            Error::Refused => ErrorKind::ConnectionRefused,
            Error::WriteShut => ErrorKind::BrokenPipe,
            Error::Closed => ErrorKind::NotConnected,
            Error::NoSocketSpace | Error::TooLarge => ErrorKind::OutOfMemory,
            Error::Unaddressable => ErrorKind::AddrNotAvailable,
            Error::Aborted => ErrorKind::ConnectionAborted,
        }
    }
}

/// Into the core's error, by its kind (the core's error needs no
/// allocator to carry it, and the kinds name these failures).
impl From<Error> for socketserver_core::Error {
    fn from(err: Error) -> Self {
        socketserver_core::Error::from_io(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socketserver_core::embedded_io::Error as _;

    #[test]
    fn kinds_match_the_os_errors() {
        assert_eq!(Error::TimedOut.kind(), ErrorKind::TimedOut);
        assert_eq!(Error::Reset.kind(), ErrorKind::ConnectionReset);
        assert_eq!(Error::Refused.kind(), ErrorKind::ConnectionRefused);
        assert_eq!(Error::WriteShut.kind(), ErrorKind::BrokenPipe);
        assert_eq!(Error::Closed.kind(), ErrorKind::NotConnected);
        assert_eq!(Error::TooLarge.kind(), ErrorKind::OutOfMemory);
        assert_eq!(Error::Aborted.kind(), ErrorKind::ConnectionAborted);
    }
}
