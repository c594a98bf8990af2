//! Throughput of the smoltcp backend over a TAP device, both directions,
//! beside a bare smoltcp event loop doing the same transfer with no
//! framework, in the same run. The host kernel's TCP is the other end.
//!
//! Usage (as root; it makes its own network namespace and tap device):
//! `cargo run --release --example smoltcp_bench --features smoltcp -- [MIB] [ROUNDS]`
//! (64 MiB per transfer and 3 rounds by default; the best round counts).

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socketserver::embedded_io::{Read as _, Write as _};
use socketserver::smoltcp::smoltcp::iface::{Config, Interface, SocketSet, SocketStorage};
use socketserver::smoltcp::smoltcp::phy::{wait, Device, Medium, TunTapInterface};
use socketserver::smoltcp::smoltcp::socket::tcp::{self, State};
use socketserver::smoltcp::smoltcp::wire::{IpAddress, IpCidr};
use socketserver::smoltcp::tap::{netns, tap_stack, StdClock, TAP_MAC};
use socketserver::smoltcp::TcpListener;
use socketserver::{
    Connection, Error, Server, ShutdownFlag, StreamHandler, StreamRequest, SyncDispatch,
};

const TAP: &str = "tap0";
const PORT: u16 = 9999;
/// Socket buffers, equal for both servers.
const BUF: usize = 65535;
/// Bytes handed to the socket per call, equal for both servers.
const CHUNK: usize = 16 * 1024;

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

/// Reads everything the client sends.
#[derive(Clone, Copy)]
struct Sink;

impl StreamHandler for Sink {
    fn handle<C: Connection>(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let mut chunk = [0; CHUNK];
        while req.rfile.read(&mut chunk)? > 0 {}
        Ok(())
    }
}

/// Sends `.0` bytes.
#[derive(Clone, Copy)]
struct Source(usize);

impl StreamHandler for Source {
    fn handle<C: Connection>(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
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
fn framework(direction: Direction, bytes: usize) {
    let storage = Vec::leak((0..2).map(|_| SocketStorage::EMPTY).collect());
    let stack = RefCell::new(tap_stack(TAP, stack_ip(), storage).expect("open tap"));
    let shutdown = ShutdownFlag::new();
    let listener = TcpListener::bind(&stack, PORT, [socket()], &shutdown).expect("listen");
    let served = match direction {
        Direction::Upload => {
            Server::new(listener, SyncDispatch::<_>::new(|| Sink), StdClock::new()).handle_request()
        }
        Direction::Download => Server::new(
            listener,
            SyncDispatch::<_>::new(move || Source(bytes)),
            StdClock::new(),
        )
        .handle_request(),
    };
    served.expect("serve");
}

/// The same, written directly on smoltcp: poll, move bytes, sleep on the fd.
fn bare(direction: Direction, bytes: usize) {
    let clock = Instant::now();
    let now = || {
        socketserver::smoltcp::smoltcp::time::Instant::from_micros(
            clock.elapsed().as_micros() as i64
        )
    };
    let mut device = TunTapInterface::new(TAP, Medium::Ethernet).expect("open tap");
    let mut iface = Interface::new(Config::new(TAP_MAC.into()), &mut device, now());
    iface.update_ip_addrs(|addrs| addrs.push(stack_ip()).unwrap());
    let mut storage = [SocketStorage::EMPTY; 1];
    let mut sockets = SocketSet::new(&mut storage[..]);
    let handle = sockets.add(socket());
    sockets.get_mut::<tcp::Socket>(handle).listen(PORT).unwrap();
    let mut chunk = [0x5a; CHUNK];
    let (mut left, mut closed) = (bytes, false);
    loop {
        iface.poll(now(), &mut device, &mut sockets);
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        match direction {
            Direction::Upload => {
                while socket.can_recv() {
                    socket.recv_slice(&mut chunk).unwrap();
                }
                if socket.state() == State::CloseWait && !closed {
                    socket.close();
                    closed = true;
                }
            }
            Direction::Download => {
                while left > 0 && socket.can_send() {
                    left -= socket.send_slice(&chunk[..left.min(CHUNK)]).unwrap();
                }
                if left == 0 && socket.may_send() && !closed {
                    socket.close();
                    closed = true;
                }
            }
        }
        if closed && matches!(socket.state(), State::TimeWait | State::Closed) {
            iface.poll(now(), &mut device, &mut sockets);
            return;
        }
        let delay = iface.poll_delay(now(), &sockets);
        wait(device_fd(&device), delay).ok();
    }
}

fn device_fd<D: Device + std::os::unix::io::AsRawFd>(device: &D) -> i32 {
    device.as_raw_fd()
}

/// The host's side of one transfer; returns how long it took.
fn client(direction: Direction, bytes: usize) -> Duration {
    let server = SocketAddr::from(([192, 168, 69, 1], PORT));
    let mut stream = connect(server);
    let start = Instant::now();
    let mut buf = vec![0x33; CHUNK];
    match direction {
        Direction::Upload => {
            let mut left = bytes;
            while left > 0 {
                let n = left.min(CHUNK);
                stream.write_all(&buf[..n]).unwrap();
                left -= n;
            }
            stream.shutdown(Shutdown::Write).unwrap();
            assert_eq!(stream.read(&mut buf).unwrap(), 0);
        }
        Direction::Download => {
            let mut got = 0;
            loop {
                match stream.read(&mut buf).unwrap() {
                    0 => break,
                    n => got += n,
                }
            }
            assert_eq!(got, bytes);
        }
    }
    start.elapsed()
}

/// Connects, retrying while the server thread is still opening the tap.
fn connect(server: SocketAddr) -> TcpStream {
    let start = Instant::now();
    loop {
        match TcpStream::connect_timeout(&server, Duration::from_secs(5)) {
            Ok(stream) => {
                stream
                    .set_read_timeout(Some(Duration::from_secs(60)))
                    .unwrap();
                return stream;
            }
            Err(err) if start.elapsed() < Duration::from_secs(10) => {
                let _ = err;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(err) => panic!("connect: {err}"),
        }
    }
}

/// Best MB/s over `rounds` transfers served by `server`.
fn measure(server: fn(Direction, usize), direction: Direction, bytes: usize, rounds: usize) -> f64 {
    (0..rounds)
        .map(|_| {
            std::thread::scope(|s| {
                s.spawn(move || server(direction, bytes));
                let took = client(direction, bytes);
                bytes as f64 / took.as_secs_f64() / 1e6
            })
        })
        .fold(0.0, f64::max)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !netns::inside() {
        if let Err(missing) = netns::check() {
            eprintln!("smoltcp_bench {missing}");
            std::process::exit(2);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let status = netns::rerun_inside(&args)
            .unwrap()
            .status()
            .expect("run unshare");
        std::process::exit(status.code().unwrap_or(1));
    }
    let mib: usize = args.first().map_or(64, |a| a.parse().expect("MIB"));
    let rounds: usize = args.get(1).map_or(3, |a| a.parse().expect("ROUNDS"));
    netns::add_tap(TAP, host()).expect("set up tap0");
    let bytes = mib << 20;
    println!("{mib} MiB per transfer, best of {rounds}, host kernel <-> smoltcp over {TAP}");
    println!(
        "{:<10} {:>12} {:>12} {:>7}",
        "direction", "framework", "bare loop", "ratio"
    );
    for direction in [Direction::Upload, Direction::Download] {
        let fw = measure(framework, direction, bytes, rounds);
        let raw = measure(bare, direction, bytes, rounds);
        println!(
            "{:<10} {:>7.1} MB/s {:>7.1} MB/s {:>7.2}",
            format!("{direction:?}").to_lowercase(),
            fw,
            raw,
            fw / raw
        );
    }
}
