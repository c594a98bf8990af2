//! One connection's handler: an HTTP request per `handle_message` call
//! (Python's `BaseHTTPRequestHandler.handle_one_request`), keep-alive as
//! [`Next::KeepOpen`] (`close_connection = False`).

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use socketserver::{Connection, Error, MessageHandler, Next, StreamOptions, StreamRequest};

use crate::files::{Resolved, Resolver};
use crate::request::{self, Head, HeadParser, Step};
use crate::response::{After, Progress, Reply, Sending, Status, CHUNK};
use crate::Site;

/// After a reply that leaves input unread, at most this much more is read
/// and dropped before the connection closes anyway.
const DRAIN_BYTES: usize = 1 << 20;

thread_local! {
    /// A worker's buffers, lent to the request it serves: a connection
    /// waiting for its next request holds none of them.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// What serving a request needs beyond the connection's own state.
struct Scratch {
    /// Response heads, then file chunks.
    buf: Box<[u8]>,
    /// The request target, as received.
    target: Vec<u8>,
    resolver: Resolver,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            buf: vec![0; CHUNK].into_boxed_slice(),
            target: Vec::with_capacity(256),
            resolver: Resolver::default(),
        }
    }
}

/// One connection: the site it serves, and where it is between turns.
pub struct HttpHandler {
    site: Arc<Site>,
    state: State,
}

/// Where a connection is between turns.
enum State {
    /// Waiting for a request.
    Idle,
    /// A reply the connection has not taken whole yet, and what follows it.
    Sending(Sending, After),
    /// A reply left input unread: the sending side is shut, and what still
    /// arrives is read and dropped, a turn at a time, until the client
    /// closes (or [`DRAIN_BYTES`] were dropped, or the idle timeout).
    Draining { dropped: usize },
}

impl HttpHandler {
    pub fn new(site: Arc<Site>) -> Self {
        HttpHandler {
            site,
            state: State::Idle,
        }
    }

    /// After a turn of a reply: more turns for the rest of it, or what the
    /// request asked for next.
    fn next<C: Connection>(
        &mut self,
        progress: Progress,
        after: After,
        req: &mut StreamRequest<'_, C>,
    ) -> Result<Next, Error> {
        self.state = State::Idle;
        Ok(match (progress, after) {
            (Progress::Unfinished(sending), _) => {
                self.state = State::Sending(sending, after);
                Next::Resume
            }
            (Progress::Done, After::KeepAlive) => Next::KeepOpen,
            (Progress::Done, After::Close) => Next::Close,
            (Progress::Done, After::Drain) => {
                // The client sees the end of the reply; closing waits for
                // the end of its input.
                req.connection().shutdown_write().map_err(Into::into)?;
                self.state = State::Draining { dropped: 0 };
                Next::KeepOpen
            }
        })
    }
}

impl<C: Connection> MessageHandler<C> for HttpHandler {
    /// A read or write that waits (under a parking dispatch none does)
    /// within `--timeout`; the head within `--header-timeout` of its first
    /// byte (a reply then follows the `--min-rate` schedule).
    fn options(&self) -> StreamOptions {
        StreamOptions::new()
            .timeout(Some(self.site.timeout))
            .request_timeout(Some(self.site.header_timeout))
            .disable_nagle_algorithm(true)
    }

    /// A request head; while draining, whatever arrives.
    fn message_complete(&self, buffered: &[u8]) -> bool {
        match self.state {
            State::Draining { .. } => !buffered.is_empty(),
            _ => request::head_complete(buffered),
        }
    }

    fn handle_message(&mut self, req: &mut StreamRequest<'_, C>) -> Result<Next, Error> {
        if let State::Draining { dropped } = &mut self.state {
            return drain(req, dropped);
        }
        let site = &self.site;
        let (progress, after) = SCRATCH.with_borrow_mut(|scratch| serve(site, scratch, req))?;
        self.next(progress, after, req)
    }

    /// More of an unfinished reply, now that the connection can take it.
    fn resume(&mut self, req: &mut StreamRequest<'_, C>) -> Result<Next, Error> {
        let State::Sending(sending, after) = std::mem::replace(&mut self.state, State::Idle) else {
            return Ok(Next::KeepOpen);
        };
        let site = &self.site;
        let progress =
            SCRATCH.with_borrow_mut(|scratch| sending.pump(site, &mut scratch.buf, req))?;
        self.next(progress, after, req)
    }
}

/// Drops what arrived; closes at the client's end of input or after
/// [`DRAIN_BYTES`].
fn drain<C: Connection>(
    req: &mut StreamRequest<'_, C>,
    dropped: &mut usize,
) -> Result<Next, Error> {
    let n = req.rfile.fill_buf()?.len();
    req.rfile.consume(n);
    *dropped += n;
    Ok(if n == 0 || *dropped >= DRAIN_BYTES {
        Next::Close
    } else {
        Next::KeepOpen
    })
}

/// Reads one request and starts its reply; what follows the reply.
fn serve<C: Connection>(
    site: &Site,
    scratch: &mut Scratch,
    req: &mut StreamRequest<'_, C>,
) -> Result<(Progress, After), Error> {
    let Scratch {
        buf,
        target,
        resolver,
    } = scratch;
    let read = read_head(req, target)?;
    let mut reply = Reply {
        site,
        buf,
        req,
        start: Instant::now(),
    };
    let mut head = match read {
        HeadRead::Closed => return Ok((Progress::Done, After::Close)),
        HeadRead::Refused(status, head) => {
            let after = After::for_error(status, &head);
            return Ok((reply.error(status, &head, after)?, after));
        }
        HeadRead::Head(head) => head,
    };
    // The body of a GET means nothing here; rather than read it, close.
    head.keep_alive &= !head.has_body;
    let after = After::for_head(&head);
    Ok(match resolver.resolve(site, target) {
        Err(status) => {
            let after = After::for_error(status, &head);
            (reply.error(status, &head, after)?, after)
        }
        Ok(Resolved::AddSlash) => {
            let query = request::query(target);
            (reply.redirect(&head, resolver.rel(), query)?, after)
        }
        Ok(Resolved::File(found)) => (reply.file(&head, found)?, after),
    })
}

/// How reading a request head ended.
enum HeadRead {
    /// The client closed, possibly inside the head.
    Closed,
    Refused(Status, Head),
    Head(Head),
}

/// Reads a request head through `rfile`, whose capacity bounds it: a head
/// that does not fit is refused before more of it is waited for. Under a
/// message dispatch the whole head is buffered already, so nothing here
/// waits for the network.
fn read_head<C: Connection>(
    req: &mut StreamRequest<'_, C>,
    target: &mut Vec<u8>,
) -> Result<HeadRead, Error> {
    let capacity = req.rfile.capacity();
    let mut parser = HeadParser::default();
    loop {
        let buffered = req.rfile.fill_buf()?;
        if buffered.is_empty() {
            return Ok(HeadRead::Closed);
        }
        if !buffered.contains(&b'\n') && parser.bytes() + buffered.len() >= capacity {
            let (status, head) = parser.too_large();
            return Ok(HeadRead::Refused(status, head));
        }
        let line = match req.rfile.read_line() {
            // End of stream inside a line: the client is done.
            Ok(line) if !line.ends_with(b"\n") => return Ok(HeadRead::Closed),
            Ok(line) => line,
            Err(Error::LineTooLong { .. }) => {
                let (status, head) = parser.too_large();
                return Ok(HeadRead::Refused(status, head));
            }
            Err(e) => return Err(e),
        };
        match parser.line(line, target) {
            Step::More => {}
            Step::Done(head) => return Ok(HeadRead::Head(head)),
            Step::Refused(status, head) => return Ok(HeadRead::Refused(status, head)),
        }
    }
}
