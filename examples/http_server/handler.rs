//! One connection's handler: an HTTP request per `handle_message` call
//! (Python's `BaseHTTPRequestHandler.handle_one_request`), keep-alive as
//! [`Next::KeepOpen`] (`close_connection = False`).

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use socketserver::{Connection, Error, MessageHandler, Next, StreamOptions, StreamRequest};

use crate::files::{Resolved, Resolver};
use crate::request::{self, Head, HeadParser, Step};
use crate::response::{After, Reply, Status, CHUNK};
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

/// One connection: the site it serves, and whether it only waits for the
/// client to stop sending before it closes.
pub struct HttpHandler {
    site: Arc<Site>,
    /// `Some(bytes dropped)` once a reply left input unread: the sending
    /// side is shut, and what still arrives is read and dropped, a turn at
    /// a time, until the client closes (or [`DRAIN_BYTES`], or the idle
    /// timeout). Between turns the connection waits like an idle one.
    drained: Option<usize>,
}

impl HttpHandler {
    pub fn new(site: Arc<Site>) -> Self {
        HttpHandler {
            site,
            drained: None,
        }
    }
}

impl<C: Connection> MessageHandler<C> for HttpHandler {
    /// Every read and write within `--timeout`; the head within
    /// `--header-timeout` (a reply then sets its own deadline).
    fn options(&self) -> StreamOptions {
        StreamOptions::new()
            .timeout(Some(self.site.timeout))
            .request_timeout(Some(self.site.header_timeout))
            .disable_nagle_algorithm(true)
    }

    /// A request head; while draining, whatever arrives.
    fn message_complete(&self, buffered: &[u8]) -> bool {
        if self.drained.is_some() {
            return !buffered.is_empty();
        }
        request::head_complete(buffered)
    }

    fn handle_message(&mut self, req: &mut StreamRequest<'_, C>) -> Result<Next, Error> {
        if let Some(drained) = &mut self.drained {
            return drain(req, drained);
        }
        let after = SCRATCH.with_borrow_mut(|scratch| serve(&self.site, scratch, req))?;
        Ok(match after {
            After::KeepAlive => Next::KeepOpen,
            After::Close => Next::Close,
            After::Drain => {
                // The client sees the end of the reply; closing waits for
                // the end of its input.
                req.connection().shutdown_write().map_err(Into::into)?;
                self.drained = Some(0);
                Next::KeepOpen
            }
        })
    }
}

/// Drops what arrived; closes at the client's end of input or after
/// [`DRAIN_BYTES`].
fn drain<C: Connection>(
    req: &mut StreamRequest<'_, C>,
    drained: &mut usize,
) -> Result<Next, Error> {
    let n = req.rfile.fill_buf()?.len();
    req.rfile.consume(n);
    *drained += n;
    Ok(if n == 0 || *drained >= DRAIN_BYTES {
        Next::Close
    } else {
        Next::KeepOpen
    })
}

/// Reads one request and answers it.
fn serve<C: Connection>(
    site: &Site,
    scratch: &mut Scratch,
    req: &mut StreamRequest<'_, C>,
) -> Result<After, Error> {
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
        HeadRead::Closed => return Ok(After::Close),
        HeadRead::Refused(status, head) => return reply.error(status, &head),
        HeadRead::Head(head) => head,
    };
    // The body of a GET means nothing here; rather than read it, close.
    head.keep_alive &= !head.has_body;
    let after = After::for_head(&head);
    match resolver.resolve(site, target) {
        Err(status) => return reply.error(status, &head),
        Ok(Resolved::AddSlash) => reply.redirect(&head, resolver.rel(), request::query(target))?,
        Ok(Resolved::File(found)) => reply.file(&head, found)?,
    }
    Ok(after)
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
