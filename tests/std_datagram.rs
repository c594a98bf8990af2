//! Datagram servers (UDP, Unix datagram): echo through the datagram
//! handler, truncation, and replies to clients that cannot receive them.
#![cfg(feature = "std")]
#![cfg(not(target_os = "wasi"))]

mod util;

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use socketserver::embedded_io::{ErrorKind, Write as _};
use socketserver::handlers::UpperDatagram;
use socketserver::{
    DatagramHandler, DatagramRequest, Error, ServerBuilder, UdpServer, UnixDatagramServer,
};
use util::{Recorder, Serving, TempDir, PATIENCE};

const POLL: Duration = Duration::from_millis(500);

fn udp_client() -> UdpSocket {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client
}

fn udp_exchange(client: &UdpSocket, server: std::net::SocketAddr, data: &[u8]) -> Vec<u8> {
    client.send_to(data, server).unwrap();
    let mut buf = [0u8; 9000];
    let (n, from) = client.recv_from(&mut buf).expect("a reply");
    assert_eq!(from, server);
    buf[..n].to_vec()
}

#[test]
fn udp_echo_through_the_datagram_handler() {
    let server = UdpServer::new("127.0.0.1:0", || UpperDatagram).unwrap();
    let addr = *server.local_addr();
    assert_ne!(addr.port(), 0);
    let _serving = Serving::start(server, POLL);
    let client = udp_client();
    for word in ["one", "two", "three"] {
        let reply = udp_exchange(&client, addr, format!(" {word}\n").as_bytes());
        assert_eq!(reply, word.to_uppercase().as_bytes());
    }
}

#[test]
fn unix_datagram_echo_to_a_bound_client() {
    let dir = TempDir::new("udgram");
    let path = dir.path("server.sock");
    let server = UnixDatagramServer::new(&path, || UpperDatagram).unwrap();
    let _serving = Serving::start(server, POLL);

    let client = UnixDatagram::bind(dir.path("client.sock")).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    for _ in 0..3 {
        client.send_to(b"hello unix\n", &path).unwrap();
        let mut buf = [0u8; 64];
        let n = client.recv(&mut buf).expect("a reply");
        assert_eq!(&buf[..n], b"HELLO UNIX");
    }
}

#[test]
fn reply_to_an_unbound_client_is_reported_and_serving_goes_on() {
    let dir = TempDir::new("udgram-unbound");
    let path = dir.path("server.sock");
    let hooks = Recorder::default();
    let server = ServerBuilder::unix_datagram(&path)
        .hooks(hooks.clone())
        .build(|| UpperDatagram)
        .unwrap();
    let _serving = Serving::start(server, POLL);

    let unbound = UnixDatagram::unbound().unwrap();
    unbound.send_to(b"nobody hears\n", &path).unwrap();
    let errors = hooks.wait_errors(1);
    assert_eq!(errors[0].1.kind(), ErrorKind::AddrNotAvailable);
    assert!(errors[0].0.contains("Unnamed"), "{}", errors[0].0);

    let client = UnixDatagram::bind(dir.path("client.sock")).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(b"served\n", &path).unwrap();
    let mut buf = [0u8; 64];
    let n = client.recv(&mut buf).expect("a reply");
    assert_eq!(&buf[..n], b"SERVED");
}

/// Replies `T` for a truncated datagram, `W` for a whole one, then the
/// bytes it got.
#[derive(Default)]
struct Truncation;

impl<S: socketserver::ReplySocket> DatagramHandler<S> for Truncation {
    fn handle(&mut self, req: &mut DatagramRequest<'_, S>) -> Result<(), Error> {
        req.wfile
            .write_all(if req.truncated { b"T" } else { b"W" })?;
        let packet = req.rfile.packet();
        req.wfile.write_all(packet)
    }
}

#[test]
fn a_datagram_longer_than_max_packet_size_is_flagged_truncated() {
    let server = ServerBuilder::udp("127.0.0.1:0")
        .max_packet_size(8)
        .build(|| Truncation)
        .unwrap();
    let addr = *server.local_addr();
    let _serving = Serving::start(server, POLL);
    let client = udp_client();
    assert_eq!(udp_exchange(&client, addr, b"12345678"), b"W12345678");
    assert_eq!(udp_exchange(&client, addr, b"123456789"), b"T12345678");
}

#[test]
fn a_reply_longer_than_the_write_buffer_is_an_error() {
    let hooks = Recorder::default();
    let server = ServerBuilder::udp("127.0.0.1:0")
        .buffer_sizes(socketserver::BufferSizes::new(64, 4))
        .hooks(hooks.clone())
        .build(|| Truncation)
        .unwrap();
    let addr = *server.local_addr();
    let _serving = Serving::start(server, POLL);
    let client = udp_client();
    assert_eq!(udp_exchange(&client, addr, b"abc"), b"Wabc");
    client.send_to(b"abcd", addr).unwrap();
    assert!(
        matches!(
            hooks.wait_errors(1)[0].1,
            Error::ReplyTooLong { capacity: 4 }
        ),
        "{:?}",
        hooks.wait_errors(1)[0].1
    );
}
