//! `shutdown`: the time from `shutdown()` to `serve_forever` returning,
//! with the server idle and under `conn` load, for the framework's
//! `ThreadingTcpServer` and CPython's.
//!
//! Each side is a probe process (`socketserver-bench shutdown-probe`, or
//! the CPython script's) that owns the server, starts `serve_forever` on a
//! thread, waits a random moment, calls `shutdown()` and takes the time
//! until that thread sees `serve_forever` return; it does so N times per
//! `measure N` line on its stdin. The load comes from this process.

use std::io::{self, BufRead, Write};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use socketserver::handlers::UpperLine;
use socketserver::{ServerBuilder, ThreadingDispatch, DEFAULT_POLL_INTERVAL};

use crate::load::Background;
use crate::proc::{self, Server};
use crate::report::{ms, Check, Figure, Section, Target};
use crate::servers::BACKLOG;
use crate::stats::{median, percentile};
use crate::Plan;

/// Clients loading the server in the `under load` half.
const LOAD_CLIENTS: usize = 4;
/// The row of the floor: waking a thread, the least any shutdown costs.
const FLOOR: &str = "floor: a thread blocked on a channel, woken";
/// The target for the framework's p99.
const TARGET_MS: f64 = 1.0;

/// The probe: serves on `address`, answers `measure N` lines with the
/// latencies in microseconds (a `latencies` line), stops at `quit` or end
/// of input.
///
/// Each sample is followed by one of the floor: how long waking a thread
/// blocked on a channel takes at that moment (a `floor` line), which no
/// shutdown can beat; on a busy machine it is the scheduler's delay.
///
/// # Errors
/// The server could not be built, or `serve_forever` failed.
pub fn probe(address: &str) -> io::Result<()> {
    let mut server = ServerBuilder::tcp(address)
        .request_queue_size(BACKLOG)
        .build_with(|s| ThreadingDispatch::new(|| UpperLine, s))?;
    let stop = server.shutdown_handle();
    let address = *server.local_addr();
    let (start, starts) = mpsc::channel::<()>();
    let (returned, returns) = mpsc::channel::<io::Result<Instant>>();
    let serving = thread::spawn(move || {
        for () in starts {
            let result = server.serve_forever(DEFAULT_POLL_INTERVAL);
            let now = Instant::now();
            if returned.send(result.map(|()| now)).is_err() {
                break;
            }
        }
        server.server_close();
    });
    let (wake, wakes) = mpsc::channel::<()>();
    let (woke, woken) = mpsc::channel::<Instant>();
    let waiter = thread::spawn(move || {
        for () in wakes {
            if woke.send(Instant::now()).is_err() {
                break;
            }
        }
    });
    let mut stdout = io::stdout();
    writeln!(stdout, "listening on {address}")?;
    stdout.flush()?;
    let mut random = Random::new();
    // The loop is woken, not polled, so the moment within the poll
    // interval does not matter; 1-20 ms keeps the run short.
    let mut pause = || thread::sleep(Duration::from_micros(1_000 + random.below(19_000)));
    let micros = |from: Instant, to: Instant| to.duration_since(from).as_micros().to_string();
    for line in io::stdin().lock().lines() {
        let line = line?;
        let Some(count) = line.strip_prefix("measure ") else {
            break;
        };
        let count: usize = count.trim().parse().map_err(io::Error::other)?;
        let (mut latencies, mut floor) = (Vec::new(), Vec::new());
        for _ in 0..count {
            start.send(()).map_err(io::Error::other)?;
            pause();
            let began = Instant::now();
            stop.shutdown().map_err(io::Error::other)?;
            let ended = returns.recv().map_err(io::Error::other)??;
            latencies.push(micros(began, ended));
            pause();
            let began = Instant::now();
            wake.send(()).map_err(io::Error::other)?;
            floor.push(micros(began, woken.recv().map_err(io::Error::other)?));
        }
        writeln!(stdout, "latencies {}", latencies.join(" "))?;
        writeln!(stdout, "floor {}", floor.join(" "))?;
        stdout.flush()?;
    }
    drop((start, wake));
    let joined = serving.join().and_then(|()| waiter.join());
    joined.map_err(|_| io::Error::other("a probe thread panicked"))
}

/// A small xorshift generator seeded from the clock; only for spreading
/// the shutdown moments.
struct Random(u64);

impl Random {
    fn new() -> Random {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Random(nanos | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Latencies of one probe, in ms.
struct Measured {
    idle: Vec<f64>,
    load: Vec<f64>,
    /// The floor beside `idle` and `load` (the framework's probe only).
    floor: Option<(Vec<f64>, Vec<f64>)>,
    /// Connections completed per second during the loaded half.
    load_rate: f64,
}

/// Reads a `NAME us us ...` line as milliseconds.
fn read_line(server: &mut Server, name: &str, timeout: Duration) -> io::Result<Vec<f64>> {
    let line = server.recv(timeout)?;
    let values = line
        .strip_prefix(name)
        .ok_or_else(|| io::Error::other(format!("unexpected probe output {line:?}")))?;
    values
        .split_whitespace()
        .map(|v| v.parse::<f64>().map(|us| us / 1000.0))
        .collect::<Result<_, _>>()
        .map_err(io::Error::other)
}

fn measure(
    mut server: Server,
    samples: usize,
    warm_up: Duration,
    with_floor: bool,
) -> io::Result<Measured> {
    // Generous: CPython's samples take up to a second each.
    let timeout = Duration::from_secs(30 + 2 * samples as u64);
    let run = |server: &mut Server| -> io::Result<(Vec<f64>, Option<Vec<f64>>)> {
        server.send(&format!("measure {samples}"))?;
        let latencies = read_line(server, "latencies", timeout)?;
        let floor = match with_floor {
            true => Some(read_line(server, "floor", timeout)?),
            false => None,
        };
        Ok((latencies, floor))
    };
    let (idle, idle_floor) = run(&mut server)?;
    let background = Background::conn(server.address, LOAD_CLIENTS);
    thread::sleep(warm_up);
    let (done0, _) = background.counts();
    let began = Instant::now();
    let (load, load_floor) = run(&mut server)?;
    let (done1, errors) = background.counts();
    let load_rate = (done1 - done0) as f64 / began.elapsed().as_secs_f64();
    // Stopped first, so that no client waits in its backlog for a reply.
    let _ = server.send("quit");
    server.stop()?;
    drop(background);
    if done1 == done0 {
        return Err(io::Error::other("the load completed no connection"));
    }
    if errors > 0 {
        eprintln!("warning: shutdown: {errors} failed connections under load");
    }
    Ok(Measured {
        idle,
        load,
        floor: idle_floor.zip(load_floor),
        load_rate,
    })
}

/// Runs both probes and builds the section.
///
/// # Errors
/// A probe failed.
pub fn run(plan: &Plan) -> io::Result<Section> {
    let mut section = Section {
        workload: "shutdown",
        title: "latency from `shutdown()` to `serve_forever` returning".into(),
        about: format!(
            "A `ThreadingTcpServer` serving `UpperLine` with the default poll interval \
             (0.5 s) on both sides; `shutdown()` is called from another thread at a random \
             moment (framework: 1-20 ms after `serve_forever` starts, as its loop is woken \
             rather than polled; CPython: 10-510 ms, spanning its poll interval), then \
             `serve_forever` is called again. Idle, then under the `conn` load of \
             {LOAD_CLIENTS} client threads. Latency measured inside the server process. \
             The floor row, measured by the framework's probe between its samples, is \
             the time from sending on a channel to the thread blocked on it running: no \
             shutdown can be quicker, and under load it is mostly the scheduler's delay \
             on this shared machine."
        ),
        header: [
            "server",
            "load",
            "samples",
            "median",
            "p99",
            "max",
            "load conn/s",
        ]
        .map(String::from)
        .to_vec(),
        ..Section::default()
    };
    eprintln!(
        "shutdown: framework probe, {} samples x 2",
        plan.shutdown_samples
    );
    let framework = measure(
        Server::start(&mut proc::own(&["shutdown-probe", "127.0.0.1:0"])?)?,
        plan.shutdown_samples,
        plan.warm_up,
        true,
    )?;
    let cpython = match &plan.python {
        Ok(()) => {
            eprintln!(
                "shutdown: CPython probe, {} samples x 2",
                plan.cpython_shutdown_samples
            );
            let server = Server::start(&mut proc::cpython(&["shutdown-probe", "127.0.0.1:0"]))?;
            Ok(measure(
                server,
                plan.cpython_shutdown_samples,
                plan.warm_up,
                false,
            )?)
        }
        Err(reason) => {
            section.skipped.push(format!("CPython: {reason}"));
            Err(reason.clone())
        }
    };
    let p99 = |values: &Vec<f64>| percentile(values.clone(), 99.0);
    let rate = format!("{:.0}", framework.load_rate);
    let mut rows = vec![
        ("framework", "idle", &framework.idle, "-".to_string()),
        ("framework", "under load", &framework.load, rate.clone()),
    ];
    if let Some((idle, load)) = &framework.floor {
        rows.push((FLOOR, "idle", idle, "-".into()));
        rows.push((FLOOR, "under load", load, rate));
    }
    if let Ok(c) = &cpython {
        rows.push(("CPython", "idle", &c.idle, "-".into()));
        rows.push((
            "CPython",
            "under load",
            &c.load,
            format!("{:.0}", c.load_rate),
        ));
    }
    for (name, state, values, rate) in rows {
        let max = values.iter().copied().fold(0.0, f64::max);
        section.rows.push(vec![
            name.into(),
            state.into(),
            values.len().to_string(),
            ms(median(values.clone())),
            ms(p99(values)),
            ms(max),
            rate,
        ]);
        let label = if name == FLOOR { "floor" } else { name };
        section
            .latencies
            .push((format!("{label}, {state}"), p99(values)));
    }
    let floor = framework.floor.as_ref();
    for (state, values, floor, theirs) in [
        (
            "idle",
            &framework.idle,
            floor.map(|f| &f.0),
            cpython.as_ref().map(|c| &c.idle),
        ),
        (
            "under load",
            &framework.load,
            floor.map(|f| &f.1),
            cpython.as_ref().map(|c| &c.load),
        ),
    ] {
        let mut context = Vec::new();
        if let Some(floor) = floor {
            context.push(format!("floor: {}", ms(p99(floor))));
        }
        if let Ok(theirs) = theirs {
            context.push(format!("CPython: {}", ms(p99(theirs))));
        }
        section.checks.push(Check {
            workload: "shutdown",
            what: format!("framework p99, {state} ({})", context.join("; ")),
            label: format!("framework p99, {state}"),
            measured: Ok(Figure {
                value: p99(values),
                spread: None,
            }),
            target: Target::BelowMs(TARGET_MS),
            strict: false,
        });
    }
    Ok(section)
}
