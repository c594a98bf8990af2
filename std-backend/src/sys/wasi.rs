//! WASI preview 2 (`wasm32-wasip2`): wasi-libc's `poll` for waiting (it
//! blocks in the host on `wasi:io/poll`), `ioctl(FIONBIO)` for
//! non-blocking sockets, `MSG_TRUNC` for datagram lengths.
//!
//! A component has one thread and receives no signals: nothing but the
//! serving thread itself can ask a server to stop, and it does so between
//! waits (from a handler or a hook), so a wait never needs waking.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::Relaxed};
use std::time::Duration;

use socket2::Socket;

/// Flags for `send` on stream sockets: none, as WASI has no `SIGPIPE` (a
/// write to a peer that has gone fails with `EPIPE`).
pub(crate) const SEND_FLAGS: libc::c_int = 0;

/// wasi-libc's `MSG_TRUNC` (musl's value), which the `libc` crate does not
/// define for WASI: `recvfrom` then returns a datagram's full length.
const MSG_TRUNC: libc::c_int = 0x20;

/// Makes a server socket's accepts and receives return at once
/// (`O_NONBLOCK`), or block again. Through `ioctl(FIONBIO)`: wasi-libc's
/// `fcntl(F_GETFL)`, which socket2's `set_nonblocking` uses, fails on
/// sockets.
pub(crate) fn set_nonblocking(socket: &Socket, on: bool) -> io::Result<()> {
    let mut on = libc::c_int::from(on);
    // SAFETY: `FIONBIO` reads one `c_int` through the pointer, which points
    // to a live one; the descriptor is the socket's own.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::FIONBIO, &mut on) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Python's `allow_reuse_address` (`SO_REUSEADDR`); `allow_reuse_port`
/// fails with [`io::ErrorKind::Unsupported`]: WASI has no `SO_REUSEPORT`.
pub(crate) fn set_reuse(socket: &Socket, address: bool, port: bool) -> io::Result<()> {
    if port {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "allow_reuse_port: WASI has no SO_REUSEPORT",
        ));
    }
    if address {
        socket.set_reuse_address(true)?;
    }
    Ok(())
}

/// Prepares an accepted stream socket: blocking, whatever the listener is
/// (its reads and writes are bounded by the socket timeouts instead).
pub(crate) fn prepare_stream(socket: &Socket) -> io::Result<()> {
    set_nonblocking(socket, false)
}

/// Waits until the server socket is readable or a timeout passes: the
/// server loop's `select`, one `poll` on one descriptor.
///
/// wasi-libc implements `poll` with `wasi:io/poll`, which blocks the
/// component in the host until the socket's pollable is ready: a wait
/// costs no CPU. A UDP socket reports itself readable once before its
/// first receive (wasi-libc opens its datagram streams there); the take
/// that follows finds nothing, and the next wait blocks.
#[derive(Debug)]
pub(crate) struct Waiter {
    /// The watched descriptor; -1 for none.
    fd: AtomicI32,
    /// Whether it is watched for now (not during an accept back-off).
    readable: AtomicBool,
}

impl Waiter {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Waiter {
            fd: AtomicI32::new(-1),
            readable: AtomicBool::new(false),
        })
    }

    /// Starts watching `fd` for readability.
    pub(crate) fn add(&self, fd: impl AsFd) -> io::Result<()> {
        self.fd.store(fd.as_fd().as_raw_fd(), Relaxed);
        self.readable.store(true, Relaxed);
        Ok(())
    }

    /// Watches `fd` for readability again (`true`) or not (`false`) while
    /// it stays registered.
    pub(crate) fn watch(&self, _fd: impl AsFd, readable: bool) -> io::Result<()> {
        self.readable.store(readable, Relaxed);
        Ok(())
    }

    /// Stops watching `fd`; call before closing it.
    pub(crate) fn delete(&self, _fd: impl AsFd) -> io::Result<()> {
        self.fd.store(-1, Relaxed);
        Ok(())
    }

    /// Waits at most `timeout` (rounded up to a millisecond; `None` waits
    /// for ever) and says whether the socket is readable. With no socket
    /// watched it only sleeps.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let ms = timeout.map_or(-1, |t| {
            libc::c_int::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(libc::c_int::MAX)
        });
        let fd: RawFd = self.fd.load(Relaxed);
        let mut fds = [libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        let watched = usize::from(fd >= 0 && self.readable.load(Relaxed));
        // SAFETY: `fds` is a live array of `watched` (0 or 1) entries, which
        // poll(2) reads and whose `revents` it writes.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), watched as libc::nfds_t, ms) };
        match n {
            -1 => {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::Interrupted => Ok(false),
                    _ => Err(err),
                }
            }
            0 => Ok(false),
            // Errors and hang-ups are readable too: the take reports them.
            _ => Ok(fds[0].revents != 0),
        }
    }

    /// Nothing to wake: no other thread or signal handler can run while
    /// the component's one thread waits, and a request made by that thread
    /// is seen before its next wait.
    pub(crate) fn notify(&self) -> io::Result<()> {
        Ok(())
    }
}

/// wasi-libc's `recvfrom` returns a datagram's full length when asked with
/// `MSG_TRUNC`, as Linux does.
#[path = "msg_trunc.rs"]
mod msg_trunc;
pub(crate) use msg_trunc::recv_datagram;

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, TcpStream, UdpSocket};
    use std::time::Instant;

    use socket2::{Domain, Type};

    use super::*;

    fn bound(ty: Type) -> Socket {
        let socket = Socket::new(Domain::IPV4, ty, None).unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket.bind(&any.into()).unwrap();
        socket
    }

    fn addr(socket: &Socket) -> SocketAddr {
        socket.local_addr().unwrap().as_socket().unwrap()
    }

    #[test]
    fn a_longer_datagram_is_flagged_truncated() {
        let server = bound(Type::DGRAM);
        set_nonblocking(&server, true).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(b"hello world", addr(&server)).unwrap();
        let waiter = Waiter::new().unwrap();
        waiter.add(&server).unwrap();
        let mut buf = [0u8; 4];
        let received = loop {
            assert!(waiter.wait(Some(Duration::from_secs(5))).unwrap());
            match recv_datagram(&server, &mut buf, |a| a.as_socket()) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                other => break other.unwrap(),
            }
        };
        assert_eq!(received, (4, true, Some(client.local_addr().unwrap())));
        assert_eq!(&buf, b"hell");
    }

    #[test]
    fn a_wait_sleeps_for_its_timeout_and_wakes_for_a_connection() {
        let listener = bound(Type::STREAM);
        listener.listen(5).unwrap();
        set_nonblocking(&listener, true).unwrap();
        let waiter = Waiter::new().unwrap();
        waiter.add(&listener).unwrap();
        let start = Instant::now();
        assert!(!waiter.wait(Some(Duration::from_millis(200))).unwrap());
        assert!(start.elapsed() >= Duration::from_millis(200));

        let _client = TcpStream::connect(addr(&listener)).unwrap();
        assert!(waiter.wait(Some(Duration::from_secs(5))).unwrap());
        let (conn, _) = listener.accept().unwrap();
        prepare_stream(&conn).unwrap();

        waiter.watch(&listener, false).unwrap();
        let _second = TcpStream::connect(addr(&listener)).unwrap();
        assert!(
            !waiter.wait(Some(Duration::from_millis(50))).unwrap(),
            "not watched"
        );
        waiter.watch(&listener, true).unwrap();
        assert!(waiter.wait(Some(Duration::from_secs(5))).unwrap());
    }
}
