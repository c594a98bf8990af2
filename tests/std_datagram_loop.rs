//! Two Unix datagram servers cannot be made to answer each other for ever.
//!
//! A client binds a path, replaces it with a symbolic link to server B's
//! socket, and sends one datagram to server A: A's reply goes to B, and B
//! would answer A, and so on, each at most of a core. A server of this
//! crate does not answer a datagram whose sender is the socket of another
//! live server of this crate (it holds `PATH.lock`): B drops A's reply,
//! says so in a warning, and the loop ends after one hop.
#![cfg(unix)]
#![cfg(feature = "std")]

mod util;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use socketserver::handlers::UpperDatagram;
use socketserver::UnixDatagramServer;
use util::{Builds, Serving, TempDir, PATIENCE};

/// Keeps every warning logged, for the test to wait on.
struct Warnings(Mutex<Vec<String>>, Condvar);

impl log::Log for Warnings {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            self.0.lock().unwrap().push(record.args().to_string());
            self.1.notify_all();
        }
    }

    fn flush(&self) {}
}

static WARNINGS: Warnings = Warnings(Mutex::new(Vec::new()), Condvar::new());

impl Warnings {
    fn wait(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = self.0.lock().unwrap();
        loop {
            if let Some(hit) = seen.iter().find(|w| wanted(w)) {
                return hit.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Not while holding the lock, which the logger needs.
                let so_far = seen.clone();
                drop(seen);
                panic!("no such warning; seen: {so_far:?}");
            }
            seen = self.1.wait_timeout(seen, left).unwrap().0;
        }
    }
}

#[test]
fn a_reply_redirected_to_another_server_is_not_answered() {
    log::set_logger(&WARNINGS).expect("the only logger of this binary");
    log::set_max_level(log::LevelFilter::Warn);
    let dir = TempDir::new("dgram-loop");
    let (a_path, b_path) = (dir.path("a.sock"), dir.path("b.sock"));
    let (a_served, b_served) = (Builds::default(), Builds::default());
    let a = UnixDatagramServer::new(&a_path, a_served.factory::<UpperDatagram>()).unwrap();
    let b = UnixDatagramServer::new(&b_path, b_served.factory::<UpperDatagram>()).unwrap();
    let _a = Serving::start(a, Duration::from_millis(100));
    let _b = Serving::start(b, Duration::from_millis(100));

    let client_path = dir.path("client.sock");
    let client = UnixDatagram::bind(&client_path).unwrap();
    fs::remove_file(&client_path).unwrap();
    std::os::unix::fs::symlink(&b_path, &client_path).unwrap();
    client.send_to(b"ping", &a_path).unwrap();

    let a_name = a_path.display().to_string();
    let warning = WARNINGS.wait(|w| w.contains(&a_name) && w.contains("another server"));
    eprintln!("{warning}");
    assert_eq!(
        (a_served.count(), b_served.count()),
        (1, 0),
        "A answered the client once; B answered nothing"
    );

    // B still serves its clients, and nothing else went round meanwhile.
    let other = UnixDatagram::bind(dir.path("other.sock")).unwrap();
    other.set_read_timeout(Some(PATIENCE)).unwrap();
    other.send_to(b"hello", &b_path).unwrap();
    let mut reply = [0u8; 16];
    let n = other.recv(&mut reply).unwrap();
    assert_eq!(&reply[..n], b"HELLO");
    assert_eq!((a_served.count(), b_served.count()), (1, 1));
}
