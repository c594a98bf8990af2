//! Writing a response: statuses, heads, error pages, redirects and file
//! bodies, each sent within its deadline.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use socketserver::{Connection, Error, StreamRequest};

use crate::files::Found;
use crate::request::{Head, Method};
use crate::text::{decimal, http_date};
use crate::Site;

/// Response head plus file chunks; holds any head, whose longest field
/// (`Location`: a request line's path, escaped, is at most three times as long).
pub const CHUNK: usize = 64 * 1024;

const SERVER: &[u8] = b"Server: socketserver-http/0.1\r\n";

/// A status this server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    MovedPermanently,
    NotModified,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    UriTooLong,
    HeaderFieldsTooLarge,
    VersionNotSupported,
}

/// An error page for `code reason`.
macro_rules! page {
    ($status:literal) => {
        concat!(
            "<!DOCTYPE html>\n<title>",
            $status,
            "</title>\n<h1>",
            $status,
            "</h1>\n"
        )
    };
}

impl Status {
    fn line(self) -> &'static [u8] {
        match self {
            Status::Ok => b"HTTP/1.1 200 OK\r\n",
            Status::MovedPermanently => b"HTTP/1.1 301 Moved Permanently\r\n",
            Status::NotModified => b"HTTP/1.1 304 Not Modified\r\n",
            Status::BadRequest => b"HTTP/1.1 400 Bad Request\r\n",
            Status::NotFound => b"HTTP/1.1 404 Not Found\r\n",
            Status::MethodNotAllowed => b"HTTP/1.1 405 Method Not Allowed\r\n",
            Status::UriTooLong => b"HTTP/1.1 414 URI Too Long\r\n",
            Status::HeaderFieldsTooLarge => b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            Status::VersionNotSupported => b"HTTP/1.1 505 HTTP Version Not Supported\r\n",
        }
    }

    fn page(self) -> &'static [u8] {
        let page = match self {
            Status::Ok | Status::NotModified => "",
            Status::MovedPermanently => page!("301 Moved Permanently"),
            Status::BadRequest => page!("400 Bad Request"),
            Status::NotFound => page!("404 Not Found"),
            Status::MethodNotAllowed => page!("405 Method Not Allowed"),
            Status::UriTooLong => page!("414 URI Too Long"),
            Status::HeaderFieldsTooLarge => page!("431 Request Header Fields Too Large"),
            Status::VersionNotSupported => page!("505 HTTP Version Not Supported"),
        };
        page.as_bytes()
    }

    /// Whether the connection must close after this reply: the request was
    /// not understood, so where the next one starts is unknown.
    fn closes(self) -> bool {
        matches!(
            self,
            Status::BadRequest
                | Status::UriTooLong
                | Status::HeaderFieldsTooLarge
                | Status::VersionNotSupported
        )
    }
}

/// What the connection does after a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Waits for the next request.
    KeepAlive,
    /// Closes.
    Close,
    /// Closes once the client has stopped sending: input is left unread (a
    /// body, the rest of a refused head), and closing a socket with unread
    /// input resets the connection, which can destroy the reply in flight.
    Drain,
}

impl After {
    /// After a status page: closing (once the client stops sending) when
    /// the request was not understood, else as the request said.
    pub fn for_error(status: Status, head: &Head) -> Self {
        if status.closes() {
            After::Drain
        } else {
            After::for_head(head)
        }
    }

    /// After a reply to `head`: a body this server does not read means
    /// closing, as does `Connection: close` (or HTTP/1.0 without keep-alive).
    pub fn for_head(head: &Head) -> Self {
        if head.has_body {
            After::Drain
        } else if head.keep_alive {
            After::KeepAlive
        } else {
            After::Close
        }
    }
}

/// One reply being written: the site's deadlines, a worker's buffer for
/// the head and the file chunks, and the request's `wfile`.
pub struct Reply<'x, 'a, C: Connection> {
    pub site: &'x Site,
    pub buf: &'x mut [u8],
    pub req: &'x mut StreamRequest<'a, C>,
    /// When the reply began: its deadlines count from here.
    pub start: Instant,
}

impl<C: Connection> Reply<'_, '_, C> {
    /// A status page, its `Connection` field saying what `after` does.
    pub fn error(&mut self, status: Status, head: &Head, after: After) -> Result<Progress, Error> {
        let mut reply_head = *head;
        reply_head.keep_alive = after == After::KeepAlive;
        let mut out = Out::new(self.buf);
        out.start(status, &reply_head);
        if status == Status::MethodNotAllowed {
            out.put(b"Allow: GET, HEAD\r\n");
        }
        out.error_page(status);
        let len = out.end_page(status, &reply_head);
        self.send(len, None)
    }

    /// Redirects to the directory `rel` with a final `/`, keeping the
    /// query: spelt from the cleaned path rather than copied from the
    /// target, so that a target such as `//host` does not become
    /// `Location: //host/`, which browsers read as another host (CPython's
    /// bpo-43223, CVE-2021-28861, collapses the leading slashes; this also
    /// drops `.` segments and escapes `\`).
    pub fn redirect(&mut self, head: &Head, rel: &[u8], query: &[u8]) -> Result<Progress, Error> {
        let status = Status::MovedPermanently;
        let mut out = Out::new(self.buf);
        out.start(status, head);
        out.put(b"Location: /");
        if !rel.is_empty() {
            out.put_escaped(rel);
            out.put(b"/");
        }
        out.put(query);
        out.put(b"\r\n");
        out.error_page(status);
        let len = out.end_page(status, head);
        self.send(len, None)
    }

    /// The file, or 304 when the client's copy is current; only the head
    /// for `HEAD`.
    pub fn file(&mut self, head: &Head, found: Found) -> Result<Progress, Error> {
        let not_modified = !head.if_none_match
            && matches!((head.if_modified_since, found.modified), (Some(since), Some(m)) if m <= since);
        let status = if not_modified {
            Status::NotModified
        } else {
            Status::Ok
        };
        let mut out = Out::new(self.buf);
        out.start(status, head);
        out.put(b"Content-Type: ");
        out.put(found.mime.as_bytes());
        out.put(b"\r\n");
        if status == Status::Ok {
            out.content_length(found.size);
        }
        if let Some(modified) = found.modified {
            out.put(b"Last-Modified: ");
            out.date(modified);
            out.put(b"\r\n");
        }
        let head_len = out.end();
        if status == Status::NotModified || head.method == Some(Method::Head) {
            return self.send(head_len, None);
        }
        self.send(head_len, Some(Transfer::new(found.file, found.size)))
    }

    /// Sends the head in `buf[..head]` and the body, as far as the
    /// connection takes them now; the head and the body's first chunk go
    /// out in one `send`.
    fn send(&mut self, head: usize, mut body: Option<Transfer>) -> Result<Progress, Error> {
        let first = match &mut body {
            Some(body) => head + body.peek(&mut self.buf[head..])?,
            None => head,
        };
        let mut sending = Sending {
            head: Vec::new(),
            body,
            sent: 0,
            start: self.start,
        };
        sending.on_schedule(self.site, self.req, first)?;
        let taken = self.req.wfile.write_now(&self.buf[..first])?;
        sending.sent = taken as u64;
        if taken < head {
            sending.head = self.buf[taken..head].to_vec();
        } else if let Some(body) = &mut sending.body {
            body.advance(taken - head);
        }
        sending.pump(self.site, self.buf, self.req)
    }
}

/// How far a reply got in a turn.
pub enum Progress {
    /// All of it is out.
    Done,
    /// The connection took no more: the rest goes out on later turns, once
    /// it can take more ([`Sending::pump`]).
    Unfinished(Sending),
}

/// A reply on its way out: what a connection holds between the turns in
/// which it can take more. No buffer: the rest of the head only if the
/// connection took less than the head (rare), and the body as a file and
/// an offset.
pub struct Sending {
    /// The head's bytes not taken yet.
    head: Vec<u8>,
    body: Option<Transfer>,
    /// Bytes taken so far.
    sent: u64,
    /// When the reply began.
    start: Instant,
}

impl Sending {
    /// Sends more, as far as the connection takes it now (under a classic
    /// dispatch, waiting for it), a chunk of `buf` at a time.
    pub fn pump<C: Connection>(
        mut self,
        site: &Site,
        buf: &mut [u8],
        req: &mut StreamRequest<'_, C>,
    ) -> Result<Progress, Error> {
        loop {
            let piece = if !self.head.is_empty() {
                &self.head[..]
            } else {
                match &self.body {
                    Some(body) if body.left > 0 => {
                        let n = body.peek(buf)?;
                        &buf[..n]
                    }
                    _ => return Ok(Progress::Done),
                }
            };
            self.on_schedule(site, req, piece.len())?;
            let taken = req.wfile.write_now(piece)?;
            if taken == 0 {
                return Ok(Progress::Unfinished(self));
            }
            self.sent += taken as u64;
            if !self.head.is_empty() {
                self.head.drain(..taken);
            } else if let Some(body) = &mut self.body {
                body.advance(taken);
            }
        }
    }

    /// Checks the `--min-rate` schedule before `next` more bytes: the first
    /// N bytes of a reply must be out within `--header-timeout` plus a
    /// second per `--min-rate` bytes of its start, at every point of a long
    /// body, not only on average over it. Fails with `TimedOut` once the
    /// client has fallen behind; otherwise bounds the write to come (which
    /// waits only under a classic dispatch) by the same schedule.
    fn on_schedule<C: Connection>(
        &self,
        site: &Site,
        req: &StreamRequest<'_, C>,
        next: usize,
    ) -> Result<(), Error> {
        let bytes = u128::from(self.sent) + next as u128;
        // At most 2^62 ns (146 years), which no `Instant` overflows on.
        let nanos = (bytes * 1_000_000_000 / u128::from(site.min_rate)).min(1 << 62);
        let due = self.start + site.header_timeout + Duration::from_nanos(nanos as u64);
        let left = due.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let late = io::Error::new(
                io::ErrorKind::TimedOut,
                "the client reads slower than --min-rate",
            );
            return Err(late.into());
        }
        req.connection()
            .set_request_timeout(Some(left))
            .map_err(Into::into)
    }
}

/// A file body on its way out: the file and where the rest of it starts.
/// Read at an offset, so that between two pieces nothing else is kept.
struct Transfer {
    file: File,
    offset: u64,
    left: u64,
}

impl Transfer {
    /// The first `size` bytes of `file`.
    fn new(file: File, size: u64) -> Self {
        Transfer {
            file,
            offset: 0,
            left: size,
        }
    }

    /// Fills as much of `buf` as the rest of the body allows; how much.
    fn peek(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let mut got = 0;
        while got < want {
            let n = self
                .file
                .read_at(&mut buf[got..want], self.offset + got as u64)
                .map_err(|_| Error::Handler("reading the file failed"))?;
            if n == 0 {
                // Content-Length is sent; only closing can tell the client.
                return Err(Error::Handler("the file shrank while being sent"));
            }
            got += n;
        }
        Ok(got)
    }

    /// Counts `n` more bytes as sent.
    fn advance(&mut self, n: usize) {
        self.offset += n as u64;
        self.left -= n as u64;
    }
}

/// Writes a response head into a buffer.
struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Out<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        Out { buf, len: 0 }
    }

    /// # Panics
    /// If the head outgrows the buffer, which [`CHUNK`] rules out.
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// The status line and the fields every reply has.
    fn start(&mut self, status: Status, head: &Head) {
        self.put(status.line());
        self.put(SERVER);
        self.put(b"Date: ");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.date(now);
        self.put(b"\r\n");
        if !head.keep_alive {
            self.put(b"Connection: close\r\n");
        } else if head.http10 {
            self.put(b"Connection: keep-alive\r\n");
        }
    }

    /// A path, percent-encoding every byte but `/`, unreserved characters
    /// and sub-delimiters (RFC 3986).
    fn put_escaped(&mut self, path: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for &b in path {
            if b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b) {
                self.put(&[b]);
            } else {
                self.put(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            }
        }
    }

    fn content_length(&mut self, length: u64) {
        let mut digits = [0; 20];
        self.put(b"Content-Length: ");
        self.put(decimal(length, &mut digits));
        self.put(b"\r\n");
    }

    fn date(&mut self, secs: u64) {
        let mut date = [0; 29];
        self.put(http_date(secs, &mut date));
    }

    fn error_page(&mut self, status: Status) {
        self.put(b"Content-Type: text/html; charset=utf-8\r\n");
        self.content_length(status.page().len() as u64);
    }

    /// Ends the head, adding the error page unless this answers a `HEAD`.
    fn end_page(mut self, status: Status, head: &Head) -> usize {
        self.put(b"\r\n");
        if head.method != Some(Method::Head) {
            self.put(status.page());
        }
        self.len
    }

    /// Ends the head; returns its length.
    fn end(mut self) -> usize {
        self.put(b"\r\n");
        self.len
    }
}
