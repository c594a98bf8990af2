//! Running out of descriptors while accepting: logged, backed off instead
//! of spinning, and recovered from once descriptors are free again. The
//! test reruns itself in a child process whose descriptor limit is low.
#![cfg(feature = "std")]
#![cfg(not(target_os = "wasi"))]

#[path = "util/accept_log.rs"]
mod accept_log;

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use socketserver::handlers::UpperOnce;
use socketserver::{Hooks, ServerBuilder, ServerHooks};

const CHILD: &str = "SOCKETSERVER_EMFILE_CHILD";
const NAME: &str = "accept_backs_off_when_descriptors_run_out";

#[derive(Clone, Default)]
struct Timeouts(std::sync::Arc<AtomicUsize>);

impl<R: ?Sized, A> Hooks<R, A> for Timeouts {}

impl ServerHooks for Timeouts {
    fn handle_timeout(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn accept_backs_off_when_descriptors_run_out() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let output = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" \"$@\"")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "child failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn child() {
    accept_log::install();
    let timeouts = Timeouts::default();
    let mut server = ServerBuilder::tcp("127.0.0.1:0")
        .hooks(timeouts.clone())
        .build(|| UpperOnce)
        .unwrap();
    let mut client = TcpStream::connect(server.local_addr()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.write_all(b"hi").unwrap();

    let mut hogs = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(file) => hogs.push(file),
            Err(err) if err.raw_os_error() == Some(24) => break, // EMFILE
            Err(err) => panic!("open: {err}"),
        }
        assert!(hogs.len() < 64, "the descriptor limit was not lowered");
    }

    server.set_timeout(Some(Duration::from_millis(20)));
    server.handle_request().unwrap();
    assert_eq!(accept_log::failures(), 1, "EMFILE is logged");
    // Within the back-off the connection, still pending, is not retried.
    server.handle_request().unwrap();
    assert_eq!(accept_log::failures(), 1, "no retry during the back-off");
    assert_eq!(timeouts.0.load(Ordering::SeqCst), 1);

    drop(hogs);
    server.set_timeout(Some(Duration::from_secs(10)));
    server.handle_request().unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "HI", "served once descriptors are free");
}
