//! A static file server: Python's `http.server` (`SimpleHTTPRequestHandler` over
//! `ThreadingHTTPServer`, both built on `socketserver`) as one [`StreamHandler`] over the
//! threading TCP server.
//!
//! Usage: `cargo run --release --example http_server -- [HOST:PORT [DIR]] [--timeout SECS]
//! [--header-timeout SECS] [--min-rate BYTES] [--max-connections N]` (port 0 picks a free
//! port; `DIR` defaults to the current directory; the defaults are 5 s, 10 s, 32 KiB/s
//! and 1024, described below). Prints `listening on ADDRESS` once bound, serves until
//! SIGINT or SIGTERM.
//!
//! - `GET` and `HEAD` of the regular files under `DIR`; a directory serves its
//!   `index.html` (a path to a directory without the final `/` is redirected with 301,
//!   as Python does, to the cleaned path: never to `//host`, bpo-43223), never a
//!   listing. `If-Modified-Since` gets 304.
//! - HTTP/1.1 keeps the connection open unless `Connection: close`; HTTP/1.0 only with
//!   `Connection: keep-alive`. Pipelined requests are served in order. A connection idle
//!   for `--timeout` is closed (the same bound applies to every read and write).
//! - Slow clients are cut: a request head must arrive within `--header-timeout` of its
//!   first byte, and a response of N bytes must be taken within `--header-timeout` plus
//!   N / `--min-rate` seconds, however the client paces its bytes.
//! - Request and header lines are read through the handler's `rfile`, whose capacity
//!   (8 KiB) bounds them: a longer request line is answered 414, a longer header line or
//!   more than 100 headers 431. Malformed requests get 400, other methods 405 with
//!   `Allow`, a major version other than 1 gets 505; after those the connection closes.
//! - Only regular files under `DIR` are served: `..` segments (also percent-encoded)
//!   are 404, and so are a symbolic link that resolves outside `DIR` (links inside are
//!   followed), FIFOs and devices. A path is opened once, without blocking, and every
//!   check and every field of the reply is about the opened file (its `/proc/self/fd`
//!   link on Linux, its `fstat`), so nothing swapped in after a check gets through.
//! - Bodies are streamed in 64 KiB chunks through `wfile`; a small response (head and
//!   body) goes out in one `send`.
//!
//! Threads: one per connection (Python's `ThreadingMixIn`), not a fixed pool, because a
//! keep-alive connection holds its thread between requests: under `wrk -c N` with more
//! connections than workers, the connections beyond the pool would wait until an idle
//! one times out. The count is bounded by `--max-connections`; more clients wait in the
//! backlog. When every place is taken, a connection idle for a second between requests
//! (or before its first) closes to make room, so idle keep-alive connections are shed
//! first. Request threads are daemon threads, as in `ThreadingHTTPServer`, so a signal
//! stops the server at once even with keep-alive connections open.

use std::fs::{self, File};
use std::io::{self, Read as _, Write as _};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::libc::{O_NOCTTY, O_NONBLOCK};
use socketserver::embedded_io::ErrorKind;
use socketserver::{
    BufferSizes, Connection, Error, ServerBuilder, StreamHandler, StreamOptions, StreamRequest,
    ThreadingDispatch, DEFAULT_POLL_INTERVAL,
};

/// The `rfile` capacity: the longest request line or header line.
const LINE_CAPACITY: usize = 8192;
/// More header lines than this is a 431.
const MAX_HEADERS: usize = 100;
/// Empty lines tolerated before a request line (RFC 9112 section 2.2).
const MAX_BLANK_LINES: usize = 4;
/// Response head plus file chunks; holds any head, whose longest field
/// (`Location`: a request line's path, escaped, is at most three times as long).
const CHUNK: usize = 64 * 1024;
/// The idle keep-alive timeout unless `--timeout` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request head may take from its first byte, unless
/// `--header-timeout` says otherwise.
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The slowest a response may go out on average, in bytes per second,
/// unless `--min-rate` says otherwise.
const DEFAULT_MIN_RATE: u64 = 32 * 1024;
/// At most this many connections are served at once, unless
/// `--max-connections` says otherwise; more wait in the backlog.
const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// When every place is taken, a connection idle this long gives its own up.
const SHED_AFTER: Duration = Duration::from_secs(1);
/// How often an idle connection looks whether every place is taken.
const SHED_CHECK: Duration = Duration::from_millis(200);
/// The handler keeps its buffers on the heap.
const THREAD_STACK: usize = 256 * 1024;
/// After an error reply, how long and how much unread input is drained, so that
/// closing does not reset the connection before the client has read the reply.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

const SERVER: &[u8] = b"Server: socketserver-http/0.1\r\n";

/// What every connection shares: the directory, the settings, the places.
struct Site {
    /// `DIR`, canonical.
    root: PathBuf,
    /// Whether opened files can be resolved through `/proc/self/fd`.
    proc_fd: bool,
    timeout: Duration,
    header_timeout: Duration,
    min_rate: u64,
    places: Places,
}

/// The connections being served, out of `--max-connections` places (the
/// dispatcher's `max_threads`). The server cannot tell a handler that
/// clients wait in the backlog; all places taken is the sign that they may.
struct Places {
    max: usize,
    taken: AtomicUsize,
}

impl Places {
    fn take(&self) -> Place<'_> {
        self.taken.fetch_add(1, Ordering::AcqRel);
        Place {
            places: self,
            held: true,
        }
    }
}

/// One connection's place, given back when it is dropped.
struct Place<'a> {
    places: &'a Places,
    held: bool,
}

impl Place<'_> {
    /// Gives the place up now if every place is taken, for the caller to
    /// close its connection: one connection per missing place, whichever
    /// asks first.
    fn give_up_if_full(&mut self) -> bool {
        let Places { max, taken } = self.places;
        let full = taken.compare_exchange(*max, max - 1, Ordering::AcqRel, Ordering::Acquire);
        self.held = full.is_err();
        !self.held
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if self.held {
            self.places.taken.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A status this server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
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
enum Next {
    KeepAlive,
    Close,
    /// Close after draining unread input.
    Linger,
}

/// What the request line and the headers said.
#[derive(Clone, Copy)]
struct Head {
    /// `GET` or `HEAD` (`None`: another method).
    method: Option<Method>,
    http10: bool,
    keep_alive: bool,
    /// A body follows (which this server does not read).
    has_body: bool,
    hosts: usize,
    content_length: Option<u64>,
    if_modified_since: Option<u64>,
    if_none_match: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Head,
}

impl Head {
    /// Before the request line is understood: reply as to an HTTP/1.1 `GET`, then close.
    fn unknown() -> Self {
        Head {
            method: Some(Method::Get),
            http10: false,
            keep_alive: false,
            has_body: false,
            hosts: 0,
            content_length: None,
            if_modified_since: None,
            if_none_match: false,
        }
    }

    /// Parses `METHOD SP target SP HTTP/x.y`, copying the target into `target`.
    fn from_request_line(line: &[u8], target: &mut Vec<u8>) -> Result<Head, Status> {
        let mut parts = line.split(|&b| b == b' ');
        let (Some(method), Some(uri), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Status::BadRequest);
        };
        if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
            return Err(Status::BadRequest);
        }
        if uri.is_empty() || !uri.iter().all(|&b| b.is_ascii_graphic()) {
            return Err(Status::BadRequest);
        }
        let [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] = *version else {
            return Err(Status::BadRequest);
        };
        if !major.is_ascii_digit() || !minor.is_ascii_digit() {
            return Err(Status::BadRequest);
        }
        if major != b'1' {
            return Err(Status::VersionNotSupported);
        }
        target.clear();
        target.extend_from_slice(uri);
        let http10 = minor == b'0';
        Ok(Head {
            method: match method {
                b"GET" => Some(Method::Get),
                b"HEAD" => Some(Method::Head),
                _ => None,
            },
            http10,
            keep_alive: !http10,
            ..Head::unknown()
        })
    }

    /// Takes in one header line (without its line end).
    fn header(&mut self, line: &[u8]) -> Result<(), Status> {
        let colon = line.iter().position(|&b| b == b':');
        let Some(colon) = colon.filter(|&i| i > 0) else {
            return Err(Status::BadRequest);
        };
        let name = &line[..colon];
        // Also refuses obsolete line folding and whitespace before the colon.
        if !name.iter().all(|&b| is_tchar(b)) {
            return Err(Status::BadRequest);
        }
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && self.http10 {
                    self.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            self.hosts += 1;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let length = parse_decimal(value).ok_or(Status::BadRequest)?;
            if self.content_length.is_some_and(|l| l != length) {
                return Err(Status::BadRequest);
            }
            self.content_length = Some(length);
            self.has_body |= length > 0;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.has_body = true;
        } else if name.eq_ignore_ascii_case(b"if-modified-since") {
            self.if_modified_since = parse_http_date(value);
        } else if name.eq_ignore_ascii_case(b"if-none-match") {
            self.if_none_match = true;
        }
        Ok(())
    }
}

/// A file found for a request.
struct Found {
    file: File,
    size: u64,
    modified: Option<u64>,
    mime: &'static str,
}

/// Where a request target leads.
enum Resolved {
    File(Found),
    /// A directory named without its final `/`.
    AddSlash,
}

/// One connection: requests served in turn until it closes.
struct HttpHandler {
    site: Arc<Site>,
    /// Response head, then file chunks.
    buf: Box<[u8]>,
    /// The request target, as received.
    target: Vec<u8>,
    /// Its path, percent-decoded.
    decoded: Vec<u8>,
    /// That path's segments joined by `/`, without `.` and empty ones.
    rel: Vec<u8>,
    path: PathBuf,
    link: PathBuf,
}

impl HttpHandler {
    fn new(site: Arc<Site>) -> Self {
        HttpHandler {
            site,
            buf: vec![0; CHUNK].into_boxed_slice(),
            target: Vec::with_capacity(256),
            decoded: Vec::with_capacity(256),
            rel: Vec::with_capacity(256),
            path: PathBuf::with_capacity(512),
            link: PathBuf::with_capacity(32),
        }
    }

    /// Waits for the first byte of the next request, within the idle
    /// timeout; `false` when the client closed, stayed idle, or had to give
    /// its place up. Nothing can interrupt a blocked read, so once the wait
    /// is [`SHED_AFTER`] old it goes on in [`SHED_CHECK`] steps.
    fn await_request<C: Connection>(
        &self,
        req: &mut StreamRequest<'_, C>,
        place: &mut Place<'_>,
    ) -> bool {
        let start = Instant::now();
        loop {
            let idle = start.elapsed();
            let left = self.site.timeout.saturating_sub(idle);
            if left.is_zero() || (idle >= SHED_AFTER && place.give_up_if_full()) {
                return false;
            }
            let step = SHED_AFTER.checked_sub(idle).unwrap_or(SHED_CHECK);
            if req
                .connection()
                .set_request_timeout(Some(step.min(left)))
                .is_err()
            {
                return false;
            }
            match req.rfile.fill_buf() {
                Ok(bytes) => return !bytes.is_empty(),
                Err(Error::Io {
                    kind: ErrorKind::TimedOut,
                    ..
                }) => {}
                Err(_) => return false,
            }
        }
    }

    /// From now, the next `bytes` bytes must be sent within the header
    /// timeout plus a second per `min_rate` bytes.
    fn send_within<C: Connection>(
        &self,
        req: &StreamRequest<'_, C>,
        bytes: u64,
    ) -> Result<(), Error> {
        // At most 2^32 s, which no `Instant` overflows on.
        let secs = (bytes / self.site.min_rate).min(1 << 32);
        let total = self.site.header_timeout + Duration::from_secs(secs);
        let mut conn = req.connection();
        conn.set_request_timeout(Some(total))
            .map_err(Error::from_io)
    }

    /// Reads and answers one request, whose first byte has arrived.
    fn serve_one<C: Connection>(&mut self, req: &mut StreamRequest<'_, C>) -> Result<Next, Error> {
        req.connection()
            .set_request_timeout(Some(self.site.header_timeout))
            .map_err(Error::from_io)?;
        let mut blank = 0;
        let parsed = loop {
            match req.rfile.read_line() {
                // End of stream, possibly inside a line: the client is done.
                Ok(line) if !line.ends_with(b"\n") => return Ok(Next::Close),
                Ok(line) => {
                    let line = trim_eol(line);
                    if line.is_empty() && blank < MAX_BLANK_LINES {
                        blank += 1;
                        continue;
                    }
                    break Head::from_request_line(line, &mut self.target);
                }
                Err(Error::LineTooLong { .. }) => break Err(Status::UriTooLong),
                Err(e) => return Err(e),
            }
        };
        let mut head = match parsed {
            Ok(head) => head,
            Err(status) => return self.reply_error(req, status, &Head::unknown()),
        };
        let mut headers = 0;
        loop {
            let line = match req.rfile.read_line() {
                Ok(line) if !line.ends_with(b"\n") => return Ok(Next::Close),
                Ok(line) => trim_eol(line),
                Err(Error::LineTooLong { .. }) => {
                    return self.reply_error(req, Status::HeaderFieldsTooLarge, &head)
                }
                Err(e) => return Err(e),
            };
            if line.is_empty() {
                break;
            }
            headers += 1;
            if headers > MAX_HEADERS {
                return self.reply_error(req, Status::HeaderFieldsTooLarge, &head);
            }
            if let Err(status) = head.header(line) {
                return self.reply_error(req, status, &head);
            }
        }
        if head.hosts > 1 || (!head.http10 && head.hosts == 0) {
            return self.reply_error(req, Status::BadRequest, &head);
        }
        if head.method.is_none() {
            return self.reply_error(req, Status::MethodNotAllowed, &head);
        }
        // The body of a GET means nothing here; rather than read it, close.
        let next = if head.has_body {
            head.keep_alive = false;
            Next::Linger
        } else if head.keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        };
        match self.resolve() {
            Err(status) => self.reply_error(req, status, &head),
            Ok(Resolved::AddSlash) => {
                self.reply_redirect(req, &head)?;
                Ok(next)
            }
            Ok(Resolved::File(found)) => {
                self.reply_file(req, &head, found)?;
                Ok(next)
            }
        }
    }

    /// Maps the request target to an open file under the root.
    fn resolve(&mut self) -> Result<Resolved, Status> {
        let path = origin_path(&self.target).ok_or(Status::BadRequest)?;
        percent_decode(path, &mut self.decoded).ok_or(Status::BadRequest)?;
        self.rel.clear();
        for segment in self.decoded.split(|&b| b == b'/') {
            match segment {
                b"" | b"." => {}
                b".." => return Err(Status::NotFound),
                _ if segment.contains(&0) => return Err(Status::BadRequest),
                _ => {
                    if !self.rel.is_empty() {
                        self.rel.push(b'/');
                    }
                    self.rel.extend_from_slice(segment);
                }
            }
        }
        let path = self.path.as_mut_os_string();
        path.clear();
        path.push(self.site.root.as_os_str());
        path.push("/");
        path.push(std::ffi::OsStr::from_bytes(&self.rel));
        let (mut file, mut meta) = self.open_inside()?;
        let slash = self.decoded.ends_with(b"/");
        if meta.is_dir() {
            if !slash {
                return Ok(Resolved::AddSlash);
            }
            self.path.push("index.html");
            (file, meta) = self.open_inside()?;
        } else if slash {
            // `file/` names a directory that does not exist.
            return Err(Status::NotFound);
        }
        // Regular files only: no FIFO, device or socket.
        if !meta.is_file() {
            return Err(Status::NotFound);
        }
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        Ok(Resolved::File(Found {
            file,
            size: meta.len(),
            modified,
            mime: mime_type(self.path.as_os_str().as_bytes()),
        }))
    }

    /// Opens `self.path`, then checks what was opened, never the path
    /// again: a link or a FIFO swapped in after a check cannot slip past
    /// it. `O_NONBLOCK` so that opening a FIFO does not wait for a writer
    /// (it has no effect on reading regular files); `O_NOCTTY` so that a
    /// terminal never becomes the server's.
    fn open_inside(&mut self) -> Result<(File, fs::Metadata), Status> {
        let file = File::options()
            .read(true)
            .custom_flags(O_NONBLOCK | O_NOCTTY)
            .open(&self.path)
            .map_err(|_| Status::NotFound)?;
        let meta = file.metadata().map_err(|_| Status::NotFound)?;
        if !self.inside_root(&file, &meta) {
            return Err(Status::NotFound);
        }
        Ok((file, meta))
    }

    /// Whether `file`, opened from `self.path`, really is under the root once
    /// symbolic links are resolved: by its `/proc/self/fd` link, or else by
    /// resolving the path again and finding the same file there.
    fn inside_root(&mut self, file: &File, meta: &fs::Metadata) -> bool {
        let root = &self.site.root;
        if !self.site.proc_fd {
            return fs::canonicalize(&self.path).is_ok_and(|real| {
                real.starts_with(root)
                    && fs::metadata(&real)
                        .is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()))
            });
        }
        let mut digits = [0; 20];
        let link = self.link.as_mut_os_string();
        link.clear();
        link.push("/proc/self/fd/");
        link.push(std::ffi::OsStr::from_bytes(decimal(
            file.as_raw_fd() as u64,
            &mut digits,
        )));
        fs::read_link(&self.link).is_ok_and(|real| real.starts_with(root))
    }

    fn reply_file<C: Connection>(
        &mut self,
        req: &mut StreamRequest<'_, C>,
        head: &Head,
        found: Found,
    ) -> Result<(), Error> {
        let not_modified = !head.if_none_match
            && matches!((head.if_modified_since, found.modified), (Some(since), Some(m)) if m <= since);
        let status = if not_modified {
            Status::NotModified
        } else {
            Status::Ok
        };
        let mut out = Out::new(&mut self.buf);
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
            self.send_within(req, head_len as u64)?;
            return req.wfile.write_all(&self.buf[..head_len]);
        }
        self.send_within(req, head_len as u64 + found.size)?;
        self.send_body(req, head_len, found.file, found.size)
    }

    /// Sends the head already in `buf[..filled]` and `size` bytes of `file`,
    /// a buffer at a time.
    fn send_body<C: Connection>(
        &mut self,
        req: &mut StreamRequest<'_, C>,
        mut filled: usize,
        mut file: File,
        size: u64,
    ) -> Result<(), Error> {
        let mut left = size;
        loop {
            while filled < CHUNK && left > 0 {
                let want = (CHUNK - filled).min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = file
                    .read(&mut self.buf[filled..filled + want])
                    .map_err(|_| Error::Handler("reading the file failed"))?;
                if n == 0 {
                    // Content-Length is sent; only closing can tell the client.
                    return Err(Error::Handler("the file shrank while being sent"));
                }
                filled += n;
                left -= n as u64;
            }
            req.wfile.write_all(&self.buf[..filled])?;
            if left == 0 {
                return Ok(());
            }
            filled = 0;
        }
    }

    /// Redirects to the directory's path with a final `/`, spelt from the
    /// cleaned path rather than copied from the target: a target such as
    /// `//host` must not become `Location: //host/`, which browsers read as
    /// another host (CPython's bpo-43223, CVE-2021-28861, collapses the
    /// leading slashes; this also drops `.` segments and escapes `\`).
    fn reply_redirect<C: Connection>(
        &mut self,
        req: &mut StreamRequest<'_, C>,
        head: &Head,
    ) -> Result<(), Error> {
        let status = Status::MovedPermanently;
        let target = origin_path_and_query(&self.target);
        let query = target
            .iter()
            .position(|&b| b == b'?' || b == b'#')
            .map_or(&b""[..], |i| &target[i..]);
        let mut out = Out::new(&mut self.buf);
        out.start(status, head);
        out.put(b"Location: /");
        if !self.rel.is_empty() {
            out.put_escaped(&self.rel);
            out.put(b"/");
        }
        out.put(query);
        out.put(b"\r\n");
        out.error_page(status);
        let len = out.end_page(status, head);
        self.send_within(req, len as u64)?;
        req.wfile.write_all(&self.buf[..len])
    }

    fn reply_error<C: Connection>(
        &mut self,
        req: &mut StreamRequest<'_, C>,
        status: Status,
        head: &Head,
    ) -> Result<Next, Error> {
        let closes = status.closes() || head.has_body;
        let reply_head = Head {
            keep_alive: head.keep_alive && !closes,
            ..*head
        };
        let mut out = Out::new(&mut self.buf);
        out.start(status, &reply_head);
        if status == Status::MethodNotAllowed {
            out.put(b"Allow: GET, HEAD\r\n");
        }
        out.error_page(status);
        let len = out.end_page(status, &reply_head);
        self.send_within(req, len as u64)?;
        req.wfile.write_all(&self.buf[..len])?;
        Ok(if closes {
            Next::Linger
        } else if reply_head.keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        })
    }

    /// Shuts the sending side, then reads and drops what the client still
    /// sends, for a bounded time and amount: closing a socket with unread
    /// input resets the connection, which can destroy the reply in flight.
    fn linger<C: Connection>(&mut self, req: &mut StreamRequest<'_, C>) {
        let mut conn = req.connection();
        if conn.shutdown_write().is_err() || conn.set_request_timeout(Some(LINGER)).is_err() {
            return;
        }
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match conn.read(&mut self.buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    }
}

impl<C: Connection> StreamHandler<C> for HttpHandler {
    fn options(&self) -> StreamOptions {
        StreamOptions::new()
            .timeout(Some(self.site.timeout))
            .disable_nagle_algorithm(true)
    }

    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let site = Arc::clone(&self.site);
        let mut place = site.places.take();
        while self.await_request(req, &mut place) {
            match self.serve_one(req)? {
                Next::KeepAlive => {}
                Next::Close => break,
                Next::Linger => {
                    self.linger(req);
                    break;
                }
            }
        }
        Ok(())
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

/// RFC 9110 `tchar`: what a method or a field name is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `line` without its `\n` or `\r\n`.
fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The target with an absolute-form `scheme://authority` removed.
fn origin_path_and_query(target: &[u8]) -> &[u8] {
    for scheme in [&b"http://"[..], b"https://"] {
        if target.len() >= scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &target[scheme.len()..];
            return rest
                .iter()
                .position(|&b| b == b'/')
                .map_or(b"/", |i| &rest[i..]);
        }
    }
    target
}

/// The path of an origin-form or absolute-form target, without the query;
/// `None` for other forms (such as `*`).
fn origin_path(target: &[u8]) -> Option<&[u8]> {
    let target = origin_path_and_query(target);
    if !target.starts_with(b"/") {
        return None;
    }
    let end = target
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(target.len());
    Some(&target[..end])
}

/// Percent-decodes `path` into `out`; `None` on a malformed escape.
fn percent_decode(path: &[u8], out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    let mut bytes = path.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hi = hex_value(*bytes.next()?)?;
            let lo = hex_value(*bytes.next()?)?;
            out.push(hi << 4 | lo);
        } else {
            out.push(b);
        }
    }
    Some(())
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// A decimal `u64` made of digits only.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = (b as char).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// `n` in decimal, in the end of `out`.
fn decimal(mut n: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &out[i..];
        }
    }
}

const WEEKDAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `secs` after the epoch as an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(secs: u64, out: &mut [u8; 29]) -> &[u8] {
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days);
    let time = secs % 86_400;
    let two = |n: u64| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    out[..3].copy_from_slice(WEEKDAYS[((days + 4) % 7) as usize]);
    out[3..5].copy_from_slice(b", ");
    out[5..7].copy_from_slice(&two(day));
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    out[11] = b' ';
    out[12..14].copy_from_slice(&two(year / 100));
    out[14..16].copy_from_slice(&two(year));
    out[16] = b' ';
    out[17..19].copy_from_slice(&two(time / 3600));
    out[19] = b':';
    out[20..22].copy_from_slice(&two(time / 60 % 60));
    out[22] = b':';
    out[23..25].copy_from_slice(&two(time % 60));
    out[25..].copy_from_slice(b" GMT");
    out
}

/// Seconds after the epoch of an IMF-fixdate (the only form HTTP/1.1
/// senders generate; others are ignored, as RFC 9110 allows).
fn parse_http_date(date: &[u8]) -> Option<u64> {
    if date.len() != 29 || &date[3..5] != b", " || &date[25..] != b" GMT" {
        return None;
    }
    let number = |range: std::ops::Range<usize>| parse_decimal(&date[range]);
    let day = number(5..7)?;
    let month = MONTHS.iter().position(|m| m[..] == date[8..11])? as u64 + 1;
    let year = number(12..16)?;
    let (hour, minute, second) = (number(17..19)?, number(20..22)?, number(23..25)?);
    if date[19] != b':' || date[22] != b':' || year < 1970 || !(1..=31).contains(&day) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Year, month, day of the `days`th day after 1970-01-01 (the proleptic
/// Gregorian calendar, by Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`], for years from 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = year - u64::from(month <= 2);
    let era = year / 400;
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The media type of a file, by its extension.
fn mime_type(path: &[u8]) -> &'static str {
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    let Some(dot) = name.iter().rposition(|&b| b == b'.') else {
        return "application/octet-stream";
    };
    let ext = &name[dot + 1..];
    let mut lower = [0u8; 5];
    if ext.len() > lower.len() {
        return "application/octet-stream";
    }
    let lower = &mut lower[..ext.len()];
    lower.copy_from_slice(ext);
    lower.make_ascii_lowercase();
    match &*lower {
        b"html" | b"htm" => "text/html",
        b"css" => "text/css",
        b"js" | b"mjs" => "text/javascript",
        b"json" => "application/json",
        b"txt" => "text/plain",
        b"md" => "text/markdown",
        b"csv" => "text/csv",
        b"xml" => "application/xml",
        b"svg" => "image/svg+xml",
        b"png" => "image/png",
        b"jpg" | b"jpeg" => "image/jpeg",
        b"gif" => "image/gif",
        b"webp" => "image/webp",
        b"ico" => "image/vnd.microsoft.icon",
        b"pdf" => "application/pdf",
        b"wasm" => "application/wasm",
        b"zip" => "application/zip",
        b"gz" => "application/gzip",
        b"tar" => "application/x-tar",
        b"mp3" => "audio/mpeg",
        b"mp4" => "video/mp4",
        b"webm" => "video/webm",
        b"woff" => "font/woff",
        b"woff2" => "font/woff2",
        b"ttf" => "font/ttf",
        b"otf" => "font/otf",
        _ => "application/octet-stream",
    }
}

const USAGE: &str = "usage: http_server [HOST:PORT [DIR]] [--timeout SECS] \
    [--header-timeout SECS] [--min-rate BYTES] [--max-connections N]";

fn usage() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, USAGE)
}

/// A positive number of seconds.
fn seconds(arg: Option<String>) -> io::Result<Duration> {
    let secs: f64 = arg.and_then(|s| s.parse().ok()).ok_or_else(usage)?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|t| !t.is_zero())
        .ok_or_else(usage)
}

/// A positive integer.
fn count<T: std::str::FromStr + Default + PartialEq>(arg: Option<String>) -> io::Result<T> {
    let n = arg.and_then(|s| s.parse().ok()).ok_or_else(usage)?;
    if n == T::default() {
        return Err(usage());
    }
    Ok(n)
}

fn main() -> io::Result<()> {
    let mut positional = Vec::new();
    let mut timeout = DEFAULT_TIMEOUT;
    let mut header_timeout = DEFAULT_HEADER_TIMEOUT;
    let mut min_rate = DEFAULT_MIN_RATE;
    let mut max_connections = DEFAULT_MAX_CONNECTIONS;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--timeout" => timeout = seconds(args.next())?,
            "--header-timeout" => header_timeout = seconds(args.next())?,
            "--min-rate" => min_rate = count(args.next())?,
            "--max-connections" => max_connections = count(args.next())?,
            _ if arg.starts_with("--") || positional.len() == 2 => return Err(usage()),
            _ => positional.push(arg),
        }
    }
    let mut positional = positional.into_iter();
    let address = positional.next().unwrap_or_else(|| "localhost:8000".into());
    let dir = positional.next().unwrap_or_else(|| ".".into());
    let root = fs::canonicalize(&dir)?;
    if !root.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{dir} is not a directory"),
        ));
    }
    let site = Arc::new(Site {
        root,
        proc_fd: Path::new("/proc/self/fd").is_dir(),
        timeout,
        header_timeout,
        min_rate,
        places: Places {
            max: max_connections,
            taken: AtomicUsize::new(0),
        },
    });
    let factory = move || HttpHandler::new(Arc::clone(&site));
    let mut server = ServerBuilder::tcp(address.as_str())
        .allow_reuse_address(true)
        .request_queue_size(1024)
        .buffer_sizes(BufferSizes::new(LINE_CAPACITY, 0))
        .build_with(|config| {
            ThreadingDispatch::new(factory, config)
                .daemon_threads(true)
                .max_threads(Some(max_connections))
                .stack_size(THREAD_STACK)
        })?;
    let _signals = server.shutdown_handle().stop_on_signals()?;
    println!("listening on {}", server.local_addr());
    io::stdout().flush()?;
    server.serve_forever(DEFAULT_POLL_INTERVAL)?;
    server.server_close();
    Ok(())
}
