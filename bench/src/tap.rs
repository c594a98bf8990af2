//! `tap`: throughput of the smoltcp backend over a TAP device, both
//! directions, beside a bare smoltcp event loop doing the same transfer
//! with no framework. The host kernel's TCP is the other end.
//!
//! This needs root: the workload re-runs this program as `tap-inside MIB
//! ROUNDS` under `unshare -n`, in a private network namespace with a tap
//! device of its own, and reads the samples it prints.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use socketserver::smoltcp::iface::{Config, Interface, SocketSet, SocketStorage};
use socketserver::smoltcp::phy::{wait, Medium, TunTapInterface};
use socketserver::smoltcp::socket::tcp::{self, State};
use socketserver::smoltcp::tap::{netns, tap_stack, TAP_MAC};
use socketserver::smoltcp::wire::{IpAddress, IpCidr};
use socketserver::smoltcp::{StdClock, TcpListener};
use socketserver::{
    Connection, Error, Server, ShutdownFlag, StreamHandler, StreamRequest, SyncDispatch,
};

use crate::report::{num, Check, Figure, Section, Target};
use crate::stats::{Ratio, Sample, Series};
use crate::Plan;

const TAP: &str = "tap0";
const PORT: u16 = 9999;
/// Socket buffers, equal for both servers.
const BUF: usize = 65535;
/// Bytes handed to the socket per call, equal for both servers.
const CHUNK: usize = 16 * 1024;
/// The target: the framework at least this fraction of the bare loop.
const TARGET: f64 = 0.9;

fn host() -> IpCidr {
    IpCidr::new(IpAddress::v4(192, 168, 69, 100), 24)
}

fn stack_ip() -> IpCidr {
    IpCidr::new(IpAddress::v4(192, 168, 69, 1), 24)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Direction {
    /// Host to smoltcp.
    Upload,
    /// smoltcp to host.
    Download,
}

impl Direction {
    const ALL: [Direction; 2] = [Direction::Upload, Direction::Download];

    fn name(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }
}

/// Reads everything the client sends.
#[derive(Clone, Copy)]
struct Sink;

impl<C: Connection> StreamHandler<C> for Sink {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let mut chunk = [0; CHUNK];
        while req.rfile.read(&mut chunk)? > 0 {}
        Ok(())
    }
}

/// Sends `.0` bytes.
#[derive(Clone, Copy)]
struct Source(usize);

impl<C: Connection> StreamHandler<C> for Source {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let chunk = [0x5a; CHUNK];
        let mut left = self.0;
        while left > 0 {
            let n = left.min(CHUNK);
            req.wfile.write_all(&chunk[..n])?;
            left -= n;
        }
        Ok(())
    }
}

fn leak(len: usize) -> &'static mut [u8] {
    Vec::leak(vec![0; len])
}

fn socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(leak(BUF)),
        tcp::SocketBuffer::new(leak(BUF)),
    )
}

/// One request served by the framework: `TcpListener` + `Server`.
fn framework(direction: Direction, bytes: usize, ready: Ready) -> io::Result<()> {
    let storage = Vec::leak((0..2).map(|_| SocketStorage::EMPTY).collect());
    let stack = RefCell::new(tap_stack(TAP, stack_ip(), storage)?);
    let shutdown = ShutdownFlag::new();
    let listener = TcpListener::bind(&stack, PORT, [socket()], &shutdown)
        .map_err(|e| io::Error::other(format!("listen: {e:?}")))?;
    let _ = ready.send(());
    let served = match direction {
        Direction::Upload => {
            Server::new(listener, SyncDispatch::<_>::new(|| Sink), StdClock).handle_request()
        }
        Direction::Download => Server::new(
            listener,
            SyncDispatch::<_>::new(move || Source(bytes)),
            StdClock,
        )
        .handle_request(),
    };
    served.map_err(|e| io::Error::other(format!("serve: {e:?}")))
}

/// The same, written directly on smoltcp: poll, move bytes, sleep on the fd.
fn bare(direction: Direction, bytes: usize, ready: Ready) -> io::Result<()> {
    let clock = Instant::now();
    let now =
        || socketserver::smoltcp::time::Instant::from_micros(clock.elapsed().as_micros() as i64);
    let mut device = TunTapInterface::new(TAP, Medium::Ethernet)?;
    let mut iface = Interface::new(Config::new(TAP_MAC.into()), &mut device, now());
    iface.update_ip_addrs(|addrs| addrs.push(stack_ip()).expect("room for one address"));
    let mut storage = [SocketStorage::EMPTY; 1];
    let mut sockets = SocketSet::new(&mut storage[..]);
    let handle = sockets.add(socket());
    sockets
        .get_mut::<tcp::Socket>(handle)
        .listen(PORT)
        .map_err(|e| io::Error::other(format!("listen: {e:?}")))?;
    let _ = ready.send(());
    let mut chunk = [0x5a; CHUNK];
    let (mut left, mut closed) = (bytes, false);
    loop {
        iface.poll(now(), &mut device, &mut sockets);
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        match direction {
            Direction::Upload => {
                while socket.can_recv() {
                    socket.recv_slice(&mut chunk).map_err(io::Error::other)?;
                }
                if socket.state() == State::CloseWait && !closed {
                    socket.close();
                    closed = true;
                }
            }
            Direction::Download => {
                while left > 0 && socket.can_send() {
                    left -= socket
                        .send_slice(&chunk[..left.min(CHUNK)])
                        .map_err(io::Error::other)?;
                }
                if left == 0 && socket.may_send() && !closed {
                    socket.close();
                    closed = true;
                }
            }
        }
        if closed && matches!(socket.state(), State::TimeWait | State::Closed) {
            iface.poll(now(), &mut device, &mut sockets);
            return Ok(());
        }
        let delay = iface.poll_delay(now(), &sockets);
        // EINTR only ends the sleep early.
        let _ = wait(std::os::fd::AsRawFd::as_raw_fd(&device), delay);
    }
}

/// The host's side of one transfer; returns how long it took.
fn client(direction: Direction, bytes: usize) -> io::Result<Duration> {
    let mut stream = connect(SocketAddr::from(([192, 168, 69, 1], PORT)))?;
    let start = Instant::now();
    let mut buf = vec![0x33; CHUNK];
    match direction {
        Direction::Upload => {
            let mut left = bytes;
            while left > 0 {
                let n = left.min(CHUNK);
                stream.write_all(&buf[..n])?;
                left -= n;
            }
            stream.shutdown(Shutdown::Write)?;
            if stream.read(&mut buf)? != 0 {
                return Err(io::Error::other("the sink sent data"));
            }
        }
        Direction::Download => {
            let mut got = 0;
            loop {
                match stream.read(&mut buf)? {
                    0 => break,
                    n => got += n,
                }
            }
            if got != bytes {
                return Err(io::Error::other(format!("got {got} of {bytes} bytes")));
            }
        }
    }
    Ok(start.elapsed())
}

/// Connects (the server is listening by then).
fn connect(server: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    Ok(stream)
}

/// Told when the server listens, so the client's first SYN is not lost
/// (its retransmission would come a second later).
type Ready = mpsc::Sender<()>;
type ServeFn = fn(Direction, usize, Ready) -> io::Result<()>;

/// MB/s of one transfer served by `server`.
fn transfer(server: ServeFn, direction: Direction, bytes: usize) -> io::Result<f64> {
    let (ready, listening) = mpsc::channel();
    std::thread::scope(|s| {
        let serving = s.spawn(move || server(direction, bytes, ready));
        let took = match listening.recv_timeout(Duration::from_secs(10)) {
            Ok(()) => client(direction, bytes),
            Err(_) => Err(io::Error::other("the server did not start listening")),
        };
        let served = serving
            .join()
            .map_err(|_| io::Error::other("the server thread panicked"))?;
        served?;
        Ok(bytes as f64 / took?.as_secs_f64() / 1e6)
    })
}

/// Inside the namespace: makes the tap, then `rounds` rounds of each
/// direction, the two servers taking turns (the first alternating by
/// round); prints `sample DIRECTION SERVER MB/S` lines.
///
/// # Errors
/// Not inside the namespace, the tap could not be set up, or a transfer
/// failed.
pub fn inside(mib: usize, rounds: usize) -> io::Result<()> {
    if !netns::inside() {
        return Err(io::Error::other(
            "tap-inside runs only inside the namespace that the tap workload makes",
        ));
    }
    netns::add_tap(TAP, host())?;
    let bytes = mib << 20;
    let servers: [(&str, ServeFn); 2] = [("framework", framework), ("bare", bare)];
    for round in 0..rounds {
        for direction in Direction::ALL {
            for i in 0..2 {
                let (name, server) = servers[(i + round) % 2];
                let rate = transfer(server, direction, bytes)?;
                println!("sample {} {name} {rate:.3}", direction.name());
            }
        }
    }
    Ok(())
}

/// Runs the workload (as root) and builds its section; skips it, loudly,
/// without root, `/dev/net/tun`, `unshare` or `ip`.
///
/// # Errors
/// The namespace run failed.
pub fn run(plan: &Plan) -> io::Result<Section> {
    const TITLE: &str = "smoltcp backend over a TAP device vs a bare smoltcp loop";
    if let Err(missing) = netns::check() {
        let checks = Direction::ALL.map(|d| check(d, Err(String::new())));
        return Ok(Section::skipped("tap", TITLE, missing, checks.to_vec()));
    }
    eprintln!(
        "tap: {} MiB per transfer x 2 directions x 2 servers x {} rounds",
        plan.tap_mib, plan.tap_rounds
    );
    let args = [
        "tap-inside".to_string(),
        plan.tap_mib.to_string(),
        plan.tap_rounds.to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = netns::rerun_inside(&args)?
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "the tap run inside the namespace failed ({})",
            output.status
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut series: Vec<((&str, &str), Series)> = Vec::new();
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let ["sample", direction, server, rate] = fields[..] else {
            continue;
        };
        let value: f64 = rate.parse().map_err(io::Error::other)?;
        let key = (direction, server);
        let sample = Sample { value, errors: 0 };
        match series.iter_mut().find(|(k, _)| *k == key) {
            Some((_, s)) => s.0.push(sample),
            None => series.push((key, Series(vec![sample]))),
        }
    }
    let get = |direction: &str, server: &str| {
        series
            .iter()
            .find(|(k, _)| *k == (direction, server))
            .map(|(_, s)| s)
            .ok_or_else(|| io::Error::other(format!("no {direction} {server} samples")))
    };
    let mut section = Section {
        workload: "tap",
        title: TITLE.into(),
        about: format!(
            "The host kernel's TCP talks to smoltcp over `tap0` in a private network \
             namespace; {} MiB per transfer, one connection; the framework serves it with \
             `TcpListener` + `Server` + a sink or source handler, the bare loop with \
             `Interface::poll` and the socket directly, both sleeping on the tap's fd. \
             Median of {} rounds, the two servers taking turns.",
            plan.tap_mib, plan.tap_rounds
        ),
        header: [
            "direction",
            "framework MB/s",
            "bare loop MB/s",
            "framework / bare",
        ]
        .map(String::from)
        .to_vec(),
        ..Section::default()
    };
    for direction in Direction::ALL {
        let name = direction.name();
        let (fw, raw) = (get(name, "framework")?, get(name, "bare")?);
        let ratio = Ratio::of(fw, raw);
        section.rows.push(vec![
            format!("{name} ({})", describe(direction)),
            num(fw.median()),
            num(raw.median()),
            format!("{:.2}x", ratio.median),
        ]);
        section.checks.push(check(direction, Ok(ratio.into())));
    }
    Ok(section)
}

fn check(direction: Direction, measured: Result<Figure, String>) -> Check {
    Check {
        workload: "tap",
        what: format!("framework / bare smoltcp loop, {}", direction.name()),
        label: format!("framework / bare, {}", direction.name()),
        measured,
        target: Target::AtLeast(TARGET),
        strict: false,
    }
}

fn describe(direction: Direction) -> &'static str {
    match direction {
        Direction::Upload => "host to smoltcp",
        Direction::Download => "smoltcp to host",
    }
}
