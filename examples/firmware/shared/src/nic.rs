//! What the two NIC images of every board (`nic`, `nic_bare`) share: their
//! services, the rules they serve them by, and their sockets' memory.
//!
//! Both serve the host through the board's NIC at [`ADDRESS`], QEMU's
//! user-mode network guest address (`serve.sh --tap` gives the host side of
//! its tap device the gateway's address, so the images need no other
//! setting).

use smoltcp::iface::SocketStorage;
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{IpAddress, IpCidr, IpEndpoint};

use crate::{say, Board};

/// The image's address: QEMU's user-mode guest address.
pub const ADDRESS: IpCidr = IpCidr::new(IpAddress::v4(10, 0, 2, 15), 24);

/// TCP, the docs' `MyTCPHandler` (`UpperOnce`).
pub const UPPER_PORT: u16 = 9999;
/// TCP, `EchoLines`.
pub const ECHO_PORT: u16 = 9998;
/// UDP, the docs' `MyUDPHandler` (`UpperDatagram`).
pub const UDP_PORT: u16 = 9999;
/// UDP: the datagram `stop` ends the image (see [`stop_requested`]).
pub const CONTROL_PORT: u16 = 9997;

/// Connections the upper-casing listener holds at once.
pub const UPPER_BACKLOG: usize = 8;
/// Connections the echo listener holds at once: one served, one waiting.
pub const ECHO_BACKLOG: usize = 2;
/// Each upper-casing socket's receive and send buffer: one request.
pub const UPPER_BUF: usize = 512;
/// Each echo socket's receive and send buffer: the TCP window of bulk
/// transfers.
pub const ECHO_BUF: usize = 4096;
/// The longest line the echo server takes (its `rfile` capacity).
pub const LINE_CAPACITY: usize = 1024;
/// How long the echo server waits for a client's next bytes.
pub const READ_TIMEOUT_MS: u64 = 5000;

/// Sockets in all: the two listeners', the UDP service's, the control's.
const SOCKETS: usize = UPPER_BACKLOG + ECHO_BACKLOG + 2;

/// Whom `verify_request` refuses: clients from ports above Linux's
/// ephemeral range (32768-60999), which only a client that binds its port
/// on purpose has. By port, because QEMU's user-mode network shows every
/// host client with the gateway's address (and keeps its port).
pub fn refused(client: &IpEndpoint) -> bool {
    client.port >= 61000
}

/// Says that the image serves, and what: serve.sh waits for this line
/// (`serving on ...`) before it gives the host's clients the addresses.
pub fn announce<B: Board>() {
    say!(
        B,
        "serving on {}: tcp {} (UpperOnce), tcp {} (EchoLines), udp {} (UpperDatagram), udp {} (stop)",
        ADDRESS.address(),
        UPPER_PORT,
        ECHO_PORT,
        UDP_PORT,
        CONTROL_PORT
    );
}

/// The control port, a plain smoltcp socket in both images (stopping is
/// the firmware's business, not a request to serve): true once the
/// datagram `stop` came, which is answered with `stopping`. Anything else
/// is reported and ignored.
pub fn stop_requested<B: Board>(socket: &mut udp::Socket<'_>) -> bool {
    let mut packet = [0; 16];
    let Ok((n, meta)) = socket.recv_slice(&mut packet) else {
        return false;
    };
    if packet[..n].trim_ascii() != b"stop" {
        say!(B, "control: {}: unknown command", meta.endpoint);
        return false;
    }
    let _ = socket.send_slice(b"stopping\n", meta.endpoint);
    true
}

/// Every socket buffer: all zero bits, so a `static` of it is placed in
/// `.bss` and costs no flash.
pub struct NicMemory {
    upper: [[[u8; UPPER_BUF]; 2]; UPPER_BACKLOG],
    echo: [[[u8; ECHO_BUF]; 2]; ECHO_BACKLOG],
    udp: UdpBuffers,
    control: UdpBuffers,
}

/// Socket slots and UDP metadata. Not all zero bits (empty slots are
/// `None`s), so a `static` of it would be `.data`, copied from flash: build
/// it at run time (into a `singleton!`) instead.
pub struct NicSlots {
    sockets: [SocketStorage<'static>; SOCKETS],
    udp: UdpMeta,
    control: UdpMeta,
}

impl NicSlots {
    /// Empty slots.
    pub const fn new() -> Self {
        NicSlots {
            sockets: [SocketStorage::EMPTY; SOCKETS],
            udp: UdpMeta::new(),
            control: UdpMeta::new(),
        }
    }
}

impl Default for NicSlots {
    fn default() -> Self {
        Self::new()
    }
}

/// What a NIC image's stack is built from: the socket slots and one
/// unbound socket per service.
pub struct NicParts {
    /// Room for every socket below.
    pub slots: &'static mut [SocketStorage<'static>],
    /// The upper-casing listener's sockets.
    pub upper: [tcp::Socket<'static>; UPPER_BACKLOG],
    /// The line echo's sockets.
    pub echo: [tcp::Socket<'static>; ECHO_BACKLOG],
    /// The datagram upper-caser's socket.
    pub udp: udp::Socket<'static>,
    /// The control socket, bound to [`CONTROL_PORT`].
    pub control: udp::Socket<'static>,
}

impl NicMemory {
    /// Zeroed memory, for a `static`.
    pub const fn new() -> Self {
        NicMemory {
            upper: [[[0; UPPER_BUF]; 2]; UPPER_BACKLOG],
            echo: [[[0; ECHO_BUF]; 2]; ECHO_BACKLOG],
            udp: UdpBuffers::new(),
            control: UdpBuffers::new(),
        }
    }

    /// Builds the sockets (without delayed ACKs).
    pub fn split(&'static mut self, slots: &'static mut NicSlots) -> NicParts {
        let mut control = udp_socket(&mut self.control, &mut slots.control);
        control.bind(CONTROL_PORT).expect("a port to bind");
        NicParts {
            slots: &mut slots.sockets[..],
            upper: self.upper.each_mut().map(tcp_socket).map(no_ack_delay),
            echo: self.echo.each_mut().map(tcp_socket).map(no_ack_delay),
            udp: udp_socket(&mut self.udp, &mut slots.udp),
            control,
        }
    }
}

/// Both images acknowledge at once: the bare one must (the ACK of a
/// client's FIN has to leave before its socket listens again and forgets
/// the client), and the two must run TCP alike to be compared.
fn no_ack_delay(mut socket: tcp::Socket<'static>) -> tcp::Socket<'static> {
    socket.set_ack_delay(None);
    socket
}

impl Default for NicMemory {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------- memory ---

/// A UDP socket's payload buffers.
pub struct UdpBuffers {
    rx: [u8; UDP_BUF],
    tx: [u8; UDP_BUF],
}

/// Each UDP socket's receive and send payload buffer.
pub const UDP_BUF: usize = 256;

/// A UDP socket's packet metadata.
pub struct UdpMeta {
    rx: [udp::PacketMetadata; 2],
    tx: [udp::PacketMetadata; 2],
}

impl UdpBuffers {
    /// Zeroed buffers.
    pub const fn new() -> Self {
        UdpBuffers {
            rx: [0; UDP_BUF],
            tx: [0; UDP_BUF],
        }
    }
}

impl Default for UdpBuffers {
    fn default() -> Self {
        Self::new()
    }
}

impl UdpMeta {
    /// Empty metadata.
    pub const fn new() -> Self {
        UdpMeta {
            rx: [udp::PacketMetadata::EMPTY; 2],
            tx: [udp::PacketMetadata::EMPTY; 2],
        }
    }
}

impl Default for UdpMeta {
    fn default() -> Self {
        Self::new()
    }
}

/// A UDP socket over `buffers` and `meta`.
pub fn udp_socket(
    buffers: &'static mut UdpBuffers,
    meta: &'static mut UdpMeta,
) -> udp::Socket<'static> {
    udp::Socket::new(
        udp::PacketBuffer::new(&mut meta.rx[..], &mut buffers.rx[..]),
        udp::PacketBuffer::new(&mut meta.tx[..], &mut buffers.tx[..]),
    )
}

/// A TCP socket over a receive and a send buffer.
pub fn tcp_socket<const N: usize>(buffers: &'static mut [[u8; N]; 2]) -> tcp::Socket<'static> {
    let [rx, tx] = buffers;
    tcp::Socket::new(
        tcp::SocketBuffer::new(&mut rx[..]),
        tcp::SocketBuffer::new(&mut tx[..]),
    )
}
