//! An in-memory transport and clock: serve a handler with no network, for
//! examples, handler unit tests and host-side checks of firmware logic.
//!
//! Nothing here allocates: the queue length `Q` and the per-connection byte
//! capacity `N` are const generics. Every connection's output is appended to
//! one shared [`Transcript`].

use core::cell::{Cell, RefCell};
use core::time::Duration;

use embedded_io::{ErrorKind, ErrorType, Read, Write};
use heapless::{Deque, Vec};

use crate::time::{Clock, Instant};
use crate::transport::{kind, Connection, Listener, Readiness, ShutdownFlag, Transport};

/// Where the connections of a [`MemoryListener`] write; also records how
/// many were shut down for writing.
#[derive(Debug, Default)]
pub struct Transcript<const N: usize> {
    bytes: RefCell<Vec<u8, N>>,
    shutdowns: Cell<usize>,
}

impl<const N: usize> Transcript<N> {
    /// An empty transcript.
    pub const fn new() -> Self {
        Transcript {
            bytes: RefCell::new(Vec::new()),
            shutdowns: Cell::new(0),
        }
    }

    /// Calls `f` with everything written so far.
    pub fn with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(&self.bytes.borrow())
    }

    /// How many connections were shut down for writing (`SHUT_WR`).
    pub fn shutdowns(&self) -> usize {
        self.shutdowns.get()
    }

    /// Forgets what was written.
    pub fn clear(&self) {
        self.bytes.borrow_mut().clear();
    }
}

/// One in-memory connection: reads a fixed input, writes to a [`Transcript`].
#[derive(Debug)]
pub struct MemoryConnection<'a, const N: usize> {
    input: Vec<u8, N>,
    pos: usize,
    out: &'a Transcript<N>,
    write_shut: bool,
}

impl<const N: usize> ErrorType for MemoryConnection<'_, N> {
    type Error = ErrorKind;
}

impl<const N: usize> Read for MemoryConnection<'_, N> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let rest = &self.input[self.pos..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl<const N: usize> Write for MemoryConnection<'_, N> {
    /// Fails with `BrokenPipe` after `shutdown_write` and `OutOfMemory`
    /// when the transcript is full.
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if self.write_shut {
            return Err(ErrorKind::BrokenPipe);
        }
        self.out
            .bytes
            .borrow_mut()
            .extend_from_slice(buf)
            .map_err(|_| ErrorKind::OutOfMemory)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl<const N: usize> Connection for MemoryConnection<'_, N> {
    type Addr = u32;

    fn set_timeout(&mut self, _timeout: Option<Duration>) -> Result<(), ErrorKind> {
        Ok(())
    }

    /// Accepted and ignored, as the timeout: reads never wait here.
    fn set_request_timeout(&mut self, _total: Option<Duration>) -> Result<(), ErrorKind> {
        Ok(())
    }

    fn set_nodelay(&mut self, _nodelay: bool) -> Result<(), ErrorKind> {
        Ok(())
    }

    fn shutdown_write(&mut self) -> Result<(), ErrorKind> {
        self.write_shut = true;
        self.out.shutdowns.set(self.out.shutdowns.get() + 1);
        Ok(())
    }
}

/// A listener whose pending connections are queued by [`push`](Self::push).
///
/// Its `wait` never blocks: with a connection queued it is ready, otherwise
/// it times out at once (and, since nothing could ever arrive, fails with
/// `ErrorKind::TimedOut` when asked to wait for ever).
#[derive(Debug)]
pub struct MemoryListener<'a, const Q: usize, const N: usize> {
    pending: Deque<(MemoryConnection<'a, N>, u32), Q>,
    out: &'a Transcript<N>,
    shutdown: &'a ShutdownFlag,
    closed: bool,
}

impl<'a, const Q: usize, const N: usize> MemoryListener<'a, Q, N> {
    /// A listener whose connections write to `out`, stopped by `shutdown`.
    pub fn new(out: &'a Transcript<N>, shutdown: &'a ShutdownFlag) -> Self {
        MemoryListener {
            pending: Deque::new(),
            out,
            shutdown,
            closed: false,
        }
    }

    /// Queues a connection from client `peer` that will read `input`.
    ///
    /// # Errors
    /// Hands `input` back when it is longer than `N` or `Q` connections are
    /// already queued.
    pub fn push<'i>(&mut self, input: &'i [u8], peer: u32) -> Result<(), &'i [u8]> {
        let input_vec = Vec::from_slice(input).map_err(|_| input)?;
        let conn = MemoryConnection {
            input: input_vec,
            pos: 0,
            out: self.out,
            write_shut: false,
        };
        self.pending.push_back((conn, peer)).map_err(|_| input)
    }

    /// Connections queued and not yet accepted.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

impl<const Q: usize, const N: usize> Transport for MemoryListener<'_, Q, N> {
    type Kind = kind::Stream;
    type Addr = u32;
    type Error = ErrorKind;

    fn wait(&mut self, timeout: Option<Duration>) -> Result<Readiness, ErrorKind> {
        if self.closed {
            Err(ErrorKind::NotConnected)
        } else if self.shutdown.is_requested() {
            Ok(Readiness::Shutdown)
        } else if !self.pending.is_empty() {
            Ok(Readiness::Ready)
        } else if timeout.is_some() {
            Ok(Readiness::TimedOut)
        } else {
            Err(ErrorKind::TimedOut)
        }
    }

    fn shutdown_requested(&self) -> bool {
        self.shutdown.is_requested()
    }

    fn clear_shutdown(&mut self) {
        self.shutdown.clear();
    }

    fn close(&mut self) {
        self.closed = true;
        self.pending.clear();
    }
}

impl<'a, const Q: usize, const N: usize> Listener for MemoryListener<'a, Q, N> {
    type Connection = MemoryConnection<'a, N>;

    fn try_accept(&mut self) -> Result<Option<(Self::Connection, u32)>, ErrorKind> {
        if self.closed {
            return Err(ErrorKind::NotConnected);
        }
        Ok(self.pending.pop_front())
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(Cell<u64>);

impl ManualClock {
    /// A clock at its epoch.
    pub const fn new() -> Self {
        ManualClock(Cell::new(0))
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let now = Instant::from_micros(self.0.get()) + d;
        self.0.set(now.total_micros());
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::from_micros(self.0.get())
    }
}
