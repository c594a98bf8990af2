//! A static file server: Python's `http.server` (`SimpleHTTPRequestHandler`,
//! whose `handle()` is a loop of `handle_one_request()`) as a
//! [`MessageHandler`](socketserver::MessageHandler) serving one request per
//! call, on `ParkingDispatch`.
//!
//! Usage: `cargo run --release --example http_server -- [HOST:PORT [DIR]]
//! [--timeout SECS] [--header-timeout SECS] [--min-rate BYTES]
//! [--max-connections N] [--workers N]` (port 0 picks a free port; `DIR`
//! defaults to the current directory; the defaults are 5 s, 10 s, 32 KiB/s,
//! 10 000 and a worker per CPU). Prints `listening on ADDRESS` once bound,
//! serves until SIGINT or SIGTERM.
//! docs/guide/http_server.md describes what it serves and how; the modules are:
//!
//! - `request`: where a request head ends, what its lines say, its target;
//! - `files`: the file a target names, opened once and checked as opened;
//! - `response`: statuses, heads, pages, file bodies, each within its deadline;
//! - `handler`: the message handler tying them together, per connection;
//! - `text`: numbers and dates as HTTP writes them;
//! - this file: the command line, and the server the handler runs on.

mod files;
mod handler;
mod request;
mod response;
mod text;

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use socketserver::{BufferSizes, Full, ParkingDispatch, ServerBuilder, DEFAULT_POLL_INTERVAL};

use handler::HttpHandler;

/// The `rfile` capacity: the longest request head (request line and
/// header lines together).
const HEAD_CAPACITY: usize = 8192;
/// The idle keep-alive timeout unless `--timeout` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request head may take from its first byte, unless
/// `--header-timeout` says otherwise.
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The slowest a response may go out on average, in bytes per second,
/// unless `--min-rate` says otherwise.
const DEFAULT_MIN_RATE: u64 = 32 * 1024;
/// At most this many connections at once, unless `--max-connections` says
/// otherwise.
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Descriptors the server needs besides its connections (listening socket,
/// poller, files being sent, stdio).
const SPARE_DESCRIPTORS: u64 = 64;

/// What every connection shares: the directory and the settings.
pub struct Site {
    /// `DIR`, canonical.
    pub root: PathBuf,
    /// Whether opened files can be resolved through `/proc/self/fd`.
    pub proc_fd: bool,
    /// Idle keep-alive bound, and the bound on each read and write.
    pub timeout: Duration,
    /// The bound on a request head from its first byte, and the grace of a
    /// response's deadline.
    pub header_timeout: Duration,
    /// Bytes per second a response must average.
    pub min_rate: u64,
}

const USAGE: &str = "usage: http_server [HOST:PORT [DIR]] [--timeout SECS] \
    [--header-timeout SECS] [--min-rate BYTES] [--max-connections N] [--workers N]";

/// The command line. Each option is a field here and an arm in
/// [`Args::parse`]; serving over TLS (`--tls-cert FILE --tls-key FILE`)
/// adds its own pair the same way, and its transport in [`serve`].
struct Args {
    address: String,
    dir: String,
    timeout: Duration,
    header_timeout: Duration,
    min_rate: u64,
    max_connections: usize,
    /// `None`: the dispatch's default, one per available CPU.
    workers: Option<usize>,
}

/// Why the command line was not run.
enum ArgsError {
    /// `--help`: the usage on stdout, status 0.
    Help,
    /// A bad argument, in words.
    Bad(String),
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, ArgsError> {
        let mut positional = Vec::new();
        let mut parsed = Args {
            address: "localhost:8000".into(),
            dir: ".".into(),
            timeout: DEFAULT_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            min_rate: DEFAULT_MIN_RATE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            workers: None,
        };
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| bad(format!("{arg} needs a value")))
            };
            match arg.as_str() {
                "-h" | "--help" => return Err(ArgsError::Help),
                "--timeout" => parsed.timeout = seconds(&arg, value()?)?,
                "--header-timeout" => parsed.header_timeout = seconds(&arg, value()?)?,
                "--min-rate" => parsed.min_rate = count(&arg, value()?)?,
                "--max-connections" => parsed.max_connections = count(&arg, value()?)?,
                "--workers" => parsed.workers = Some(count(&arg, value()?)?),
                _ if arg.starts_with('-') => return Err(bad(format!("unknown option {arg}"))),
                _ if positional.len() == 2 => return Err(bad(format!("unexpected {arg}"))),
                _ => positional.push(arg),
            }
        }
        let mut positional = positional.into_iter();
        if let Some(address) = positional.next() {
            parsed.address = address;
        }
        if let Some(dir) = positional.next() {
            parsed.dir = dir;
        }
        Ok(parsed)
    }
}

fn bad(message: String) -> ArgsError {
    ArgsError::Bad(message)
}

/// A positive number of seconds.
fn seconds(flag: &str, value: String) -> Result<Duration, ArgsError> {
    value
        .parse()
        .ok()
        .and_then(|secs: f64| Duration::try_from_secs_f64(secs).ok())
        .filter(|t| !t.is_zero())
        .ok_or_else(|| {
            bad(format!(
                "{flag} takes a positive number of seconds, not {value:?}"
            ))
        })
}

/// A positive integer.
fn count<T: std::str::FromStr + Default + PartialEq>(
    flag: &str,
    value: String,
) -> Result<T, ArgsError> {
    value
        .parse()
        .ok()
        .filter(|n| *n != T::default())
        .ok_or_else(|| {
            bad(format!(
                "{flag} takes a positive whole number, not {value:?}"
            ))
        })
}

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(ArgsError::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(ArgsError::Bad(message)) => {
            eprintln!("error: {message} ({USAGE})");
            return ExitCode::from(2);
        }
    };
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves `args.dir` on `args.address` until a signal.
fn serve(args: Args) -> io::Result<()> {
    let root = fs::canonicalize(&args.dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", args.dir)))?;
    if !root.is_dir() {
        let message = format!("{} is not a directory", args.dir);
        return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    }
    let site = Arc::new(Site {
        root,
        proc_fd: Path::new("/proc/self/fd").is_dir(),
        timeout: args.timeout,
        header_timeout: args.header_timeout,
        min_rate: args.min_rate,
    });
    let max_connections = fit_descriptor_limit(args.max_connections);
    let mut server = ServerBuilder::tcp(args.address.as_str())
        .allow_reuse_address(true)
        .request_queue_size(1024)
        .buffer_sizes(BufferSizes::new(HEAD_CAPACITY, 0))
        .build_with(|config| {
            let factory = move || HttpHandler::new(Arc::clone(&site));
            let dispatch = ParkingDispatch::new(factory, config)
                .idle_timeout(Some(args.timeout))
                .max_connections(max_connections)
                .when_full(Full::ShedIdlest);
            match args.workers {
                Some(n) => dispatch.workers(n),
                None => dispatch,
            }
        })?;
    let _signals = server.shutdown_handle().stop_on_signals()?;
    println!("listening on {}", server.local_addr());
    io::stdout().flush()?;
    server.serve_forever(DEFAULT_POLL_INTERVAL)?;
    server.server_close();
    Ok(())
}

/// Makes room for `max` connections under the limit on open descriptors:
/// raises the soft limit as far as the hard one allows, and if that is not
/// enough, lowers the bound (and says so), so that the bound and its policy
/// apply before `accept` would fail for want of descriptors.
fn fit_descriptor_limit(max: usize) -> usize {
    use nix::sys::resource::{getrlimit, rlim_t, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return max;
    };
    // `rlim_t` is u64 on Linux and macOS, i64 on FreeBSD.
    #[allow(clippy::useless_conversion)]
    let limit = |n: rlim_t| u64::try_from(n).unwrap_or(u64::MAX);
    let (soft, hard) = (limit(soft), limit(hard));
    let want = (max as u64).saturating_add(SPARE_DESCRIPTORS);
    if want <= soft {
        return max;
    }
    #[allow(clippy::useless_conversion)]
    let (new_soft, new_hard) = (
        rlim_t::try_from(want.min(hard)).unwrap_or(rlim_t::MAX),
        rlim_t::try_from(hard).unwrap_or(rlim_t::MAX),
    );
    let soft = if setrlimit(Resource::RLIMIT_NOFILE, new_soft, new_hard).is_ok() {
        want.min(hard)
    } else {
        soft
    };
    if want <= soft {
        return max;
    }
    let fits = soft.saturating_sub(SPARE_DESCRIPTORS).max(1) as usize;
    eprintln!("http_server: --max-connections {max} lowered to {fits} to fit the limit of {soft} open descriptors");
    fits
}
