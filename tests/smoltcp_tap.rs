//! The smoltcp backend on a real network: a TAP device in a private network
//! namespace, served in-process, driven by the host kernel's own TCP and
//! UDP clients. Needs root (CI runs as root) and `/dev/net/tun`; without
//! them every test fails and says why.
//!
//! Each test re-runs itself under `unshare -n`, so the addresses below
//! exist only inside a namespace the test created.
#![cfg(all(feature = "smoltcp", feature = "std"))]

#[path = "util/smoltcp.rs"]
mod util;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use socketserver::smoltcp::tap::{netns, tap_stack};
use socketserver::smoltcp::wire::{IpAddress, IpCidr};
use util::*;

const TAP: &str = "tap0";
const HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 100);
const STACK: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 1);

/// Runs `body` inside a fresh network namespace holding a TAP device with
/// the host side's address: re-runs this test under `unshare -n`, and
/// there sets the namespace up and runs `body`.
fn in_namespace(test: &str, body: impl FnOnce()) {
    if netns::inside() {
        netns::add_tap(TAP, IpCidr::new(IpAddress::Ipv4(HOST), 24)).unwrap();
        body();
        return;
    }
    if let Err(missing) = netns::check() {
        panic!("the TAP tests cannot run: {missing} (CI runs them as root)");
    }
    let output = netns::rerun_inside(&[test, "--exact", "--nocapture", "--test-threads=1"])
        .unwrap()
        .output()
        .expect("cannot run `unshare`");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the test failed inside its network namespace ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

fn client() -> KernelClient {
    KernelClient {
        server: SocketAddr::from((STACK, PORT)),
        ip: IpAddress::Ipv4(HOST),
    }
}

/// The server side: a stack on the namespace's tap device.
fn on_tap() -> ServeOn<
    impl FnOnce() -> std::cell::RefCell<socketserver::smoltcp::tap::TapStack<'static>> + Send,
> {
    ServeOn(
        || {
            let stack = tap_stack(
                TAP,
                IpCidr::new(IpAddress::Ipv4(STACK), 24),
                storage(BACKLOG + 2),
            )
            .expect("cannot open the tap device");
            std::cell::RefCell::new(stack)
        },
        IO_TIMEOUT,
    )
}

/// One test per case, each in its own namespace.
macro_rules! on_tap {
    ($($case:ident),* $(,)?) => {$(
        #[test]
        fn $case() {
            in_namespace(stringify!($case), || cases::$case(&client(), on_tap()));
        }
    )*};
}

util::all_cases!(on_tap);

/// The `smoltcp_tap` example: prints `listening on IP:PORT`, serves the
/// `tcp_server` handler on TCP and the `udp_server` one on UDP at the same
/// port, and exits 0 on SIGTERM.
#[test]
fn tap_example() {
    in_namespace("tap_example", || {
        let mut child = Command::new(example("smoltcp_tap"))
            .args(["--tap", TAP, "--ip", &format!("{STACK}/24")])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run the smoltcp_tap example");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
        assert_eq!(first.trim(), format!("listening on {STACK}:{PORT}"));
        let client = client();
        assert_eq!(client.exchange(b"hello tap\n"), b"HELLO TAP");
        assert_eq!(client.datagram(b"hello udp\n"), b"HELLO UDP");
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        assert!(killed.unwrap().success());
        let output = wait_bounded(child, IO_TIMEOUT);
        assert!(output.status.success(), "{output:?}");
    });
}
