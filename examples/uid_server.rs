//! The docs' TCP example on a Unix stream socket that only one user may use:
//! `verify_request` reads the client's credentials (`SO_PEERCRED`) and
//! refuses every other uid, before any handler is built. The socket file is
//! made writable by everyone (mode 0666), so that the uid check, not the
//! file's permissions, is what turns other users away.
//!
//! Usage: `cargo run --example uid_server -- PATH [--uid N]` (default: the
//! user running the server). Prints `listening on PATH` once bound, each
//! refusal on stderr, and serves until SIGINT or SIGTERM.

use std::io::{self, Write};

use socketserver::handlers::UpperOnce;
use socketserver::os::UnixConnection;
use socketserver::{Hooks, ServerBuilder, UnixAddr, DEFAULT_POLL_INTERVAL};

/// Serves only the user whose uid it holds.
struct OnlyUid(u32);

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

impl socketserver::ServerHooks for OnlyUid {}

fn usage() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "usage: uid_server PATH [--uid N]",
    )
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "/tmp/socketserver-uid.sock".into());
    let uid = match (args.next().as_deref(), args.next(), args.next()) {
        (None, _, _) => nix::unistd::getuid().as_raw(),
        (Some("--uid"), Some(n), None) => n.parse().map_err(|_| usage())?,
        _ => return Err(usage()),
    };
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
