//! What the two NIC images (`nic`, `nic_bare`) share: their services, the
//! rules they serve them by, and their static memory.
//!
//! Both serve the host through the emulated Stellaris controller
//! ([`crate::stellaris_enet`]) at [`ADDRESS`], QEMU's user-mode network
//! guest address (`serve.sh --tap` gives the host side of its tap device
//! the gateway's address, so the images need no other setting).

use cortex_m_semihosting::hprintln;
use smoltcp::iface::SocketStorage;
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{IpAddress, IpCidr, IpEndpoint};

use crate::stellaris_enet::{Buffers, StellarisEnet};
use crate::{tcp_socket, udp_socket, UdpBuffers, UdpMeta};

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

/// The control port, a plain smoltcp socket in both images (stopping is
/// the firmware's business, not a request to serve): true once the
/// datagram `stop` came, which is answered with `stopping`. Anything else
/// is reported and ignored.
pub fn stop_requested(socket: &mut udp::Socket<'_>) -> bool {
    let mut packet = [0; 16];
    let Ok((n, meta)) = socket.recv_slice(&mut packet) else {
        return false;
    };
    if packet[..n].trim_ascii() != b"stop" {
        hprintln!("control: {}: unknown command", meta.endpoint);
        return false;
    }
    let _ = socket.send_slice(b"stopping\n", meta.endpoint);
    true
}

/// The NIC's frame buffers and every socket buffer: all zero bits, so a
/// `static` of it is placed in `.bss` and costs no flash. Both images keep
/// it in the entry point's `static mut`.
pub struct NicMemory {
    enet: Buffers,
    upper: [[[u8; UPPER_BUF]; 2]; UPPER_BACKLOG],
    echo: [[[u8; ECHO_BUF]; 2]; ECHO_BACKLOG],
    udp: UdpBuffers,
    control: UdpBuffers,
}

/// Socket slots and UDP metadata. Not all zero bits: build it at run time
/// into `cortex_m::singleton!` (see [`crate::Slots`]).
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

/// What a NIC image is built from: the device, the socket slots and one
/// unbound socket per service.
pub struct NicParts {
    /// The Ethernet controller.
    pub device: StellarisEnet<'static>,
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
            enet: Buffers::new(),
            upper: [[[0; UPPER_BUF]; 2]; UPPER_BACKLOG],
            echo: [[[0; ECHO_BUF]; 2]; ECHO_BACKLOG],
            udp: UdpBuffers::new(),
            control: UdpBuffers::new(),
        }
    }

    /// Takes the controller and builds the sockets (without delayed ACKs).
    ///
    /// # Panics
    /// If the controller was taken before.
    pub fn split(&'static mut self, slots: &'static mut NicSlots) -> NicParts {
        let mut control = udp_socket(&mut self.control, &mut slots.control);
        control.bind(CONTROL_PORT).expect("a port to bind");
        NicParts {
            device: StellarisEnet::take(&mut self.enet).expect("the controller is taken once"),
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

/// The interrupt handlers both NIC images need, defined in the binary that
/// invokes it (cortex-m-rt wants them there): SysTick advances the
/// millisecond clock, and the device interrupt goes to the Stellaris
/// controller's handler. Without a peripheral access crate, every device
/// interrupt arrives at `DefaultHandler`.
#[macro_export]
macro_rules! nic_exceptions {
    () => {
        #[cortex_m_rt::exception]
        fn SysTick() {
            $crate::tick();
        }

        // SAFETY: cortex-m-rt makes a default handler `unsafe fn` because it
        // also catches NMI, which preempts critical sections; this one
        // touches no data, only the controller's interrupt status.
        #[allow(unsafe_code)]
        #[cortex_m_rt::exception]
        unsafe fn DefaultHandler(irqn: i16) {
            if irqn == $crate::stellaris_enet::IRQ as i16 {
                $crate::stellaris_enet::StellarisEnet::on_interrupt();
            } else {
                panic!("unexpected exception {}", irqn);
            }
        }
    };
}
