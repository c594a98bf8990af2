//! The `nic` image's services with smoltcp alone: the same NIC, clock,
//! buffers and rules (the backlogs, the refused ports, the line limit and
//! read timeout, closing after each request, lingering until the client has
//! closed, the stop datagram), in a hand-written event loop.
//!
//! It exists to be measured against [`crate::serve`]: `run.sh` compares the
//! images' sizes, `bench_nic.py` their speed. Its log lines name the Python
//! hooks they stand for, as the framework's do, so the same tests read both.

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpEndpoint};

use crate::nic::{
    announce, refused, stop_requested, NicMemory, NicSlots, ADDRESS, ECHO_PORT, LINE_CAPACITY,
    READ_TIMEOUT_MS, UDP_PORT, UPPER_PORT,
};
use crate::{say, smol_now, Board};

/// How long a closing connection waits for the client's FIN, as the
/// framework's default linger.
const LINGER_MS: u64 = 5000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Listening,
    Serving,
    Closing,
}

/// One listening socket and the request it serves.
struct Session {
    handle: SocketHandle,
    port: u16,
    phase: Phase,
    since: u64,
    peer: IpEndpoint,
    /// Bytes of the line buffer in use (echo only).
    filled: usize,
}

/// Upper-cases `data` and strips it (the order does not matter).
fn upper_stripped(data: &mut [u8]) -> &[u8] {
    data.make_ascii_uppercase();
    data.trim_ascii()
}

/// The docs' `MyTCPHandler`: one read, upper-cased, stripped. `Ok(true)`
/// once the request is done.
fn upper_once(socket: &mut tcp::Socket<'_>) -> Result<bool, &'static str> {
    if socket.can_recv() {
        let mut data = [0; 1024];
        let n = socket.recv_slice(&mut data).map_err(|_| "receive failed")?;
        let reply = upper_stripped(&mut data[..n]);
        match socket.send_slice(reply) {
            Ok(sent) if sent == reply.len() => Ok(true),
            _ => Err("reply does not fit the send buffer"),
        }
    } else {
        Ok(!socket.may_recv())
    }
}

/// `EchoLines`: each line back as soon as it is complete, until the client
/// closes; lines of at most [`LINE_CAPACITY`] bytes, each read within
/// [`READ_TIMEOUT_MS`] of the previous bytes.
fn echo_lines(
    socket: &mut tcp::Socket<'_>,
    session: &mut Session,
    line: &mut [u8],
    now: u64,
) -> Result<bool, &'static str> {
    loop {
        let filled = session.filled;
        if let Some(end) = line[..filled].iter().position(|&b| b == b'\n') {
            // Waits for room rather than cut the line.
            if socket.send_capacity() - socket.send_queue() <= end {
                return Ok(false);
            }
            socket
                .send_slice(&line[..=end])
                .map_err(|_| "send failed")?;
            line.copy_within(end + 1..filled, 0);
            session.filled -= end + 1;
        } else if filled == line.len() {
            return Err("line too long");
        } else if socket.can_recv() {
            session.filled += socket
                .recv_slice(&mut line[filled..])
                .map_err(|_| "receive failed")?;
            session.since = now;
        } else if !socket.may_recv() {
            // The unterminated rest, as `readline` returns it at EOF.
            return match socket.send_slice(&line[..filled]) {
                Ok(sent) if sent == filled => Ok(true),
                _ => Ok(false),
            };
        } else if now - session.since >= READ_TIMEOUT_MS {
            return Err("read timed out");
        } else {
            return Ok(false);
        }
    }
}

/// Moves one session on: accept (or refuse), serve, close, listen again.
/// `line` is the session's line buffer: empty for the upper-caser.
/// Returns whether it moved to another phase (which wants a pass at once).
fn step<B: Board>(
    sockets: &mut SocketSet<'static>,
    session: &mut Session,
    line: &mut [u8],
) -> bool {
    let socket = sockets.get_mut::<tcp::Socket>(session.handle);
    let now = B::now_ms();
    let phase = session.phase;
    match phase {
        Phase::Listening => {
            if !matches!(socket.state(), State::Established | State::CloseWait) {
                return false;
            }
            let Some(peer) = socket.remote_endpoint() else {
                return false;
            };
            (session.since, session.filled, session.peer) = (now, 0, peer);
            if refused(&peer) {
                say!(B, "verify_request refuses {}", peer);
                socket.close();
                session.phase = Phase::Closing;
            } else {
                session.phase = Phase::Serving;
            }
        }
        Phase::Serving => {
            let served = if !socket.is_active() {
                Err("connection reset")
            } else if line.is_empty() {
                upper_once(socket)
            } else {
                echo_lines(socket, session, line, now)
            };
            let done = served.unwrap_or_else(|error| {
                say!(B, "handle_error: {}: {}", session.peer, error);
                true
            });
            if done {
                socket.close();
                (session.phase, session.since) = (Phase::Closing, now);
            }
        }
        Phase::Closing => {
            // Unread data would close the window on a client still sending.
            while socket.can_recv() && socket.recv(|data| (data.len(), ())).is_ok() {}
            let closed = matches!(socket.state(), State::TimeWait | State::Closed);
            if closed || now - session.since > LINGER_MS {
                socket.abort();
                let _ = socket.listen(session.port);
                session.phase = Phase::Listening;
            }
        }
    }
    session.phase != phase
}

/// The docs' `MyUDPHandler`.
fn serve_datagram<B: Board>(socket: &mut udp::Socket<'_>) {
    let mut packet = [0; 256];
    let Ok((n, meta)) = socket.recv_slice(&mut packet) else {
        return;
    };
    let reply = upper_stripped(&mut packet[..n]);
    if !reply.is_empty() && socket.send_slice(reply, meta.endpoint).is_err() {
        say!(B, "handle_error: {}: reply not sent", meta.endpoint);
    }
}

fn session(
    sockets: &mut SocketSet<'static>,
    mut socket: tcp::Socket<'static>,
    port: u16,
) -> Session {
    // The ACK of the client's FIN must leave before the socket listens
    // again and forgets the client.
    socket.set_ack_delay(None);
    socket.listen(port).expect("listen");
    Session {
        handle: sockets.add(socket),
        port,
        phase: Phase::Listening,
        since: 0,
        peer: IpEndpoint::new(IpAddress::v4(0, 0, 0, 0), 0),
        filled: 0,
    }
}

/// Serves the NIC images' services on `device` until the `stop` datagram,
/// then says `stopped` and ends the run with success.
pub fn serve<B: Board>(
    mut device: B::Nic,
    memory: &'static mut NicMemory,
    slots: &'static mut NicSlots,
) -> ! {
    let parts = memory.split(slots);
    let config = Config::new(B::mac_address(&device).into());
    let mut iface = Interface::new(config, &mut device, smol_now::<B>());
    iface.update_ip_addrs(|addrs| addrs.push(ADDRESS).expect("one address fits"));
    let mut sockets = SocketSet::new(parts.slots);
    let mut upper = parts
        .upper
        .map(|socket| session(&mut sockets, socket, UPPER_PORT));
    let mut echo = parts
        .echo
        .map(|socket| (session(&mut sockets, socket, ECHO_PORT), [0; LINE_CAPACITY]));
    let mut udp = parts.udp;
    udp.bind(UDP_PORT).expect("bind");
    let udp = sockets.add(udp);
    let control = sockets.add(parts.control);

    announce::<B>();
    loop {
        iface.poll(smol_now::<B>(), &mut device, &mut sockets);
        let mut moved = false;
        for session in &mut upper {
            moved |= step::<B>(&mut sockets, session, &mut []);
        }
        for (session, line) in &mut echo {
            moved |= step::<B>(&mut sockets, session, line);
        }
        serve_datagram::<B>(sockets.get_mut::<udp::Socket>(udp));
        let stop = stop_requested::<B>(sockets.get_mut::<udp::Socket>(control));
        iface.poll(smol_now::<B>(), &mut device, &mut sockets);
        if stop {
            break;
        }
        // Unless a session has a new phase to start, whatever it waits for
        // comes as a frame or with time.
        if !moved {
            B::idle(&mut device);
        }
    }
    say!(B, "stopped");
    B::exit(true)
}
