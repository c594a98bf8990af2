//! A Unix socket path belongs to the server that bound it, listening yet
//! or not: a second server fails with `AddrInUse` and leaves the first
//! one's file, while a file nobody holds any more is still replaced.
#![cfg(feature = "std")]
#![cfg(not(target_os = "wasi"))]

mod util;

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use socketserver::handlers::UpperOnce;
use socketserver::{ServerBuilder, UnixDatagramServer};
use util::concurrent::unix_exchange;
use util::{Serving, TempDir};

fn inode(path: &Path) -> u64 {
    fs::symlink_metadata(path).expect("the socket file").ino()
}

/// Server A is bound but not listening yet (`bind_and_activate(false)`,
/// then `server_bind()` only), so a connection to its file is refused, as
/// to a stale one. Server B on the same path must not take it over.
#[test]
fn a_bound_but_not_listening_server_keeps_its_path() {
    let dir = TempDir::new("takeover");
    let path = dir.path("s.sock");
    let mut first = ServerBuilder::unix_stream(&path)
        .bind_and_activate(false)
        .build(|| UpperOnce)
        .unwrap();
    first.server_bind().unwrap();
    let bound = inode(&path);

    let second = ServerBuilder::unix_stream(&path).build(|| UpperOnce);
    let err = second.err().expect("a second server took the first's path");
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    assert_eq!(inode(&path), bound, "the first server's file was replaced");

    first.server_activate().unwrap();
    let _serving = Serving::start(first, Duration::from_millis(500));
    assert_eq!(unix_exchange(&path, b"still mine"), "STILL MINE");
}

/// The same for a datagram server, whose bound socket a probe could reach.
#[test]
fn a_bound_datagram_server_keeps_its_path() {
    let dir = TempDir::new("takeover-dgram");
    let path = dir.path("d.sock");
    let _first = UnixDatagramServer::new(&path, || socketserver::handlers::UpperDatagram).unwrap();
    let bound = inode(&path);
    let err = UnixDatagramServer::new(&path, || socketserver::handlers::UpperDatagram)
        .err()
        .expect("a second server took the first's path");
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    assert_eq!(inode(&path), bound);
}

/// A socket file whose server is gone (its lock file left behind too, as
/// after a crash) is replaced; closing leaves neither file.
#[test]
fn a_file_nobody_holds_is_replaced_and_closing_removes_the_lock() {
    let dir = TempDir::new("stale-lock");
    let path = dir.path("s.sock");
    let lock = dir.path("s.sock.lock");
    drop(UnixListener::bind(&path).unwrap());
    fs::write(&lock, b"").unwrap();

    let mut server = ServerBuilder::unix_stream(&path)
        .build(|| UpperOnce)
        .expect("a stale file and an unheld lock are taken over");
    assert!(lock.exists(), "the lock is held beside the socket");
    server.server_close();
    assert!(!path.exists(), "the socket file is removed");
    assert!(!lock.exists(), "the lock file is removed");
}
