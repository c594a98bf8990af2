//! Sockets a launcher passes to the process: systemd's socket activation
//! (`sd_listen_fds(3)`), which `systemd-socket-activate`, inetd-style
//! supervisors and test harnesses speak too.
//!
//! The launcher binds (and for streams listens on) the sockets, places
//! them on descriptors 3, 4, ..., and starts the program with
//! `LISTEN_PID` (the program's process id), `LISTEN_FDS` (how many) and
//! optionally `LISTEN_FDNAMES` (their names, `:`-separated). The first
//! call into this module reads the three variables, takes the descriptors
//! (close-on-exec from then on) and unsets the variables, so programs this
//! one starts inherit neither; sockets are then handed out once each, by
//! [`take`].
//!
//! Most programs use it through the builder:
//! [`ServerBuilder::socket_activation`](crate::ServerBuilder::socket_activation)
//! serves the next inherited socket, or binds the address when the process
//! was not started that way; `new`'s twin `inherit_or_bind` on every server
//! alias does the same with CPython's defaults.
//!
//! ```no_run
//! use socketserver_core::handlers::UpperLine;
//! use socketserver_std::ThreadingTcpServer;
//!
//! // Under `systemd-socket-activate -l 8080 ./server`, serves port 8080's
//! // socket; run on its own, binds 127.0.0.1:9999.
//! let server = ThreadingTcpServer::inherit_or_bind("127.0.0.1:9999", || UpperLine)?;
//! println!("listening on {}", server.local_addr());
//! # std::io::Result::Ok(())
//! ```
//!
//! Call it early: the descriptors are taken on the first call, and a
//! program that opened descriptors of its own before (which may then be
//! numbered 3 and up when the launcher did not pass as many as it said)
//! could have one taken. `LISTEN_PID` guards against variables meant for
//! another process (a parent that forgot to unset them).

use std::env;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use socket2::Socket;

use crate::sys;

/// The first descriptor the protocol passes (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// The name of a descriptor when the launcher gave none (systemd's).
pub const UNKNOWN_NAME: &str = "unknown";

/// The three variables of the protocol.
const VARIABLES: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// More descriptors than any launcher passes: a corrupt `LISTEN_FDS`.
const MAX_FDS: usize = 4096;

/// One descriptor passed by the launcher, not yet claimed.
pub struct Inherited {
    fd: OwnedFd,
    name: String,
}

impl Inherited {
    /// Its name in `LISTEN_FDNAMES` (systemd: `FileDescriptorName=`, or
    /// the socket unit's name), or [`UNKNOWN_NAME`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The descriptor number it was passed on (3, 4, ...).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The socket.
    ///
    /// # Errors
    /// `InvalidInput` when the descriptor is not a socket (systemd also
    /// passes FIFOs and files).
    pub fn into_socket(self) -> io::Result<Socket> {
        let meta = std::fs::File::from(self.fd.try_clone()?).metadata()?;
        if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "inherited descriptor {} ({}) is not a socket",
                    self.fd(),
                    self.name
                ),
            ));
        }
        Ok(Socket::from(self.fd))
    }
}

impl fmt::Debug for Inherited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inherited")
            .field("fd", &self.fd())
            .field("name", &self.name)
            .finish()
    }
}

/// The descriptors not yet claimed; `None` until the environment is read.
static UNCLAIMED: Mutex<Option<Vec<Inherited>>> = Mutex::new(None);

/// Claims the first inherited descriptor named `name` (any name: `None`),
/// in descriptor order; `Ok(None)` when there is none left (or the process
/// was not started by socket activation).
///
/// # Errors
/// The variables are malformed, or a descriptor they name is not open.
/// The variables are unset all the same.
pub fn take(name: Option<&str>) -> io::Result<Option<Inherited>> {
    with_unclaimed(|unclaimed| {
        let at = unclaimed
            .iter()
            .position(|fd| name.is_none_or(|name| fd.name == name));
        at.map(|at| unclaimed.remove(at))
    })
}

/// Claims every inherited descriptor not claimed yet.
///
/// # Errors
/// As [`take`].
pub fn take_all() -> io::Result<Vec<Inherited>> {
    with_unclaimed(std::mem::take)
}

/// The names of the inherited descriptors not claimed yet.
///
/// # Errors
/// As [`take`].
pub fn unclaimed_names() -> io::Result<Vec<String>> {
    with_unclaimed(|unclaimed| unclaimed.iter().map(|fd| fd.name.clone()).collect())
}

fn with_unclaimed<R>(f: impl FnOnce(&mut Vec<Inherited>) -> R) -> io::Result<R> {
    let mut unclaimed = UNCLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    if unclaimed.is_none() {
        let read = from_environment();
        // Read once, whatever it said: the variables are gone now.
        *unclaimed = Some(Vec::new());
        *unclaimed = Some(read?);
    }
    Ok(f(unclaimed.get_or_insert_with(Vec::new)))
}

/// Reads and unsets the variables; takes the descriptors they name.
fn from_environment() -> io::Result<Vec<Inherited>> {
    let [pid, fds, names] = VARIABLES.map(env::var_os);
    for variable in VARIABLES {
        env::remove_var(variable);
    }
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(Vec::new());
    };
    let pid = parse(&pid, "LISTEN_PID")?;
    if pid != std::process::id() as usize {
        return Ok(Vec::new());
    }
    let count = parse(&fds, "LISTEN_FDS")?;
    if count > MAX_FDS {
        return Err(malformed("LISTEN_FDS", &fds));
    }
    let names = names.map(|n| n.to_string_lossy().into_owned());
    let mut names: Vec<&str> = names
        .as_deref()
        .map_or(Vec::new(), |n| n.split(':').collect());
    if names.len() != count {
        // systemd passes one per descriptor; without them all, none counts.
        names.clear();
    }
    (0..count)
        .map(|i| {
            let fd = LISTEN_FDS_START + i as RawFd;
            let fd = sys::take_inherited_fd(fd).map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("LISTEN_FDS={count}, but descriptor {fd} is not open: {err}"),
                )
            })?;
            let name = names.get(i).copied().unwrap_or(UNKNOWN_NAME).to_owned();
            Ok(Inherited { fd, name })
        })
        .collect()
}

fn parse(value: &std::ffi::OsStr, variable: &str) -> io::Result<usize> {
    value
        .to_str()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| malformed(variable, value))
}

fn malformed(variable: &str, value: &std::ffi::OsStr) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{variable}={} is not a descriptor count or process id",
            value.to_string_lossy()
        ),
    )
}
