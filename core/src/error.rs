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
    /// capacity the server was built with (Python's bounded `readline`).
    /// The connection should be closed; the rest of the line is still
    /// unread. Its [`kind`](Self::kind) is `InvalidData`: the peer broke
    /// the protocol, no memory ran out.
    LineTooLong {
        /// The `rfile` buffer's capacity in bytes.
        capacity: usize,
    },
    /// A handler reading `rfile` through `std::io::Read`/`BufRead`
    /// (`serde_json::from_reader`, `io::copy`, `lines()`) read more than
    /// the request's bound on such reads ([`RFile::set_io_limit`]); those
    /// readers grow their own buffers, so the bound is what keeps a client
    /// from filling the server's memory.
    ///
    /// [`RFile::set_io_limit`]: crate::RFile::set_io_limit
    ReadLimit {
        /// The bound in bytes.
        limit: u64,
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
            // Python's bounded `readline` makes this a protocol error: the
            // peer sent what the server does not take, no memory ran out.
            Error::LineTooLong { .. } => ErrorKind::InvalidData,
            Error::ReadLimit { .. } => ErrorKind::InvalidData,
            Error::ReplyTooLong { .. } => ErrorKind::InvalidInput,
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

/// This crate's own error inside an `std::io::Error` becomes itself again;
/// an I/O error with a system code becomes [`Error::Io`] with that code;
/// one with a message of its own (`io::Error::new`, `io::Error::other`)
/// becomes [`Error::Other`], message kept; any other, `Error::Io` with its
/// kind.
#[cfg(feature = "std")]
impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        // This crate's own error, round-tripped through `std::io` (an
        // `rfile` read by serde): itself again.
        if let Some(own) = err.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
            return own.clone();
        }
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
        let (head, capacity, tail): (_, &dyn fmt::Display, _) = match self {
            Error::Io { kind, code } => return fmt_io(*kind, *code, f),
            Error::LineTooLong { capacity } => {
                ("line longer than the ", capacity, "-byte read buffer")
            }
            Error::ReadLimit { limit } => (
                "request read more than the ",
                limit,
                "-byte bound on rfile's std::io reads",
            ),
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
/// (`Connection reset by peer (os error 104)`), else in words of its kind
/// (`connection reset`), on every backend.
fn fmt_io(kind: ErrorKind, code: Option<i32>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    #[cfg(feature = "std")]
    if let Some(code) = code {
        return fmt::Display::fmt(&std::io::Error::from_raw_os_error(code), f);
    }
    f.write_str(kind_words(kind))?;
    if let Some(code) = code {
        f.write_str(" (os error ")?;
        // Through `u32`'s formatting, which the other numbers of this
        // `Display` share: `i32`'s would be one more copy of the digit loop
        // in a firmware image (about 250 bytes of flash).
        if code < 0 {
            f.write_str("-")?;
        }
        let digits: &dyn fmt::Display = &code.unsigned_abs();
        digits.fmt(f)?;
        f.write_str(")")?;
    }
    Ok(())
}

/// An [`ErrorKind`] in words, as `std::io::ErrorKind` words its own.
fn kind_words(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "entity not found",
        ErrorKind::PermissionDenied => "permission denied",
        ErrorKind::ConnectionRefused => "connection refused",
        ErrorKind::ConnectionReset => "connection reset",
        ErrorKind::ConnectionAborted => "connection aborted",
        ErrorKind::NotConnected => "not connected",
        ErrorKind::AddrInUse => "address in use",
        ErrorKind::AddrNotAvailable => "address not available",
        ErrorKind::BrokenPipe => "broken pipe",
        ErrorKind::AlreadyExists => "entity already exists",
        ErrorKind::InvalidInput => "invalid input parameter",
        ErrorKind::InvalidData => "invalid data",
        ErrorKind::TimedOut => "timed out",
        ErrorKind::Interrupted => "operation interrupted",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::OutOfMemory => "out of memory",
        ErrorKind::WriteZero => "write zero",
        _ => "other error",
    }
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
