//! `scale`: many persistent connections at once (issue 23). The `fleet`
//! client holds 8 to 2000 connections in round trips, or thousands of idle
//! keep-alive connections beside 8 active ones, against each server in a
//! fresh process; `/proc` gives the server's resident memory and CPU time.

use std::fs::{self, File};
use std::io;
use std::path::PathBuf;

use crate::chart::{Curve, Metric};
use crate::fleet::{self, Outcome, Shape, Timing};
use crate::proc::{self, Server};
use crate::report::{num, Check, Figure, Section, Table, Target};
use crate::servers;
use crate::stats::{median, rotate_with, Ratio, Sample, Series};
use crate::workloads::Peer;
use crate::Plan;

/// The servers compared, in the order of the tables. A peer whose kind
/// `servers` does not know (the new dispatch before it is built) is left
/// out, and its targets are listed as not measured.
const PEERS: [Peer; 5] = [
    Peer {
        name: "new dispatch `PersistentTcpServer`",
        short: "persistent",
        kind: PERSISTENT,
    },
    Peer {
        name: "framework `ThreadingTcpServer`",
        short: "threading",
        kind: THREADING,
    },
    Peer {
        name: "hand-written std, thread per connection",
        short: "hand-written",
        kind: HAND_WRITTEN,
    },
    Peer {
        name: "tokio, task per connection (2 workers)",
        short: "tokio",
        kind: TOKIO,
    },
    Peer {
        name: "framework `PoolTcpServer`",
        short: "pool",
        kind: "fw-pool-lines",
    },
];
const PERSISTENT: &str = "persistent";
const THREADING: &str = "fw-threading-lines";
const HAND_WRITTEN: &str = "std-threads-lines";
const TOKIO: &str = "tokio2-lines";

/// The targets.
const THREADING_MEMORY: f64 = 1.1;
const PERSISTENT_IDLE_KIB: f64 = 4.0;
/// Connection counts at which the new dispatch is held to tokio's rate.
const PERSISTENT_RR_AT: [usize; 3] = [64, 512, 2000];

/// One set of connections, measured against every server.
#[derive(Clone, Copy, Debug)]
struct Scenario {
    shape: Shape,
}

impl Scenario {
    const fn rr(n: usize) -> Self {
        Scenario {
            shape: Shape { active: n, idle: 0 },
        }
    }

    const fn idle(n: usize) -> Self {
        Scenario {
            shape: Shape { active: 8, idle: n },
        }
    }

    fn label(&self) -> String {
        match self.shape {
            Shape { active, idle: 0 } => format!("{active} conns"),
            Shape { active, idle } => format!("{idle} idle + {active}"),
        }
    }

    fn connections(&self) -> usize {
        self.shape.active + self.shape.idle
    }
}

const FULL: [Scenario; 6] = [
    Scenario::rr(8),
    Scenario::rr(64),
    Scenario::rr(512),
    Scenario::rr(2000),
    Scenario::idle(1000),
    Scenario::idle(5000),
];
/// `--versus-tokio`: the scenarios of the persistent/tokio targets.
const VERSUS: [Scenario; 3] = [Scenario::rr(64), Scenario::rr(512), Scenario::rr(2000)];
/// The peers of `--versus-tokio`.
const VERSUS_PEERS: [&str; 2] = [PERSISTENT, TOKIO];
/// Rounds of `--versus-tokio`: with two peers, three times the full run's.
const VERSUS_ROUNDS: usize = 9;
/// The smoke run: every code path, few connections.
const QUICK: [Scenario; 3] = [Scenario::rr(8), Scenario::rr(64), Scenario::idle(256)];

/// How `scale` runs in this plan.
struct Setup {
    scenarios: &'static [Scenario],
    rounds: usize,
    timing: Timing,
}

impl Setup {
    fn of(plan: &Plan) -> Setup {
        if plan.quick {
            Setup {
                scenarios: &QUICK,
                rounds: 1,
                timing: Timing {
                    // A bound, not a pause (a phase goes on once its
                    // connections are served): long enough that a loaded
                    // machine still serves the 256 idle connections of
                    // the strict memory figure within it.
                    setup: std::time::Duration::from_secs(5),
                    warm_up: std::time::Duration::from_millis(50),
                    window: std::time::Duration::from_millis(200),
                },
            }
        } else {
            Setup {
                scenarios: if plan.versus_tokio { &VERSUS } else { &FULL },
                rounds: if plan.versus_tokio { VERSUS_ROUNDS } else { 3 },
                timing: Timing {
                    // A pool refuses what it cannot serve within two of
                    // its queue timeouts (5 s): the held-back ones first,
                    // then those queued meanwhile.
                    setup: std::time::Duration::from_secs(15),
                    warm_up: std::time::Duration::from_millis(300),
                    window: std::time::Duration::from_secs(2),
                },
            }
        }
    }
}

/// The results of one scenario: per peer, one outcome per round.
struct Measured {
    scenario: Scenario,
    outcomes: Vec<Vec<Outcome>>,
}

/// Runs the workload and builds its section.
///
/// # Errors
/// A server failed to start or stop, the descriptor limit could not be
/// raised, or `/proc` could not be read.
pub fn run(plan: &Plan) -> io::Result<Section> {
    let setup = Setup::of(plan);
    let most = setup.scenarios.iter().map(Scenario::connections).max();
    let most = most.unwrap_or(0) as u64;
    // One descriptor per connection in this process and in the server, and
    // room for the rest.
    proc::raise_fd_limit(most + 1024)?;
    let mut section = Section {
        workload: "scale",
        title: "many persistent connections at once".into(),
        ..Section::default()
    };
    let threads_ok = proc::check_thread_limits(most);
    let peers: Vec<Peer> = PEERS
        .iter()
        .filter(|p| servers::exists(p.kind))
        .filter(|p| !plan.versus_tokio || VERSUS_PEERS.contains(&p.kind))
        .copied()
        .collect();
    let absent: Vec<&Peer> = PEERS.iter().filter(|p| !servers::exists(p.kind)).collect();
    if let Err(reason) = &threads_ok {
        section.skipped.push(format!(
            "thread-per-connection servers at {most} connections: {reason}"
        ));
    }
    let logs =
        std::env::temp_dir().join(format!("socketserver-bench-scale-{}", std::process::id()));
    fs::create_dir_all(&logs)?;
    let mut measured = Vec::new();
    for &scenario in setup.scenarios {
        eprintln!(
            "scale: {}: {} servers x {} rounds",
            scenario.label(),
            peers.len(),
            setup.rounds
        );
        let outcomes = rotate_with(&peers, setup.rounds, |peer| {
            measure(peer, scenario, setup.timing, &logs)
        })?;
        measured.push(Measured { scenario, outcomes });
    }
    let _ = fs::remove_dir_all(&logs);
    section.about = about(&setup, &absent);
    tables(&mut section, &peers, &measured);
    checks(&mut section, &peers, &measured, &absent);
    section.curves = curves(&peers, &measured);
    Ok(section)
}

/// One server in one scenario: a fresh process, its stderr in a log that
/// is shown when something fails (a refusing pool writes a line per client).
fn measure(
    peer: &Peer,
    scenario: Scenario,
    timing: Timing,
    logs: &std::path::Path,
) -> io::Result<Outcome> {
    let log = logs.join(format!("{}.log", peer.kind));
    let mut command = peer.command()?;
    command.stderr(File::create(&log)?);
    let server = Server::start(&mut command)?;
    let outcome = fleet::run(server.address, server.pid(), scenario.shape, timing);
    server.stop()?;
    let outcome = outcome.map_err(|err| with_log_tail(err, peer.kind, &log))?;
    if outcome.errors > 0 {
        eprintln!(
            "warning: scale {} {}: {} errors",
            scenario.label(),
            peer.kind,
            outcome.errors
        );
    }
    Ok(outcome)
}

fn with_log_tail(err: io::Error, kind: &str, log: &PathBuf) -> io::Error {
    let text = fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(10).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    io::Error::other(format!("{kind}: {err}\n{}", tail.join("\n")))
}

fn about(setup: &Setup, absent: &[&Peer]) -> String {
    let t = setup.timing;
    let mut text = format!(
        "An epoll-driven client (`bench/src/fleet.rs`: 2 threads, each driving its share \
         of non-blocking sockets through mio) holds N persistent connections; each sends a \
         64-byte line and waits for its echo, again and again (`N conns`). In `I idle + 8`, \
         I more connections each make one round trip and then stay open and silent, as \
         keep-alive clients between requests, while 8 go on; the rates are those of the 8. \
         Every server echoes lines (`handlers::EchoLines` or its hand-written twin) in a \
         fresh process per measurement, with a 128-connection listen backlog where it \
         sets one. Memory per idle connection: the growth of the server's resident set \
         (`VmRSS`, `/proc/PID/status`) from before the idle connections were opened to \
         after each was served once, divided by their number (the kernel's memory for the \
         sockets and for each thread's kernel stack is not in it). CPU per round trip: the \
         server's `utime + stime` (`/proc/PID/stat`) over the window, divided by the round \
         trips in it. Never served: connections with no echo by the end that were not \
         refused either (still waiting, or not opened because the 64 before them per \
         client thread still waited). {} rounds; in each the servers take turns in an \
         order that rotates every round and runs backwards every other round; a {:.1} s \
         window after {:.1} s of warm-up; medians, with each round's range after them.",
        setup.rounds,
        t.window.as_secs_f64(),
        t.warm_up.as_secs_f64()
    );
    for peer in absent {
        text.push_str(&format!(
            " {} (`socketserver-bench serve {}`) is not in this build: its targets are \
             listed as not measured.",
            peer.name, peer.kind
        ));
    }
    text
}

/// `median (min-max)` of `values`, or `-` if none is a number.
fn cell(values: &[f64], show: fn(f64) -> String) -> String {
    let values: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return "-".into();
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mid = median(values.clone());
    if values.len() == 1 {
        show(mid)
    } else {
        format!("{} ({}-{})", show(mid), show(lo), show(hi))
    }
}

fn two(v: f64) -> String {
    format!("{v:.2}")
}

fn tables(section: &mut Section, peers: &[Peer], measured: &[Measured]) {
    let scenarios: Vec<String> = measured.iter().map(|m| m.scenario.label()).collect();
    let header = |first: &str| {
        std::iter::once(first.to_string())
            .chain(scenarios.iter().cloned())
            .collect::<Vec<_>>()
    };
    let rows = |f: &dyn Fn(&[Outcome]) -> String| -> Vec<Vec<String>> {
        peers
            .iter()
            .enumerate()
            .map(|(i, peer)| {
                std::iter::once(peer.name.to_string())
                    .chain(measured.iter().map(|m| f(&m.outcomes[i])))
                    .collect()
            })
            .collect()
    };
    let of = |f: fn(&Outcome) -> f64| move |o: &[Outcome]| o.iter().map(f).collect::<Vec<f64>>();
    section.header = header("round trips/s of the active connections");
    section.rows = rows(&|o| cell(&of(|o| o.rate)(o), num));
    let tokio = peers.iter().position(|p| p.kind == TOKIO);
    let mut extra = vec![
        Table {
            caption: "Round-trip latency, 99th percentile (ms):".into(),
            header: header("p99 ms"),
            rows: rows(&|o| cell(&of(|o| o.p99_ms)(o), two)),
        },
        Table {
            caption: "Server CPU time per round trip (µs, user + system):".into(),
            header: header("CPU µs per round trip"),
            rows: rows(&|o| cell(&of(|o| o.cpu_us)(o), two)),
        },
        Table {
            caption: "Connections never served / refused (the largest count of any round):".into(),
            header: header("never served / refused"),
            rows: rows(&|o| {
                let never = o.iter().map(|o| o.never_served).max().unwrap_or(0);
                let refused = o.iter().map(|o| o.refused).max().unwrap_or(0);
                format!("{never} / {refused}")
            }),
        },
        Table {
            caption: "Resident memory: per idle connection (KiB; `-` where not every idle \
                      connection was served), and the server's whole resident set at the \
                      end of the window (MiB):"
                .into(),
            header: header("KiB per idle conn; MiB resident"),
            rows: rows(&|o| {
                let per = cell(&of(|o| o.idle_kib.unwrap_or(f64::NAN))(o), num);
                let rss = cell(&of(|o| o.rss_kib as f64 / 1024.0)(o), num);
                if o.iter().any(|o| o.idle_kib.is_some()) {
                    format!("{per} KiB; {rss} MiB")
                } else {
                    format!("{rss} MiB")
                }
            }),
        },
    ];
    if let Some(t) = tokio {
        extra.push(Table {
            caption: "Round trips/s against tokio's, round by round (median, range):".into(),
            header: header("vs tokio"),
            rows: peers
                .iter()
                .enumerate()
                .map(|(i, peer)| {
                    std::iter::once(peer.name.to_string())
                        .chain(measured.iter().map(|m| {
                            let r = Ratio::of(
                                &series(&m.outcomes[i], |o| o.rate),
                                &series(&m.outcomes[t], |o| o.rate),
                            );
                            format!("{:.2}x ({:.2}-{:.2})", r.median, r.min, r.max)
                        }))
                        .collect()
                })
                .collect(),
        });
    }
    section.tables = extra;
}

fn series(outcomes: &[Outcome], f: fn(&Outcome) -> f64) -> Series {
    Series(
        outcomes
            .iter()
            .map(|o| Sample {
                value: f(o),
                errors: o.errors,
            })
            .collect(),
    )
}

fn checks(section: &mut Section, peers: &[Peer], measured: &[Measured], absent: &[&Peer]) {
    let find = |kind: &str| peers.iter().position(|p| p.kind == kind);
    let not_built = |kind: &str| {
        absent
            .iter()
            .any(|p| p.kind == kind)
            .then(|| format!("`serve {kind}` is not built yet"))
    };
    let ratio = |a: &str, b: &str, m: &Measured, f: fn(&Outcome) -> f64| match (find(a), find(b)) {
        (Some(a), Some(b)) => Ok(Figure::from(Ratio::of(
            &series(&m.outcomes[a], f),
            &series(&m.outcomes[b], f),
        ))),
        _ => Err(not_built(a)
            .or_else(|| not_built(b))
            .unwrap_or_else(|| "not measured".into())),
    };
    let mut push = |what: String, label: String, measured, target, strict| {
        section.checks.push(Check {
            workload: "scale",
            what,
            label,
            measured,
            target,
            strict,
        });
    };
    let idle_kib = |o: &Outcome| o.idle_kib.unwrap_or(f64::NAN);
    for m in measured.iter().filter(|m| m.scenario.shape.idle > 0) {
        let at = m.scenario.label();
        push(
            format!("memory per idle connection, `ThreadingTcpServer` / hand-written, {at}"),
            format!("idle memory threading / hand-written, {at}"),
            ratio(THREADING, HAND_WRITTEN, m, idle_kib),
            Target::AtMost(THREADING_MEMORY),
            true,
        );
    }
    for m in measured
        .iter()
        .filter(|m| m.scenario.shape.idle == 0)
        .filter(|m| PERSISTENT_RR_AT.contains(&m.scenario.shape.active))
    {
        let at = m.scenario.label();
        push(
            format!("round trips/s, `PersistentTcpServer` / tokio, {at}"),
            format!("persistent / tokio, {at}"),
            ratio(PERSISTENT, TOKIO, m, |o| o.rate),
            Target::AtLeast(1.0),
            false,
        );
        push(
            format!("CPU per round trip, `PersistentTcpServer` / tokio, {at}"),
            format!("CPU persistent / tokio, {at}"),
            ratio(PERSISTENT, TOKIO, m, |o| o.cpu_us),
            Target::AtMost(1.0),
            false,
        );
    }
    for m in measured.iter().filter(|m| m.scenario.shape.idle > 0) {
        let at = m.scenario.label();
        let figure = match find(PERSISTENT) {
            Some(i) => Ok(figure(&m.outcomes[i], idle_kib)),
            None => Err(not_built(PERSISTENT).unwrap_or_default()),
        };
        push(
            format!("memory per idle parked connection, `PersistentTcpServer`, {at}"),
            format!("persistent KiB per idle, {at}"),
            figure,
            Target::Most {
                max: PERSISTENT_IDLE_KIB,
                unit: "KiB",
            },
            false,
        );
    }
    for peer in &PEERS {
        let figure = match find(peer.kind) {
            Some(i) => Ok(Figure {
                value: measured
                    .iter()
                    .flat_map(|m| m.outcomes[i].iter().map(|o| o.never_served))
                    .max()
                    .unwrap_or(0) as f64,
                spread: None,
            }),
            None => Err(not_built(peer.kind).unwrap_or_default()),
        };
        push(
            format!(
                "connections never served, {}, at every scale (largest of any round)",
                peer.name
            ),
            format!("never served, {}", peer.short),
            figure,
            Target::Most {
                max: 0.0,
                unit: "conns",
            },
            false,
        );
    }
}

/// The median of `f` over rounds, with its range.
fn figure(outcomes: &[Outcome], f: fn(&Outcome) -> f64) -> Figure {
    let s = series(outcomes, f);
    Figure {
        value: s.median(),
        spread: Some(s.spread()),
    }
}

/// The chart's lines: rates and p99 of the `N conns` scenarios, resident
/// memory of all, against the number of connections.
fn curves(peers: &[Peer], measured: &[Measured]) -> Vec<Curve> {
    let mut curves = Vec::new();
    for (i, peer) in peers.iter().enumerate() {
        for metric in [Metric::Rate, Metric::P99, Metric::Resident] {
            let mut points: Vec<(f64, f64, f64, f64)> = measured
                .iter()
                .filter(|m| metric == Metric::Resident || m.scenario.shape.idle == 0)
                .filter_map(|m| {
                    let values: Vec<f64> = m.outcomes[i]
                        .iter()
                        .map(|o| match metric {
                            Metric::Rate => o.rate,
                            Metric::P99 => o.p99_ms,
                            Metric::Resident => o.rss_kib as f64 / 1024.0,
                        })
                        .filter(|v| v.is_finite() && *v > 0.0)
                        .collect();
                    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    (!values.is_empty())
                        .then(|| (m.scenario.connections() as f64, median(values), lo, hi))
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            curves.push(Curve {
                metric,
                server: peer.short.into(),
                points,
            });
        }
    }
    curves
}
