//! The throughput workloads over loopback (`conn`, `rr`, `udp`, `bulk`):
//! every peer in its own process, measured in rotating rounds.

use std::io;
use std::net::SocketAddr;
use std::process::Command;

use crate::load::{self, Load};
use crate::proc::{self, Server};
use crate::report::{num, Check, Section, Target};
use crate::stats::{rotate, Ratio, Sample};
use crate::Plan;

/// A server compared in a workload.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// As the table shows it.
    pub name: &'static str,
    /// As the chart shows it.
    pub short: &'static str,
    /// The server kind: `py-*` for the CPython script, otherwise one of
    /// this program's own (see `servers::serve`).
    pub kind: &'static str,
}

impl Peer {
    /// The command that starts it on an ephemeral loopback port.
    pub fn command(&self) -> io::Result<Command> {
        let args = ["serve", self.kind, "127.0.0.1:0"];
        if self.is_cpython() {
            Ok(proc::cpython(&args))
        } else {
            proc::own(&args)
        }
    }

    fn is_cpython(&self) -> bool {
        self.kind.starts_with("py-")
    }
}

const fn peer(name: &'static str, short: &'static str, kind: &'static str) -> Peer {
    Peer { name, short, kind }
}

/// A throughput workload: its peers, its load, its targets.
pub struct Spec {
    /// `conn`, `rr`, `udp` or `bulk`.
    pub workload: &'static str,
    /// The section title.
    pub title: &'static str,
    /// How the load works.
    pub about: &'static str,
    /// The rate's unit.
    pub unit: &'static str,
    /// Client threads.
    pub clients: usize,
    /// Measures one server.
    pub measure: fn(SocketAddr, Load) -> Sample,
    /// The peers; the first hand-written one is the reference column.
    pub peers: &'static [Peer],
    /// The reference peer's kind.
    pub base: &'static str,
    /// `(kind a, kind b, target of a / b)`.
    pub targets: &'static [(&'static str, &'static str, Target)],
}

/// `conn`: the classic socketserver request.
pub const CONN: Spec = Spec {
    workload: "conn",
    title: "connections per second",
    about: "4 client threads, each in a loop: connect, send ` hello world \\n`, read the \
            reply (`HELLO WORLD`) to EOF, close. Every server reads the line and replies \
            with it stripped and upper-cased (`handlers::UpperLine`). The hand-written \
            server is measured twice in every round, as two peers: identical servers, so \
            the ratio between the two shows how far noise alone moves a ratio in this run.",
    unit: "conn/s",
    clients: 4,
    measure: load::conn,
    // Each compared pair side by side (see `stats::rotate`).
    peers: &[
        peer(
            "framework `TcpServer` (inline)",
            "TcpServer",
            "fw-sync-upper",
        ),
        peer("framework `PoolTcpServer`", "pool", "fw-pool-upper"),
        peer(
            "framework `ThreadingTcpServer`",
            "threading",
            "fw-threading-upper",
        ),
        peer(
            "hand-written std, thread per connection",
            "hand-written",
            "std-threads-upper",
        ),
        peer(
            "the same hand-written server again (control: its ratio is the noise)",
            "hand-written again",
            "std-threads-upper",
        ),
        peer("tokio, task per connection", "tokio", "tokio-upper"),
        peer(
            "CPython `ThreadingTCPServer`",
            "CPython threading",
            "py-threading-upper",
        ),
        peer(
            "CPython `ForkingTCPServer`",
            "CPython forking",
            "py-forking-upper",
        ),
        peer(
            "framework `ForkingTcpServer`",
            "forking",
            "fw-forking-upper",
        ),
    ],
    base: "std-threads-upper",
    targets: &[
        (
            "fw-threading-upper",
            "std-threads-upper",
            Target::AtLeast(0.95),
        ),
        ("fw-pool-upper", "std-threads-upper", Target::AtLeast(1.3)),
        (
            "fw-threading-upper",
            "py-threading-upper",
            Target::AtLeast(3.0),
        ),
        ("fw-forking-upper", "py-forking-upper", Target::AtLeast(3.0)),
    ],
};

/// `rr`: request-reply on persistent connections.
pub const RR: Spec = Spec {
    workload: "rr",
    title: "round trips per second on persistent connections",
    about: "8 client threads, each with one connection, sending a 64-byte line and \
            waiting for its echo, again and again (`handlers::EchoLines`).",
    unit: "round trips/s",
    clients: 8,
    measure: load::rr,
    peers: &[
        peer(
            "framework `ThreadingTcpServer`",
            "threading",
            "fw-threading-lines",
        ),
        peer(
            "hand-written std, thread per connection",
            "hand-written",
            "std-threads-lines",
        ),
        peer("tokio, task per connection", "tokio", "tokio-lines"),
        peer(
            "CPython `ThreadingTCPServer`",
            "CPython",
            "py-threading-lines",
        ),
    ],
    base: "std-threads-lines",
    targets: &[
        (
            "fw-threading-lines",
            "std-threads-lines",
            Target::AtLeast(0.95),
        ),
        ("fw-threading-lines", "tokio-lines", Target::AtLeast(1.0)),
    ],
};

/// `prefork-conn`: `conn` against pre-forked workers on one port.
pub const PREFORK_CONN: Spec = Spec {
    workload: "prefork-conn",
    title: "connections per second, pre-forked workers",
    about: "The `conn` load (4 client threads: connect, send a line, read the \
            upper-cased reply to EOF, close) against `Prefork` with 2 worker processes and \
            with 1, each worker running the synchronous loop (`TcpServer`, \
            `handlers::UpperLine`) on the shared listening socket, and against \
            `ThreadingTcpServer` in one process.",
    unit: "conn/s",
    clients: 4,
    measure: load::conn,
    peers: &[
        peer(
            "framework `Prefork`, 2 workers (synchronous)",
            "prefork 2",
            "fw-prefork2-upper",
        ),
        peer(
            "framework `Prefork`, 1 worker (synchronous)",
            "prefork 1",
            "fw-prefork1-upper",
        ),
        peer(
            "framework `ThreadingTcpServer`",
            "threading",
            "fw-threading-upper",
        ),
    ],
    base: "fw-threading-upper",
    // Only a floor: a second worker must not cost throughput.
    targets: &[(
        "fw-prefork2-upper",
        "fw-prefork1-upper",
        Target::AtLeast(1.0),
    )],
};

/// `prefork-rr`: `rr` against pre-forked workers on one port.
pub const PREFORK_RR: Spec = Spec {
    workload: "prefork-rr",
    title: "round trips per second on persistent connections, pre-forked workers",
    about: "The `rr` load (8 client threads, each with one connection, sending a 64-byte \
            line and waiting for its echo) against `Prefork` with 2 worker processes and \
            with 1, each worker running the threading loop (`ThreadingTcpServer`, \
            `handlers::EchoLines`: a persistent connection holds a thread), and against \
            `ThreadingTcpServer` in one process.",
    unit: "round trips/s",
    clients: 8,
    measure: load::rr,
    peers: &[
        peer(
            "framework `Prefork`, 2 workers (threading)",
            "prefork 2",
            "fw-prefork2-lines",
        ),
        peer(
            "framework `Prefork`, 1 worker (threading)",
            "prefork 1",
            "fw-prefork1-lines",
        ),
        peer(
            "framework `ThreadingTcpServer`",
            "threading",
            "fw-threading-lines",
        ),
    ],
    base: "fw-threading-lines",
    targets: &[(
        "fw-prefork2-lines",
        "fw-prefork1-lines",
        Target::AtLeast(1.0),
    )],
};

/// `udp`: request-reply datagrams.
pub const UDP: Spec = Spec {
    workload: "udp",
    title: "datagram round trips per second",
    about: "4 client threads, each sending ` hello world \\n` and waiting for `HELLO WORLD` \
            (a reply missing after 200 ms counts as an error) (`handlers::UpperDatagram`).",
    unit: "round trips/s",
    clients: 4,
    measure: load::udp,
    peers: &[
        peer("framework `UdpServer`", "UdpServer", "fw-udp-upper"),
        peer(
            "hand-written std receive-reply loop",
            "hand-written",
            "std-udp-upper",
        ),
        peer("tokio receive-reply loop", "tokio", "tokio-udp-upper"),
        peer("CPython `UDPServer`", "CPython", "py-udp-upper"),
    ],
    base: "std-udp-upper",
    targets: &[
        ("fw-udp-upper", "std-udp-upper", Target::AtLeast(0.95)),
        ("fw-udp-upper", "tokio-udp-upper", Target::AtLeast(1.0)),
    ],
};

/// `bulk`: one connection streaming through an echo.
pub const BULK: Spec = Spec {
    workload: "bulk",
    title: "echo throughput of one connection",
    about: "One connection; a client thread writes 64 KiB chunks as fast as the server \
            takes them while another reads the echo; MB/s (10^6 bytes) of echo received. \
            Every server echoes 1 KiB at a time, as `handlers::Echo` does, except the \
            `io::copy` row, for reference. The framework's `rfile` fills its 8 KiB buffer \
            with one read and hands the handler 1 KiB at a time, so it makes fewer reads \
            than the hand-written 1 KiB loop; every server writes 1 KiB per call.",
    unit: "MB/s",
    clients: 1,
    measure: load::bulk,
    peers: &[
        peer(
            "framework `TcpServer` (inline)",
            "TcpServer",
            "fw-sync-echo",
        ),
        peer("hand-written std", "hand-written", "std-threads-echo"),
        peer(
            "hand-written std, `io::copy` (8 KiB)",
            "io::copy",
            "std-threads-copy",
        ),
        peer("tokio", "tokio", "tokio-echo"),
        peer("CPython `TCPServer`", "CPython", "py-echo"),
    ],
    base: "std-threads-echo",
    targets: &[("fw-sync-echo", "std-threads-echo", Target::AtLeast(0.95))],
};

/// Runs `spec`'s rounds and builds its section.
///
/// # Errors
/// A server failed to start or to be stopped during the rounds.
pub fn run(spec: &Spec, plan: &Plan) -> io::Result<Section> {
    let mut section = Section {
        workload: spec.workload,
        title: spec.title.into(),
        about: format!(
            "{} Median of {} rounds of {:.2} s (after {:.2} s of warm-up), the servers \
             taking turns in an order that rotates every round and runs backwards every other \
             round, each in a fresh process.",
            spec.about,
            plan.rounds,
            plan.window.as_secs_f64(),
            plan.warm_up.as_secs_f64()
        ),
        ..Section::default()
    };
    let python = plan.python.as_ref().err();
    let (peers, missing): (Vec<Peer>, Vec<Peer>) = spec
        .peers
        .iter()
        .partition(|p| !(p.is_cpython() && python.is_some()));
    if let (Some(reason), false) = (python, missing.is_empty()) {
        section.skipped.push(format!(
            "{}: {reason}",
            missing
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let load = Load {
        clients: spec.clients,
        warm_up: plan.warm_up,
        window: plan.window,
    };
    eprintln!(
        "{}: {} servers x {} rounds",
        spec.workload,
        peers.len(),
        plan.rounds
    );
    let series = rotate(&peers, plan.rounds, |peer| {
        let server = Server::start(&mut peer.command()?)?;
        let sample = (spec.measure)(server.address, load);
        server.stop()?;
        if sample.errors > 0 {
            eprintln!(
                "warning: {} {}: {} errors",
                spec.workload, peer.kind, sample.errors
            );
        }
        Ok(sample)
    })?;
    let find = |kind: &str| {
        peers
            .iter()
            .position(|p| p.kind == kind)
            .map(|i| &series[i])
    };
    let base_name = spec
        .peers
        .iter()
        .find(|p| p.kind == spec.base)
        .map_or("", |p| p.name);
    section.header = vec![
        "server".into(),
        format!("{} (median)", spec.unit),
        "min-max".into(),
        format!("vs {base_name}"),
        "errors".into(),
    ];
    for (peer, series) in peers.iter().zip(&series) {
        let (lo, hi) = series.spread();
        let versus = find(spec.base).map_or("-".into(), |base| {
            format!("{:.2}x", Ratio::of(series, base).median)
        });
        section.rows.push(vec![
            peer.name.into(),
            num(series.median()),
            format!("{}-{}", num(lo), num(hi)),
            versus,
            series.errors().to_string(),
        ]);
    }
    for missing in &missing {
        section.rows.push(vec![
            missing.name.into(),
            "skipped".into(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    let named = |kind: &'static str| spec.peers.iter().find(|p| p.kind == kind);
    let name = |kind| named(kind).map_or(kind, |p| p.name);
    let short = |kind| named(kind).map_or(kind, |p| p.short);
    for &(a, b, target) in spec.targets {
        let measured = match (find(a), find(b)) {
            (Some(a), Some(b)) => Ok(Ratio::of(a, b).into()),
            _ => Err(python.cloned().unwrap_or_else(|| "not measured".into())),
        };
        section.checks.push(Check {
            workload: spec.workload,
            what: format!("{} / {}", name(a), name(b)),
            label: format!("{} / {}", short(a), short(b)),
            measured,
            target,
            strict: false,
        });
    }
    Ok(section)
}
