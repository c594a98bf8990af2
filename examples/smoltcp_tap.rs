//! The `tcp_server` and `udp_server` examples' handlers on the smoltcp
//! stack, over a Linux TAP device: TCP and UDP on the same port, served
//! from one thread that sleeps on the device while idle.
//!
//! Usage: `cargo run --example smoltcp_tap --features smoltcp -- --tap NAME --ip CIDR [--port N]`
//! (port 9999 by default). The TAP device must exist (see the
//! socketserver-smoltcp README for `ip tuntap`); `--ip` is smoltcp's own
//! address, in the device's subnet. Prints `listening on IP:PORT` once
//! bound, serves until SIGINT or SIGTERM.

#[path = "common/args.rs"]
mod args;

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use socketserver::handlers::{UpperDatagram, UpperOnce};
use socketserver::smoltcp::iface::SocketStorage;
use socketserver::smoltcp::socket::{tcp, udp};
use socketserver::smoltcp::tap::tap_stack;
use socketserver::smoltcp::wire::IpCidr;
use socketserver::smoltcp::{Net, StdClock, TcpListener, UdpSocket};
use socketserver::{Server, ShutdownFlag, SyncDispatch, Took};

/// Python's `request_queue_size` default.
const BACKLOG: usize = 5;

struct Args {
    tap: String,
    ip: IpCidr,
    port: u16,
}

fn parse_args() -> Args {
    let mut args = args::Args::parse("usage: smoltcp_tap --tap NAME --ip CIDR [--port N]");
    let (tap, ip) = (args.option("--tap"), args.option("--ip"));
    let port = args.option("--port").unwrap_or(9999);
    let (Some(tap), Some(ip)) = (tap, ip) else {
        args.fail("--tap and --ip are required");
    };
    args.done();
    Args { tap, ip, port }
}

fn main() -> io::Result<()> {
    let args = parse_args();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }

    // Every buffer is the caller's: here, arrays on main's stack.
    let mut storage = [SocketStorage::EMPTY; BACKLOG + 1];
    let mut tcp_buffers = [[0u8; 16 * 1024]; 2 * BACKLOG];
    let (mut udp_meta, mut udp_payload) = ([udp::PacketMetadata::EMPTY; 16], [0u8; 32 * 1024]);

    let stack = RefCell::new(tap_stack(&args.tap, args.ip, &mut storage)?);
    let shutdown = ShutdownFlag::new();

    let mut buffers = tcp_buffers.iter_mut();
    let sockets = core::array::from_fn(|_| {
        let mut next =
            || tcp::SocketBuffer::new(&mut buffers.next().expect("2 buffers per socket")[..]);
        tcp::Socket::new(next(), next())
    });
    let listener = TcpListener::<BACKLOG>::bind(&stack, args.port, sockets, &shutdown)
        .map_err(io::Error::other)?;
    let dispatch = SyncDispatch::<_>::new(|| UpperOnce);
    let mut tcp_server = Server::new(listener, dispatch, StdClock);

    let (rx_meta, tx_meta) = udp_meta.split_at_mut(8);
    let (rx, tx) = udp_payload.split_at_mut(16 * 1024);
    let socket = udp::Socket::new(
        udp::PacketBuffer::new(rx_meta, rx),
        udp::PacketBuffer::new(tx_meta, tx),
    );
    let socket = UdpSocket::bind(&stack, args.port, socket, &shutdown).map_err(io::Error::other)?;
    let dispatch = SyncDispatch::<_>::new(|| UpperDatagram);
    let mut udp_server = Server::new(socket, dispatch, StdClock);

    println!("listening on {}:{}", args.ip.address(), args.port);
    io::stdout().flush()?;

    // Two servers on one stack: each pass takes what is ready from both
    // (never waiting), and sleeps on the device (at most the stack's max
    // idle time; a signal ends it too) when neither took anything. The
    // stack is polled once per pass.
    while !stop.load(Ordering::Relaxed) {
        let tcp = tcp_server.handle_request_noblock();
        let udp = udp_server.handle_request_noblock();
        if tcp == Took::Nothing && udp == Took::Nothing {
            stack.borrow_mut().idle_until(None);
        }
    }
    tcp_server.server_close();
    udp_server.server_close();
    Ok(())
}
