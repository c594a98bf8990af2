//! bpo-22435: a failed bind leaks no descriptor. Alone in its test binary,
//! so no other test opens descriptors while it counts them.
#![cfg(feature = "std")]
#![cfg(not(target_os = "wasi"))]

mod util;

use std::io::ErrorKind;

use socketserver::handlers::{UpperDatagram, UpperOnce};
use socketserver::{TcpServer, UdpServer, UnixStreamServer};
use util::{open_fds, TempDir};

#[test]
fn a_thousand_failed_binds_leak_no_descriptor() {
    let taken = TcpServer::new("127.0.0.1:0", || UpperOnce).unwrap();
    let tcp = *taken.local_addr();
    let taken_udp = UdpServer::new("127.0.0.1:0", || UpperDatagram).unwrap();
    let udp = *taken_udp.local_addr();
    let dir = TempDir::new("leak");
    let live = dir.path("live.sock");
    let _live = UnixStreamServer::new(&live, || UpperOnce).unwrap();
    let missing_dir = dir.path("missing/s.sock");

    let before = open_fds();
    for i in 0..1024 {
        let err = match i % 4 {
            0 => TcpServer::new(tcp, || UpperOnce).err(),
            1 => UdpServer::new(udp, || UpperDatagram).err(),
            2 => UnixStreamServer::new(&live, || UpperOnce).err(),
            _ => UnixStreamServer::new(&missing_dir, || UpperOnce).err(),
        };
        let kind = err.expect("bind must fail").kind();
        assert!(
            matches!(kind, ErrorKind::AddrInUse | ErrorKind::NotFound),
            "{kind:?}"
        );
    }
    assert_eq!(open_fds(), before);
}
