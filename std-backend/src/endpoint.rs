//! What every server socket shares: the socket, its registration with the
//! waiter, the accept back-off, and the Unix socket file it owns.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};
use socketserver_core::Readiness;

use crate::shutdown::{Shared, ShutdownHandle};
use crate::Options;

/// How long the loop stops accepting after running out of descriptors.
pub(crate) const BACKOFF: Duration = Duration::from_millis(100);

/// A socket file this server created, removed on close if it is still ours.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

#[derive(Debug)]
pub(crate) struct Endpoint {
    socket: Option<Socket>,
    shared: Arc<Shared>,
    registered: bool,
    backoff_until: Option<Instant>,
    file: Option<SocketFile>,
    /// The last accept or receive took a request. Under load another one is
    /// then usually queued, so the next wait reports readiness without
    /// asking the OS; when the queue is empty after all, that costs one
    /// accept or receive that finds nothing, and the wait after it is a real
    /// one.
    took: bool,
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
        Ok(Endpoint {
            socket: Some(socket),
            shared: Shared::new()?,
            registered: false,
            backoff_until: None,
            file: None,
            took: false,
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
        if std::mem::take(&mut self.took) {
            return Ok(Readiness::Ready);
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

    /// Records whether the accept or receive after the last wait took a
    /// request (see `took`).
    pub(crate) fn set_took(&mut self, took: bool) {
        self.took = took;
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
                if meta.dev() == file.dev && meta.ino() == file.ino {
                    let _ = fs::remove_file(&file.path);
                }
            }
        }
    }

    /// Leaves the socket file in place when the server closes.
    pub(crate) fn keep_file(&mut self) {
        self.file = None;
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
    match socket.bind(addr) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AddrInUse && is_stale(path, socket.r#type()?) => {
            fs::remove_file(path)?;
            socket.bind(addr)?;
        }
        Err(err) => return Err(err),
    }
    if let Some(mode) = options.socket_mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    let meta = fs::symlink_metadata(path)?;
    Ok(SocketFile {
        path: path.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
    })
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
