//! The `http_server` example, run as a process on port 0 over a temporary
//! directory, checked with `curl` (every status code) and with raw TCP
//! clients (malformed and oversized requests, keep-alive, pipelining).
#![cfg(feature = "std")]

mod util;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use util::announce::announced_address;
use util::process::{example, wait_bounded};
use util::{TempDir, PATIENCE};

/// More than one 64 KiB chunk, and not a multiple of it.
const BIG_LEN: usize = (1 << 20) + 123;

/// Fails the test unless `curl` can be run.
fn require_curl() {
    let found = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        found,
        "these tests need curl on the PATH (apt-get install -y curl)"
    );
}

/// The example serving a directory; killed if the test fails first.
struct Server {
    child: Option<Child>,
    address: String,
}

impl Server {
    /// Starts `http_server 127.0.0.1:0 DIR ARGS...` and waits for its
    /// `listening on` line.
    fn start(dir: &Path, args: &[&str]) -> Self {
        require_curl();
        let child = Command::new(example("http_server"))
            .arg("127.0.0.1:0")
            .arg(dir)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("run the http_server example");
        // Killed on drop even if it announces nothing.
        let mut server = Server {
            child: Some(child),
            address: String::new(),
        };
        server.address = announced_address(server.child.as_mut().unwrap());
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Runs `curl -s --path-as-is ARGS URL` and returns what it printed.
    fn curl(&self, args: &[&str], path: &str) -> String {
        let output = Command::new("curl")
            .args(["-s", "--path-as-is", "--max-time", "10"])
            .args(args)
            .arg(self.url(path))
            .output()
            .expect("run curl");
        text(&output)
    }

    /// The status code curl got for `path`.
    fn code(&self, args: &[&str], path: &str) -> String {
        let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        all.extend_from_slice(args);
        self.curl(&all, path)
    }

    fn connect(&self) -> BufReader<TcpStream> {
        let stream = TcpStream::connect(&self.address).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        BufReader::new(stream)
    }

    /// Sends SIGTERM and expects a prompt exit with status 0.
    fn stop(mut self) {
        let child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        assert!(status.unwrap().success());
        let status = wait_bounded(child);
        assert!(status.success(), "http_server exited with {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn text(output: &Output) -> String {
    assert!(
        output.status.success(),
        "curl failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Deterministic bytes that differ from chunk to chunk.
fn big_content() -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    (0..BIG_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The served directory, and a sibling holding what must not be served.
struct Site {
    root: TempDir,
    outside: TempDir,
}

impl Site {
    fn new() -> Self {
        let root = TempDir::new("http-root");
        let outside = TempDir::new("http-outside");
        fs::write(outside.path("secret.txt"), "secret\n").unwrap();
        fs::write(root.path("index.html"), "<h1>root</h1>\n").unwrap();
        fs::write(root.path("hello.txt"), "hello\n").unwrap();
        fs::write(root.path("a b.txt"), "spaced\n").unwrap();
        fs::write(root.path("style.CSS"), "p {}\n").unwrap();
        fs::write(root.path("big.bin"), big_content()).unwrap();
        fs::create_dir(root.path("sub")).unwrap();
        fs::write(root.path("sub/index.html"), "<h1>sub</h1>\n").unwrap();
        fs::create_dir(root.path("empty")).unwrap();
        symlink("hello.txt", root.path("inside-link.txt")).unwrap();
        symlink(outside.path("secret.txt"), root.path("escape.txt")).unwrap();
        symlink(&outside.0, root.path("escape-dir")).unwrap();
        Site { root, outside }
    }

    fn start(&self, args: &[&str]) -> Server {
        Server::start(&self.root.0, args)
    }
}

/// One response read off a connection.
#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Response {
    /// The value of field `name` (case-insensitive), if present.
    fn field(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads one response; a `HEAD` or 304 response has no body.
fn read_response(reader: &mut BufReader<TcpStream>, no_body: bool) -> Response {
    let mut head = String::new();
    loop {
        let n = reader.read_line(&mut head).expect("read the response head");
        assert!(n > 0, "connection closed inside the head: {head:?}");
        if head.ends_with("\r\n\r\n") {
            break;
        }
        assert!(head.len() < 64 * 1024, "endless head: {head:?}");
    }
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let mut response = Response {
        status,
        head,
        body: Vec::new(),
    };
    if !no_body && status != 304 {
        let length: usize = response
            .field("Content-Length")
            .expect("Content-Length")
            .parse()
            .unwrap();
        response.body = vec![0; length];
        reader
            .read_exact(&mut response.body)
            .expect("read the body");
    }
    response
}

/// Whether the server closed the connection (EOF within [`PATIENCE`]).
fn assert_closed(reader: &mut BufReader<TcpStream>) {
    let mut rest = Vec::new();
    reader
        .read_to_end(&mut rest)
        .expect("the server closes the connection");
    assert!(rest.is_empty(), "unexpected bytes {rest:?}");
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n")
}

/// Sends `request` on a new connection and reads the one response, after
/// which the server must close.
fn exchange_then_close(server: &Server, request: &[u8]) -> Response {
    let mut conn = server.connect();
    conn.get_mut().write_all(request).unwrap();
    let response = read_response(&mut conn, false);
    assert_closed(&mut conn);
    response
}

/// A keep-alive connection on which `GET /hello.txt` was just answered.
fn connection_after_one_request(server: &Server) -> BufReader<TcpStream> {
    let mut conn = server.connect();
    conn.get_mut()
        .write_all(get("/hello.txt", "").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut conn, false).status, 200);
    conn
}

#[test]
fn get_and_head_with_curl() {
    let site = Site::new();
    let server = site.start(&[]);

    assert_eq!(server.code(&[], "/hello.txt"), "200");
    assert_eq!(server.curl(&[], "/hello.txt"), "hello\n");
    assert_eq!(server.curl(&[], "/"), "<h1>root</h1>\n");
    assert_eq!(server.curl(&[], "/sub/"), "<h1>sub</h1>\n");
    assert_eq!(server.curl(&[], "/a%20b.txt"), "spaced\n");
    assert_eq!(server.curl(&[], "/hello.txt?x=1&y=/../z"), "hello\n");
    assert_eq!(server.curl(&[], "/./sub//index.html"), "<h1>sub</h1>\n");
    assert_eq!(server.curl(&["--http1.0"], "/hello.txt"), "hello\n");
    assert_eq!(server.code(&["--http1.0"], "/nothing"), "404");

    let types = ["-o", "/dev/null", "-w", "%{content_type}"];
    assert_eq!(server.curl(&types, "/"), "text/html");
    assert_eq!(server.curl(&types, "/hello.txt"), "text/plain");
    assert_eq!(server.curl(&types, "/style.CSS"), "text/css");
    assert_eq!(server.curl(&types, "/big.bin"), "application/octet-stream");

    // HEAD: the GET head, no body.
    let head = server.curl(&["-I"], "/hello.txt");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: 6\r\n"), "{head}");
    assert_eq!(
        server.curl(&["-I", "-o", "/dev/null", "-w", "%{http_code}"], "/nothing"),
        "404"
    );

    // 304 for an unchanged file; 200 when it changed since.
    let last_modified = head
        .lines()
        .find_map(|l| l.strip_prefix("Last-Modified: "))
        .expect("Last-Modified")
        .to_owned();
    let since = format!("If-Modified-Since: {last_modified}");
    assert_eq!(server.code(&["-H", &since], "/hello.txt"), "304");
    let old = "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT";
    assert_eq!(server.code(&["-H", old], "/hello.txt"), "200");

    // A directory without its final slash is redirected to it.
    let redirect = server.curl(&["-D", "-", "-o", "/dev/null"], "/sub?q=1");
    assert!(redirect.starts_with("HTTP/1.1 301 "), "{redirect}");
    assert!(redirect.contains("Location: /sub/?q=1\r\n"), "{redirect}");
    assert_eq!(server.curl(&["-L"], "/sub"), "<h1>sub</h1>\n");

    assert_eq!(server.code(&[], "/nothing"), "404");
    assert_eq!(server.code(&[], "/empty/"), "404");
    assert_eq!(server.code(&[], "/hello.txt/"), "404");

    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let reply = server.curl(&["-X", method, "-D", "-", "-o", "/dev/null"], "/");
        assert!(reply.starts_with("HTTP/1.1 405 "), "{method}: {reply}");
        assert!(reply.contains("Allow: GET, HEAD\r\n"), "{method}: {reply}");
    }
    let post = ["-o", "/dev/null", "-w", "%{http_code}", "--data", "x=1"];
    assert_eq!(server.curl(&post, "/"), "405");

    // Removing Host from an HTTP/1.1 request makes it malformed.
    assert_eq!(server.code(&["-H", "Host:"], "/"), "400");
    let long_path = format!("/{}", "a".repeat(9000));
    assert_eq!(server.code(&[], &long_path), "414");
    let long_header = format!("X-Long: {}", "b".repeat(9000));
    assert_eq!(server.code(&["-H", &long_header], "/"), "431");

    server.stop();
}

#[test]
fn nothing_outside_the_directory_is_served() {
    let site = Site::new();
    let server = site.start(&[]);
    assert!(site.outside.path("secret.txt").exists());
    let name = site.outside.0.file_name().unwrap().to_str().unwrap();

    let escapes = [
        format!("/../{name}/secret.txt"),
        format!("/sub/../../{name}/secret.txt"),
        format!("/%2e%2e/{name}/secret.txt"),
        format!("/%2E%2E%2f{name}%2Fsecret.txt"),
        format!("/sub/%2e%2e/%2e%2e/{name}/secret.txt"),
        "/..".into(),
        "/sub/..".into(),
        "//etc/passwd".into(),
        "/escape.txt".into(),
        "/escape-dir/secret.txt".into(),
    ];
    for path in &escapes {
        assert_eq!(server.code(&[], path), "404", "{path}");
    }
    // The outside file is really there, and a link inside is followed.
    assert_eq!(fs::read(site.root.path("escape.txt")).unwrap(), b"secret\n");
    assert_eq!(server.curl(&[], "/inside-link.txt"), "hello\n");

    // Raw targets curl would not send: absolute paths are relative to the
    // root, other forms are refused.
    let absolute = exchange_then_close(
        &server,
        get("http://test/hello.txt", "Connection: close\r\n").as_bytes(),
    );
    assert_eq!(
        (absolute.status, absolute.body.as_slice()),
        (200, &b"hello\n"[..])
    );
    for target in ["etc/passwd", "*", "/%00", "/%zz", "/%4"] {
        let response = exchange_then_close(&server, get(target, "").as_bytes());
        assert_eq!(response.status, 400, "{target}");
    }
    server.stop();
}

#[test]
fn a_multi_chunk_file_arrives_intact() {
    let site = Site::new();
    let server = site.start(&[]);
    let expected = big_content();

    let copy = site.root.path("copy.bin");
    let copy_arg = copy.to_str().unwrap();
    assert_eq!(
        server.curl(&["-o", copy_arg, "-w", "%{http_code}"], "/big.bin"),
        "200"
    );
    assert!(fs::read(&copy).unwrap() == expected, "curl's copy differs");

    // On one connection: HEAD, the big body, then a small one right after
    // it, so any byte too many or too few shows.
    let mut conn = server.connect();
    let request = format!(
        "HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n{}{}",
        get("/big.bin", ""),
        get("/hello.txt", "")
    );
    conn.get_mut().write_all(request.as_bytes()).unwrap();
    let head = read_response(&mut conn, true);
    assert_eq!(head.field("Content-Length"), Some(&*BIG_LEN.to_string()));
    let big = read_response(&mut conn, false);
    assert_eq!(big.status, 200);
    assert!(big.body == expected, "the raw body differs");
    let small = read_response(&mut conn, false);
    assert_eq!(small.body, b"hello\n");
    server.stop();
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let site = Site::new();
    let server = site.start(&[]);

    // HTTP/1.1: kept open by default, also after a 404 and a 405, until
    // `Connection: close`.
    let mut conn = server.connect();
    for (request, status) in [
        (get("/hello.txt", ""), 200),
        (get("/nothing", ""), 404),
        ("DELETE / HTTP/1.1\r\nHost: t\r\n\r\n".into(), 405),
        (get("/", ""), 200),
    ] {
        conn.get_mut().write_all(request.as_bytes()).unwrap();
        let response = read_response(&mut conn, false);
        assert_eq!(response.status, status, "{request}");
        assert_eq!(response.field("Connection"), None);
    }
    conn.get_mut()
        .write_all(get("/hello.txt", "Connection: close\r\n").as_bytes())
        .unwrap();
    let last = read_response(&mut conn, false);
    assert_eq!(last.field("Connection"), Some("close"));
    assert_closed(&mut conn);

    // Pipelined: three requests in one write, answered in order.
    let mut conn = server.connect();
    let pipelined = format!(
        "{}{}{}",
        get("/hello.txt", ""),
        get("/sub/", ""),
        get("/a%20b.txt", "Connection: close\r\n")
    );
    conn.get_mut().write_all(pipelined.as_bytes()).unwrap();
    for body in [&b"hello\n"[..], b"<h1>sub</h1>\n", b"spaced\n"] {
        assert_eq!(read_response(&mut conn, false).body, body);
    }
    assert_closed(&mut conn);

    // HTTP/1.0 with `Connection: keep-alive`: kept open, and said so.
    let mut conn = server.connect();
    for _ in 0..2 {
        let request = "GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        conn.get_mut().write_all(request.as_bytes()).unwrap();
        let response = read_response(&mut conn, false);
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, &b"hello\n"[..])
        );
        assert_eq!(response.field("Connection"), Some("keep-alive"));
    }

    // HTTP/1.0 without it: one response, then the server closes.
    let plain = exchange_then_close(&server, b"GET /hello.txt HTTP/1.0\r\n\r\n");
    assert_eq!(plain.status, 200);
    assert_eq!(plain.field("Connection"), Some("close"));
    server.stop();
}

#[test]
fn malformed_and_oversized_requests_get_their_status_then_close() {
    let site = Site::new();
    let server = site.start(&[]);
    let many_headers: String = (0..101).map(|i| format!("X-{i}: {i}\r\n")).collect();
    let cases: [(String, u16); 12] = [
        ("GARBAGE\r\n\r\n".into(), 400),
        ("GET /\r\n\r\n".into(), 400),
        ("GET  / HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
        ("GET / HTTP/1.1\r\n\r\n".into(), 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(), 400),
        (get("/", "NoColon\r\n"), 400),
        (get("/", " folded: line\r\n"), 400),
        (get("/", "Content-Length: ten\r\n"), 400),
        ("GET / HTTP/2.0\r\nHost: t\r\n\r\n".into(), 505),
        (
            format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000)),
            414,
        ),
        (get("/", &format!("X-Long: {}\r\n", "b".repeat(9000))), 431),
        (get("/", &many_headers), 431),
    ];
    for (request, status) in &cases {
        let response = exchange_then_close(&server, request.as_bytes());
        let shown = &request[..request.len().min(40)];
        assert_eq!(response.status, *status, "{shown:?}");
        assert_eq!(response.field("Connection"), Some("close"), "{shown:?}");
        assert!(response.body.starts_with(b"<!DOCTYPE html>"), "{shown:?}");
    }
    // A request with a body it does not read: answered, then closed.
    let post = "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nx=123";
    assert_eq!(exchange_then_close(&server, post.as_bytes()).status, 405);
    // Still serving.
    assert_eq!(server.code(&[], "/hello.txt"), "200");
    server.stop();
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_timeout() {
    let site = Site::new();
    let server = site.start(&["--timeout", "0.2"]);

    let mut silent = server.connect();
    assert_closed(&mut silent);

    let mut conn = connection_after_one_request(&server);
    assert_closed(&mut conn);
    server.stop();
}

#[test]
fn sigterm_exits_zero_with_a_keep_alive_connection_open() {
    let site = Site::new();
    let server = site.start(&[]);
    let conn = connection_after_one_request(&server);
    // The request thread still waits on this connection.
    server.stop();
    drop(conn);
}

#[test]
fn a_missing_directory_is_an_error() {
    let dir = TempDir::new("http-missing");
    let output = Command::new(example("http_server"))
        .arg("127.0.0.1:0")
        .arg(dir.path("absent"))
        .output()
        .expect("run the http_server example");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "it never listened");
}
