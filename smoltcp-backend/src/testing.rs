//! Test support: a server stack and a peer stack on an in-memory cable, in
//! one thread (the server's idle time plays the peer), with the server's
//! polls and looks at its sockets counted.

use core::cell::RefCell;
use core::time::Duration;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::{tcp, udp, AnySocket};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};
use socketserver_core::{Instant, Listener, Readiness};

use crate::memory::{Cable, CableEnd, StepClock};
use crate::stack::{Busy, Idle, Net, Spin, Stack};

/// The server's address.
pub(crate) const SERVER: IpAddress = IpAddress::v4(10, 0, 0, 1);
/// The peer's address.
pub(crate) const PEER: IpAddress = IpAddress::v4(10, 0, 0, 2);
/// The port the tests serve on.
pub(crate) const PORT: u16 = 8080;

/// The peer's stack: polled by the server's idle hook.
pub(crate) type Peer = Stack<'static, CableEnd<'static>, StepClock, Spin>;
/// The server's stack, whose idle hook polls the peer and runs its script.
pub(crate) type Server = Stack<'static, CableEnd<'static>, StepClock, Busy<Box<dyn FnMut()>>>;

/// A stack with its looks at the socket set counted: every transport
/// operation looks once, so a take's looks are its scans.
pub(crate) struct Counted<S> {
    pub(crate) stack: S,
    pub(crate) looks: usize,
}

impl<'a, S: Net<'a>> Net<'a> for Counted<S> {
    fn now(&self) -> Instant {
        self.stack.now()
    }

    fn poll(&mut self) -> bool {
        self.stack.poll()
    }

    fn polls(&self) -> u32 {
        self.stack.polls()
    }

    fn idle_until(&mut self, deadline: Option<Instant>) {
        self.stack.idle_until(deadline)
    }

    fn parts(&mut self) -> (&mut Interface, &mut SocketSet<'a>) {
        self.looks += 1;
        self.stack.parts()
    }

    fn free_slots(&self) -> usize {
        self.stack.free_slots()
    }

    fn ephemeral_port(&mut self) -> u16 {
        self.stack.ephemeral_port()
    }
}

/// The two stacks.
pub(crate) struct Network {
    pub(crate) server: RefCell<Counted<Server>>,
    pub(crate) peer: &'static RefCell<Peer>,
}

impl Network {
    /// The server's (polls, looks) so far.
    pub(crate) fn counts(&self) -> (u32, usize) {
        let server = self.server.borrow();
        (server.stack.polls(), server.looks)
    }

    /// The state of the server's socket `handle`.
    pub(crate) fn server_state(&self, handle: SocketHandle) -> tcp::State {
        let server = self.server.borrow();
        server.stack.sockets().get::<tcp::Socket>(handle).state()
    }

    /// The state of the peer's socket `handle`.
    pub(crate) fn peer_state(&self, handle: SocketHandle) -> tcp::State {
        self.peer
            .borrow()
            .sockets()
            .get::<tcp::Socket>(handle)
            .state()
    }

    /// Runs `f` on the peer's socket `handle`.
    pub(crate) fn peer_socket<R>(
        &self,
        handle: SocketHandle,
        f: impl FnOnce(&mut tcp::Socket<'static>) -> R,
    ) -> R {
        f(self.peer.borrow_mut().sockets_mut().get_mut(handle))
    }

    /// Polls both stacks until no frame is in flight.
    pub(crate) fn settle(&self) {
        for _ in 0..20 {
            self.server.borrow_mut().poll();
            self.peer.borrow_mut().poll();
        }
    }

    /// Opens a connection from the peer to the server's [`PORT`], without
    /// driving either stack.
    pub(crate) fn dial(&self) -> SocketHandle {
        let mut peer = self.peer.borrow_mut();
        let port = peer.ephemeral_port();
        let (iface, sockets) = peer.parts();
        let handle = sockets.add(tcp_socket(1024));
        sockets
            .get_mut::<tcp::Socket>(handle)
            .connect(iface.context(), (SERVER, PORT), port)
            .expect("connect");
        handle
    }
}

/// Every reading of a test stack's clock moves it this far.
const STEP: Duration = Duration::from_micros(100);

fn stack<I: Idle<CableEnd<'static>>>(
    device: CableEnd<'static>,
    mac: u8,
    ip: IpAddress,
    idle: I,
) -> Stack<'static, CableEnd<'static>, StepClock, I> {
    let storage = Vec::from_iter((0..8).map(|_| SocketStorage::EMPTY)).leak();
    let config = Config::new(EthernetAddress([2, 0, 0, 0, 0, mac]).into());
    let mut stack = Stack::new(config, device, storage, StepClock::new(STEP), idle);
    stack.add_ip(IpCidr::new(ip, 24)).expect("an address fits");
    stack
}

/// The two stacks on a fresh cable; whenever the server idles, the peer is
/// polled and `script` runs on it.
pub(crate) fn network(mut script: impl FnMut(&mut Peer) + 'static) -> Network {
    let cable = Box::leak(Box::new(Cable::<32>::new()));
    let (server_end, peer_end) = cable.split();
    let peer: &'static RefCell<Peer> =
        Box::leak(Box::new(RefCell::new(stack(peer_end, 2, PEER, Spin))));
    let play: Box<dyn FnMut()> = Box::new(move || {
        let mut peer = peer.borrow_mut();
        peer.poll();
        script(&mut peer);
    });
    let server = stack(server_end, 1, SERVER, Busy(play));
    Network {
        server: RefCell::new(Counted {
            stack: server,
            looks: 0,
        }),
        peer,
    }
}

/// A peer that only answers at the TCP level: never reads, never closes.
pub(crate) fn silent(_: &mut Peer) {}

/// A peer that reads everything and closes once the server has closed.
pub(crate) fn polite(peer: &mut Peer) {
    for (_, socket) in peer.sockets_mut().iter_mut() {
        if let Some(socket) = tcp::Socket::downcast_mut(socket) {
            while socket.can_recv() && socket.recv(|data| (data.len(), ())).is_ok() {}
            if socket.state() == tcp::State::CloseWait {
                socket.close();
            }
        }
    }
}

/// A TCP socket with `size`-byte buffers each way.
pub(crate) fn tcp_socket(size: usize) -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; size].leak()),
        tcp::SocketBuffer::new(vec![0; size].leak()),
    )
}

/// A UDP socket with room for 4 datagrams and 2 KiB each way.
pub(crate) fn udp_socket() -> udp::Socket<'static> {
    let buffer = || {
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; 4].leak(),
            vec![0; 2048].leak(),
        )
    };
    udp::Socket::new(buffer(), buffer())
}

/// `n` TCP sockets for a backlog.
pub(crate) fn backlog<const N: usize>() -> [tcp::Socket<'static>; N] {
    core::array::from_fn(|_| tcp_socket(4096))
}

/// Takes a connection, waiting for one (bounded).
pub(crate) fn accept<L: Listener>(listener: &mut L) -> (L::Connection, L::Addr)
where
    L::Error: core::fmt::Debug,
{
    for _ in 0..10_000 {
        if let Some(accepted) = listener.try_accept().expect("try_accept") {
            return accepted;
        }
        let waited = listener.wait(Some(Duration::from_secs(1))).expect("wait");
        assert_ne!(waited, Readiness::Shutdown);
    }
    panic!("no connection to accept");
}
