//! The error a request can end with.

use core::fmt;
use embedded_io::ErrorKind;

#[cfg(feature = "alloc")]
use alloc::sync::Arc;

/// Why a request did not complete.
///
/// A transport's error keeps its cause: its [`ErrorKind`] and, where the
/// system has one, its error code, so that on std `handle_error` shows
/// `Connection reset by peer (os error 104)`. With the `std` feature `?`
/// converts a [`std::io::Error`] (keeping its message), and with `alloc`
/// a handler can fail with any error of its own ([`Error::other`]). The
/// core without those features needs no allocator.
///
/// The type is not `Copy` nor `PartialEq` (an error of the handler's own
/// may be neither); compare [`kind`](Self::kind)s, or match variants.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The connection or socket failed (a per-request timeout is
    /// [`ErrorKind::TimedOut`]).
    Io {
        /// What kind of failure.
        kind: ErrorKind,
        /// The system's error code (`errno` on Unix), where there is one.
        code: Option<i32>,
    },
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
    /// The handler failed for a reason of its own, known when it was
    /// written (no allocation).
    Handler(&'static str),
    /// Any other error, with its message and `source()` chain (feature
    /// `alloc`): a handler's own error built at run time, or an I/O error
    /// that carries a message rather than a system error code.
    #[cfg(feature = "alloc")]
    Other(Arc<dyn core::error::Error + Send + Sync>),
}

impl Error {
    /// The [`ErrorKind`] closest to this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { kind, .. } => *kind,
            Error::LineTooLong { .. } | Error::ReplyTooLong { .. } => ErrorKind::OutOfMemory,
            Error::UnexpectedEof => ErrorKind::InvalidData,
            Error::Panicked | Error::Handler(_) => ErrorKind::Other,
            #[cfg(feature = "alloc")]
            Error::Other(err) => other_kind(&**err),
        }
    }

    /// The system's error code, if this error came from one.
    pub fn os_code(&self) -> Option<i32> {
        match self {
            Error::Io { code, .. } => *code,
            _ => None,
        }
    }

    /// An I/O error of `kind`, with no system code.
    pub const fn io(kind: ErrorKind) -> Self {
        Error::Io { kind, code: None }
    }

    /// Wraps any transport error by its kind alone. Prefer `Error::from`
    /// (or `?`), which keeps what the transport's error type knows.
    pub fn from_io<E: embedded_io::Error>(err: E) -> Self {
        Error::io(err.kind())
    }

    /// A handler's own error: anything that converts into a boxed error, a
    /// `String` or `&str` message included (feature `alloc`).
    #[cfg(feature = "alloc")]
    pub fn other<E>(err: E) -> Self
    where
        E: Into<alloc::boxed::Box<dyn core::error::Error + Send + Sync>>,
    {
        Error::Other(Arc::from(err.into()))
    }
}

/// The kind of an error of the `Other` variant: an I/O error's own.
#[cfg(feature = "alloc")]
fn other_kind(err: &(dyn core::error::Error + 'static)) -> ErrorKind {
    #[cfg(feature = "std")]
    if let Some(io) = err.downcast_ref::<std::io::Error>() {
        return io.kind().into();
    }
    let _ = err;
    ErrorKind::Other
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error::io(kind)
    }
}

/// An I/O error with a system code becomes [`Error::Io`] with that code;
/// one with a message of its own (`io::Error::new`, `io::Error::other`)
/// becomes [`Error::Other`], message kept; any other, `Error::Io` with its
/// kind.
#[cfg(feature = "std")]
impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        let kind = embedded_io::Error::kind(&err);
        if let Some(code) = err.raw_os_error() {
            Error::Io {
                kind,
                code: Some(code),
            }
        } else if err.get_ref().is_some() {
            Error::Other(Arc::new(err))
        } else {
            Error::io(kind)
        }
    }
}

/// For `std::io` users of `rfile` and `wfile`: an error with a system code
/// becomes that OS error again; any other keeps this error as its source.
#[cfg(feature = "std")]
impl From<Error> for std::io::Error {
    fn from(err: Error) -> Self {
        match err {
            Error::Io {
                code: Some(code), ..
            } => std::io::Error::from_raw_os_error(code),
            Error::UnexpectedEof => std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            other => std::io::Error::new(other.kind().into(), other),
        }
    }
}

impl<E: embedded_io::Error> From<embedded_io::ReadExactError<E>> for Error
where
    Error: From<E>,
{
    fn from(err: embedded_io::ReadExactError<E>) -> Self {
        match err {
            embedded_io::ReadExactError::UnexpectedEof => Error::UnexpectedEof,
            embedded_io::ReadExactError::Other(e) => Error::from(e),
        }
    }
}

impl<E: embedded_io::Error> From<embedded_io::WriteFmtError<E>> for Error
where
    Error: From<E>,
{
    fn from(err: embedded_io::WriteFmtError<E>) -> Self {
        match err {
            embedded_io::WriteFmtError::FmtError => Error::Handler("formatting failed"),
            embedded_io::WriteFmtError::Other(e) => Error::from(e),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Pieces rather than `write!`: no format arguments to build, which
        // is the smaller code on firmware.
        let (head, capacity, tail) = match self {
            Error::Io { kind, code } => return fmt_io(*kind, *code, f),
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
            #[cfg(feature = "alloc")]
            Error::Other(err) => return fmt::Display::fmt(err, f),
        };
        f.write_str(head)?;
        fmt::Display::fmt(capacity, f)?;
        f.write_str(tail)
    }
}

/// An I/O error as the system words it where there is a code and `std`
/// (`Connection reset by peer (os error 104)`), else by its kind.
fn fmt_io(kind: ErrorKind, code: Option<i32>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    #[cfg(feature = "std")]
    if let Some(code) = code {
        return fmt::Display::fmt(&std::io::Error::from_raw_os_error(code), f);
    }
    f.write_str("I/O error: ")?;
    fmt::Debug::fmt(&kind, f)?;
    if let Some(code) = code {
        f.write_str(" (os error ")?;
        fmt::Display::fmt(&code, f)?;
        f.write_str(")")?;
    }
    Ok(())
}

impl core::error::Error for Error {
    /// The source of an [`Error::Other`]'s error (whose own message this
    /// error's `Display` already shows).
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            #[cfg(feature = "alloc")]
            Error::Other(err) => err.source(),
            _ => None,
        }
    }
}

impl embedded_io::Error for Error {
    fn kind(&self) -> ErrorKind {
        Error::kind(self)
    }
}
