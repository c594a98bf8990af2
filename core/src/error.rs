//! The error a request can end with.

use core::fmt;
use embedded_io::ErrorKind;

/// Why a request did not complete.
///
/// Transport errors are carried by their [`ErrorKind`], so that a handler
/// written against this type is the same on every backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The connection or socket failed with this kind of error
    /// (a per-request timeout is [`ErrorKind::TimedOut`]).
    Io(ErrorKind),
    /// A line did not fit in the `rfile` buffer: it is longer than the
    /// capacity the server was built with. The connection should be closed;
    /// the rest of the line is still unread.
    LineTooLong {
        /// The `rfile` buffer's capacity in bytes.
        capacity: usize,
    },
    /// A datagram reply did not fit in the `wfile` buffer; nothing of the
    /// write that failed was kept.
    ReplyTooLong {
        /// The `wfile` buffer's capacity in bytes.
        capacity: usize,
    },
    /// The peer closed the connection before the expected data arrived.
    UnexpectedEof,
    /// The handler panicked (reported by backends that catch unwinding).
    Panicked,
    /// The handler failed for a reason of its own.
    Handler(&'static str),
}

impl Error {
    /// The [`ErrorKind`] closest to this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io(kind) => *kind,
            Error::LineTooLong { .. } | Error::ReplyTooLong { .. } => ErrorKind::OutOfMemory,
            Error::UnexpectedEof => ErrorKind::InvalidData,
            Error::Panicked | Error::Handler(_) => ErrorKind::Other,
        }
    }

    /// Wraps any transport error by its kind.
    pub fn from_io<E: embedded_io::Error>(err: E) -> Self {
        Error::Io(err.kind())
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error::Io(kind)
    }
}

impl<E: embedded_io::Error> From<embedded_io::ReadExactError<E>> for Error {
    fn from(err: embedded_io::ReadExactError<E>) -> Self {
        match err {
            embedded_io::ReadExactError::UnexpectedEof => Error::UnexpectedEof,
            embedded_io::ReadExactError::Other(e) => Error::from_io(e),
        }
    }
}

impl<E: embedded_io::Error> From<embedded_io::WriteFmtError<E>> for Error {
    fn from(err: embedded_io::WriteFmtError<E>) -> Self {
        match err {
            embedded_io::WriteFmtError::FmtError => Error::Handler("formatting failed"),
            embedded_io::WriteFmtError::Other(e) => Error::from_io(e),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Pieces rather than `write!`: no format arguments to build, which
        // is the smaller code on firmware.
        let (head, capacity, tail) = match self {
            Error::Io(kind) => {
                f.write_str("I/O error: ")?;
                return fmt::Debug::fmt(kind, f);
            }
            Error::LineTooLong { capacity } => {
                ("line longer than the ", capacity, "-byte read buffer")
            }
            Error::ReplyTooLong { capacity } => {
                ("reply longer than the ", capacity, "-byte datagram buffer")
            }
            Error::UnexpectedEof => {
                return f.write_str("connection closed before the expected data")
            }
            Error::Panicked => return f.write_str("request handler panicked"),
            Error::Handler(msg) => {
                f.write_str("handler error: ")?;
                return f.write_str(msg);
            }
        };
        f.write_str(head)?;
        fmt::Display::fmt(capacity, f)?;
        f.write_str(tail)
    }
}

impl core::error::Error for Error {}

impl embedded_io::Error for Error {
    fn kind(&self) -> ErrorKind {
        Error::kind(self)
    }
}
