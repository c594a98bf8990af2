//! The `http_server` example, run as a process on port 0 over a temporary
//! directory, checked with `curl` (every status code) and with raw TCP
//! clients (malformed and oversized requests, keep-alive, pipelining,
//! hostile clients: swapped paths, open redirects, slow clients).
#![cfg(feature = "std")]
#![cfg(not(target_os = "wasi"))]

mod util;

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

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

/// Waits (at most [`PATIENCE`]) until the server has closed one of
/// `conns`, without a byte; which one.
fn wait_for_one_closed(conns: &[BufReader<TcpStream>]) -> usize {
    let deadline = Instant::now() + PATIENCE;
    loop {
        for (i, conn) in conns.iter().enumerate() {
            let conn = conn.get_ref();
            conn.set_nonblocking(true).unwrap();
            let now = (&mut &*conn).read(&mut [0]);
            conn.set_nonblocking(false).unwrap();
            match now {
                Ok(0) => return i,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => panic!("connection {i}: {other:?}"),
            }
        }
        assert!(Instant::now() < deadline, "none was closed");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A new client's `GET` is answered with 200 within 2 s.
fn assert_answered_at_once(server: &Server) {
    let start = Instant::now();
    let mut conn = server.connect();
    conn.get_mut()
        .write_all(get("/hello.txt", "Connection: close\r\n").as_bytes())
        .unwrap();
    let response = read_response(&mut conn, false);
    let waited = start.elapsed();
    assert_eq!(response.status, 200);
    assert!(waited < Duration::from_secs(2), "answered after {waited:?}");
}

/// The server has not closed `conn`, nor sent anything on it.
fn assert_still_open(conn: &TcpStream) {
    conn.set_nonblocking(true).unwrap();
    let now = (&mut &*conn).read(&mut [0]);
    conn.set_nonblocking(false).unwrap();
    assert!(
        matches!(&now, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
        "closed or answered: {now:?}"
    );
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

/// `--help` is the usage on stdout with status 0; a bad argument one
/// `error:` line on stderr with status 2 (issue 25, item 11).
#[test]
fn help_and_bad_arguments_are_answered_in_words() {
    let run = |args: &[&str]| {
        Command::new(example("http_server"))
            .args(args)
            .output()
            .expect("run the http_server example")
    };
    let help = run(&["--help"]);
    assert!(help.status.success(), "{:?}", help.status);
    assert!(String::from_utf8_lossy(&help.stdout).starts_with("usage: http_server "));
    for bad in [
        &["--timeout", "soon"][..],
        &["--workers", "0"],
        &["--nonsense"],
        &["a", "b", "c"],
    ] {
        let output = run(bad);
        assert_eq!(output.status.code(), Some(2), "{bad:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("error: ") && stderr.lines().count() == 1,
            "{bad:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{bad:?}");
    }
}

/// Makes a FIFO at `path`; no writer ever opens it, so opening it to read
/// without `O_NONBLOCK` would block for ever.
fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status();
    assert!(status.expect("run mkfifo").success(), "mkfifo {path:?}");
}

#[test]
fn fifos_and_devices_are_refused_at_once() {
    let site = Site::new();
    mkfifo(&site.root.path("pipe.txt"));
    fs::create_dir(site.root.path("piped")).unwrap();
    mkfifo(&site.root.path("piped/index.html"));
    symlink("/dev/zero", site.root.path("zero")).unwrap();
    let server = site.start(&[]);
    for path in ["/pipe.txt", "/piped/", "/zero"] {
        for method in ["GET", "HEAD"] {
            let request =
                format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            let mut conn = server.connect();
            conn.get_mut().write_all(request.as_bytes()).unwrap();
            let response = read_response(&mut conn, method == "HEAD");
            assert_eq!(response.status, 404, "{method} {path}");
        }
    }
    server.stop();
}

/// The text of a `Last-Modified` that only the file outside has.
const OUTSIDE_DATE: &str = "Mon, 01 Jan 2001";
/// The file inside, and its length as the head says it.
const INSIDE: &str = "inside the root\n";
const INSIDE_LENGTH: &str = "Content-Length: 16\r\n";

/// Replaces `path` with a hard link to each of `protos` in turn (through a
/// `rename`, so the path always exists) until `stop` is set; returns how
/// many swaps it made.
fn keep_swapping(
    path: PathBuf,
    protos: Vec<PathBuf>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let tmp = path.with_extension("tmp");
        let mut swaps = 0;
        while !stop.load(Ordering::Relaxed) {
            for proto in &protos {
                let _ = fs::remove_file(&tmp);
                fs::hard_link(proto, &tmp).unwrap();
                fs::rename(&tmp, &path).unwrap();
                swaps += 1;
            }
        }
        swaps
    })
}

/// Sends `GET /race` on new connections until `until`; counts the 200s with
/// the inside file and the 404s, and fails on anything else (no reply, a
/// reply mixing the two files).
fn race_client(address: &str, until: Instant) -> Result<[usize; 2], String> {
    let mut seen = [0, 0];
    while Instant::now() < until {
        let mut conn = TcpStream::connect(address).map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        conn.write_all(get("/race", "Connection: close\r\n").as_bytes())
            .unwrap();
        let mut reply = Vec::new();
        if let Err(e) = conn.read_to_end(&mut reply) {
            return Err(format!("no reply within {PATIENCE:?} ({e})"));
        }
        let reply = String::from_utf8_lossy(&reply);
        if reply.starts_with("HTTP/1.1 404 ") {
            seen[1] += 1;
        } else if reply.starts_with("HTTP/1.1 200 ")
            && reply.contains(INSIDE_LENGTH)
            && !reply.contains(OUTSIDE_DATE)
            && reply.ends_with(&format!("\r\n\r\n{INSIDE}"))
        {
            seen[0] += 1;
        } else {
            return Err(format!("a reply that is neither file's: {reply:?}"));
        }
    }
    Ok(seen)
}

/// Hostile clients round 2, item 4: the path is opened once, without
/// blocking, and the reply (status, size, date, body) describes the opened
/// file. `race` flips between a file inside, a FIFO and a link to a smaller,
/// older file outside; checking the path and then opening it would block on
/// the FIFO or send the outside file's size and date with the inside body.
#[test]
fn a_path_swapped_while_served_never_blocks_or_mixes_files() {
    const RACE: Duration = Duration::from_secs(2);
    let site = Site::new();
    let secret = site.outside.path("secret.txt");
    let jan_2001 = SystemTime::UNIX_EPOCH + Duration::from_secs(978_307_200);
    let secret_file = File::options().write(true).open(&secret).unwrap();
    secret_file.set_modified(jan_2001).unwrap();
    // Outside the root, on its filesystem (hard links need that).
    let protos = TempDir::new("http-protos");
    let file = protos.path("file");
    fs::write(&file, INSIDE).unwrap();
    let fifo = protos.path("fifo");
    mkfifo(&fifo);
    let link = protos.path("link");
    symlink(&secret, &link).unwrap();
    fs::hard_link(&file, site.root.path("race")).unwrap();
    let server = site.start(&[]);

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = keep_swapping(
        site.root.path("race"),
        vec![file, fifo, link],
        Arc::clone(&stop),
    );
    let until = Instant::now() + RACE;
    let results: Vec<_> = thread::scope(|s| {
        let clients: Vec<_> = (0..2)
            .map(|_| s.spawn(|| race_client(&server.address, until)))
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    let mut seen = [0, 0];
    for result in results {
        let [ok, missing] = result.unwrap_or_else(|e| panic!("{e} ({swaps} swaps)"));
        seen = [seen[0] + ok, seen[1] + missing];
    }
    assert!(seen[0] > 0 && seen[1] > 0, "200s and 404s: {seen:?}");
    server.stop();
}

/// Item 5 (CPython's bpo-43223, CVE-2021-28861): the `Location` of a
/// redirect is built from the cleaned path, so it never starts with `//`
/// (which a browser reads as another host) nor holds a `\`.
#[test]
fn a_redirect_never_names_another_host() {
    let site = Site::new();
    fs::create_dir(site.root.path("other.example")).unwrap();
    fs::create_dir(site.root.path("\\other.example")).unwrap();
    let server = site.start(&[]);
    let cases = [
        ("//other.example", "/other.example/"),
        ("///other.example?q=1", "/other.example/?q=1"),
        ("http://test//other.example", "/other.example/"),
        ("/%2Fother.example", "/other.example/"),
        ("/\\other.example", "/%5Cother.example/"),
        ("//.", "/"),
        ("/./sub", "/sub/"),
    ];
    for (target, location) in cases {
        let response =
            exchange_then_close(&server, get(target, "Connection: close\r\n").as_bytes());
        assert_eq!(response.status, 301, "{target}");
        assert_eq!(response.field("Location"), Some(location), "{target}");
    }
    server.stop();
}

/// A read of one byte that waits at most `patience`, whatever signals
/// interrupt it.
fn read_for(conn: &TcpStream, patience: Duration) -> io::Result<usize> {
    let deadline = Instant::now() + patience;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        conn.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        let end = (&mut &*conn).read(&mut [0]);
        conn.set_read_timeout(Some(PATIENCE))?;
        match end {
            Err(e) if e.kind() == io::ErrorKind::Interrupted && !left.is_zero() => {}
            end => return end,
        }
    }
}

/// Whether a read ended because the peer closed or reset the connection,
/// not because the read timed out.
fn closed_by_peer(end: &io::Result<usize>) -> bool {
    !matches!(end, Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

/// Item 6, slowloris: a head sent a byte every 200 ms, each within the
/// per-read timeout, is cut at `--header-timeout` from its first byte.
/// Meanwhile it is parked, holding no worker: with a single worker, another
/// client is answered while the trickle goes on.
#[test]
fn a_trickling_request_head_is_cut_at_the_header_timeout() {
    let site = Site::new();
    let server = site.start(&["--header-timeout", "1", "--workers", "1"]);
    let mut slow = TcpStream::connect(&server.address).unwrap();
    slow.set_read_timeout(Some(PATIENCE)).unwrap();
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let mut out = slow.try_clone().unwrap();
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ";
            for &b in head.iter().chain(std::iter::repeat(&b'a')) {
                if stop.load(Ordering::Relaxed) || out.write_all(&[b]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(200));
            }
        })
    };
    assert_answered_at_once(&server);
    assert_still_open(&slow);

    let mut rest = Vec::new();
    let end = slow.read_to_end(&mut rest);
    let cut = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    assert!(closed_by_peer(&end), "still open after {cut:?}: {end:?}");
    assert!(rest.is_empty(), "unexpected reply {rest:?}");
    // Nothing else cuts it (each byte comes within `--timeout`): a slack
    // for a loaded machine.
    let bound = Duration::from_secs(1)..Duration::from_secs(8);
    assert!(bound.contains(&cut), "cut after {cut:?}, not in {bound:?}");
    trickle.join().unwrap();
    server.stop();
}

/// Item 6, slow reader: the first N bytes of a reply must go out within
/// `--header-timeout` plus a second per `--min-rate` bytes; a client
/// reading ~3 MiB/s from a 128 MiB file at 128 MiB/s is cut within about
/// a second. Meanwhile its reply goes out a piece whenever the connection
/// can take more, holding no worker: another client is answered by the only
/// one.
#[test]
fn a_slow_reader_is_cut_at_the_minimum_rate() {
    const HUGE: u64 = 128 << 20;
    let site = Site::new();
    File::create(site.root.path("huge.bin"))
        .unwrap()
        .set_len(HUGE)
        .unwrap();
    let server = site.start(&[
        "--header-timeout",
        "1",
        "--min-rate",
        &HUGE.to_string(),
        "--workers",
        "1",
    ]);
    let mut slow = server.connect().into_inner();
    slow.write_all(get("/huge.bin", "").as_bytes()).unwrap();
    let began = Instant::now();
    // About 3 MiB/s until the server cuts it (at most 40 s at that pace).
    let reader = thread::spawn(move || {
        let mut buf = vec![0; 64 * 1024];
        let mut total = 0;
        for _ in 0..2000 {
            match slow.read(&mut buf) {
                Ok(n @ 1..) => total += n as u64,
                _ => break,
            }
            thread::sleep(Duration::from_millis(20));
        }
        (total, began.elapsed())
    });
    assert_answered_at_once(&server);
    let (received, cut) = reader.join().unwrap();
    // All of it would take 40 s at that pace.
    assert!(cut < Duration::from_secs(8), "cut after {cut:?}");
    assert!(received < HUGE, "all of it went out ({received} bytes)");
    server.stop();
}

/// Item 6, at the connection bound: a client arriving when every place is
/// taken is served at once, and exactly one keep-alive connection waiting
/// for its next request (the longest idle) gives its place up for it, long
/// before its idle timeout (issue 25, item 7: before, every idle connection
/// closed after 1 s).
#[test]
fn idle_keep_alive_connections_give_way_at_the_connection_bound() {
    let site = Site::new();
    let server = site.start(&["--max-connections", "4", "--timeout", "60"]);
    let idle: Vec<_> = (0..4)
        .map(|_| connection_after_one_request(&server))
        .collect();

    assert_answered_at_once(&server);

    // One of them (the longest idle, as the server saw it) was closed to
    // make room, silently; the others are still served.
    let closed = wait_for_one_closed(&idle);
    for (_, mut conn) in idle.into_iter().enumerate().filter(|&(i, _)| i != closed) {
        conn.get_mut()
            .write_all(get("/hello.txt", "").as_bytes())
            .unwrap();
        assert_eq!(read_response(&mut conn, false).status, 200);
    }
    server.stop();
}

/// Issue 25, item 7: `--timeout` is the idle keep-alive bound. A connection
/// idle for longer than a second (where the old server cut every idle
/// connection) but less than the timeout is still served, and one left idle
/// is closed once the timeout has passed, not before.
#[test]
fn an_idle_keep_alive_connection_is_kept_for_the_timeout() {
    const TIMEOUT: Duration = Duration::from_secs(4);
    let site = Site::new();
    let server = site.start(&["--timeout", &TIMEOUT.as_secs().to_string()]);
    let mut conn = connection_after_one_request(&server);

    // Still open after 1.5 s of silence: the read times out, no EOF.
    let end = read_for(conn.get_ref(), Duration::from_millis(1500));
    assert!(!closed_by_peer(&end), "closed while idle: {end:?}");
    conn.get_mut()
        .write_all(get("/hello.txt", "").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut conn, false).status, 200);

    // Then closed, silently, once idle for the timeout.
    let idle_since = Instant::now();
    assert_closed(&mut conn);
    let idle = idle_since.elapsed();
    assert!(
        idle >= TIMEOUT - Duration::from_millis(100),
        "closed after {idle:?}"
    );
    server.stop();
}

/// Raises this process's soft limit on open descriptors to at least `want`
/// (servers started from here inherit it); puts the old limit back on drop.
struct DescriptorLimit(u64);

impl DescriptorLimit {
    fn at_least(want: u64) -> Self {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        // Raising the hard limit needs root (CAP_SYS_RESOURCE).
        let raised = setrlimit(Resource::RLIMIT_NOFILE, soft.max(want), hard.max(want));
        assert!(
            raised.is_ok(),
            "this test needs {want} open descriptors; the hard limit is {hard} (run as root, or raise it: ulimit -Hn)"
        );
        DescriptorLimit(soft)
    }
}

impl Drop for DescriptorLimit {
    fn drop(&mut self) {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, self.0, hard);
        }
    }
}

/// Reads from every connection at about `rate` bytes a second each, until
/// `stop`; returns what each received. Counts in `started` the connections
/// that have received something.
fn read_slowly(
    conns: Vec<TcpStream>,
    rate: usize,
    started: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<u64>> {
    const TICK: Duration = Duration::from_millis(100);
    thread::spawn(move || {
        let per_tick = rate / 10;
        let mut buf = vec![0; per_tick];
        let mut received = vec![0u64; conns.len()];
        for conn in &conns {
            conn.set_nonblocking(true).unwrap();
        }
        // At most a minute, whatever happens.
        for _ in 0..600 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            for (conn, got) in conns.iter().zip(&mut received) {
                if let Ok(n @ 1..) = (&mut &*conn).read(&mut buf) {
                    if *got == 0 {
                        started.fetch_add(1, Ordering::Relaxed);
                    }
                    *got += n as u64;
                }
            }
            thread::sleep(TICK);
        }
        received
    })
}

/// Issue 23: with 1024 connections that sent part of a request head and
/// 100 clients reading a large file at 4 KiB/s, all open, a new client is
/// answered at once: not refused, not left waiting for a deadline to cut
/// someone. The slow heads are parked, and so are the slow readers between
/// the turns in which their connections take more of the reply, so the
/// default few workers are enough.
#[test]
fn a_new_client_is_answered_at_once_among_slow_clients() {
    const SLOW_HEADS: usize = 1024;
    const SLOW_READERS: usize = 100;
    const LARGE: u64 = 256 << 20;
    let _limit = DescriptorLimit::at_least(4 * (SLOW_HEADS + SLOW_READERS) as u64);
    let site = Site::new();
    File::create(site.root.path("large.bin"))
        .unwrap()
        .set_len(LARGE)
        .unwrap();
    // No deadline cuts anyone while the test runs.
    let server = site.start(&["--header-timeout", "60", "--timeout", "60"]);

    let partial = b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nX-Slow: ";
    let heads: Vec<TcpStream> = (0..SLOW_HEADS)
        .map(|_| {
            let mut conn = TcpStream::connect(&server.address).unwrap();
            conn.write_all(partial).unwrap();
            conn
        })
        .collect();
    let readers: Vec<TcpStream> = (0..SLOW_READERS)
        .map(|_| {
            let mut conn = TcpStream::connect(&server.address).unwrap();
            conn.write_all(get("/large.bin", "").as_bytes()).unwrap();
            conn
        })
        .collect();
    let started = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reading = read_slowly(readers, 4096, Arc::clone(&started), Arc::clone(&stop));
    // Every reader's reply is under way.
    let deadline = Instant::now() + PATIENCE;
    while started.load(Ordering::Relaxed) < SLOW_READERS {
        assert!(Instant::now() < deadline, "only {started:?} replies began");
        thread::sleep(Duration::from_millis(20));
    }

    assert_answered_at_once(&server);

    // Everyone was still there: each slow head open, each reply unfinished.
    for conn in &heads {
        assert_still_open(conn);
    }
    stop.store(true, Ordering::Relaxed);
    let received = reading.join().unwrap();
    assert!(
        received.iter().all(|&n| n > 0 && n < LARGE),
        "replies: {received:?}"
    );
    server.stop();
}
