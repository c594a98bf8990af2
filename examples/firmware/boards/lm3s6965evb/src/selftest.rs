//! The self-test images' half (`framework`, `bare`): the in-memory cable,
//! the static memory and the client that plays the script of checks.
//!
//! Nothing here uses the socketserver framework: the cable is
//! `socketserver_smoltcp::memory::Cable`, a plain smoltcp device built on
//! heapless queues, and the client drives raw smoltcp sockets. So each
//! framework image differs from its bare twin only in its server, and the
//! bare image links no code of socketserver beyond that device (`run.sh`
//! checks it).

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m_semihosting::{debug, hprintln};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint};
use socketserver_firmware::nic::{tcp_socket, udp_socket, UdpBuffers, UdpMeta};
use socketserver_smoltcp::memory::{Cable, CableEnd};

use crate::{now_ms, smol_now};

/// The server's address.
pub const SERVER: IpAddress = IpAddress::v4(10, 0, 0, 1);
/// The client's usual address.
pub const CLIENT: IpAddress = IpAddress::v4(10, 0, 0, 2);
/// A second client address, which `verify_request` refuses.
pub const STRANGER: IpAddress = IpAddress::v4(10, 0, 0, 66);
/// The port of the client's UDP socket.
pub const CLIENT_UDP_PORT: u16 = 40000;

/// Connections the upper-casing listener holds at once.
pub const BACKLOG: usize = 3;
/// The longest line the echo server takes (its `rfile` capacity).
pub const LINE_CAPACITY: usize = 256;
/// How long the echo server waits for the client's next bytes.
pub const READ_TIMEOUT_MS: u64 = 300;
/// How long the server waits for a request that never comes.
pub const IDLE_TIMEOUT_MS: u64 = 200;
/// Bound on each exchange of the script, and on the server's waits.
pub const EXCHANGE_TIMEOUT_MS: u64 = 5000;

/// Frames of at most 600 bytes: big enough for every segment of the script
/// (windows are [`TCP_BUF`]), small enough for 64 KiB of RAM.
pub const MTU: usize = 600;
/// Each direction holds 7 frames: more than the client ever sends in one poll.
pub type Wire = Cable<8, MTU>;
/// One end of the [`Wire`].
pub type End = CableEnd<'static, MTU>;

/// Each TCP socket's receive and send buffer.
pub const TCP_BUF: usize = 512;
const SERVER_TCP: usize = BACKLOG + 1;

// --------------------------------------------------------------- checks ---

static FAILURES: AtomicU32 = AtomicU32::new(0);
static CHECKS: AtomicU32 = AtomicU32::new(0);

/// Records and prints one check.
pub fn check(ok: bool, what: fmt::Arguments<'_>) {
    CHECKS.fetch_add(1, Ordering::Relaxed);
    if ok {
        hprintln!("  ok: {}", what);
    } else {
        FAILURES.fetch_add(1, Ordering::Relaxed);
        hprintln!("  FAILED: {}", what);
    }
}

/// Prints the verdict and ends QEMU with success only if every check passed.
pub fn finish() -> ! {
    let (checks, failures) = (
        CHECKS.load(Ordering::Relaxed),
        FAILURES.load(Ordering::Relaxed),
    );
    if failures == 0 && checks > 0 {
        hprintln!("all {} checks passed", checks);
        debug::exit(debug::EXIT_SUCCESS);
    } else {
        hprintln!("{} of {} checks failed", failures, checks);
        debug::exit(debug::EXIT_FAILURE);
    }
    // Only reached without a debugger or QEMU to end the run.
    loop {
        cortex_m::asm::wfi();
    }
}

/// Bytes shown as a quoted string, long ones cut short.
pub struct Text<'a>(pub &'a [u8]);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 24;
        f.write_str("\"")?;
        for &byte in self.0.iter().take(SHOWN) {
            match byte {
                b'\n' => f.write_str("\\n")?,
                b' '..=b'~' => fmt::Write::write_char(f, char::from(byte))?,
                _ => write!(f, "\\x{byte:02x}")?,
            }
        }
        if self.0.len() > SHOWN {
            write!(f, "...\" ({} bytes)", self.0.len())
        } else {
            f.write_str("\"")
        }
    }
}

/// Items shown one after the other, or `none`.
pub struct Listed<'a, T>(pub &'a [T]);

impl<T: fmt::Display> fmt::Display for Listed<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, item) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            write!(f, "{sep}{item}")?;
        }
        Ok(())
    }
}

// --------------------------------------------------------------- memory ---

/// The cable and the socket buffers of both stacks: all zero bits, so a
/// `static` of it is placed in `.bss` and costs no flash. Both images keep
/// it in the entry point's `static mut`.
pub struct Memory {
    cable: Wire,
    client_tcp: [[[u8; TCP_BUF]; 2]; BACKLOG],
    client_udp: UdpBuffers,
    server_tcp: [[[u8; TCP_BUF]; 2]; SERVER_TCP],
    server_udp: UdpBuffers,
}

/// Socket slots and UDP metadata of both stacks. Not all zero bits (empty
/// slots are `None`s), so a `static` of it would be `.data`, copied from
/// flash: build it at run time into `cortex_m::singleton!` instead.
pub struct Slots {
    client: [SocketStorage<'static>; BACKLOG + 1],
    client_udp: UdpMeta,
    server: [SocketStorage<'static>; SERVER_TCP + 1],
    server_udp: UdpMeta,
}

impl Slots {
    /// Empty slots.
    pub const fn new() -> Self {
        const META: UdpMeta = UdpMeta::new();
        Slots {
            client: [SocketStorage::EMPTY; BACKLOG + 1],
            client_udp: META,
            server: [SocketStorage::EMPTY; SERVER_TCP + 1],
            server_udp: META,
        }
    }
}

impl Default for Slots {
    fn default() -> Self {
        Self::new()
    }
}

impl Memory {
    /// Zeroed memory, for a `static`.
    pub const fn new() -> Self {
        const UDP: UdpBuffers = UdpBuffers::new();
        Memory {
            cable: Cable::new(),
            client_tcp: [[[0; TCP_BUF]; 2]; BACKLOG],
            client_udp: UDP,
            server_tcp: [[[0; TCP_BUF]; 2]; SERVER_TCP],
            server_udp: UDP,
        }
    }

    /// The client, ready to play [`SCRIPT`], and the server's parts.
    pub fn split(&'static mut self, slots: &'static mut Slots) -> (Client, ServerParts) {
        let (server_end, client_end) = self.cable.split();
        let client = Client::new(
            client_end,
            &mut slots.client[..],
            self.client_tcp.each_mut().map(tcp_socket),
            udp_socket(&mut self.client_udp, &mut slots.client_udp),
        );
        let [a, b, c, echo] = self.server_tcp.each_mut().map(tcp_socket);
        let server = ServerParts {
            device: server_end,
            slots: &mut slots.server[..],
            upper: [a, b, c],
            echo,
            udp: udp_socket(&mut self.server_udp, &mut slots.server_udp),
        };
        (client, server)
    }
}

impl Default for Memory {
    fn default() -> Self {
        Self::new()
    }
}

/// What a server is built from: its end of the cable, its socket slots and
/// one unbound socket per service.
pub struct ServerParts {
    /// The server's end of the cable.
    pub device: End,
    /// Room for every socket below.
    pub slots: &'static mut [SocketStorage<'static>],
    /// The upper-casing listener's sockets.
    pub upper: [tcp::Socket<'static>; BACKLOG],
    /// The line echo's socket.
    pub echo: tcp::Socket<'static>,
    /// The datagram upper-caser's socket.
    pub udp: udp::Socket<'static>,
}

/// The interface configuration of the stack whose MAC ends in `mac`.
pub fn config(mac: u8) -> Config {
    Config::new(EthernetAddress([2, 0, 0, 0, 0, mac]).into())
}

/// The server's address on the cable.
pub const SERVER_CIDR: IpCidr = IpCidr::new(SERVER, 24);

// --------------------------------------------------------------- script ---

/// The services the server offers, one per handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// TCP, the docs' `MyTCPHandler` (`UpperOnce`), with a backlog of [`BACKLOG`].
    Upper,
    /// TCP, echoes lines until the client closes (`EchoLines`): lines of
    /// at most [`LINE_CAPACITY`] bytes, each read within [`READ_TIMEOUT_MS`].
    Echo,
    /// UDP, the docs' `MyUDPHandler` (`UpperDatagram`).
    Datagram,
}

impl Service {
    /// The port it is served on.
    pub const fn port(self) -> u16 {
        match self {
            Service::Upper | Service::Datagram => 9999,
            Service::Echo => 9998,
        }
    }
}

/// One client connection (or datagram) of an exchange.
pub struct Conn {
    /// The client address it comes from.
    pub from: IpAddress,
    /// What the client sends.
    pub send: &'static [u8],
    /// Whether the client shuts its sending side once everything is sent.
    pub half_close: bool,
    /// What the client must read before EOF (or as the reply datagram).
    pub expect: &'static [u8],
}

/// A step of the script: connections opened together to one service.
pub struct Exchange {
    /// What it shows.
    pub name: &'static str,
    /// The service it talks to.
    pub service: Service,
    /// Its connections (or its one datagram).
    pub conns: &'static [Conn],
}

const fn conn(send: &'static [u8], expect: &'static [u8]) -> Conn {
    Conn {
        from: CLIENT,
        send,
        half_close: false,
        expect,
    }
}

/// One byte longer than the echo server's line buffer, then a newline.
const LONG_LINE: [u8; LINE_CAPACITY + 2] = {
    let mut line = [b'a'; LINE_CAPACITY + 2];
    line[LINE_CAPACITY + 1] = b'\n';
    line
};

/// What the client does, in order; each server request serves one
/// connection of it.
pub const SCRIPT: &[Exchange] = &[
    Exchange {
        name: "three clients queued in the backlog at once",
        service: Service::Upper,
        conns: &[
            conn(b"first\n", b"FIRST"),
            conn(b"second\n", b"SECOND"),
            conn(b"third\n", b"THIRD"),
        ],
    },
    Exchange {
        name: "line echo until the client closes",
        service: Service::Echo,
        conns: &[Conn {
            half_close: true,
            ..conn(b"one\ntwo\nthree\n", b"one\ntwo\nthree\n")
        }],
    },
    Exchange {
        name: "UDP upper-caser",
        service: Service::Datagram,
        conns: &[conn(b"  hello udp  ", b"HELLO UDP")],
    },
    Exchange {
        name: "verify_request refuses 10.0.0.66: EOF, no reply",
        service: Service::Upper,
        conns: &[Conn {
            from: STRANGER,
            ..conn(b"let me in\n", b"")
        }],
    },
    Exchange {
        name: "a line longer than rfile: handle_error, EOF",
        service: Service::Echo,
        conns: &[conn(&LONG_LINE, b"")],
    },
    Exchange {
        name: "a client that stops sending: read timeout, handle_error, EOF",
        service: Service::Echo,
        conns: &[conn(b"one line\n", b"one line\n")],
    },
    Exchange {
        name: "the server still serves after the errors",
        service: Service::Echo,
        conns: &[Conn {
            half_close: true,
            ..conn(b"still serving\n", b"still serving\n")
        }],
    },
];

// --------------------------------------------------------------- client ---

/// How one connection of the running exchange is doing.
#[derive(Default)]
struct Progress {
    sent: usize,
    reply: heapless::Vec<u8, 64>,
    eof: bool,
    finished: bool,
    trouble: Option<&'static str>,
}

/// The client: its own stack on the other end of the cable, [`BACKLOG`] TCP
/// sockets and a UDP socket, playing [`SCRIPT`] one exchange at a time.
///
/// It never blocks: [`step`](Self::step) moves it on as far as it can, and
/// the server calls it whenever it waits.
pub struct Client {
    iface: Interface,
    device: End,
    sockets: SocketSet<'static>,
    tcp: [SocketHandle; BACKLOG],
    udp: SocketHandle,
    next: usize,
    started_at: Option<u64>,
    progress: [Progress; BACKLOG],
    port: u16,
}

impl Client {
    fn new(
        mut device: End,
        slots: &'static mut [SocketStorage<'static>],
        tcp: [tcp::Socket<'static>; BACKLOG],
        mut udp: udp::Socket<'static>,
    ) -> Self {
        let mut iface = Interface::new(config(2), &mut device, smol_now());
        iface.update_ip_addrs(|addrs| {
            for ip in [CLIENT, STRANGER] {
                addrs.push(IpCidr::new(ip, 24)).expect("two addresses fit");
            }
        });
        let mut sockets = SocketSet::new(slots);
        let tcp = tcp.map(|mut socket| {
            // It must acknowledge the server's FIN before the socket is
            // reused for the next exchange, not 10 ms later.
            socket.set_ack_delay(None);
            sockets.add(socket)
        });
        udp.bind((CLIENT, CLIENT_UDP_PORT)).expect("bind");
        let udp = sockets.add(udp);
        Client {
            iface,
            device,
            sockets,
            tcp,
            udp,
            next: 0,
            started_at: None,
            progress: Default::default(),
            port: 49152,
        }
    }

    /// Whether the whole script has been played.
    pub fn done(&self) -> bool {
        self.next == SCRIPT.len()
    }

    /// Frames this end sent that the cable dropped (it should be none).
    pub fn dropped(&self) -> usize {
        self.device.dropped()
    }

    /// Polls the stack and moves the script on as far as it can.
    pub fn step(&mut self) {
        self.iface
            .poll(smol_now(), &mut self.device, &mut self.sockets);
        let Some(exchange) = SCRIPT.get(self.next) else {
            return;
        };
        let now = now_ms();
        match self.started_at {
            None => {
                self.start(exchange);
                self.started_at = Some(now);
            }
            Some(start) => {
                let late = now.saturating_sub(start) > EXCHANGE_TIMEOUT_MS;
                if self.advance(exchange, late) {
                    self.report(exchange, now - start);
                    self.next += 1;
                    self.started_at = None;
                }
            }
        }
        // Sends what was queued now rather than at the next step.
        self.iface
            .poll(smol_now(), &mut self.device, &mut self.sockets);
    }

    fn start(&mut self, exchange: &Exchange) {
        hprintln!("[{}/{}] {}", self.next + 1, SCRIPT.len(), exchange.name);
        let server = IpEndpoint::new(SERVER, exchange.service.port());
        for (i, conn) in exchange.conns.iter().enumerate() {
            self.progress[i] = Progress::default();
            if exchange.service == Service::Datagram {
                let socket = self.sockets.get_mut::<udp::Socket>(self.udp);
                if socket.send_slice(conn.send, server).is_err() {
                    self.progress[i].trouble = Some(" but sending failed");
                }
                continue;
            }
            let local = (conn.from, self.port);
            self.port = self.port.checked_add(1).unwrap_or(49152);
            let socket = self.sockets.get_mut::<tcp::Socket>(self.tcp[i]);
            if socket.connect(self.iface.context(), server, local).is_err() {
                self.progress[i].trouble = Some(" but connecting failed");
            }
        }
    }

    /// Moves every connection on; true once all have finished (or `late`).
    fn advance(&mut self, exchange: &Exchange, late: bool) -> bool {
        let mut all_finished = true;
        for (i, conn) in exchange.conns.iter().enumerate() {
            let progress = &mut self.progress[i];
            if progress.trouble.is_some() {
                progress.finished = true;
            }
            if progress.finished {
                continue;
            }
            if exchange.service == Service::Datagram {
                let socket = self.sockets.get_mut::<udp::Socket>(self.udp);
                if let Ok((data, _)) = socket.recv() {
                    keep(progress, data);
                    progress.finished = true;
                }
            } else {
                let socket = self.sockets.get_mut::<tcp::Socket>(self.tcp[i]);
                advance_tcp(socket, conn, progress);
                if late && !progress.finished {
                    socket.abort();
                }
            }
            if late && !progress.finished {
                progress.trouble = Some(" but timed out");
                progress.finished = true;
            }
            all_finished &= progress.finished;
        }
        all_finished
    }

    fn report(&self, exchange: &Exchange, took_ms: u64) {
        let port = exchange.service.port();
        for (conn, progress) in exchange.conns.iter().zip(&self.progress) {
            let reply = Text(&progress.reply);
            let ok = progress.trouble.is_none() && progress.reply == conn.expect;
            let end = match (exchange.service, progress.trouble) {
                (_, Some(trouble)) => trouble,
                (Service::Datagram, None) => "",
                (_, None) => " + EOF",
            };
            check(
                ok,
                format_args!(
                    "{} -> :{port} sent {}, got {reply}{end} ({took_ms} ms)",
                    conn.from,
                    Text(conn.send)
                ),
            );
        }
    }
}

/// Appends a reply chunk, noting a reply longer than any expected one.
fn keep(progress: &mut Progress, data: &[u8]) {
    if progress.reply.extend_from_slice(data).is_err() {
        progress.trouble = Some(" but the reply was too long");
    }
}

fn advance_tcp(socket: &mut tcp::Socket<'static>, conn: &Conn, progress: &mut Progress) {
    while socket.can_recv() {
        let _ = socket.recv(|data| {
            keep(progress, data);
            (data.len(), ())
        });
    }
    use tcp::State;
    match socket.state() {
        State::SynSent | State::SynReceived => {}
        State::Established | State::FinWait1 | State::FinWait2 => {
            if progress.sent < conn.send.len() && socket.can_send() {
                progress.sent += socket.send_slice(&conn.send[progress.sent..]).unwrap_or(0);
            }
            if progress.sent == conn.send.len()
                && conn.half_close
                && socket.state() == State::Established
            {
                socket.close();
            }
        }
        // The server closed: so does the client.
        State::CloseWait => {
            progress.eof = true;
            socket.close();
        }
        State::LastAck | State::Closing => progress.eof = true,
        State::TimeWait => {
            progress.eof = true;
            progress.finished = true;
        }
        State::Closed => {
            if !progress.eof {
                progress.trouble = Some(" but reset");
            }
            progress.finished = true;
        }
        State::Listen => {
            progress.trouble = Some(" but the socket listens");
            progress.finished = true;
        }
    }
}
