//! What every server socket shares: the socket, its registration with the
//! waiter, the accept back-off, and the Unix socket file it owns.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};
use socketserver_core::Readiness;

use crate::shutdown::{Shared, ShutdownHandle};
use crate::socket_file::SocketFile;
use crate::{sys, Options};

/// How long the loop stops accepting after running out of descriptors.
pub(crate) const BACKOFF: Duration = Duration::from_millis(100);

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
        Self::adopt(socket, options)
    }

    /// An endpoint over a socket bound elsewhere (inherited from a
    /// launcher, or made by the program): its socket file, if any, is not
    /// this server's, and is never removed.
    pub(crate) fn adopt(socket: Socket, options: &Options) -> io::Result<Self> {
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
        let inet = addr.as_socket().is_some();
        sys::set_reuse(
            socket,
            options.allow_reuse_address,
            options.allow_reuse_port && inet,
        )?;
        if inet {
            socket.bind(addr)?;
        } else {
            self.file = SocketFile::bind(socket, addr, options)?;
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
        sys::set_nonblocking(socket, true)?;
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
            file.remove();
        }
    }

    /// Leaves the socket file in place when the server closes (its lock is
    /// still released).
    pub(crate) fn keep_file(&mut self) {
        if let Some(file) = &mut self.file {
            file.keep();
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.close();
    }
}
