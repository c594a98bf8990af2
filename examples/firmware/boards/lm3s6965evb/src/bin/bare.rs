//! The exchange of the `framework` image with smoltcp alone: the same client,
//! cable, clock and buffers, and a hand-written event loop in place of
//! socketserver, serving the same three services with the same rules (the
//! backlog, refusing 10.0.0.66, the line limit and read timeout, closing
//! after each request, lingering until the client has closed).
//!
//! It exists to be measured: `run.sh` prints both images' sizes, so the
//! framework's cost shows in bytes. It runs the same checks, so it is
//! known to do the same work.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::hprintln;
use firmware_lm3s6965evb::selftest::{
    check, config, finish, Listed, Memory, Service, Slots, EXCHANGE_TIMEOUT_MS, IDLE_TIMEOUT_MS,
    LINE_CAPACITY, READ_TIMEOUT_MS, SCRIPT, SERVER_CIDR, STRANGER,
};
use firmware_lm3s6965evb::{now_ms, smol_now, start_clock, tick};
use panic_semihosting as _;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpEndpoint};

/// How long a closing connection waits for the client's FIN, as the
/// framework's default linger.
const LINGER_MS: u64 = 5000;

#[exception]
fn SysTick() {
    tick();
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Listening,
    Serving,
    Closing,
}

/// One listening socket and the request it serves.
struct Session {
    handle: SocketHandle,
    service: Service,
    phase: Phase,
    since: u64,
    peer: IpEndpoint,
    line: [u8; LINE_CAPACITY],
    filled: usize,
}

/// What the server did, for the final checks.
#[derive(Default)]
struct Tally {
    refused: heapless::Vec<IpEndpoint, 2>,
    errors: heapless::Vec<&'static str, 4>,
    served: usize,
}

/// Upper-cases `data` and strips it (the order does not matter).
fn upper_stripped(data: &mut [u8]) -> &[u8] {
    data.make_ascii_uppercase();
    data.trim_ascii()
}

/// Queues `reply`; replies here always fit the empty send buffer.
fn reply(socket: &mut tcp::Socket<'_>, reply: &[u8]) -> Result<bool, &'static str> {
    match socket.send_slice(reply) {
        Ok(n) if n == reply.len() => Ok(true),
        _ => Err("reply does not fit the send buffer"),
    }
}

/// The docs' `MyTCPHandler`: one read, upper-cased, stripped. `Ok(true)`
/// once the request is done.
fn upper_once(socket: &mut tcp::Socket<'_>) -> Result<bool, &'static str> {
    if socket.can_recv() {
        let mut data = [0; 1024];
        let n = socket.recv_slice(&mut data).map_err(|_| "receive failed")?;
        reply(socket, upper_stripped(&mut data[..n]))
    } else {
        Ok(!socket.may_recv())
    }
}

/// `EchoLines`: each line back as soon as it is complete, until the client
/// closes; lines of at most [`LINE_CAPACITY`] bytes, each read within
/// [`READ_TIMEOUT_MS`] of the previous one.
fn echo_lines(
    socket: &mut tcp::Socket<'_>,
    session: &mut Session,
    now: u64,
) -> Result<bool, &'static str> {
    loop {
        let filled = session.filled;
        if let Some(end) = session.line[..filled].iter().position(|&b| b == b'\n') {
            // Waits for room rather than cut the line.
            if socket.send_capacity() - socket.send_queue() <= end {
                return Ok(false);
            }
            socket
                .send_slice(&session.line[..=end])
                .map_err(|_| "send failed")?;
            session.line.copy_within(end + 1..filled, 0);
            session.filled -= end + 1;
        } else if filled == LINE_CAPACITY {
            return Err("line too long");
        } else if socket.can_recv() {
            session.filled += socket
                .recv_slice(&mut session.line[filled..])
                .map_err(|_| "receive failed")?;
            session.since = now;
        } else if !socket.may_recv() {
            // The unterminated rest, as `readline` returns it at EOF.
            return reply(socket, &session.line[..filled]);
        } else if now - session.since >= READ_TIMEOUT_MS {
            return Err("read timed out");
        } else {
            return Ok(false);
        }
    }
}

/// Moves one session on: accept (or refuse), serve, close, listen again.
fn serve(sockets: &mut SocketSet<'static>, session: &mut Session, tally: &mut Tally) {
    let socket = sockets.get_mut::<tcp::Socket>(session.handle);
    let now = now_ms();
    match session.phase {
        Phase::Listening => {
            if !matches!(socket.state(), State::Established | State::CloseWait) {
                return;
            }
            let Some(peer) = socket.remote_endpoint() else {
                return;
            };
            (session.since, session.filled, session.peer) = (now, 0, peer);
            if peer.addr == STRANGER {
                hprintln!("  server: refusing {}", peer);
                let _ = tally.refused.push(peer);
                socket.close();
                session.phase = Phase::Closing;
            } else {
                tally.served += 1;
                session.phase = Phase::Serving;
            }
        }
        Phase::Serving => {
            let served = if socket.is_active() {
                match session.service {
                    Service::Upper => upper_once(socket),
                    Service::Echo => echo_lines(socket, session, now),
                    Service::Datagram => Ok(true),
                }
            } else {
                Err("connection reset")
            };
            let done = served.unwrap_or_else(|error| {
                hprintln!("  server: error: {}: {}", session.peer, error);
                let _ = tally.errors.push(error);
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
                let _ = socket.listen(session.service.port());
                session.phase = Phase::Listening;
            }
        }
    }
}

/// The docs' `MyUDPHandler`.
fn serve_datagram(socket: &mut udp::Socket<'_>, tally: &mut Tally) -> bool {
    let mut packet = [0; 256];
    let Ok((n, meta)) = socket.recv_slice(&mut packet) else {
        return false;
    };
    tally.served += 1;
    let reply = upper_stripped(&mut packet[..n]);
    if !reply.is_empty() && socket.send_slice(reply, meta.endpoint).is_err() {
        let _ = tally.errors.push("reply not sent");
    }
    true
}

#[entry]
fn main() -> ! {
    // As in the framework image: buffers in .bss, slots built at run time.
    static mut MEMORY: Memory = Memory::new();

    let mut core = cortex_m::Peripherals::take().expect("peripherals taken once");
    start_clock(&mut core.SYST);
    hprintln!("bare smoltcp firmware: the same services in a hand-written event loop");

    let slots = cortex_m::singleton!(: Slots = Slots::new()).expect("runs once");
    let (mut client, parts) = MEMORY.split(slots);
    let mut device = parts.device;
    let mut iface = Interface::new(config(1), &mut device, smol_now());
    iface.update_ip_addrs(|addrs| addrs.push(SERVER_CIDR).expect("one address fits"));
    let mut sockets = SocketSet::new(parts.slots);
    let [a, b, c] = parts.upper;
    let mut sessions = [
        (a, Service::Upper),
        (b, Service::Upper),
        (c, Service::Upper),
        (parts.echo, Service::Echo),
    ]
    .map(|(mut socket, service)| {
        // The ACK of the client's FIN must leave before the socket listens
        // again and forgets the client.
        socket.set_ack_delay(None);
        socket.listen(service.port()).expect("listen");
        Session {
            handle: sockets.add(socket),
            service,
            phase: Phase::Listening,
            since: 0,
            peer: IpEndpoint::new(IpAddress::v4(0, 0, 0, 0), 0),
            line: [0; LINE_CAPACITY],
            filled: 0,
        }
    });
    let mut udp = parts.udp;
    udp.bind(Service::Datagram.port()).expect("bind");
    let udp = sockets.add(udp);
    let mut tally = Tally::default();

    let deadline = now_ms() + EXCHANGE_TIMEOUT_MS * (SCRIPT.len() as u64 + 1);
    let idle = |sessions: &[Session]| sessions.iter().all(|s| s.phase == Phase::Listening);
    while !(client.done() && idle(&sessions)) && now_ms() < deadline {
        client.step();
        iface.poll(smol_now(), &mut device, &mut sockets);
        for session in &mut sessions {
            serve(&mut sockets, session, &mut tally);
        }
        serve_datagram(sockets.get_mut::<udp::Socket>(udp), &mut tally);
        iface.poll(smol_now(), &mut device, &mut sockets);
    }

    hprintln!("[timeout] waiting {} ms with no client", IDLE_TIMEOUT_MS);
    let start = now_ms();
    let mut arrived = false;
    while now_ms() - start < IDLE_TIMEOUT_MS {
        client.step();
        iface.poll(smol_now(), &mut device, &mut sockets);
        arrived |= sessions
            .iter()
            .any(|s| sockets.get::<tcp::Socket>(s.handle).state() != State::Listen)
            || sockets.get::<udp::Socket>(udp).can_recv();
    }
    let took = now_ms() - start;
    check(
        !arrived && (IDLE_TIMEOUT_MS..IDLE_TIMEOUT_MS + 500).contains(&took),
        format_args!("nothing arrived; gave up after {took} ms"),
    );

    hprintln!("[server] what the server saw");
    let refused = &tally.refused;
    check(
        matches!(refused[..], [peer] if peer.addr == STRANGER && peer.port != 0),
        format_args!("refused {}", Listed(refused)),
    );
    check(
        tally.errors[..] == ["line too long", "read timed out"],
        format_args!("errors: {}", Listed(&tally.errors)),
    );
    let expected: usize = SCRIPT.iter().map(|e| e.conns.len()).sum::<usize>() - 1;
    check(
        tally.served == expected,
        format_args!("{} requests served", tally.served),
    );
    let dropped = client.dropped() + device.dropped();
    check(
        dropped == 0,
        format_args!("{dropped} frames dropped by the cable"),
    );
    finish()
}
