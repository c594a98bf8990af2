//! [`MessageDispatch`]: persistent connections served a message at a time
//! by one loop, without threads or a heap (firmware, smoltcp).

use core::time::Duration;

use embedded_io::{ReadReady, WriteReady};

use crate::handler::{HandlerFactory, Hooks, ServerHooks};
use crate::message::{MessageHandler, Session, Turn};
use crate::server::{take_stream_request, Dispatch, Incoming, Lifecycle, Took};
use crate::stream::shutdown_request;
use crate::time::{Clock, Instant};
use crate::transport::{kind, Connection, Listener};
use crate::Error;

/// One open connection of a [`MessageDispatch`] and its unread bytes.
struct Slot<C: Connection, Hd, const R: usize> {
    session: Session<C, Hd>,
    buf: [u8; R],
    filled: usize,
    /// With bytes in `buf`: when the first of them came; else the last
    /// activity.
    since: Instant,
    /// A reply is unfinished ([`Turn::Resume`]): resume it when the
    /// connection can take more, before reading.
    writing: bool,
}

/// Serves [`MessageHandler`]s on up to `N` persistent connections from the
/// server's own loop, one message per [`take`](Dispatch::take), in turn:
/// several keep-alive clients at once with no thread, no heap and no OS.
///
/// Each `take` accepts a waiting connection into a free slot, then looks
/// at the open connections in round-robin order, starting after the one
/// served last: it reads what each has received without waiting (the
/// connection's [`ReadReady`]) into the slot's `R`-byte buffer and serves
/// the first that holds a whole message
/// ([`message_complete`](MessageHandler::message_complete)), or whose
/// buffer is full, or whose peer closed after sending some. So a client
/// with a message waiting is served before a busy one gets another turn.
/// When no connection has a message, `take` reports nothing and the server
/// waits on the listener (on smoltcp: until the stack changes).
///
/// - **Storage** is visible: `N` slots of an `R`-byte read buffer each (a
///   slot holds only unread bytes between messages), and one `W`-byte
///   write buffer for handlers that ask for a buffered `wfile`.
/// - **Bounds:** a connection idle for [`idle_timeout`](Self::idle_timeout)
///   is closed (`finish` runs); a message that does not arrive whole within
///   the handler's `request_timeout` from its first byte is cut and reported
///   as `TimedOut`. Both are checked at each `take`, so at least once per
///   `poll_interval` of `serve_forever`.
/// - **At `N` open connections** a new one is shut down at once and
///   reported to `handle_error` (on smoltcp, a listener whose backlog is
///   the same `N` refuses it before that).
/// - **Blocking:** what a handler reads beyond the message it was handed
///   (a body) blocks the loop, bounded by its `timeout`; so do its writes.
/// - **Closing** the server (`server_close`) ends every open connection,
///   `finish` included.
///
/// `K` is the clock the bounds are measured with (the server's).
pub struct MessageDispatch<C, F, H, K, const N: usize, const R: usize, const W: usize>
where
    C: Connection,
    F: HandlerFactory,
{
    factory: F,
    hooks: H,
    clock: K,
    slots: [Option<Slot<C, F::Handler, R>>; N],
    wbuf: [u8; W],
    /// Where the next round-robin look starts.
    next: usize,
    idle_timeout: Option<Duration>,
}

impl<C, F, H, K, const N: usize, const R: usize, const W: usize>
    MessageDispatch<C, F, H, K, N, R, W>
where
    C: Connection + ReadReady + WriteReady,
    F: HandlerFactory,
    F::Handler: MessageHandler<C>,
    H: Hooks<C, C::Addr>,
    K: Clock,
{
    /// Serves handlers from `factory` with `hooks`, measuring time with
    /// `clock`. No idle timeout until [`idle_timeout`](Self::idle_timeout).
    pub fn new(factory: F, hooks: H, clock: K) -> Self {
        MessageDispatch {
            factory,
            hooks,
            clock,
            slots: core::array::from_fn(|_| None),
            wbuf: [0; W],
            next: 0,
            idle_timeout: None,
        }
    }

    /// Closes a connection that has received nothing for `timeout`
    /// (`None`: never, the default).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How many connections are open.
    pub fn open(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Gives a new connection a slot, or refuses it.
    fn admit(&mut self, conn: C, addr: C::Addr) {
        let now = self.clock.now();
        let Some(free) = self.slots.iter_mut().find(|s| s.is_none()) else {
            self.hooks.handle_error(
                &addr,
                &Error::Handler("refused: every connection slot is taken"),
            );
            shutdown_request(conn);
            return;
        };
        let session = Session::new(conn, addr, self.factory.build());
        *free = Some(Slot {
            session,
            buf: [0; R],
            filled: 0,
            since: now,
            writing: false,
        });
    }

    /// Looks at slot `i`: reads what arrived, ends it if its time ran out,
    /// serves a message if one is whole. Whether a message was served.
    fn look(&mut self, i: usize, now: Instant) -> bool {
        let Some(slot) = self.slots[i].as_mut() else {
            return false;
        };
        let idle = now.saturating_duration_since(slot.since);
        let idle_too_long = self.idle_timeout.is_some_and(|t| idle >= t);
        if slot.writing {
            let ready = slot.session.connection_mut().write_ready();
            match ready.map_err(Into::into) {
                Ok(true) => {}
                Ok(false) => {
                    if idle_too_long {
                        self.end(i, None);
                    }
                    return false;
                }
                Err(error) => {
                    self.end(i, Some(error));
                    return false;
                }
            }
            let filled = slot.filled;
            let turn = slot
                .session
                .resume(&mut slot.buf, filled, &mut self.wbuf, &self.hooks);
            self.settle(i, turn, false);
            return true;
        }
        let arrived = receive(slot);
        let (eof, complete) = match arrived {
            Ok(found) => found,
            Err(error) => {
                self.end(i, Some(error));
                return false;
            }
        };
        if slot.filled == 0 {
            if eof || idle_too_long {
                self.end(i, None);
            }
            return false;
        }
        if !(complete || eof || slot.filled == R) {
            let bound = slot.session.options().request_timeout;
            if bound.is_some_and(|t| idle >= t) {
                self.end(i, Some(Error::io(embedded_io::ErrorKind::TimedOut)));
            }
            return false;
        }
        let filled = slot.filled;
        let turn = slot
            .session
            .serve(&mut slot.buf, filled, &mut self.wbuf, &self.hooks);
        self.settle(i, turn, eof);
        true
    }

    /// Keeps slot `i` after a turn, or ends it.
    fn settle(&mut self, i: usize, turn: Turn, eof: bool) {
        let now = self.clock.now();
        let Some(slot) = self.slots[i].as_mut() else {
            return;
        };
        let writing = matches!(turn, Turn::Resume(_));
        match turn {
            Turn::Park(unread) | Turn::Resume(unread) => {
                slot.writing = writing;
                slot.filled = unread.len();
                slot.buf.copy_within(unread, 0);
                slot.since = now;
                if eof && slot.filled == 0 && !slot.writing {
                    self.end(i, None);
                }
            }
            Turn::Close => {
                if let Some(slot) = self.slots[i].take() {
                    slot.session.close();
                }
            }
        }
    }

    /// Ends slot `i`'s connection without another message.
    fn end(&mut self, i: usize, why: Option<Error>) {
        if let Some(mut slot) = self.slots[i].take() {
            slot.session
                .end(why, &mut slot.buf, &mut self.wbuf, &self.hooks);
        }
    }
}

/// Reads what `slot`'s connection has received, without waiting, until a
/// message is whole or the buffer full: (end of stream, message complete).
fn receive<C, Hd, const R: usize>(slot: &mut Slot<C, Hd, R>) -> Result<(bool, bool), Error>
where
    C: Connection + ReadReady + WriteReady,
    Hd: MessageHandler<C>,
{
    let mut complete = slot.filled > 0 && slot.session.message_complete(&slot.buf[..slot.filled]);
    while !complete && slot.filled < R {
        let mut conn = slot.session.connection_mut();
        if !conn.read_ready().map_err(Into::into)? {
            break;
        }
        let n = conn
            .read(&mut slot.buf[slot.filled..])
            .map_err(Into::into)?;
        drop(conn);
        if n == 0 {
            return Ok((true, false));
        }
        slot.filled += n;
        complete = slot.session.message_complete(&slot.buf[..slot.filled]);
    }
    Ok((false, complete))
}

impl<C, F, H, K, const N: usize, const R: usize, const W: usize> Lifecycle
    for MessageDispatch<C, F, H, K, N, R, W>
where
    C: Connection + ReadReady + WriteReady,
    F: HandlerFactory,
    F::Handler: MessageHandler<C>,
    H: Hooks<C, C::Addr> + ServerHooks,
    K: Clock,
{
    type Hooks = H;

    fn hooks(&self) -> &H {
        &self.hooks
    }

    /// Ends every open connection (`finish` runs for each).
    fn server_close(&mut self) {
        for i in 0..N {
            self.end(i, None);
        }
    }
}

impl<L, C, F, H, K, const N: usize, const R: usize, const W: usize> Dispatch<L, kind::Stream>
    for MessageDispatch<C, F, H, K, N, R, W>
where
    L: Listener<Connection = C>,
    C: Connection<Addr = L::Addr> + ReadReady + WriteReady,
    F: HandlerFactory,
    F::Handler: MessageHandler<C>,
    H: Hooks<C, C::Addr> + ServerHooks,
    K: Clock,
{
    /// Accepts a waiting connection, then serves one whole message of the
    /// next connection (round robin) that has one. [`Took::Nothing`] when
    /// neither happened.
    fn take(&mut self, listener: &mut L) -> Took {
        let taken = match take_stream_request(listener, &self.hooks) {
            Incoming::Request((conn, addr)) => {
                self.admit(conn, addr);
                Took::Request
            }
            Incoming::Refused => Took::Request,
            Incoming::Failed => Took::Failed,
            _ => Took::Nothing,
        };
        let now = self.clock.now();
        for k in 0..N {
            let i = (self.next + k) % N;
            if self.look(i, now) {
                self.next = (i + 1) % N;
                return Took::Request;
            }
        }
        taken
    }
}
