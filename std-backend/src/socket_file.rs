//! The socket file of a Unix server bound to a path: created with the
//! asked mode, guarded by a lock file while the server holds the path,
//! removed on close if it is still ours.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::{sys, Options};

/// A socket file this server created, removed on close if it is still ours
/// (unless kept), and the lock that makes the path ours meanwhile.
#[derive(Debug)]
pub(crate) struct SocketFile {
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

impl PathLock {
    /// Locks `PATH.lock` for the socket file `socket`, creating it if need
    /// be; fails with `AddrInUse` when another server holds it.
    fn take(socket: &Path) -> io::Result<Self> {
        let mut path = socket.as_os_str().to_owned();
        path.push(".lock");
        let mut path = PathBuf::from(path);
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

impl SocketFile {
    /// Python's `server_bind` for a Unix address: a path is bound through
    /// [`bind_unix_path`] (and the file returned), an abstract name
    /// directly.
    pub(crate) fn bind(
        socket: &Socket,
        addr: &SockAddr,
        options: &Options,
    ) -> io::Result<Option<SocketFile>> {
        match addr.as_pathname() {
            Some(path) => bind_unix_path(socket, addr, path, options).map(Some),
            None => socket.bind(addr).map(|()| None),
        }
    }

    /// Removes the file if it is still the one created (and not kept),
    /// then releases the path's lock.
    pub(crate) fn remove(self) {
        if let Ok(meta) = fs::symlink_metadata(&self.path) {
            if !self.keep && meta.dev() == self.dev && meta.ino() == self.ino {
                let _ = fs::remove_file(&self.path);
            }
        }
    }

    /// Leaves the file in place when the server closes.
    pub(crate) fn keep(&mut self) {
        self.keep = true;
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
/// connection attempt is refused, and where the system can say (Linux:
/// [`sys::unix_socket_bound_to`]), no socket of any process is bound to
/// the file. A refused connection alone cannot tell a stale file from a
/// server between its `bind` and its `listen`; the lock file rules out
/// servers of this crate only.
fn is_stale(path: &Path, ty: Type) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.file_type().is_socket() {
        return false;
    }
    let probe = || -> io::Result<()> {
        let probe = Socket::new(Domain::UNIX, ty, None)?;
        // A live listener with a full backlog must not block the probe.
        probe.set_nonblocking(true)?;
        probe.connect(&SockAddr::unix(path)?)
    };
    let refused = matches!(probe(), Err(err) if err.kind() == io::ErrorKind::ConnectionRefused);
    // Asked only now: the kernel's answer lists every Unix socket.
    refused && sys::unix_socket_bound_to(path, &meta) != Some(true)
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

    fn temp_socket_path(name: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("ss-endpoint-{name}-{}.sock", std::process::id()));
        let _ = fs::remove_file(&path);
        path
    }

    /// A server of another program between its `bind` and its `listen`
    /// refuses connections as a stale file does; its path is not taken.
    #[test]
    fn a_foreign_socket_bound_but_not_listening_keeps_its_path() {
        let path = temp_socket_path("foreign");
        let addr = SockAddr::unix(&path).unwrap();
        let foreign = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        foreign.bind(&addr).unwrap();
        let before = fs::symlink_metadata(&path).unwrap().ino();

        let ours = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        let err = create_socket_file(&ours, &addr, &path, None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(
            fs::symlink_metadata(&path).unwrap().ino(),
            before,
            "the file is still the foreign socket's"
        );

        // Once nobody is bound to it, the file is stale and replaced.
        drop(foreign);
        create_socket_file(&ours, &addr, &path, None).unwrap();
        assert_eq!(
            ours.local_addr().unwrap().as_pathname(),
            Some(path.as_path())
        );
        fs::remove_file(&path).unwrap();
    }

    /// The kernel's table (not a connection attempt) says whether a socket
    /// is bound to the file.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn the_kernel_says_whether_a_socket_is_bound_to_a_file() {
        let path = temp_socket_path("diag");
        let socket = Socket::new(Domain::UNIX, Type::DGRAM, None).unwrap();
        socket.bind(&SockAddr::unix(&path).unwrap()).unwrap();
        let meta = fs::symlink_metadata(&path).unwrap();
        assert_eq!(sys::unix_socket_bound_to(&path, &meta), Some(true));
        drop(socket);
        assert_eq!(sys::unix_socket_bound_to(&path, &meta), Some(false));
        fs::remove_file(&path).unwrap();
    }
}
