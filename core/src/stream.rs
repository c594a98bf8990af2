//! Stream requests: Python's `StreamRequestHandler` with a bounded `rfile`.

use core::cell::{RefCell, RefMut};
use embedded_io::{BufRead, ErrorType, Read, Write};

use crate::handler::{HandlerFactory, Hooks, StreamHandler, StreamOptions};
use crate::transport::Connection;
use crate::Error;

/// One stream request as a handler sees it.
///
/// `rfile` and `wfile` are separate fields so a handler can read a line and
/// write a reply while the line is still borrowed.
pub struct StreamRequest<'a, C: Connection> {
    /// Buffered reader over the connection; lines are bounded by its capacity.
    pub rfile: RFile<'a, C>,
    /// Writer to the connection, unbuffered unless the handler asked for
    /// [`buffered_wfile`](crate::StreamOptions::buffered_wfile).
    pub wfile: WFile<'a, C>,
    /// The peer's address.
    pub client_address: C::Addr,
    conn: &'a RefCell<C>,
}

impl<'a, C: Connection> StreamRequest<'a, C> {
    /// A request over `conn`, reading through `rbuf` and, when `wbuf` is not
    /// empty, buffering writes in it.
    pub fn new(
        conn: &'a RefCell<C>,
        client_address: C::Addr,
        rbuf: &'a mut [u8],
        wbuf: &'a mut [u8],
    ) -> Self {
        StreamRequest {
            rfile: RFile::new(conn, rbuf),
            wfile: WFile::new(conn, wbuf),
            client_address,
            conn,
        }
    }

    /// A request whose `rfile` already holds `filled` bytes of `rbuf`.
    pub(crate) fn prefilled(
        conn: &'a RefCell<C>,
        client_address: C::Addr,
        rbuf: &'a mut [u8],
        filled: usize,
        wbuf: &'a mut [u8],
    ) -> Self {
        StreamRequest {
            rfile: RFile::prefilled(conn, rbuf, filled),
            wfile: WFile::new(conn, wbuf).parked(),
            client_address,
            conn,
        }
    }

    /// The raw connection (Python's `self.request`), for what the files do
    /// not offer. Bytes already buffered in `rfile` are not seen by reads
    /// made here.
    ///
    /// # Panics
    /// If the connection is already borrowed, which only happens when this
    /// is called while a previous result of it is still alive.
    pub fn connection(&self) -> RefMut<'a, C> {
        borrow(self.conn)
    }
}

/// Borrows the connection of a request: one copy of the borrow check and
/// its panic per connection type, not one per call site.
#[inline(never)]
fn borrow<C>(conn: &RefCell<C>) -> RefMut<'_, C> {
    conn.borrow_mut()
}

/// Python's `rfile`: a buffered reader whose capacity bounds a line.
///
/// Implements embedded-io [`Read`] and [`BufRead`].
pub struct RFile<'a, C> {
    conn: &'a RefCell<C>,
    buf: &'a mut [u8],
    start: usize,
    end: usize,
}

impl<'a, C: Connection> RFile<'a, C> {
    /// A reader over `conn` buffering in `buf`.
    pub fn new(conn: &'a RefCell<C>, buf: &'a mut [u8]) -> Self {
        RFile {
            conn,
            buf,
            start: 0,
            end: 0,
        }
    }

    /// A reader whose buffer already holds `filled` received bytes
    /// (`buf[..filled]`), as a message dispatch hands it over.
    pub(crate) fn prefilled(conn: &'a RefCell<C>, buf: &'a mut [u8], filled: usize) -> Self {
        let end = filled.min(buf.len());
        RFile {
            conn,
            buf,
            start: 0,
            end,
        }
    }

    /// The bytes received and not yet consumed, as a range of the buffer.
    pub(crate) fn unread(&self) -> core::ops::Range<usize> {
        self.start..self.end
    }

    /// The buffer's capacity: the longest line [`read_line`](Self::read_line) returns.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Reads up to and including the next `\n` (Python's `readline`).
    ///
    /// Returns the line with its terminator, the unterminated rest at end of
    /// stream, or an empty slice once the stream is exhausted. The slice is
    /// mutable so a reply can be built in place.
    ///
    /// # Errors
    /// [`Error::LineTooLong`] when no `\n` arrives within
    /// [`capacity`](Self::capacity) bytes: the buffered part is dropped and
    /// memory never grows. I/O errors as [`Error::Io`].
    pub fn read_line(&mut self) -> Result<&mut [u8], Error> {
        let mut scanned = self.start;
        // Where the line ends: after its `\n`, or at the end of the stream.
        let stop = loop {
            if let Some(i) = self.buf[scanned..self.end].iter().position(|&b| b == b'\n') {
                break scanned + i + 1;
            }
            if self.end == self.buf.len() {
                if self.start == 0 {
                    self.end = 0;
                    return Err(Error::LineTooLong {
                        capacity: self.buf.len(),
                    });
                }
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            scanned = self.end;
            if self.fill_more()? == 0 {
                break self.end;
            }
        };
        let start = core::mem::replace(&mut self.start, stop);
        Ok(&mut self.buf[start..stop])
    }

    /// Reads into `out` (embedded-io's [`Read::read`]). Inherent, like the
    /// other I/O methods of `rfile` and `wfile`, so that a call resolves
    /// to the one returning this crate's [`Error`] even where `std::io`'s
    /// traits (which `rfile` and `wfile` also implement with `std`) are in
    /// scope.
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        Read::read(self, out)
    }

    /// Reads exactly `out.len()` bytes, or fails with
    /// [`Error::UnexpectedEof`].
    pub fn read_exact(&mut self, out: &mut [u8]) -> Result<(), Error> {
        Read::read_exact(self, out).map_err(Into::into)
    }

    /// The buffered bytes, reading more when there are none
    /// ([`BufRead::fill_buf`]).
    pub fn fill_buf(&mut self) -> Result<&[u8], Error> {
        BufRead::fill_buf(self)
    }

    /// Marks `amt` buffered bytes as read ([`BufRead::consume`]).
    pub fn consume(&mut self, amt: usize) {
        BufRead::consume(self, amt);
    }

    fn fill_more(&mut self) -> Result<usize, Error> {
        let n = borrow(self.conn)
            .read(&mut self.buf[self.end..])
            .map_err(Into::into)?;
        self.end += n;
        Ok(n)
    }
}

impl<C: Connection> ErrorType for RFile<'_, C> {
    type Error = Error;
}

impl<C: Connection> Read for RFile<'_, C> {
    fn read(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        if self.start == self.end && out.len() >= self.buf.len() {
            // Nothing buffered and the caller's buffer is the bigger one.
            return borrow(self.conn).read(out).map_err(Into::into);
        }
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<C: Connection> BufRead for RFile<'_, C> {
    /// The buffered bytes, after reading more when there are none; empty
    /// only at the end of the stream.
    ///
    /// # Errors
    /// I/O errors as [`Error::Io`]; with a zero capacity,
    /// `Error::Io` of kind `OutOfMemory`, since there is no buffer to fill
    /// and an empty slice would say that the stream had ended.
    fn fill_buf(&mut self) -> Result<&[u8], Error> {
        if self.start == self.end {
            if self.buf.is_empty() {
                return Err(Error::io(embedded_io::ErrorKind::OutOfMemory));
            }
            self.start = 0;
            self.end = 0;
            self.fill_more()?;
        }
        Ok(&self.buf[self.start..self.end])
    }

    fn consume(&mut self, amt: usize) {
        self.start = (self.start + amt).min(self.end);
    }
}

/// Python's `wfile`: every write goes out whole or fails.
///
/// Unbuffered (an empty buffer), each `write` sends all its bytes before
/// returning. Buffered, bytes collect until the buffer is full, a
/// [`flush`](Write::flush), or the end of the request.
pub struct WFile<'a, C> {
    conn: &'a RefCell<C>,
    buf: &'a mut [u8],
    len: usize,
    /// [`write_now`](Self::write_now) does not wait: the request is served
    /// by a dispatch that parks connections.
    parked: bool,
}

impl<'a, C: Connection> WFile<'a, C> {
    /// A writer over `conn`, buffering in `buf` unless it is empty.
    pub fn new(conn: &'a RefCell<C>, buf: &'a mut [u8]) -> Self {
        WFile {
            conn,
            buf,
            len: 0,
            parked: false,
        }
    }

    /// Makes [`write_now`](Self::write_now) write without waiting.
    pub(crate) fn parked(mut self) -> Self {
        self.parked = true;
        self
    }

    /// Writes what the connection takes now, after what is buffered: the
    /// count written, possibly 0. For a [`MessageHandler`] sending a long
    /// reply in pieces: it writes a piece, and when the connection takes no
    /// more, returns [`Next::Resume`] to be called again
    /// ([`MessageHandler::resume`]) once it can, holding no worker while
    /// the peer is slow.
    ///
    /// Served by a dispatch that parks connections (`ParkingDispatch`,
    /// `MessageDispatch`), it never waits. Anywhere else (a classic
    /// dispatch, [`MessageLoop`](crate::MessageLoop)) it is an ordinary
    /// write, which waits until the connection takes at least one byte,
    /// bounded by the timeout, so a loop of `write_now` calls never spins.
    ///
    /// [`MessageHandler`]: crate::MessageHandler
    /// [`Next::Resume`]: crate::Next::Resume
    /// [`MessageHandler::resume`]: crate::MessageHandler::resume
    pub fn write_now(&mut self, data: &[u8]) -> Result<usize, Error> {
        self.flush_buffer()?;
        let mut conn = borrow(self.conn);
        let written = if self.parked {
            conn.write_now(data)
        } else {
            conn.write(data)
        };
        written.map_err(Into::into)
    }

    /// Bytes written but not yet sent.
    pub fn pending(&self) -> usize {
        self.len
    }

    /// Writes all of `data` or fails ([`Write::write_all`]). Inherent, so
    /// that it resolves the same with `std::io::Write` in scope.
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), Error> {
        Write::write_all(self, data)
    }

    /// Writes all of `data` and returns its length ([`Write::write`]).
    pub fn write(&mut self, data: &[u8]) -> Result<usize, Error> {
        Write::write(self, data)
    }

    /// Sends what is buffered, then flushes the connection.
    pub fn flush(&mut self) -> Result<(), Error> {
        Write::flush(self)
    }

    /// Formatted output (`write!(req.wfile, ...)`).
    pub fn write_fmt(&mut self, args: core::fmt::Arguments<'_>) -> Result<(), Error> {
        Write::write_fmt(self, args).map_err(Into::into)
    }

    fn send(&self, data: &[u8]) -> Result<(), Error> {
        borrow(self.conn).write_all(data).map_err(Into::into)
    }

    pub(crate) fn flush_buffer(&mut self) -> Result<(), Error> {
        match core::mem::take(&mut self.len) {
            0 => Ok(()),
            len => self.send(&self.buf[..len]),
        }
    }
}

impl<C: Connection> ErrorType for WFile<'_, C> {
    type Error = Error;
}

impl<C: Connection> Write for WFile<'_, C> {
    /// Writes all of `data` or fails, as [`write_all`](Write::write_all).
    fn write(&mut self, data: &[u8]) -> Result<usize, Error> {
        self.write_all(data)?;
        Ok(data.len())
    }

    /// Buffers `data` if it fits, after sending what is buffered if it
    /// does not; sends it at once if it does not fit an empty buffer either.
    fn write_all(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.len + data.len() > self.buf.len() {
            self.flush_buffer()?;
        }
        if data.len() >= self.buf.len() {
            return self.send(data);
        }
        let end = self.len + data.len();
        self.buf[self.len..end].copy_from_slice(data);
        self.len = end;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.flush_buffer()?;
        borrow(self.conn).flush().map_err(Into::into)
    }
}

/// Runs a handler over one connection (Python's `finish_request` with the
/// `StreamRequestHandler` setup): applies the handler's options, then
/// [`Connection::establish`] (a TLS handshake, bounded by those options),
/// `setup`, `handle`, `finish` and the final `wfile` flush (of its buffer:
/// the connection is not flushed, as in Python).
///
/// Returns the first error; `finish` runs after a failed `handle` but not
/// after a failed `setup` (nor `setup` after a failed `establish`).
pub fn finish_request<C: Connection, H: StreamHandler<C>>(
    handler: &mut H,
    conn: &RefCell<C>,
    client_address: C::Addr,
    rbuf: &mut [u8],
    wbuf: &mut [u8],
) -> Result<(), Error> {
    let options = handler.options();
    apply_options(&mut *borrow(conn), &options, options.request_timeout)?;
    let wbuf = if options.buffered_wfile {
        wbuf
    } else {
        &mut []
    };
    run_lifecycle(handler, conn, client_address, rbuf, wbuf)
}

/// Hands a handler's options to its connection; `total` is the bound on
/// the whole request (or, for a message handler, on the first message).
pub(crate) fn apply_options<C: Connection>(
    conn: &mut C,
    options: &StreamOptions,
    total: Option<core::time::Duration>,
) -> Result<(), Error> {
    if options.timeout.is_some() {
        conn.set_timeout(options.timeout).map_err(Into::into)?;
    }
    if total.is_some() {
        conn.set_request_timeout(total).map_err(Into::into)?;
    }
    if options.disable_nagle_algorithm {
        conn.set_nodelay(true).map_err(Into::into)?;
    }
    // After the timeouts, which bound it (a TLS handshake, say).
    conn.establish().map_err(Into::into)
}

/// `setup`, `handle` and `finish` of a handler over the request, then the
/// final flush of `wfile`'s buffer.
fn run_lifecycle<C: Connection, H: StreamHandler<C>>(
    handler: &mut H,
    conn: &RefCell<C>,
    client_address: C::Addr,
    rbuf: &mut [u8],
    wbuf: &mut [u8],
) -> Result<(), Error> {
    let mut request = StreamRequest::new(conn, client_address, rbuf, wbuf);
    let ran = handler.setup(&mut request).and_then(|()| {
        let handled = handler.handle(&mut request);
        let finished = handler.finish(&mut request);
        handled.and(finished)
    });
    // Python's final `wfile.flush()`: what is buffered goes out. Waiting
    // for the peer to take it is the transport's business when the
    // connection closes, not this request's.
    let flushed = request.wfile.flush_buffer();
    ran.and(flushed)
}

/// Python's `shutdown_request` for streams: `SHUT_WR` (its error ignored,
/// as some platforms report `ENOTCONN`), then `close_request`.
pub fn shutdown_request<C: Connection>(mut conn: C) {
    let _ = conn.shutdown_write();
    conn.close();
}

/// Serves one accepted connection to the end: builds a handler, runs it
/// (and drops it), reports an error to `handle_error`, then shuts the
/// connection down.
///
/// This is what every dispatch strategy runs, inline, on another thread or
/// in a child process. With the core's `std` feature, a panic in the
/// handler is caught here, once per request, and reported as
/// [`Error::Panicked`]; the connection is then shut down as after any
/// other error (`finish` does not run after a panic).
pub fn serve_connection<C, F, H>(
    conn: C,
    client_address: C::Addr,
    factory: &F,
    hooks: &H,
    rbuf: &mut [u8],
    wbuf: &mut [u8],
) where
    C: Connection,
    F: HandlerFactory + ?Sized,
    F::Handler: StreamHandler<C>,
    H: Hooks<C, C::Addr> + ?Sized,
{
    crate::seam::serve_with(
        conn,
        client_address,
        &crate::seam::Factory(factory),
        hooks,
        rbuf,
        wbuf,
    );
}

/// `rfile` as a [`std::io::Read`] (feature `std`): for `io::copy`,
/// `serde_json::from_reader` and the rest of the std ecosystem.
#[cfg(feature = "std")]
impl<C: Connection> std::io::Read for RFile<'_, C> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        Read::read(self, out).map_err(std::io::Error::from)
    }
}

/// `rfile` as a [`std::io::BufRead`] (feature `std`): `lines()`,
/// `read_line` into a `String`, ... Note that these grow their `String` or
/// `Vec` without the bound [`RFile::read_line`] keeps.
#[cfg(feature = "std")]
impl<C: Connection> std::io::BufRead for RFile<'_, C> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        BufRead::fill_buf(self).map_err(std::io::Error::from)
    }

    fn consume(&mut self, amt: usize) {
        BufRead::consume(self, amt);
    }
}

/// `wfile` as a [`std::io::Write`] (feature `std`).
#[cfg(feature = "std")]
impl<C: Connection> std::io::Write for WFile<'_, C> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        Write::write(self, data).map_err(std::io::Error::from)
    }

    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        Write::write_all(self, data).map_err(std::io::Error::from)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Write::flush(self).map_err(std::io::Error::from)
    }
}
