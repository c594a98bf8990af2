//! `http`: `wrk` against the `http_server` example and against
//! `python3 -m http.server`, both serving the same directory; then the
//! example against nginx at 8, 64 and 256 connections.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::nginx::{self, Nginx};
use crate::proc::Server;
use crate::report::{num, Check, Figure, Section, Table, Target};
use crate::stats::{rotate, Ratio, Sample, Series};
use crate::Plan;

/// The file every request fetches, and its size.
const FILE: &str = "index.html";
const FILE_SIZE: usize = 4096;
/// wrk's threads and connections.
const WRK_THREADS: u32 = 2;
const WRK_CONNECTIONS: u32 = 8;
/// Overrides the example binary (for instance a stand-in with the same
/// contract); otherwise it is built with cargo.
pub const SERVER_VAR: &str = "SOCKETSERVER_BENCH_HTTP_SERVER";
/// The issue's target: the example at least this many times CPython.
const TARGET: f64 = 5.0;
/// wrk's connections against nginx (issue 23), and the example's target
/// there: at least nginx's rate.
const NGINX_CONNECTIONS: [u32; 3] = [8, 64, 256];
const NGINX_TARGET: f64 = 1.0;

const TITLE: &str = "`http_server` example vs `python3 -m http.server` under wrk";

/// Runs the workload and builds its section; skips it, loudly, without
/// `wrk`, `python3` or a buildable `http_server` example.
///
/// # Errors
/// A server failed during the rounds, or wrk's output was unreadable.
pub fn run(plan: &Plan) -> io::Result<Section> {
    if Command::new("wrk").output().is_err() {
        let reason = "needs `wrk` on PATH (apt-get install -y wrk)".to_string();
        return Ok(skipped(reason));
    }
    if let Err(reason) = &plan.python {
        return Ok(skipped(reason.clone()));
    }
    let example = match example_binary() {
        Ok(path) => path,
        Err(reason) => return Ok(skipped(reason)),
    };
    let dir = std::env::temp_dir().join(format!("socketserver-bench-http-{}", std::process::id()));
    let result = with_files(&dir, |dir| measure(plan, &example, dir));
    let _ = fs::remove_dir_all(&dir);
    result
}

fn check(measured: Result<Figure, String>) -> Check {
    Check {
        workload: "http",
        what: "`http_server` example / `python3 -m http.server`".into(),
        label: "http_server / python3 -m http.server".into(),
        measured,
        target: Target::AtLeast(TARGET),
        strict: false,
    }
}

fn skipped(reason: String) -> Section {
    Section::skipped("http", TITLE, reason, vec![check(Err(String::new()))])
}

/// The example's path: `$SOCKETSERVER_BENCH_HTTP_SERVER`, or what
/// `cargo build --release --example http_server --features std` builds.
fn example_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(SERVER_VAR) {
        return Ok(path.into());
    }
    eprintln!("http: cargo build --release --example http_server --features std");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the bench crate is inside the workspace");
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "--example",
            "http_server",
            "--features",
            "std",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if !output.status.success() {
        return Err("the `http_server` example did not build (see cargo's errors above)".into());
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#))
        .filter(|l| l.contains(r#""name":"http_server""#))
        .find_map(|l| {
            let rest = &l[l.find(r#""executable":""#)? + r#""executable":""#.len()..];
            Some(PathBuf::from(&rest[..rest.find('"')?]))
        })
        .ok_or_else(|| "cargo built no `http_server` executable".into())
}

fn with_files<T>(dir: &Path, f: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    fs::create_dir_all(dir)?;
    let body: Vec<u8> = b"<!doctype html><title>socketserver bench</title>\n"
        .iter()
        .chain(std::iter::repeat(b"0123456789abcdef\n".as_slice()).flatten())
        .copied()
        .take(FILE_SIZE)
        .collect();
    File::create(dir.join(FILE))?.write_all(&body)?;
    f(dir)
}

/// A server process to start for each round.
struct HttpServer {
    command: Command,
    announce: fn(&str) -> Option<SocketAddr>,
    /// Where its stderr goes; its tail is shown when something fails.
    log: PathBuf,
}

impl HttpServer {
    fn new(
        mut command: Command,
        announce: fn(&str) -> Option<SocketAddr>,
        log: PathBuf,
    ) -> io::Result<Self> {
        command.stderr(File::create(&log)?);
        Ok(HttpServer {
            command,
            announce,
            log,
        })
    }

    /// Starts the server, runs `job` against it, stops it.
    fn with_server<T>(&mut self, job: impl FnOnce(SocketAddr) -> io::Result<T>) -> io::Result<T> {
        let result = Server::start_with(&mut self.command, self.announce).and_then(|server| {
            let result = job(server.address);
            server.stop()?;
            result
        });
        result.map_err(|err| {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            let tail = log.lines().rev().take(10).collect::<Vec<_>>();
            let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
            io::Error::other(format!("{:?}: {err}\n{tail}", self.command.get_program()))
        })
    }
}

/// A row: which server, and whether wrk asks it to close every connection.
struct HttpPeer {
    name: &'static str,
    server: usize,
    close: bool,
}

fn measure(plan: &Plan, example: &Path, dir: &Path) -> io::Result<Section> {
    let body = fs::read(dir.join(FILE))?;
    let mut ours = Command::new(example);
    ours.arg("127.0.0.1:0").arg(dir);
    let mut python = Command::new("python3");
    python
        .args([
            "-u",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(dir)
        .arg("0");
    let mut servers = [
        HttpServer::new(
            ours,
            |line| line.strip_prefix("listening on ")?.parse().ok(),
            dir.join("example.log"),
        )?,
        HttpServer::new(python, python_address, dir.join("python.log"))?,
    ];
    // Each serves the file correctly before any load.
    for server in &mut servers {
        server.with_server(|address| check_get(address, &body))?;
    }
    let peers = [
        HttpPeer {
            name: "`http_server` example",
            server: 0,
            close: false,
        },
        HttpPeer {
            name: "`http_server` example, wrk sending `Connection: close`",
            server: 0,
            close: true,
        },
        HttpPeer {
            name: "`python3 -m http.server`",
            server: 1,
            close: false,
        },
    ];
    eprintln!(
        "http: {} servers x {} rounds of wrk -d{}s",
        peers.len(),
        plan.rounds,
        plan.http_seconds
    );
    let series = rotate(&peers, plan.rounds, |peer| {
        servers[peer.server]
            .with_server(|address| wrk(address, plan.http_seconds, WRK_CONNECTIONS, peer.close))
    })?;
    let python = &series[2];
    let mut section = Section {
        workload: "http",
        title: TITLE.into(),
        about: format!(
            "`wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{}s` fetching a {FILE_SIZE}-byte \
             `{FILE}`; each server in a fresh process per round, serving the same \
             directory. `python3 -m http.server` answers HTTP/1.0 and closes every \
             connection, so wrk reconnects for each of its requests; the example keeps \
             connections alive, and the second row shows it when wrk asks it to close \
             them too (`-H 'Connection: close'`). Median of {} rounds.",
            plan.http_seconds, plan.rounds
        ),
        header: [
            "server",
            "requests/s (median)",
            "min-max",
            "vs `python3 -m http.server`",
            "errors",
        ]
        .map(String::from)
        .to_vec(),
        rows: peers
            .iter()
            .zip(&series)
            .map(|(peer, s)| {
                let (lo, hi) = s.spread();
                vec![
                    peer.name.into(),
                    num(s.median()),
                    format!("{}-{}", num(lo), num(hi)),
                    format!("{:.2}x", Ratio::of(s, python).median),
                    s.errors().to_string(),
                ]
            })
            .collect(),
        checks: vec![check(Ok(Ratio::of(&series[0], python).into()))],
        ..Section::default()
    };
    match nginx::available() {
        Ok(()) => against_nginx(plan, &mut servers[0], dir, &body, &mut section)?,
        Err(reason) => {
            section.skipped.push(format!("nginx: {reason}"));
            for connections in NGINX_CONNECTIONS {
                section
                    .checks
                    .push(nginx_check(connections, Err(reason.clone())));
            }
        }
    }
    Ok(section)
}

fn nginx_check(connections: u32, measured: Result<Figure, String>) -> Check {
    Check {
        workload: "http",
        what: format!("`http_server` example / nginx, {connections} connections"),
        label: format!("http_server / nginx, {connections} conns"),
        measured,
        target: Target::AtLeast(NGINX_TARGET),
        strict: false,
    }
}

/// The example against nginx, both serving `dir`, at each of
/// [`NGINX_CONNECTIONS`]: a table and a check each.
fn against_nginx(
    plan: &Plan,
    ours: &mut HttpServer,
    dir: &Path,
    body: &[u8],
    section: &mut Section,
) -> io::Result<()> {
    let prefix = dir.join("nginx");
    let log = dir.join("nginx.log");
    let with_nginx = |job: &mut dyn FnMut(SocketAddr) -> io::Result<Sample>| {
        let server = Nginx::start(&prefix, dir, &log)?;
        let result = job(server.address);
        server.stop()?;
        result.map_err(|err| {
            let text = fs::read_to_string(&log).unwrap_or_default();
            io::Error::other(format!("nginx: {err}\n{text}"))
        })
    };
    with_nginx(&mut |address| {
        check_get(address, body).map(|()| Sample {
            value: 0.0,
            errors: 0,
        })
    })?;
    let seconds = plan.nginx_seconds;
    let mut columns: Vec<[Series; 2]> = Vec::new();
    for connections in NGINX_CONNECTIONS {
        eprintln!(
            "http: http_server vs nginx, {connections} connections: {} rounds of wrk -d{seconds}s",
            plan.nginx_rounds
        );
        let series = rotate(&[0, 1], plan.nginx_rounds, |&peer| {
            let mut load = |address| wrk(address, seconds, connections, false);
            if peer == 0 {
                ours.with_server(load)
            } else {
                with_nginx(&mut load)
            }
        })?;
        let [a, b]: [Series; 2] = series.try_into().expect("two peers");
        section
            .checks
            .push(nginx_check(connections, Ok(Ratio::of(&a, &b).into())));
        columns.push([a, b]);
    }
    let cell = |s: &Series| {
        let (lo, hi) = s.spread();
        let errors = match s.errors() {
            0 => String::new(),
            n => format!(", {n} errors"),
        };
        format!("{} ({}-{}){errors}", num(s.median()), num(lo), num(hi))
    };
    let mut rows: Vec<Vec<String>> = ["`http_server` example", "nginx"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            std::iter::once(name.to_string())
                .chain(columns.iter().map(|c| cell(&c[i])))
                .collect()
        })
        .collect();
    rows.push(
        std::iter::once("`http_server` / nginx".to_string())
            .chain(columns.iter().map(|[a, b]| {
                let r = Ratio::of(a, b);
                format!("{:.2}x ({:.2}-{:.2})", r.median, r.min, r.max)
            }))
            .collect(),
    );
    section.tables.push(Table {
        caption: format!(
            "Against nginx ({}; {}): `wrk -t{WRK_THREADS} -cN -d{seconds}s` fetching the \
             same {FILE_SIZE}-byte `{FILE}`, both keeping connections alive; requests/s, \
             median of {} alternating rounds (range), each server in a fresh process per \
             round. The configuration, with its temporary prefix, port and root filled in:\n\n\
             ```nginx\n{}```",
            nginx::version(),
            nginx::SUMMARY,
            plan.nginx_rounds,
            nginx::CONFIG,
        ),
        header: std::iter::once("requests/s".to_string())
            .chain(NGINX_CONNECTIONS.iter().map(|c| format!("{c} conns")))
            .collect(),
        rows,
    });
    Ok(())
}

/// `Serving HTTP on 127.0.0.1 port 43210 (http://127.0.0.1:43210/) ...`
fn python_address(line: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix("Serving HTTP on ")?;
    let (host, rest) = rest.split_once(" port ")?;
    let port = rest.split_whitespace().next()?;
    format!("{host}:{port}").parse().ok()
}

/// One GET with `Connection: close`: status 200 and the file as the body.
fn check_get(address: SocketAddr, body: &[u8]) -> io::Result<()> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /{FILE} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.") || status.split_whitespace().nth(1) != Some("200") {
        return Err(io::Error::other(format!("GET /{FILE} answered {status:?}")));
    }
    if !response.ends_with(body) {
        return Err(io::Error::other(format!("GET /{FILE}: wrong body")));
    }
    Ok(())
}

/// Runs wrk for `seconds` with `connections` against `/FILE` (asking for `Connection:
/// close` if `close`): requests/s, and as errors the
/// non-2xx/3xx responses and socket errors it reports.
fn wrk(address: SocketAddr, seconds: u32, connections: u32, close: bool) -> io::Result<Sample> {
    let mut command = Command::new("wrk");
    if close {
        command.args(["-H", "Connection: close"]);
    }
    let output = command
        .args([
            format!("-t{WRK_THREADS}"),
            format!("-c{connections}"),
            format!("-d{seconds}s"),
            "--timeout".into(),
            "5s".into(),
            format!("http://{address}/{FILE}"),
        ])
        .stderr(Stdio::inherit())
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(io::Error::other(format!("wrk failed: {text}")));
    }
    parse_wrk(&text).ok_or_else(|| io::Error::other(format!("unexpected wrk output: {text}")))
}

fn parse_wrk(text: &str) -> Option<Sample> {
    let mut rate = None;
    let mut errors = 0;
    for line in text.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("Requests/sec:") {
            rate = value.trim().parse().ok();
        } else if let Some(value) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += value.trim().parse::<u64>().ok()?;
        } else if let Some(counts) = line.strip_prefix("Socket errors:") {
            // connect 0, read 0, write 0, timeout 0
            for part in counts.split(',') {
                errors += part.split_whitespace().nth(1)?.parse::<u64>().ok()?;
            }
        }
    }
    Some(Sample {
        value: rate?,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let text = "Running 1s test @ http://127.0.0.1:1/index.html\n\
            \x20 2 threads and 8 connections\n\
            \x20 1234 requests in 1.00s, 5.00MB read\n\
            \x20 Socket errors: connect 0, read 3, write 0, timeout 1\n\
            \x20 Non-2xx or 3xx responses: 2\n\
            Requests/sec:   1234.50\n\
            Transfer/sec:      5.00MB\n";
        let sample = parse_wrk(text).unwrap();
        assert_eq!((sample.value, sample.errors), (1234.5, 6));
        assert!(parse_wrk("garbage").is_none());
    }

    #[test]
    fn reads_python_announcement() {
        assert_eq!(
            python_address("Serving HTTP on 127.0.0.1 port 43210 (http://127.0.0.1:43210/) ..."),
            Some(SocketAddr::from(([127, 0, 0, 1], 43210)))
        );
    }
}
