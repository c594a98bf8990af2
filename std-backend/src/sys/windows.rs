//! Windows: Winsock through socket2, the `polling` crate (IOCP) for
//! waiting (`polled.rs`), `SO_EXCLUSIVEADDRUSE` so that no other socket
//! can take a server's port, and a console control handler that turns
//! Ctrl-C, Ctrl-Break and closing the console into shutdown requests.

use std::io;
use std::os::windows::io::{AsRawSocket, RawSocket};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::Socket;
use windows_sys::core::BOOL;
use windows_sys::Win32::Networking::WinSock;
use windows_sys::Win32::System::Console;

pub(crate) use super::polled::{Parker, Waiter};
use crate::shutdown::Shared;

/// A socket's number as the system names it: a Winsock `SOCKET`.
pub(crate) type Raw = RawSocket;

/// The trait [`SocketTransport`](crate::SocketTransport) requires: Python's
/// `fileno()`.
pub(crate) use std::os::windows::io::AsRawSocket as AsRaw;

/// `socket`'s handle.
pub(crate) fn raw(socket: &Socket) -> Raw {
    socket.as_raw_socket()
}

/// `socket` as the connection registry keeps it.
pub(crate) fn raw_to_u64(socket: Raw) -> u64 {
    socket
}

/// The socket [`raw_to_u64`] gave `n` for.
#[allow(clippy::unnecessary_wraps)]
pub(crate) fn raw_from_u64(n: u64) -> Option<Raw> {
    Some(n)
}

/// Implements `AsRawSocket` (Python's `fileno()`, `INVALID_SOCKET` once
/// closed) and `AsSocket` for a type of the crate whose socket `$socket`
/// gives (`None` once closed), with `$this` bound to `&self`.
macro_rules! socket_handles {
    ([$($generics:tt)*] $ty:ty, $this:ident => $socket:expr) => {
        impl<$($generics)*> std::os::windows::io::AsRawSocket for $ty {
            /// Python's `fileno()`: `INVALID_SOCKET` once closed.
            fn as_raw_socket(&self) -> std::os::windows::io::RawSocket {
                let $this = self;
                $socket.map_or(
                    windows_sys::Win32::Networking::WinSock::INVALID_SOCKET as _,
                    std::os::windows::io::AsRawSocket::as_raw_socket,
                )
            }
        }

        impl<$($generics)*> std::os::windows::io::AsSocket for $ty {
            /// # Panics
            /// If the socket was closed.
            fn as_socket(&self) -> std::os::windows::io::BorrowedSocket<'_> {
                let $this = self;
                std::os::windows::io::AsSocket::as_socket($socket.expect("the socket is closed"))
            }
        }
    };
}
pub(crate) use socket_handles;

/// Receives one datagram into `buf`: the bytes kept, whether the datagram
/// was longer than `buf`, and its sender (as `sender` converts it).
///
/// A datagram longer than `buf` fills it with its first bytes and fails
/// `WSARecvFrom` with `WSAEMSGSIZE`, which socket2 reports as truncation;
/// the byte count that comes with that error is not to be relied on (Wine
/// gives 0), so a truncated datagram counts as filling `buf`.
pub(crate) fn recv_datagram<A>(
    socket: &Socket,
    buf: &mut [u8],
    sender: impl FnOnce(&socket2::SockAddr) -> A,
) -> io::Result<(usize, bool, A)> {
    let (len, truncated, from) = super::polled::recv_datagram(socket, buf, sender)?;
    Ok((if truncated { buf.len() } else { len }, truncated, from))
}

/// Prepares a new server socket. A UDP socket stops reporting the ICMP
/// "port unreachable" that a reply to a departed client brings back:
/// Windows would otherwise fail the server's *next* receive with
/// `WSAECONNRESET` (`SIO_UDP_CONNRESET` off, as UDP servers on Windows do).
pub(crate) fn prepare_socket(socket: &Socket, ty: socket2::Type) -> io::Result<()> {
    if ty != socket2::Type::DGRAM {
        return Ok(());
    }
    let off: BOOL = 0;
    let mut returned = 0u32;
    // SAFETY: WSAIoctl reads `size_of::<BOOL>()` bytes from `off`, writes
    // nothing but the count into `returned` (no output buffer), and is not
    // overlapped (null overlapped and completion routine): both live until
    // it returns.
    let rc = unsafe {
        WinSock::WSAIoctl(
            raw(socket) as WinSock::SOCKET,
            WinSock::SIO_UDP_CONNRESET,
            std::ptr::from_ref(&off).cast(),
            size_of::<BOOL>() as u32,
            std::ptr::null_mut(),
            0,
            &mut returned,
            std::ptr::null_mut(),
            None,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Flags for `send` on stream sockets: Windows raises no signal when the
/// peer has gone, the write fails.
pub(crate) const SEND_FLAGS: std::ffi::c_int = 0;

/// Sets `socket` (non-)blocking.
pub(crate) fn set_nonblocking(socket: &Socket, on: bool) -> io::Result<()> {
    socket.set_nonblocking(on)
}

/// Runs `op` on `socket` made non-blocking for that one call: Winsock has
/// no per-call `MSG_DONTWAIT`. The socket is the caller's alone meanwhile
/// (a parked connection between its turns), so no other thread sees the
/// mode change.
fn without_waiting<T>(socket: &Socket, op: impl FnOnce(&Socket) -> io::Result<T>) -> io::Result<T> {
    socket.set_nonblocking(true)?;
    let result = op(socket);
    socket.set_nonblocking(false)?;
    result
}

/// Reads what a stream socket has received, without waiting: `Ok(n)`
/// bytes, `Ok(0)` at end of stream, `WouldBlock` when nothing is there.
pub(crate) fn recv_now(socket: &Socket, buf: &mut [u8]) -> io::Result<usize> {
    without_waiting(socket, |s| s.recv(super::as_uninit(buf)))
}

/// Sends what a stream socket takes now, without waiting: the count,
/// `Ok(0)` when its send buffer is full.
pub(crate) fn send_now(socket: &Socket, data: &[u8]) -> io::Result<usize> {
    match without_waiting(socket, |s| s.send(data)) {
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(0),
        other => other,
    }
}

/// Prepares an accepted stream socket: blocking (an accepted socket
/// inherits the listener's non-blocking mode here).
pub(crate) fn prepare_stream(socket: &Socket) -> io::Result<()> {
    socket.set_nonblocking(false)
}

/// Python's `allow_reuse_address` and `allow_reuse_port`, made safe.
///
/// Windows' `SO_REUSEADDR` lets *another* socket bind a port that a server
/// is listening on and take its connections, so it is never set. Without
/// `allow_reuse_address` the socket gets `SO_EXCLUSIVEADDRUSE`: no other
/// socket may bind the port while it is open (a restart may then have to
/// wait for connections in `TIME_WAIT`, as on Unix without
/// `SO_REUSEADDR`). With it, no option is set: Windows then lets a new
/// server bind over connections in `TIME_WAIT`, which is what
/// `SO_REUSEADDR` is for on Unix. A program that sets `SO_REUSEADDR` on
/// the socket itself before binding keeps it (and no exclusive use: Windows
/// refuses the two together). `SO_REUSEPORT` does not exist: asking for it
/// is an `Unsupported` error.
pub(crate) fn set_reuse(socket: &Socket, address: bool, port: bool) -> io::Result<()> {
    if port {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "allow_reuse_port: Windows has no SO_REUSEPORT",
        ));
    }
    // Windows refuses both options on one socket: a program that set
    // `SO_REUSEADDR` itself (before `server_bind`) keeps it.
    if !address && !socket.reuse_address()? {
        set_bool(socket, WinSock::SO_EXCLUSIVEADDRUSE, true)?;
    }
    Ok(())
}

/// Sets a boolean `SOL_SOCKET` option.
fn set_bool(socket: &Socket, option: i32, on: bool) -> io::Result<()> {
    let value = i32::from(on);
    // SAFETY: setsockopt(2) reads `size_of::<i32>()` bytes from `value`,
    // which lives until it returns; `socket` is an open socket.
    let rc = unsafe {
        WinSock::setsockopt(
            raw(socket) as WinSock::SOCKET,
            WinSock::SOL_SOCKET,
            option,
            std::ptr::from_ref(&value).cast(),
            size_of::<i32>() as i32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `socket` has `SO_EXCLUSIVEADDRUSE` (for the tests).
#[cfg(test)]
pub(crate) fn exclusive_address_use(socket: &Socket) -> io::Result<bool> {
    let mut value = 0i32;
    let mut len = size_of::<i32>() as i32;
    // SAFETY: getsockopt(2) writes at most `len` bytes into `value` and
    // the length it wrote into `len`; both live until it returns.
    let rc = unsafe {
        WinSock::getsockopt(
            raw(socket) as WinSock::SOCKET,
            WinSock::SOL_SOCKET,
            WinSock::SO_EXCLUSIVEADDRUSE,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value != 0)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Cuts a connection: `shutdown` with `SD_BOTH` (the peer sees the end,
/// later receives and sends fail), then `CancelIoEx`, which ends a receive
/// or send already blocked on it in another thread (`shutdown` alone only
/// affects later calls here). Their errors are of no use.
pub(crate) fn cut(socket: Raw) {
    // SAFETY: both calls only act on the socket `socket` names (a null
    // overlapped cancels every operation on it); the caller (the
    // connection registry) ensures that is still the connection's own,
    // not yet closed.
    unsafe {
        WinSock::shutdown(socket as WinSock::SOCKET, WinSock::SD_BOTH);
        windows_sys::Win32::System::IO::CancelIoEx(socket as _, std::ptr::null());
    }
}

/// Whether `err` says the process or the system ran out of sockets or
/// buffer memory: accepting again at once would fail the same way.
pub(crate) fn is_resource_exhaustion(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(WinSock::WSAEMFILE | WinSock::WSAENOBUFS)
    ) || err.kind() == io::ErrorKind::OutOfMemory
}

/// Error codes besides the kinds [`is_transient_accept_error`](super::is_transient_accept_error)
/// knows that only say the pending connection went away.
pub(crate) const TRANSIENT_ACCEPT_CODES: &[i32] = &[];

/// The console control events that a [`SignalWatch`] turns into shutdown
/// requests: Python's `KeyboardInterrupt` (Ctrl-C, Ctrl-Break) and the
/// console window being closed (also at logoff and system shutdown).
///
/// Windows runs the handler on a thread of its own, so it takes the
/// registry's lock and sends to each watch's thread; that thread requests
/// the shutdown and times the drain, as on macOS and the BSDs. A second
/// event while a watch lives ends the process at once, by the default
/// handler (`ExitProcess`). For a close event Windows ends the process
/// once the handler returns (or after 5 s): the handler waits, at most
/// [`CLOSE_WAIT`], for the watches to end (the server stopping and its
/// guard being dropped) before it returns.
#[derive(Debug)]
pub(crate) struct SignalWatch {
    id: u64,
    watcher: Option<JoinHandle<()>>,
}

/// How long the handler of a close event waits for the servers to stop:
/// just under Windows' own limit of 5 s.
const CLOSE_WAIT: Duration = Duration::from_millis(4500);

/// The watches the handler wakes, while it is installed.
#[derive(Debug)]
struct Watches {
    senders: Vec<(u64, Sender<()>)>,
    next_id: u64,
    /// Events received since the handler was installed.
    received: usize,
}

static WATCHES: Mutex<Watches> = Mutex::new(Watches {
    senders: Vec::new(),
    next_id: 0,
    received: 0,
});
/// Signalled when the last watch ends (for a close event's handler).
static ENDED: Condvar = Condvar::new();

fn watches() -> MutexGuard<'static, Watches> {
    WATCHES.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SignalWatch {
    pub(crate) fn start(shared: &Arc<Shared>) -> io::Result<Self> {
        let (wake, woken) = mpsc::channel();
        let mut watches = watches();
        if watches.senders.is_empty() {
            // SAFETY: `on_console_event` is a handler routine of the type
            // Windows calls (on a thread of its own), and stays valid for
            // the life of the process.
            if unsafe { Console::SetConsoleCtrlHandler(Some(on_console_event), 1) } == 0 {
                return Err(io::Error::last_os_error());
            }
            watches.received = 0;
        }
        let id = watches.next_id;
        watches.next_id += 1;
        watches.senders.push((id, wake));
        drop(watches);
        let shared = Arc::clone(shared);
        let watcher = std::thread::Builder::new()
            .name("socketserver-console".into())
            .spawn(move || watch(&woken, &shared));
        match watcher {
            Ok(watcher) => Ok(SignalWatch {
                id,
                watcher: Some(watcher),
            }),
            Err(err) => {
                drop(SignalWatch { id, watcher: None });
                Err(err)
            }
        }
    }
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        let mut watches = watches();
        // Dropping the sender ends the watcher.
        watches.senders.retain(|(id, _)| *id != self.id);
        if watches.senders.is_empty() {
            // SAFETY: removes the routine `start` added; no code runs.
            unsafe { Console::SetConsoleCtrlHandler(Some(on_console_event), 0) };
            ENDED.notify_all();
        }
        drop(watches);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
    }
}

/// The watcher thread: requests the shutdown for each event, and times the
/// drain that follows (cutting the connections still served when it runs
/// out). Returns when its watch ends.
fn watch(woken: &Receiver<()>, shared: &Shared) {
    let mut deadline: Option<Instant> = None;
    loop {
        let next = match deadline {
            Some(at) => woken.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => woken.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(()) => {
                shared.request();
                let bound = shared.drain_timeout();
                deadline = deadline.or_else(|| bound.map(|b| Instant::now() + b));
            }
            Err(RecvTimeoutError::Timeout) => {
                shared.conns.cut_all();
                deadline = None;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// How many [`KeepDraining`] guards live.
static KEEP_DRAINING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// While one lives, a console event after the first is no reason to end
/// the process: the drain runs its course.
#[derive(Debug)]
pub(crate) struct KeepDraining(());

impl KeepDraining {
    pub(crate) fn new() -> Self {
        KEEP_DRAINING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        KeepDraining(())
    }
}

impl Drop for KeepDraining {
    fn drop(&mut self) {
        KEEP_DRAINING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Whether a stream socket listens already (`SO_ACCEPTCONN`).
pub(crate) fn is_listening(socket: &Socket) -> io::Result<bool> {
    let mut value: BOOL = 0;
    let mut len = std::mem::size_of::<BOOL>() as i32;
    // SAFETY: `value` and `len` are valid for writes of the sizes given, and
    // the call only reads an option of the socket the handle names.
    let rc = unsafe {
        WinSock::getsockopt(
            raw(socket) as WinSock::SOCKET,
            WinSock::SOL_SOCKET,
            WinSock::SO_ACCEPTCONN,
            std::ptr::addr_of_mut!(value).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value != 0)
}

/// Keeps a socket made elsewhere out of the processes this one starts.
pub(crate) fn no_inherit(socket: &Socket) -> io::Result<()> {
    socket.set_no_inherit(true)
}

/// The console control handler: wakes every watch on the first event;
/// hands a second one (or any while no watch lives) to the next handler,
/// by default `ExitProcess`, unless a [`KeepDraining`] guard lives (then
/// the drain runs its course and the event is taken as handled).
unsafe extern "system" fn on_console_event(event: u32) -> BOOL {
    let closing = matches!(
        event,
        Console::CTRL_CLOSE_EVENT | Console::CTRL_LOGOFF_EVENT | Console::CTRL_SHUTDOWN_EVENT
    );
    let mut watches = watches();
    watches.received += 1;
    if watches.senders.is_empty() {
        return 0;
    }
    if watches.received > 1 {
        let keep = KEEP_DRAINING.load(std::sync::atomic::Ordering::SeqCst) > 0;
        return BOOL::from(keep);
    }
    for (_, wake) in &watches.senders {
        let _ = wake.send(());
    }
    if closing {
        let _ = ENDED.wait_timeout_while(watches, CLOSE_WAIT, |w| !w.senders.is_empty());
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Type};

    /// Without `allow_reuse_address` the port is the server's alone;
    /// with it, Windows' port-stealing `SO_REUSEADDR` is still not set.
    #[test]
    fn the_port_is_held_exclusively_unless_reuse_is_allowed() {
        for allow in [false, true] {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            set_reuse(&socket, allow, false).unwrap();
            assert_eq!(exclusive_address_use(&socket).unwrap(), !allow);
            assert!(!socket.reuse_address().unwrap());
        }
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let err = set_reuse(&socket, true, true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    }
}
