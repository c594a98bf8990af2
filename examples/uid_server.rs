//! The docs' TCP example on a Unix stream socket that only one user may use:
//! `verify_request` reads the client's credentials (`SO_PEERCRED`) and
//! refuses every other uid, before any handler is built. The socket file is
//! made writable by everyone (mode 0666), so that the uid check, not the
//! file's permissions, is what turns other users away.
//!
//! Usage: `cargo run --example uid_server -- PATH [--uid N]` (default: the
//! user running the server). Prints `listening on PATH` once bound, each
//! refusal on stderr, and serves until SIGINT or SIGTERM.

#[cfg(unix)]
#[path = "common/args.rs"]
mod args;

#[cfg(unix)]
use std::io::{self, Write};

#[cfg(unix)]
use socketserver::handlers::UpperOnce;
#[cfg(unix)]
use socketserver::os::UnixConnection;
#[cfg(unix)]
use socketserver::{Hooks, ServerBuilder, UnixAddr, DEFAULT_POLL_INTERVAL};

#[cfg(unix)]
/// Serves only the user whose uid it holds.
struct OnlyUid(u32);

#[cfg(unix)]
impl Hooks<UnixConnection, UnixAddr> for OnlyUid {
    fn verify_request(&self, conn: &UnixConnection, _client: &UnixAddr) -> bool {
        match conn.peer_credentials() {
            Ok(peer) if peer.uid == self.0 => true,
            Ok(peer) => {
                eprintln!(
                    "refused pid {} (uid {}, gid {}): only uid {} is served",
                    peer.pid, peer.uid, peer.gid, self.0
                );
                false
            }
            Err(err) => {
                eprintln!("refused a client whose credentials are unknown: {err}");
                false
            }
        }
    }
}

#[cfg(unix)]
impl socketserver::ServerHooks for OnlyUid {}

#[cfg(unix)]
fn main() -> io::Result<()> {
    let mut args = args::Args::parse("usage: uid_server [PATH] [--uid N]");
    let uid = args
        .option("--uid")
        .unwrap_or_else(|| nix::unistd::getuid().as_raw());
    let path = args.next_or("/tmp/socketserver-uid.sock");
    args.done();
    let mut server = ServerBuilder::unix_stream(path)
        .socket_activation(true)
        .socket_mode(0o666)
        .hooks(OnlyUid(uid))
        .build(|| UpperOnce)?;
    let _signals = server.shutdown_handle().stop_on_signals()?;
    println!("listening on {}", server.local_addr());
    io::stdout().flush()?;
    server.serve_forever(DEFAULT_POLL_INTERVAL)?;
    server.server_close();
    Ok(())
}

// Unix domain sockets and peer credentials: Unix only, as in Python.
#[cfg(not(unix))]
fn main() {
    eprintln!("uid_server needs Unix (Unix domain sockets and peer credentials)");
    std::process::exit(2);
}
