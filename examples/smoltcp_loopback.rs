//! The docs' TCP and UDP handlers on the smoltcp stack, with the server and
//! a client on two stacks joined by an in-memory cable: no root, no device,
//! no threads and no heap, as firmware would run it.
//!
//! The client is a state machine stepped from the server stack's idle hook,
//! so the one thread serves and plays the client. Prints the exchange.
//!
//! Usage: `cargo run --example smoltcp_loopback --features smoltcp`

#[path = "common/args.rs"]
mod args;

use core::cell::RefCell;
use core::time::Duration;

use socketserver::handlers::{UpperDatagram, UpperOnce};
use socketserver::smoltcp::iface::{Config, SocketHandle, SocketStorage};
use socketserver::smoltcp::memory::{Cable, CableEnd, StepClock};
use socketserver::smoltcp::socket::{tcp, udp};
use socketserver::smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint};
use socketserver::smoltcp::{Net, Spin, Stack, TcpListener, UdpSocket};
use socketserver::{Server, ShutdownFlag, SyncDispatch};

const SERVER: IpAddress = IpAddress::v4(10, 0, 0, 1);
const CLIENT: IpAddress = IpAddress::v4(10, 0, 0, 2);
const PORT: u16 = 9999;
const REQUEST: &[u8] = b"hello world\n";

/// Where the client is in its script.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    Connect,
    Send,
    Receive,
    SendDatagram,
    ReceiveDatagram,
    Done,
}

/// The client: its own stack, one TCP and one UDP socket, and a script.
struct Client<'a> {
    stack: Stack<'a, CableEnd<'a>, StepClock, Spin>,
    tcp: SocketHandle,
    udp: SocketHandle,
    step: Step,
    tcp_reply: heapless::Vec<u8, 64>,
    udp_reply: heapless::Vec<u8, 64>,
}

impl Client<'_> {
    /// Runs the stack once and moves the script on as far as it can.
    fn step(&mut self) {
        self.stack.poll();
        let server = IpEndpoint::new(SERVER, PORT);
        let (iface, sockets) = self.stack.parts();
        match self.step {
            Step::Connect => {
                let socket = sockets.get_mut::<tcp::Socket>(self.tcp);
                socket
                    .connect(iface.context(), server, 49152)
                    .expect("connect");
                println!("client: connecting to {server}");
                self.step = Step::Send;
            }
            Step::Send => {
                let socket = sockets.get_mut::<tcp::Socket>(self.tcp);
                if socket.can_send() {
                    socket.send_slice(REQUEST).expect("send");
                    println!("client -> {server} (TCP): {:?}", as_text(REQUEST));
                    self.step = Step::Receive;
                }
            }
            Step::Receive => {
                let socket = sockets.get_mut::<tcp::Socket>(self.tcp);
                while socket.can_recv() {
                    let mut chunk = [0; 64];
                    let n = socket.recv_slice(&mut chunk).expect("recv");
                    let _ = self.tcp_reply.extend_from_slice(&chunk[..n]);
                }
                if !socket.may_recv() {
                    println!(
                        "client <- {server} (TCP): {:?}, then EOF",
                        as_text(&self.tcp_reply)
                    );
                    socket.close();
                    self.step = Step::SendDatagram;
                }
            }
            Step::SendDatagram => {
                let socket = sockets.get_mut::<udp::Socket>(self.udp);
                socket.send_slice(REQUEST, server).expect("send_to");
                println!("client -> {server} (UDP): {:?}", as_text(REQUEST));
                self.step = Step::ReceiveDatagram;
            }
            Step::ReceiveDatagram => {
                let socket = sockets.get_mut::<udp::Socket>(self.udp);
                if let Ok((data, meta)) = socket.recv() {
                    let _ = self.udp_reply.extend_from_slice(data);
                    println!("client <- {} (UDP): {:?}", meta.endpoint, as_text(data));
                    self.step = Step::Done;
                }
            }
            Step::Done => {}
        }
    }
}

fn as_text(bytes: &[u8]) -> &str {
    core::str::from_utf8(bytes).unwrap_or("<binary>")
}

fn config(mac: u8) -> Config {
    Config::new(EthernetAddress([2, 0, 0, 0, 0, mac]).into())
}

fn main() {
    args::Args::parse("usage: smoltcp_loopback (no arguments)").done();
    let mut cable = Cable::<16>::new();
    let (server_end, client_end) = cable.split();
    let clock = || StepClock::new(Duration::from_millis(1));

    // The client's side: every buffer is a local array.
    let (mut client_rx, mut client_tx) = ([0; 1024], [0; 1024]);
    let (mut udp_meta, mut udp_payload) = ([udp::PacketMetadata::EMPTY; 4], [0; 1024]);
    let mut client_slots = [SocketStorage::EMPTY; 2];
    let mut stack = Stack::new(config(2), client_end, &mut client_slots, clock(), Spin);
    stack.add_ip(IpCidr::new(CLIENT, 24)).expect("address");
    let tcp = tcp::Socket::new(
        tcp::SocketBuffer::new(&mut client_rx[..]),
        tcp::SocketBuffer::new(&mut client_tx[..]),
    );
    let (udp_rx_meta, udp_tx_meta) = udp_meta.split_at_mut(2);
    let (udp_rx, udp_tx) = udp_payload.split_at_mut(512);
    let mut udp = udp::Socket::new(
        udp::PacketBuffer::new(udp_rx_meta, udp_rx),
        udp::PacketBuffer::new(udp_tx_meta, udp_tx),
    );
    udp.bind(40000).expect("bind");
    let tcp = stack.sockets_mut().add(tcp);
    let udp = stack.sockets_mut().add(udp);
    let client = RefCell::new(Client {
        stack,
        tcp,
        udp,
        step: Step::Connect,
        tcp_reply: heapless::Vec::new(),
        udp_reply: heapless::Vec::new(),
    });

    // The server's side, whose idle time plays the client.
    let (mut server_rx, mut server_tx) = ([0; 1024], [0; 1024]);
    let (mut server_meta, mut server_payload) = ([udp::PacketMetadata::EMPTY; 4], [0; 1024]);
    let mut server_slots = [SocketStorage::EMPTY; 2];
    let play_client = |_: Duration| client.borrow_mut().step();
    let mut server_stack = Stack::new(
        config(1),
        server_end,
        &mut server_slots,
        clock(),
        play_client,
    );
    server_stack
        .add_ip(IpCidr::new(SERVER, 24))
        .expect("address");
    let server_stack = RefCell::new(server_stack);
    let shutdown = ShutdownFlag::new();

    let socket = tcp::Socket::new(
        tcp::SocketBuffer::new(&mut server_rx[..]),
        tcp::SocketBuffer::new(&mut server_tx[..]),
    );
    let listener = TcpListener::bind(&server_stack, PORT, [socket], &shutdown).expect("listen");
    let mut tcp_server = Server::new(
        listener,
        SyncDispatch::<_, _, [u8; 256], [u8; 0]>::new(|| UpperOnce),
        clock(),
    );
    tcp_server.set_timeout(Some(Duration::from_secs(10)));

    let (udp_rx_meta, udp_tx_meta) = server_meta.split_at_mut(2);
    let (udp_rx, udp_tx) = server_payload.split_at_mut(512);
    let socket = udp::Socket::new(
        udp::PacketBuffer::new(udp_rx_meta, udp_rx),
        udp::PacketBuffer::new(udp_tx_meta, udp_tx),
    );
    let socket = UdpSocket::bind(&server_stack, PORT, socket, &shutdown).expect("bind");
    let mut udp_server = Server::new(
        socket,
        SyncDispatch::<_, _, [u8; 256], [u8; 256]>::new(|| UpperDatagram),
        clock(),
    );
    udp_server.set_timeout(Some(Duration::from_secs(10)));

    println!("listening on {SERVER}:{PORT} (TCP and UDP, in memory)");
    tcp_server.handle_request().expect("TCP request");
    udp_server.handle_request().expect("UDP request");
    tcp_server.server_close();
    udp_server.server_close();
    // The server is done; the last reply is still on its way to the client.
    for _ in 0..1000 {
        if client.borrow().step == Step::Done {
            break;
        }
        client.borrow_mut().step();
    }

    let client = client.borrow();
    assert_eq!(
        client.step,
        Step::Done,
        "the client did not finish its script"
    );
    assert_eq!(&client.tcp_reply[..], b"HELLO WORLD");
    assert_eq!(&client.udp_reply[..], b"HELLO WORLD");
}
