//! A forged datagram cannot make a UDP server answer itself: one whose
//! source is the server's own port on this host is dropped before any
//! handler is built, so it cannot start a loop at a full core.
//!
//! The datagrams are forged through a raw socket (IPv4 header and all) on
//! loopback, which needs root (`CAP_NET_RAW`); without it the test fails,
//! saying so, rather than pass untested.
#![cfg(feature = "std")]
#![cfg(not(target_os = "wasi"))]

mod util;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use socketserver::handlers::UpperDatagram;
use socketserver::os::socket2::{Domain, Protocol, SockAddr, Socket, Type};
use socketserver::ServerBuilder;
use util::{Builds, Serving, PATIENCE};

/// `IPPROTO_RAW`: the caller writes the IP header (`IP_HDRINCL`).
const IPPROTO_RAW: i32 = 255;
const UDP: u8 = 17;

/// Sends one UDP datagram from `from` (whatever it is) to `to`. Linux fills
/// in the IP header's checksum, length and id; a zero UDP checksum means
/// none (allowed over IPv4).
fn forge(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) {
    let raw = match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_RAW))) {
        Ok(raw) => raw,
        Err(err) if err.kind() == ErrorKind::PermissionDenied => {
            panic!("forging a source address needs root (CAP_NET_RAW): {err}")
        }
        Err(err) => panic!("raw socket: {err}"),
    };
    let udp_len = u16::try_from(8 + payload.len()).unwrap();
    let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, UDP, 0, 0];
    packet.extend(from.ip().octets());
    packet.extend(to.ip().octets());
    packet.extend(from.port().to_be_bytes());
    packet.extend(to.port().to_be_bytes());
    packet.extend(udp_len.to_be_bytes());
    packet.extend([0, 0]);
    packet.extend(payload);
    let dest = SockAddr::from(SocketAddrV4::new(*to.ip(), 0));
    let sent = raw
        .send_to(&packet, &dest)
        .expect("send the forged datagram");
    assert_eq!(sent, packet.len());
}

/// A client that asks `server` once and checks the answer: the server
/// still serves, and its reply is no longer than the request.
fn ask(client: &UdpSocket, server: SocketAddr) {
    let request = b" hello ";
    client.send_to(request, server).unwrap();
    let mut reply = [0u8; 64];
    let (n, from) = client.recv_from(&mut reply).expect("a reply");
    assert_eq!(from.port(), server.port());
    assert_eq!(&reply[..n], b"HELLO");
    assert!(n <= request.len(), "the reply is larger than the request");
}

/// One datagram whose source is the server's own address (for a wildcard
/// bind: its port on loopback), sent before two well-behaved ones: only
/// those two are handled. Before the fix, the forged one was answered to
/// the server itself, whose answer it answered, for ever.
#[test]
fn a_datagram_from_the_servers_own_address_is_not_answered() {
    for bind in ["127.0.0.1:0", "0.0.0.0:0"] {
        let builds = Builds::default();
        let server = ServerBuilder::udp(bind)
            .build(builds.factory::<UpperDatagram>())
            .unwrap();
        let port = server.local_addr().port();
        let own = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let _serving = Serving::start(server, Duration::from_millis(100));

        // On loopback the forged datagram is queued before `send_to`
        // returns, so it is ahead of the client's.
        forge(own, own, b"answer yourself");
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        ask(&client, SocketAddr::V4(own));
        ask(&client, SocketAddr::V4(own));
        assert_eq!(
            builds.count(),
            2,
            "bound at {bind}: a datagram from the server's own address was handled"
        );
    }
}
