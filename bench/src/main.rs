//! `socketserver-bench`: how much the framework costs, and how it compares
//! with what one would use otherwise, measured in one run.
//!
//! Workloads (all by default): `conn`, `rr`, `prefork-conn`, `prefork-rr`,
//! `udp`, `bulk`, `shutdown`, `tap`, `http`, `tls`, `tls-bulk`, `scale`; see
//! `docs/bench/results.md` for what each does. Every
//! server runs in a process of its own; the load generator is this
//! process's client threads over loopback (or over a tap device in a
//! private network namespace for `tap`). Each peer is measured in several
//! short rounds, the peers taking turns in rotating order, and the tables
//! report medians and per-round ratios, so one noisy second decides
//! nothing.
//!
//! ```text
//! cargo run --release -p socketserver-bench -- [--quick] [--strict] [--out DIR] [WORKLOAD...]
//! ```
//!
//! A full run of every workload writes `docs/bench/results.md` and
//! `docs/bench/chart.png`; `--quick` (a smoke test of every workload in
//! seconds) and partial runs write to `target/bench/` unless `--out` says
//! otherwise. Without root, `tap` is skipped; without `wrk` or the
//! `http_server` example, `http` is, and without `nginx` its comparison
//! with nginx; all loudly, and `--strict` turns a
//! skip into a failure. Missed targets are reported, never failures, except
//! under `--strict` those marked strict (memory figures, which a loaded
//! machine does not move).

mod chart;
mod fleet;
mod http;
mod load;
mod nginx;
mod proc;
mod report;
mod scale;
mod servers;
mod shutdown;
mod stats;
mod tap;
mod tls;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};
use std::{fs, io};

use report::{Report, Section, Verdict};

/// Every workload, in the order they run.
const WORKLOADS: [&str; 12] = [
    "conn",
    "rr",
    "prefork-conn",
    "prefork-rr",
    "udp",
    "bulk",
    "shutdown",
    "tap",
    "http",
    "tls",
    "tls-bulk",
    "scale",
];

const USAGE: &str = "\
usage: socketserver-bench [--quick] [--strict] [--versus-tokio] [--out DIR] [WORKLOAD...]

WORKLOAD: conn rr prefork-conn prefork-rr udp bulk shutdown tap http tls tls-bulk scale
          (default: all)
  --quick   a few seconds per workload (a smoke test; figures not meaningful)
  --strict  fail when a workload or peer is skipped (no root, no wrk, ...)
  --versus-tokio
            scale: only PersistentTcpServer and tokio, at the 64, 512 and
            2000 connections their targets name, in 9 rounds (about 3
            minutes): more rounds of the one comparison on a noisy machine
  --out DIR where results.md and chart.png go (default: docs/bench for a
            full run of every workload, otherwise target/bench)";

/// How long and how often to measure.
#[derive(Debug)]
pub struct Plan {
    /// A smoke test rather than a measurement.
    pub quick: bool,
    /// Rounds per peer.
    pub rounds: usize,
    /// Load before each measurement window.
    pub warm_up: Duration,
    /// Each measurement window.
    pub window: Duration,
    /// Shutdown samples of the framework, idle and again under load.
    pub shutdown_samples: usize,
    /// Shutdown samples of CPython (each takes up to its poll interval).
    pub cpython_shutdown_samples: usize,
    /// MiB per `tap` transfer.
    pub tap_mib: usize,
    /// Rounds of `tap` (its transfers are short).
    pub tap_rounds: usize,
    /// Seconds per wrk run.
    pub http_seconds: u32,
    /// Seconds per wrk run against nginx, and rounds of it.
    pub nginx_seconds: u32,
    /// Rounds of the nginx comparison.
    pub nginx_rounds: usize,
    /// `scale` measures only the persistent dispatch against tokio.
    pub versus_tokio: bool,
    /// Whether `python3` runs, or why not.
    pub python: Result<(), String>,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        let python = if proc::available("python3", &["--version"]) {
            Ok(())
        } else {
            Err("python3 not found (apt-get install -y python3)".into())
        };
        if quick {
            Plan {
                quick,
                rounds: 3,
                warm_up: Duration::from_millis(50),
                window: Duration::from_millis(250),
                shutdown_samples: 20,
                cpython_shutdown_samples: 3,
                tap_mib: 4,
                tap_rounds: 3,
                http_seconds: 1,
                nginx_seconds: 1,
                nginx_rounds: 1,
                python,
                versus_tokio: false,
            }
        } else {
            Plan {
                quick,
                // Per-round ratios between two peers on this shared 2-core
                // machine spread by +-15% (as much between two copies of
                // the same server); the median of 9 rounds moved by about
                // 5% between runs, so a ratio near its target could land on
                // either side. 15 rounds narrow that by the square root of
                // 9/15, to about 4% (three runs gave conn threading / hand-
                // written 0.97x, 0.98x and 0.99x).
                rounds: 15,
                warm_up: Duration::from_millis(200),
                window: Duration::from_secs(1),
                shutdown_samples: 200,
                cpython_shutdown_samples: 20,
                tap_mib: 64,
                tap_rounds: 9,
                http_seconds: 1,
                nginx_seconds: 5,
                nginx_rounds: 3,
                python,
                versus_tokio: false,
            }
        }
    }
}

struct Options {
    quick: bool,
    strict: bool,
    versus_tokio: bool,
    out: Option<PathBuf>,
    workloads: Vec<&'static str>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        quick: false,
        strict: false,
        versus_tokio: false,
        out: None,
        workloads: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--strict" => options.strict = true,
            "--versus-tokio" => options.versus_tokio = true,
            "--out" => options.out = Some(args.next().ok_or("--out needs a directory")?.into()),
            "-h" | "--help" => return Err(String::new()),
            name => match WORKLOADS.iter().find(|w| **w == name) {
                Some(w) if !options.workloads.contains(w) => options.workloads.push(w),
                Some(_) => {}
                None => return Err(format!("unknown workload or option {name:?}")),
            },
        }
    }
    if options.workloads.is_empty() {
        options.workloads = WORKLOADS.to_vec();
    }
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The processes this program starts of itself.
    let internal = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", kind, address] => Some(servers::serve(kind, address)),
        ["shutdown-probe", address] => Some(shutdown::probe(address)),
        // For profiling a server by hand: the load of one workload, printed.
        ["load", workload, address, seconds] => Some(load_by_hand(workload, address, seconds)),
        ["tap-inside", mib, rounds] => Some(match (mib.parse(), rounds.parse()) {
            (Ok(mib), Ok(rounds)) => tap::inside(mib, rounds),
            _ => Err(io::Error::other("tap-inside MIB ROUNDS")),
        }),
        _ => None,
    };
    if let Some(result) = internal {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("socketserver-bench {}: {err}", args[0]);
                ExitCode::FAILURE
            }
        };
    }
    let options = match parse(&args) {
        Ok(options) => options,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match bench(&options) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("socketserver-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `socketserver-bench load WORKLOAD ADDRESS SECONDS`: 4 clients of
/// `conn`, `rr` or `udp` against a server started by hand (for example
/// `socketserver-bench serve fw-threading-upper 127.0.0.1:0` under `perf`).
fn load_by_hand(workload: &str, address: &str, seconds: &str) -> io::Result<()> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
    let address = address.parse().map_err(|_| invalid("ADDRESS: ip:port"))?;
    let seconds: f64 = seconds.parse().map_err(|_| invalid("SECONDS: a number"))?;
    let load = load::Load {
        clients: 4,
        warm_up: Duration::ZERO,
        window: Duration::from_secs_f64(seconds),
    };
    let sample = match workload {
        "conn" => load::conn(address, load),
        "rr" => load::rr(address, load),
        "udp" => load::udp(address, load),
        _ => return Err(invalid("WORKLOAD: conn, rr or udp")),
    };
    println!(
        "{workload}: {:.0}/s, {} errors",
        sample.value, sample.errors
    );
    Ok(())
}

fn bench(options: &Options) -> io::Result<ExitCode> {
    let started = Instant::now();
    let mut plan = Plan::new(options.quick);
    plan.versus_tokio = options.versus_tokio;
    let full = !options.quick && options.workloads.len() == WORKLOADS.len();
    let out = match &options.out {
        Some(dir) => dir.clone(),
        None if full => workspace().join("docs/bench"),
        None => target_dir()?.join("bench"),
    };
    let font = chart::load_font();
    if let Err(reason) = &font {
        loud(&format!("no chart: {reason}"));
        if options.strict {
            return Ok(ExitCode::FAILURE);
        }
    }
    if let Err(reason) = &plan.python {
        loud(&format!("CPython peers skipped: {reason}"));
    }
    let load_before = load_average();
    let mut sections = Vec::new();
    let mut failed = Vec::new();
    for &workload in &options.workloads {
        let began = Instant::now();
        let section = match workload {
            "conn" => workloads::run(&workloads::CONN, &plan),
            "rr" => workloads::run(&workloads::RR, &plan),
            "prefork-conn" => workloads::run(&workloads::PREFORK_CONN, &plan),
            "prefork-rr" => workloads::run(&workloads::PREFORK_RR, &plan),
            "udp" => workloads::run(&workloads::UDP, &plan),
            "bulk" => workloads::run(&workloads::BULK, &plan),
            "shutdown" => shutdown::run(&plan),
            "tap" => tap::run(&plan),
            "http" => http::run(&plan),
            // The key stays in the target directory, never beside the results.
            "tls" => tls::prepare(target_dir()?.join("bench/tls"))
                .and_then(|()| workloads::run(&tls::CONN, &plan)),
            "tls-bulk" => tls::prepare(target_dir()?.join("bench/tls"))
                .and_then(|()| workloads::run(&tls::BULK, &plan)),
            "scale" => scale::run(&plan),
            _ => unreachable!("parse accepts only known workloads"),
        };
        let section = section.unwrap_or_else(|err| {
            loud(&format!("{workload} FAILED: {err}"));
            failed.push(workload);
            Section {
                workload,
                title: "FAILED".into(),
                about: format!("**FAILED:** {err}"),
                ..Section::default()
            }
        });
        for skip in &section.skipped {
            loud(&format!("{workload} SKIPPED: {skip}"));
        }
        eprintln!("{workload}: done in {:.1} s", began.elapsed().as_secs_f64());
        sections.push(section);
    }
    let report = Report {
        preamble: preamble(options, &plan, &load_before),
        sections,
    };
    let markdown = report.markdown();
    println!("{markdown}");
    fs::create_dir_all(&out)?;
    fs::write(out.join("results.md"), &markdown)?;
    eprintln!("wrote {}", out.join("results.md").display());
    if font.is_ok() {
        let checks: Vec<_> = report.checks().collect();
        let latencies: Vec<(String, f64)> = report
            .sections
            .iter()
            .flat_map(|s| s.latencies.iter().cloned())
            .collect();
        let title = format!(
            "socketserver vs its peers, measured together{}",
            if plan.quick { " (quick smoke run)" } else { "" }
        );
        let curves: Vec<chart::Curve> = report
            .sections
            .iter()
            .flat_map(|s| s.curves.iter().cloned())
            .collect();
        match chart::draw(&out.join("chart.png"), &title, &checks, &latencies, &curves) {
            Ok(()) => eprintln!("wrote {}", out.join("chart.png").display()),
            Err(err) => {
                loud(&format!("chart FAILED: {err}"));
                failed.push("chart");
            }
        }
    }
    let missed: Vec<String> = report
        .checks()
        .filter(|c| c.verdict() == Verdict::Missed)
        .map(|c| format!("{}: {}", c.workload, c.what))
        .collect();
    for m in &missed {
        eprintln!("MISSED target: {m}");
    }
    // Figures a loaded machine does not move: missing them fails --strict.
    let strict_missed: Vec<&String> = report
        .checks()
        .filter(|c| c.strict && c.verdict() == Verdict::Missed)
        .map(|c| &c.what)
        .collect();
    for m in &strict_missed {
        loud(&format!("MISSED a strict target: {m}"));
    }
    let skips = report.skips();
    eprintln!(
        "{} workloads in {:.0} s: {} failed, {} skipped, {} targets missed",
        report.sections.len(),
        started.elapsed().as_secs_f64(),
        failed.len(),
        skips.len(),
        missed.len()
    );
    if !skips.is_empty() {
        loud(&format!(
            "NOT MEASURED in this run:\n  {}",
            skips.join("\n  ")
        ));
    }
    let ok = failed.is_empty()
        && (skips.is_empty() || !options.strict)
        && (strict_missed.is_empty() || !options.strict);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A message that should not be missed in the output.
fn loud(msg: &str) {
    eprintln!("\n!!!!!!!!!!\n!!! {msg}\n!!!!!!!!!!\n");
}

/// The workspace root (this crate's parent).
fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the bench crate is inside the workspace")
}

/// Cargo's target directory: two levels above this executable
/// (`target/release/socketserver-bench`).
fn target_dir() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .ok_or_else(|| io::Error::other("cannot place the target directory"))
}

/// The first line `command` prints, if it runs.
fn first_line(command: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(command).args(args).output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines().next().map(|l| l.trim().to_string())
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    load.join(" ")
}

/// How the run was made and on what.
fn preamble(options: &Options, plan: &Plan, load_before: &str) -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let tools: Vec<String> = [
        first_line("rustc", &["--version"]),
        first_line("python3", &["--version"]),
        first_line("wrk", &["--version"]).map(|l| l.split(" [").next().unwrap_or("").to_string()),
        Some(nginx::version()).filter(|v| !v.is_empty()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let date = first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
    let mut command = String::from("cargo run --release -p socketserver-bench");
    if options.quick || options.workloads.len() < WORKLOADS.len() {
        command.push_str(" --");
        if options.quick {
            command.push_str(" --quick");
        }
        if options.workloads.len() < WORKLOADS.len() {
            command.push(' ');
            command.push_str(&options.workloads.join(" "));
        }
    }
    let quick = if plan.quick {
        "\n**Quick mode: a smoke test of every workload; the figures are not meaningful.**\n"
    } else {
        ""
    };
    format!(
        "# socketserver benchmarks\n{quick}\n\
         Every figure below was measured in one run of `{command}` (crate `bench/`), \
         {date}, on {cpu} ({cpus} CPUs), Linux {kernel}; {tools}. The machine is shared \
         (load averages over 1, 5 and 15 minutes: {load_before} at the start, {load_after} \
         at the end), so only the ratios, measured side by side in the same rounds, mean \
         much; absolute figures move from run to run.\n\n\
         ![ratios and shutdown latencies](chart.png)\n",
        kernel = kernel.trim(),
        tools = tools.join(", "),
        load_after = load_average(),
    )
}
