//! Compiler errors name the std backend's types as the README does:
//! `TcpConnection`, `UdpReply`, never the generic internals they share
//! (`SocketConnection<Inet>`, `StreamTransport<Inet>` before).
//!
//! The test type-checks a small program with the mistakes users make (hooks
//! written for std's `TcpStream`, a datagram handler written for the inline
//! server's socket served threaded) and reads the errors. The program's
//! dependencies are checked once into a target directory kept under
//! `target/tmp`, so later runs only check the program.
#![cfg(feature = "std")]
#![cfg(not(target_os = "wasi"))]

mod util;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use util::process::output_within;

/// The wrong program. One `main` line per mistake: keep them in step with
/// the builder's API.
const PROBE: &str = r#"
use std::net::{SocketAddr, TcpStream};

use socketserver::handlers::UpperOnce;
use socketserver::os::UdpTransport;
use socketserver::{DatagramHandler, DatagramRequest, Error, Hooks, ServerBuilder, ServerHooks};

/// Hooks written for std's stream instead of the server's connection.
struct StdStreamHooks;

impl Hooks<TcpStream, SocketAddr> for StdStreamHooks {}
impl ServerHooks for StdStreamHooks {}

/// A handler for the inline server's socket, served threaded.
struct InlineOnly;

impl DatagramHandler<UdpTransport> for InlineOnly {
    fn handle(&mut self, _: &mut DatagramRequest<'_, UdpTransport>) -> Result<(), Error> {
        Ok(())
    }
}

fn main() {
    let _ = ServerBuilder::tcp("127.0.0.1:0").hooks(StdStreamHooks).build(|| UpperOnce);
    let _ = socketserver::ThreadingUdpServer::new("127.0.0.1:0", || InlineOnly);
}
"#;

/// A cold check of the dependencies takes seconds; this is for a loaded
/// machine.
const CHECK_PATIENCE: Duration = Duration::from_secs(120);

/// `cargo check` on [`PROBE`]: its status and its errors as people read
/// them (the human format, with the notes and help lines).
fn check_probe() -> (bool, String) {
    let workspace = env!("CARGO_MANIFEST_DIR");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("names-probe");
    fs::create_dir_all(dir.join("src")).unwrap();
    let manifest = format!(
        "[package]\nname = \"names-probe\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
         publish = false\n\n[dependencies]\nsocketserver = {{ path = {workspace:?} }}\n\n\
         # Not a member of the workspace around target/.\n[workspace]\n"
    );
    fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    fs::write(dir.join("src/main.rs"), PROBE).unwrap();
    // The workspace's versions, so that --offline resolves nothing new.
    fs::copy(format!("{workspace}/Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let child = Command::new(env!("CARGO"))
        .args(["check", "--offline", "--quiet", "--color", "never"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = output_within(child, CHECK_PATIENCE);
    let errors = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), errors)
}

#[test]
fn errors_name_the_nominal_types() {
    let (compiled, errors) = check_probe();
    assert!(!compiled, "the probe is wrong on purpose:\n{errors}");
    for expected in [
        "Hooks<TcpConnection, std::net::SocketAddr>` is not satisfied",
        "DatagramHandler<UdpReply>` is not satisfied",
    ] {
        assert!(errors.contains(expected), "no `{expected}` in:\n{errors}");
    }
    for internal in [
        "SocketConnection",
        "StreamTransport<",
        "DatagramTransport<",
        "DatagramReply<",
        "Accepted<",
        "Base<",
        "Inet>",
        "Unix>",
    ] {
        assert!(!errors.contains(internal), "`{internal}` in:\n{errors}");
    }
}
