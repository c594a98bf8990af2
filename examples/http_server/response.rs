//! Writing a response: statuses, heads, error pages, redirects and file
//! bodies, each sent within its deadline.

use std::fs::File;
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
    /// A status page; says whether the connection can go on.
    pub fn error(&mut self, status: Status, head: &Head) -> Result<After, Error> {
        let after = if status.closes() {
            After::Drain
        } else {
            After::for_head(head)
        };
        let mut reply_head = *head;
        reply_head.keep_alive = after == After::KeepAlive;
        let mut out = Out::new(self.buf);
        out.start(status, &reply_head);
        if status == Status::MethodNotAllowed {
            out.put(b"Allow: GET, HEAD\r\n");
        }
        out.error_page(status);
        let len = out.end_page(status, &reply_head);
        self.send(len)?;
        Ok(after)
    }

    /// Redirects to the directory `rel` with a final `/`, keeping the
    /// query: spelt from the cleaned path rather than copied from the
    /// target, so that a target such as `//host` does not become
    /// `Location: //host/`, which browsers read as another host (CPython's
    /// bpo-43223, CVE-2021-28861, collapses the leading slashes; this also
    /// drops `.` segments and escapes `\`).
    pub fn redirect(&mut self, head: &Head, rel: &[u8], query: &[u8]) -> Result<(), Error> {
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
        self.send(len)
    }

    /// The file, or 304 when the client's copy is current; only the head
    /// for `HEAD`.
    pub fn file(&mut self, head: &Head, found: Found) -> Result<(), Error> {
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
            return self.send(head_len);
        }
        self.body(head_len, Transfer::new(found.file, found.size))
    }

    /// Sends `buf[..len]`, a whole reply.
    fn send(&mut self, len: usize) -> Result<(), Error> {
        self.out_by(len as u64)?;
        self.req.wfile.write_all(&self.buf[..len])
    }

    /// Bounds the writes to come: the first `bytes` bytes of the reply must
    /// be out by `--header-timeout` after it began plus a second per
    /// `--min-rate` bytes. Set again before each chunk, so the rate holds at
    /// every point of a long body, not only on average over it.
    fn out_by(&self, bytes: u64) -> Result<(), Error> {
        let rate = u128::from(self.site.min_rate);
        // At most 2^62 ns (146 years), which no `Instant` overflows on.
        let nanos = (u128::from(bytes) * 1_000_000_000 / rate).min(1 << 62);
        let due = self.start + self.site.header_timeout + Duration::from_nanos(nanos as u64);
        let left = due.saturating_duration_since(Instant::now());
        self.req
            .connection()
            .set_request_timeout(Some(left))
            .map_err(Into::into)
    }

    /// Sends the head already in `buf[..head]`, then the body, a buffer at
    /// a time.
    fn body(&mut self, head: usize, mut body: Transfer) -> Result<(), Error> {
        let mut filled = head + body.fill(&mut self.buf[head..])?;
        let mut sent = 0;
        loop {
            sent += filled as u64;
            self.out_by(sent)?;
            self.req.wfile.write_all(&self.buf[..filled])?;
            if body.left == 0 {
                return Ok(());
            }
            filled = body.fill(self.buf)?;
        }
    }
}

/// A file body on its way out: the file and where the rest of it starts.
/// Read at an offset, so that between two chunks nothing else is kept —
/// which is what a connection would hold while parked until its socket can
/// take more, once the dispatch offers such a turn (see the guide).
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

    /// Fills as much of `buf` as the rest of the body allows, and counts
    /// it as sent; how much.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
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
        self.offset += got as u64;
        self.left -= got as u64;
        Ok(got)
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
