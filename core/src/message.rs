//! Persistent connections served one message at a time: Python's
//! `BaseHTTPRequestHandler.handle_one_request` and `close_connection`.
//!
//! A [`StreamHandler`] owns its connection until it closes, which on
//! std costs a thread per connection, idle or not. A [`MessageHandler`]
//! serves one message per call (a line, a request, a frame) and says
//! whether the connection stays open. Between messages a dispatch keeps the
//! connection and the handler as a [`Session`], and gives it a thread (or a
//! turn of the firmware's loop) only when a whole message has arrived.
//!
//! The same handler also runs under every classic dispatch, wrapped in
//! [`MessageLoop`]: Python's own `handle()`, a loop of `handle_one_request`.

use core::cell::{Ref, RefCell};
use core::ops::Range;

use embedded_io::BufRead;

use crate::handler::{Hooks, StreamHandler, StreamOptions};
use crate::stream::{apply_options, shutdown_request, StreamRequest};
use crate::transport::Connection;
use crate::Error;

/// What a [`MessageHandler`] wants after a message: Python's
/// `close_connection`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
pub enum Next {
    /// Keep the connection for the next message (`close_connection = False`).
    KeepOpen,
    /// Close the connection after this message (`close_connection = True`).
    Close,
    /// The reply is not finished (beyond Python): call
    /// [`MessageHandler::resume`] once the connection can take more bytes.
    /// A dispatch that parks connections holds no thread meanwhile, so a
    /// client that reads slowly costs a parked connection, not a worker.
    Resume,
}

/// Serves a persistent connection one message per call (Python's
/// `handle_one_request`), keeping its own state between messages.
///
/// The lifecycle of one connection: [`setup`](Self::setup) once, before the
/// first message; [`handle_message`](Self::handle_message) for each
/// message, until it returns [`Next::Close`] or fails; then
/// [`finish`](Self::finish), which runs after a failed `handle_message`
/// too, but not after a failed `setup` or a panic. A connection that ends
/// before its first message sees none of them.
///
/// `handle_message` is called only when the bytes received make a whole
/// message by [`message_complete`](Self::message_complete) (by default, a
/// line), when they fill the `rfile` buffer, or when the peer closed after
/// sending some: so its reads of that message do not wait for the network.
/// A handler may still read more (a body whose length the head gives);
/// those reads block, bounded by [`StreamOptions::timeout`], and on std
/// hold a worker while they wait.
///
/// [`StreamOptions::request_timeout`] bounds each message, from its first
/// byte to the end of its reply; [`StreamOptions::timeout`] bounds each read
/// and write. How long an idle connection is kept is the dispatch's setting.
///
/// ```
/// use socketserver_core::{Connection, Error, MessageHandler, Next, StreamRequest};
///
/// /// Echoes lines; says how many it has echoed on this connection at "count".
/// #[derive(Default)]
/// struct CountingEcho {
///     lines: u64,
/// }
///
/// impl<C: Connection> MessageHandler<C> for CountingEcho {
///     fn handle_message(&mut self, req: &mut StreamRequest<'_, C>) -> Result<Next, Error> {
///         let line = req.rfile.read_line()?;
///         if line == b"count\n" {
///             write!(req.wfile, "{}\n", self.lines)?;
///         } else {
///             self.lines += 1;
///             req.wfile.write_all(line)?;
///         }
///         Ok(Next::KeepOpen)
///     }
/// }
/// # let _ = CountingEcho::default();
/// ```
pub trait MessageHandler<C: Connection> {
    /// The settings applied to the connection before `setup`.
    fn options(&self) -> StreamOptions {
        StreamOptions::new()
    }

    /// Whether `buffered`, the bytes received and not yet read, hold a
    /// whole message. Default: a line (a `\n` among them).
    fn message_complete(&self, buffered: &[u8]) -> bool {
        buffered.contains(&b'\n')
    }

    /// Prepares the connection, once, before its first message. An error
    /// here closes it without `finish`.
    fn setup(&mut self, request: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let _ = request;
        Ok(())
    }

    /// Serves one message (Python's `handle_one_request`) and says whether
    /// the connection stays open (`close_connection`). An error closes it,
    /// after `finish`, and is passed to the server's `handle_error`.
    fn handle_message(&mut self, request: &mut StreamRequest<'_, C>) -> Result<Next, Error>;

    /// Continues a reply that [`handle_message`](Self::handle_message) (or
    /// the previous `resume`) left unfinished by returning
    /// [`Next::Resume`]; called once the connection can take more bytes.
    /// Write with [`WFile::write_now`](crate::WFile::write_now), which
    /// never waits under a parking dispatch, keep the position in the
    /// handler, and return `Next::Resume` again until the reply is done.
    /// Do not read here: the next message waits for the next call of
    /// `handle_message`. Default: the reply is done (`Next::KeepOpen`).
    fn resume(&mut self, request: &mut StreamRequest<'_, C>) -> Result<Next, Error> {
        let _ = request;
        Ok(Next::KeepOpen)
    }

    /// Cleans up once the connection ends, whether the last message
    /// succeeded or not. A buffered `wfile` is flushed after it.
    fn finish(&mut self, request: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let _ = request;
        Ok(())
    }
}

/// A [`MessageHandler`] served as a classic [`StreamHandler`]: Python's
/// `BaseHTTPRequestHandler.handle()`, which calls `handle_one_request` until
/// `close_connection`. With it, a message handler runs on every server,
/// including the threading and inline ones and smoltcp's, holding its
/// connection (and on std its thread) between messages.
///
/// The loop ends quietly when the peer closes between messages.
#[derive(Clone, Copy, Debug, Default)]
pub struct MessageLoop<H>(pub H);

impl<C: Connection, H: MessageHandler<C>> StreamHandler<C> for MessageLoop<H> {
    fn options(&self) -> StreamOptions {
        self.0.options()
    }

    fn setup(&mut self, request: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        self.0.setup(request)
    }

    fn handle(&mut self, request: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        // The request bound applies to each message, as under a message dispatch.
        let total = self.0.options().request_timeout;
        loop {
            if BufRead::fill_buf(&mut request.rfile)?.is_empty() {
                return Ok(());
            }
            if total.is_some() {
                request
                    .connection()
                    .set_request_timeout(total)
                    .map_err(Into::into)?;
            }
            let mut next = self.0.handle_message(request)?;
            while next == Next::Resume {
                // `write_now` waits here, so this loop never spins.
                next = self.0.resume(request)?;
            }
            if next == Next::Close {
                return Ok(());
            }
            request.wfile.flush_buffer()?;
        }
    }

    fn finish(&mut self, request: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        self.0.finish(request)
    }
}

/// Where a [`Session`] is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// No message yet: `setup` has not run.
    New,
    /// `setup` ran: `finish` is due when the connection ends.
    Open,
    /// Ended without a `finish` due (a failed `setup`, a panic, or `finish` done).
    Done,
}

/// What [`Session::serve`] left.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
pub enum Turn {
    /// The connection stays open. The range of the read buffer holds bytes
    /// received and not yet read (pipelined messages): keep them for the
    /// next turn, whose buffer must start with them.
    Park(Range<usize>),
    /// The reply is not finished ([`Next::Resume`]): park the connection
    /// until it can take more bytes, then call [`Session::resume`]. The
    /// range holds unread bytes, as with `Park`.
    Resume(Range<usize>),
    /// The connection is done (the handler closed it, failed or panicked;
    /// `finish` and `handle_error` have run): end it with [`Session::close`].
    Close,
}

/// A persistent connection and its [`MessageHandler`], as a message
/// dispatch keeps them between messages: the one-message lifecycle that
/// every backend's dispatch shares.
///
/// A dispatch reads what arrives (without waiting) into a buffer, asks
/// [`message_complete`](Self::message_complete), and when a message is
/// whole runs [`serve`](Self::serve) over that buffer. Between turns it
/// holds the session and the unread bytes, and nothing else.
pub struct Session<C: Connection, H> {
    conn: RefCell<C>,
    client_address: C::Addr,
    handler: H,
    options: StreamOptions,
    stage: Stage,
}

impl<C: Connection, H: MessageHandler<C>> Session<C, H> {
    /// A session for a connection just accepted from `client_address`.
    pub fn new(conn: C, client_address: C::Addr, handler: H) -> Self {
        let options = handler.options();
        Session {
            conn: RefCell::new(conn),
            client_address,
            handler,
            options,
            stage: Stage::New,
        }
    }

    /// The connection (to register it with a poller, or read from it
    /// without waiting).
    ///
    /// # Panics
    /// If it is borrowed, which only a handler's own `connection()` result
    /// still alive after its turn could do.
    pub fn connection(&self) -> Ref<'_, C> {
        self.conn.borrow()
    }

    /// The connection, to read what it has received without waiting.
    ///
    /// # Panics
    /// As [`connection`](Self::connection).
    pub fn connection_mut(&self) -> core::cell::RefMut<'_, C> {
        self.conn.borrow_mut()
    }

    /// The peer's address.
    pub fn client_address(&self) -> &C::Addr {
        &self.client_address
    }

    /// The handler's options, read once when the session began.
    pub fn options(&self) -> &StreamOptions {
        &self.options
    }

    /// Whether `buffered` holds a whole message, by the handler's
    /// [`MessageHandler::message_complete`].
    pub fn message_complete(&self, buffered: &[u8]) -> bool {
        self.handler.message_complete(buffered)
    }

    /// Serves one message from `rbuf[..filled]` (and whatever the handler
    /// reads beyond it), with `wbuf` as the write buffer of a handler that
    /// asks for one. Runs `setup` first on the first message; on the last,
    /// `finish`; reports an error (a panic, with the core's `std` feature,
    /// as [`Error::Panicked`]) to `hooks.handle_error`.
    pub fn serve<K>(&mut self, rbuf: &mut [u8], filled: usize, wbuf: &mut [u8], hooks: &K) -> Turn
    where
        K: Hooks<C, C::Addr> + ?Sized,
    {
        self.turn(false, rbuf, filled, wbuf, hooks)
    }

    /// Continues an unfinished reply ([`Turn::Resume`]) once the
    /// connection can take more: [`MessageHandler::resume`], with
    /// `rbuf[..filled]` holding the unread bytes as for
    /// [`serve`](Self::serve), which they are handed to afterwards.
    pub fn resume<K>(&mut self, rbuf: &mut [u8], filled: usize, wbuf: &mut [u8], hooks: &K) -> Turn
    where
        K: Hooks<C, C::Addr> + ?Sized,
    {
        self.turn(true, rbuf, filled, wbuf, hooks)
    }

    fn turn<K>(
        &mut self,
        resuming: bool,
        rbuf: &mut [u8],
        filled: usize,
        wbuf: &mut [u8],
        hooks: &K,
    ) -> Turn
    where
        K: Hooks<C, C::Addr> + ?Sized,
    {
        let served = crate::unwind::catch(|| self.step(resuming, rbuf, filled, wbuf));
        let error = match served {
            Ok((Next::KeepOpen, unread)) => return Turn::Park(unread),
            Ok((Next::Resume, unread)) => return Turn::Resume(unread),
            Ok((Next::Close, _)) => None,
            Err(error) => Some(error),
        };
        if matches!(error, Some(Error::Panicked)) {
            // The handler may be half-updated: no `finish`, as for a request.
            self.stage = Stage::Done;
        }
        self.finish_with(error, rbuf, wbuf, hooks);
        Turn::Close
    }

    /// Ends the session without another message: the connection went idle
    /// too long, a message did not complete in time (`why` says so), the
    /// peer closed between messages, or the server is shutting down. Runs
    /// `finish` if `setup` ran, reports `why` to `handle_error`, then shuts
    /// the connection down.
    pub fn end<K>(mut self, why: Option<Error>, rbuf: &mut [u8], wbuf: &mut [u8], hooks: &K)
    where
        K: Hooks<C, C::Addr> + ?Sized,
    {
        self.finish_with(why, rbuf, wbuf, hooks);
        self.close();
    }

    /// Python's `shutdown_request` for the connection: `SHUT_WR`, then
    /// close. Call it after [`Turn::Close`].
    pub fn close(self) {
        shutdown_request(self.conn.into_inner());
    }

    /// One message, or the rest of a reply; what the handler wants next,
    /// and the unread bytes.
    fn step(
        &mut self,
        resuming: bool,
        rbuf: &mut [u8],
        filled: usize,
        wbuf: &mut [u8],
    ) -> Result<(Next, Range<usize>), Error> {
        let wbuf = if self.options.buffered_wfile {
            wbuf
        } else {
            &mut []
        };
        let total = self.options.request_timeout;
        let first = self.stage == Stage::New;
        if first {
            self.stage = Stage::Done;
            apply_options(&mut *self.conn.borrow_mut(), &self.options, total)?;
        } else if total.is_some() && !resuming {
            self.conn
                .borrow_mut()
                .set_request_timeout(total)
                .map_err(Into::into)?;
        }
        let address = self.client_address.clone();
        let mut request = StreamRequest::prefilled(&self.conn, address, rbuf, filled, wbuf);
        if first {
            self.handler.setup(&mut request)?;
            self.stage = Stage::Open;
        }
        let next = if resuming {
            self.handler.resume(&mut request)?
        } else {
            self.handler.handle_message(&mut request)?
        };
        request.wfile.flush_buffer()?;
        Ok((next, request.rfile.unread()))
    }

    /// `finish` if it is due, then the report of the first error.
    fn finish_with<K>(&mut self, error: Option<Error>, rbuf: &mut [u8], wbuf: &mut [u8], hooks: &K)
    where
        K: Hooks<C, C::Addr> + ?Sized,
    {
        let mut error = error;
        if self.stage == Stage::Open {
            self.stage = Stage::Done;
            let finished = crate::unwind::catch(|| {
                let wbuf = if self.options.buffered_wfile {
                    wbuf
                } else {
                    &mut []
                };
                let address = self.client_address.clone();
                let mut request = StreamRequest::prefilled(&self.conn, address, rbuf, 0, wbuf);
                let finished = self.handler.finish(&mut request);
                finished.and(request.wfile.flush_buffer())
            });
            if let Err(late) = finished {
                error.get_or_insert(late);
            }
        }
        if let Some(error) = error {
            hooks.handle_error(&self.client_address, &error);
        }
    }
}

impl<C: Connection, H> core::fmt::Debug for Session<C, H>
where
    C: core::fmt::Debug,
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("conn", &self.conn)
            .field("client_address", &self.client_address)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}
