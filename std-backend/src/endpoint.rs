//! What every server socket shares: the socket, its registration with the
//! waiter, the accept back-off, and the Unix socket file it owns.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use socket2::{Domain, SockAddr, Socket, Type};
use socketserver_core::Readiness;

use crate::shutdown::{Shared, ShutdownHandle};
use crate::{sys, Options};

/// How long the loop stops accepting after running out of descriptors.
pub(crate) const BACKOFF: Duration = Duration::from_millis(100);

/// A socket file this server created, removed on close if it is still ours
/// (unless kept), and the lock that makes the path ours meanwhile.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
    keep: bool,
    /// Released after the file is removed: dropped last.
    _lock: PathLock,
}

/// `PATH.lock` beside a Unix socket file, locked with `flock` for as long
/// as the server holds the path, from before `bind` to its close (as
/// daemons do). A socket file only refuses connections when nobody is
/// bound to it *or* its server has bound it and not yet listened; the lock
/// tells the two apart, so only a file nobody holds is ever replaced.
///
/// Removed on drop if the path still names the file that was locked.
#[derive(Debug)]
struct PathLock {
    path: PathBuf,
    file: Flock<fs::File>,
}

/// How often [`PathLock::take`] tries again when the lock file it locked
/// was removed meanwhile (by the previous holder, as it released it).
const LOCK_ATTEMPTS: usize = 8;

/// `PATH.lock`, the lock file of the socket file `socket`.
fn lock_path(socket: &Path) -> PathBuf {
    let mut path = socket.as_os_str().to_owned();
    path.push(".lock");
    PathBuf::from(path)
}

/// Whether a live server of this crate holds the socket file `socket`
/// (its [`PathLock`] is locked). For a path with no lock file, one failed
/// `open`.
pub(crate) fn is_held(socket: &Path) -> bool {
    let Ok(file) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(lock_path(socket))
    else {
        return false;
    };
    // A shared lock, refused while a server holds the exclusive one; if
    // granted, it is released as the file is dropped.
    matches!(
        Flock::lock(file, FlockArg::LockSharedNonblock),
        Err((_, Errno::EWOULDBLOCK))
    )
}

impl PathLock {
    /// Locks `PATH.lock` for the socket file `socket`, creating it if need
    /// be; fails with `AddrInUse` when another server holds it.
    fn take(socket: &Path) -> io::Result<Self> {
        let mut path = lock_path(socket);
        for _ in 0..LOCK_ATTEMPTS {
            let file = match Flock::lock(open_lock_file(&path)?, FlockArg::LockExclusiveNonblock) {
                Ok(file) => file,
                Err((_, Errno::EWOULDBLOCK)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!(
                            "{} belongs to another server (it holds {})",
                            socket.display(),
                            path.display()
                        ),
                    ))
                }
                Err((_, err)) => return Err(err.into()),
            };
            let lock = PathLock { path, file };
            // The lock only counts on the file the path names now.
            if lock.is_at_path() {
                return Ok(lock);
            }
            path = lock.forget();
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} keeps being replaced", path.display()),
        ))
    }

    /// Whether the path still names the locked file.
    fn is_at_path(&self) -> bool {
        match (self.file.metadata(), fs::symlink_metadata(&self.path)) {
            (Ok(locked), Ok(named)) => locked.dev() == named.dev() && locked.ino() == named.ino(),
            _ => false,
        }
    }

    /// Unlocks without removing anything; returns the path.
    fn forget(mut self) -> PathBuf {
        std::mem::take(&mut self.path)
    }
}

impl Drop for PathLock {
    fn drop(&mut self) {
        // Removed while still locked, so that whoever locks the path next
        // locks a new file (see `take`).
        if !self.path.as_os_str().is_empty() && self.is_at_path() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Opens (or creates) a lock file, never through a symbolic link. Another
/// user's lock file can still be locked when it can only be read.
fn open_lock_file(path: &Path) -> io::Result<fs::File> {
    let open = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    match open {
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path),
        other => other,
    }
}

#[derive(Debug)]
pub(crate) struct Endpoint {
    socket: Option<Socket>,
    shared: Arc<Shared>,
    registered: bool,
    backoff_until: Option<Instant>,
    file: Option<SocketFile>,
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the server socket is closed")
}

impl Endpoint {
    /// A new socket (close-on-exec, as socket2 always creates them), with
    /// `IPV6_V6ONLY` set now so that an unbound server can still change it.
    pub(crate) fn new(domain: Domain, ty: Type, options: &Options) -> io::Result<Self> {
        let socket = Socket::new(domain, ty, None)?;
        if let (Domain::IPV6, Some(dual)) = (domain, options.dual_stack) {
            socket.set_only_v6(!dual)?;
        }
        let shared = Shared::new()?;
        shared.set_drain_timeout(options.drain_timeout);
        Ok(Endpoint {
            socket: Some(socket),
            shared,
            registered: false,
            backoff_until: None,
            file: None,
        })
    }

    pub(crate) fn socket(&self) -> io::Result<&Socket> {
        self.socket.as_ref().ok_or_else(closed)
    }

    pub(crate) fn socket_opt(&self) -> Option<&Socket> {
        self.socket.as_ref()
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.socket.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    pub(crate) fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(Arc::clone(&self.shared))
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Python's `server_bind`, for both families; returns the bound address.
    pub(crate) fn bind(&mut self, addr: &SockAddr, options: &Options) -> io::Result<SockAddr> {
        let socket = self.socket.as_ref().ok_or_else(closed)?;
        if options.allow_reuse_address {
            socket.set_reuse_address(true)?;
        }
        if addr.is_unix() {
            if let Some(path) = addr.as_pathname() {
                self.file = Some(bind_unix_path(socket, addr, path, options)?);
            } else {
                socket.bind(addr)?;
            }
        } else {
            if options.allow_reuse_port {
                socket.set_reuse_port(true)?;
            }
            socket.bind(addr)?;
        }
        socket.local_addr()
    }

    /// Python's `server_activate` minus `listen`: makes the socket ready to
    /// be waited on.
    pub(crate) fn register(&mut self) -> io::Result<()> {
        if self.registered {
            return Ok(());
        }
        let socket = self.socket()?;
        // Readiness can be stale by the time we accept or receive.
        socket.set_nonblocking(true)?;
        self.shared.waiter.add(socket)?;
        self.registered = true;
        Ok(())
    }

    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<Readiness> {
        let socket = self.socket.as_ref().ok_or_else(closed)?;
        if !self.registered {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the server socket is not activated",
            ));
        }
        if self.shared.is_requested() {
            return Ok(Readiness::Shutdown);
        }
        let start = Instant::now();
        let mut limit = timeout;
        if let Some(until) = self.backoff_until {
            if until > start {
                let rest = until - start;
                limit = Some(limit.map_or(rest, |t| t.min(rest)));
            } else {
                self.backoff_until = None;
                self.shared.waiter.watch(socket, true)?;
            }
        }
        let readable = self.shared.waiter.wait(limit)?;
        if self.shared.is_requested() {
            return Ok(Readiness::Shutdown);
        }
        if readable {
            return Ok(Readiness::Ready);
        }
        Ok(match timeout {
            Some(t) if start.elapsed() >= t => Readiness::TimedOut,
            _ => Readiness::Interrupted,
        })
    }

    /// Whether a take may look at the socket: it is activated (and so
    /// non-blocking; before that, the wait reports the error), and
    /// accepting is not paused after running out of descriptors (until the
    /// back-off ends, takes find nothing and waits sleep).
    pub(crate) fn may_take(&self) -> bool {
        self.registered
            && self
                .backoff_until
                .is_none_or(|until| until <= Instant::now())
    }

    /// Stops waiting on the socket for [`BACKOFF`] (still woken by
    /// shutdown), so a full descriptor table does not make the loop spin.
    pub(crate) fn back_off(&mut self) -> io::Result<()> {
        let socket = self.socket()?;
        self.shared.waiter.watch(socket, false)?;
        self.backoff_until = Some(Instant::now() + BACKOFF);
        Ok(())
    }

    pub(crate) fn close(&mut self) {
        if let Some(socket) = self.socket.take() {
            if self.registered {
                // The waiter must forget the descriptor before it is closed.
                let _ = self.shared.waiter.delete(&socket);
                self.registered = false;
            }
            drop(socket);
        }
        if let Some(file) = self.file.take() {
            // Only remove the file if it is still the one we created.
            if let Ok(meta) = fs::symlink_metadata(&file.path) {
                if !file.keep && meta.dev() == file.dev && meta.ino() == file.ino {
                    let _ = fs::remove_file(&file.path);
                }
            }
            // Dropping `file` now releases the path's lock.
        }
    }

    /// Makes this copy of the socket a pre-forked worker's own, right after
    /// the fork: a new wake-up and waiter (the inherited ones are the
    /// supervisor's: a shutdown of one process would wake the other), and
    /// the Unix socket file and its lock left to the supervisor (never
    /// removed or unlocked by this process).
    pub(crate) fn become_worker(&mut self) -> io::Result<()> {
        if let Some(file) = self.file.take() {
            // Dropping the lock would unlock it for the supervisor too
            // (`flock` locks belong to the open file both share).
            std::mem::forget(file);
        }
        let shared = Shared::new()?;
        shared.set_drain_timeout(self.shared.drain_timeout());
        self.shared = shared;
        self.backoff_until = None;
        if self.registered {
            let socket = self.socket.as_ref().ok_or_else(closed)?;
            self.shared.waiter.add(socket)?;
        }
        Ok(())
    }

    /// Stops waking the waiter when the socket is readable, for a process
    /// that holds the socket but never takes requests from it (a
    /// pre-forked workers' supervisor): its waits then end only by a
    /// notification or a timeout.
    pub(crate) fn stop_taking(&mut self) -> io::Result<()> {
        if self.registered {
            self.shared.waiter.watch(self.socket()?, false)?;
        }
        Ok(())
    }

    /// Leaves the socket file in place when the server closes (its lock is
    /// still released).
    pub(crate) fn keep_file(&mut self) {
        if let Some(file) = &mut self.file {
            file.keep = true;
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.close();
    }
}

fn bind_unix_path(
    socket: &Socket,
    addr: &SockAddr,
    path: &Path,
    options: &Options,
) -> io::Result<SocketFile> {
    let lock = PathLock::take(path)?;
    create_socket_file(socket, addr, path, options.socket_mode)?;
    if let Some(mode) = options.socket_mode {
        // Exactly `mode`: the umask may have taken bits away.
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    let meta = fs::symlink_metadata(path)?;
    Ok(SocketFile {
        path: path.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
        keep: options.keep_socket_file,
        _lock: lock,
    })
}

/// Binds to `path`, replacing a stale socket file (the caller holds the
/// path's [`PathLock`], so no server of ours is bound to it); with `mode`,
/// the file is created with no more than those permission bits where the
/// system allows (see [`sys::mode_before_bind`]).
fn create_socket_file(
    socket: &Socket,
    addr: &SockAddr,
    path: &Path,
    mode: Option<u32>,
) -> io::Result<()> {
    if let Some(mode) = mode {
        if mode & !0o7777 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("socket_mode {mode:o} has bits beyond the permission bits (0o7777)"),
            ));
        }
        sys::mode_before_bind(socket, mode)?;
    }
    match socket.bind(addr) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AddrInUse && is_stale(path, socket.r#type()?) => {
            fs::remove_file(path)?;
            socket.bind(addr)
        }
        Err(err) => Err(err),
    }
}

/// Whether `path` is a socket file that nobody is bound to any more: a
/// connection attempt is refused.
fn is_stale(path: &Path, ty: Type) -> bool {
    let is_socket = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if !is_socket {
        return false;
    }
    let probe = || -> io::Result<()> {
        let probe = Socket::new(Domain::UNIX, ty, None)?;
        // A live listener with a full backlog must not block the probe.
        probe.set_nonblocking(true)?;
        probe.connect(&SockAddr::unix(path)?)
    };
    matches!(probe(), Err(err) if err.kind() == io::ErrorKind::ConnectionRefused)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The process's umask, read without changing it (Linux 4.7 and later).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn umask() -> u32 {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"));
        u32::from_str_radix(line.expect("no Umask line").trim(), 8).unwrap()
    }

    /// The socket file is born with at most `socket_mode`'s bits, before
    /// any `chmod`: there is no moment in which the umask's wider mode lets
    /// another user connect.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn socket_file_is_created_with_the_mode() {
        let dir = std::env::temp_dir().join(format!("ss-endpoint-mode-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for mode in [0o600, 0o640, 0o700] {
            let path = dir.join(format!("{mode:o}.sock"));
            let _ = fs::remove_file(&path);
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
            let addr = SockAddr::unix(&path).unwrap();
            create_socket_file(&socket, &addr, &path, Some(mode)).unwrap();
            let born = fs::symlink_metadata(&path).unwrap().permissions().mode() & 0o7777;
            assert_eq!(born, mode & !umask(), "mode {mode:o}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_mode_beyond_the_permission_bits_is_refused() {
        let path =
            std::env::temp_dir().join(format!("ss-endpoint-bad-{}.sock", std::process::id()));
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        let addr = SockAddr::unix(&path).unwrap();
        let err = create_socket_file(&socket, &addr, &path, Some(0o10_600)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(!path.exists(), "nothing is bound");
    }
}
