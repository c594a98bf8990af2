//! Reading a request: where its head ends, what its lines say, and where
//! its target leads inside the served directory's name space.

use crate::response::Status;
use crate::text::{parse_decimal, parse_http_date};

/// Empty lines tolerated before a request line (RFC 9112 section 2.2).
const MAX_BLANK_LINES: usize = 4;
/// More header lines than this is a 431.
const MAX_HEADERS: usize = 100;

/// Whether `buffered` holds a whole request head: the request line (after
/// at most [`MAX_BLANK_LINES`] empty lines), header lines, and the empty
/// line that ends them. Line ends may be `\r\n` or `\n`. A head the parser
/// refuses at once (an empty line where the request line should be) counts
/// as whole too, so that it gets its 400.
pub fn head_complete(buffered: &[u8]) -> bool {
    let mut rest = buffered;
    for _ in 0..MAX_BLANK_LINES {
        match strip_line_end(rest) {
            Some(after) => rest = after,
            None => break,
        }
    }
    if rest.is_empty() {
        return false;
    }
    if strip_line_end(rest).is_some() {
        return true;
    }
    // A line end followed by an empty line.
    rest.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && strip_line_end(&rest[i + 1..]).is_some())
}

/// `bytes` after a line end at its start.
fn strip_line_end(bytes: &[u8]) -> Option<&[u8]> {
    bytes
        .strip_prefix(b"\n")
        .or_else(|| bytes.strip_prefix(b"\r\n"))
}

/// `GET` or `HEAD`: what this server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
}

/// What the request line and the headers said.
#[derive(Clone, Copy, Debug)]
pub struct Head {
    /// `GET` or `HEAD` (`None`: another method).
    pub method: Option<Method>,
    pub http10: bool,
    pub keep_alive: bool,
    /// A body follows (which this server does not read).
    pub has_body: bool,
    hosts: usize,
    content_length: Option<u64>,
    pub if_modified_since: Option<u64>,
    pub if_none_match: bool,
}

impl Head {
    /// Before the request line is understood: reply as to an HTTP/1.1 `GET`, then close.
    pub fn unknown() -> Self {
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

    /// The checks that need every header: one `Host` (none allowed in
    /// HTTP/1.0), and a method this server answers.
    fn complete(self) -> Step {
        if self.hosts > 1 || (!self.http10 && self.hosts == 0) {
            return Step::Refused(Status::BadRequest, self);
        }
        if self.method.is_none() {
            return Step::Refused(Status::MethodNotAllowed, self);
        }
        Step::Done(self)
    }
}

/// What a line did to the head being read.
#[derive(Debug)]
pub enum Step {
    /// More lines to come.
    More,
    /// The head is whole and acceptable.
    Done(Head),
    /// The head is refused with this status; the `Head` says how far it was understood.
    Refused(Status, Head),
}

/// A request head read line by line, bounded in lines and bytes.
#[derive(Default)]
pub struct HeadParser {
    /// After the request line.
    head: Option<Head>,
    blank: usize,
    headers: usize,
    /// The head's bytes so far, line ends included.
    bytes: usize,
}

impl HeadParser {
    /// The bytes of the head taken in so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes in the next line (with its line end), copying the request
    /// target into `target`.
    pub fn line(&mut self, line: &[u8], target: &mut Vec<u8>) -> Step {
        self.bytes += line.len();
        let line = trim_eol(line);
        let Some(head) = &mut self.head else {
            if line.is_empty() && self.blank < MAX_BLANK_LINES {
                self.blank += 1;
                return Step::More;
            }
            return match Head::from_request_line(line, target) {
                Ok(head) => {
                    self.head = Some(head);
                    Step::More
                }
                Err(status) => Step::Refused(status, Head::unknown()),
            };
        };
        if line.is_empty() {
            return head.complete();
        }
        self.headers += 1;
        if self.headers > MAX_HEADERS {
            return Step::Refused(Status::HeaderFieldsTooLarge, *head);
        }
        match head.header(line) {
            Ok(()) => Step::More,
            Err(status) => Step::Refused(status, *head),
        }
    }

    /// The refusal of a head that outgrew its bound: 414 while in the
    /// request line, 431 after it.
    pub fn too_large(&self) -> (Status, Head) {
        match self.head {
            None => (Status::UriTooLong, Head::unknown()),
            Some(head) => (Status::HeaderFieldsTooLarge, head),
        }
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
pub fn origin_path_and_query(target: &[u8]) -> &[u8] {
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
pub fn origin_path(target: &[u8]) -> Option<&[u8]> {
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

/// The query (and fragment) of the target, with its `?` or `#`; empty if none.
pub fn query(target: &[u8]) -> &[u8] {
    let target = origin_path_and_query(target);
    target
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .map_or(&b""[..], |i| &target[i..])
}

/// Percent-decodes `path` into `out`; `None` on a malformed escape.
pub fn percent_decode(path: &[u8], out: &mut Vec<u8>) -> Option<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_complete_at_its_empty_line() {
        assert!(head_complete(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert!(head_complete(b"GET / HTTP/1.1\nHost: t\n\n"));
        assert!(head_complete(b"GET / HTTP/1.1\r\nHost: t\n\r\nGET"));
        assert!(head_complete(b"\r\n\r\nGET / HTTP/1.0\r\n\r\n"));
        assert!(!head_complete(b""));
        assert!(!head_complete(b"\r\n"));
        assert!(!head_complete(b"GET / HTTP/1.1\r\nHost: t\r\n"));
        assert!(!head_complete(b"GET / HTTP/1.1\r\nHost: t\r\n\r"));
        assert!(!head_complete(b"\r\n\r\nGET / HTTP/1.0\r\n"));
        // Beyond the tolerated blank lines an empty request line is a 400.
        assert!(head_complete(b"\r\n\r\n\r\n\r\n\r\n"));
    }

    /// Feeds `head` line by line, as the handler does.
    fn parse(head: &[u8]) -> (Step, Vec<u8>) {
        let mut parser = HeadParser::default();
        let mut target = Vec::new();
        for line in head.split_inclusive(|&b| b == b'\n') {
            match parser.line(line, &mut target) {
                Step::More => {}
                step => return (step, target),
            }
        }
        (Step::More, target)
    }

    #[test]
    fn a_complete_head_agrees_with_the_parser() {
        for head in [
            &b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"[..],
            b"\n\nHEAD /a HTTP/1.0\n\n",
            b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ] {
            assert!(head_complete(head));
            let (step, target) = parse(head);
            assert!(matches!(step, Step::Done(_)), "{step:?}");
            assert_eq!(target, b"/a");
        }
        let (step, _) = parse(b"\r\n\r\n\r\n\r\n\r\n");
        assert!(matches!(step, Step::Refused(Status::BadRequest, _)));
    }

    #[test]
    fn heads_get_their_statuses() {
        let cases: [(&[u8], Status); 5] = [
            (b"GET / HTTP/1.1\r\n\r\n", Status::BadRequest),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                Status::BadRequest,
            ),
            (b"GET / HTTP/3.0\r\n\r\n", Status::VersionNotSupported),
            (
                b"PUT / HTTP/1.1\r\nHost: a\r\n\r\n",
                Status::MethodNotAllowed,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Status::BadRequest,
            ),
        ];
        for (head, status) in cases {
            match parse(head).0 {
                Step::Refused(got, _) => assert_eq!(got, status),
                other => panic!("{other:?} for {}", String::from_utf8_lossy(head)),
            }
        }
        let (Step::Done(head), _) = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        else {
            panic!("refused");
        };
        assert!(head.http10 && head.keep_alive && !head.has_body);
    }

    #[test]
    fn targets() {
        assert_eq!(origin_path(b"http://h/a?b"), Some(&b"/a"[..]));
        assert_eq!(origin_path(b"HTTPS://h"), Some(&b"/"[..]));
        assert_eq!(origin_path(b"*"), None);
        assert_eq!(query(b"/sub?q=1"), b"?q=1");
        let mut out = Vec::new();
        assert_eq!(percent_decode(b"/a%20b%2F", &mut out), Some(()));
        assert_eq!(out, b"/a b/");
        assert_eq!(percent_decode(b"/%4", &mut out), None);
    }
}
