//! The `nic` image's serving loop: the socketserver handlers on the board's
//! NIC, serving the host's own clients through QEMU's network.
//!
//! Three servers (`Server` + `SyncDispatch`) share one smoltcp stack:
//! `UpperOnce` on TCP 9999 with a backlog of 8, `EchoLines` on TCP 9998,
//! `UpperDatagram` on UDP 9999; the datagram `stop` on UDP 9997 ends them.
//! One loop serves whichever has a request and idles ([`Board::idle`]) when
//! none has.

use core::cell::RefCell;
use core::marker::PhantomData;
use core::time::Duration;

use smoltcp::iface::Config;
use smoltcp::wire::IpEndpoint;
use socketserver_core::handlers::{EchoLines, UpperDatagram, UpperOnce};
use socketserver_core::{Error, Hooks, Server, ServerHooks, ShutdownFlag, SyncDispatch, Took};
use socketserver_smoltcp::{Net, Stack, TcpListener, UdpSocket};

use crate::nic::{
    announce, refused, stop_requested, NicMemory, NicSlots, ADDRESS, ECHO_PORT, LINE_CAPACITY,
    READ_TIMEOUT_MS, UDP_PORT, UPPER_PORT,
};
use crate::{say, Board, BoardClock, BoardIdle};

/// The server's overridden methods, as Python's docs would write them.
struct NicHooks<B>(PhantomData<B>);

impl<B: Board, R: ?Sized> Hooks<R, IpEndpoint> for NicHooks<B> {
    fn verify_request(&self, _request: &R, client: &IpEndpoint) -> bool {
        if refused(client) {
            say!(B, "verify_request refuses {}", client);
            return false;
        }
        true
    }

    fn handle_error(&self, client: &IpEndpoint, error: &Error) {
        say!(B, "handle_error: {}: {}", client, error);
    }
}

impl<B: Board> ServerHooks for NicHooks<B> {}

/// Serves the NIC images' services on `device` until the `stop` datagram,
/// then says `stopped` and ends the run with success.
pub fn serve<B: Board>(
    device: B::Nic,
    memory: &'static mut NicMemory,
    slots: &'static mut NicSlots,
) -> ! {
    let parts = memory.split(slots);
    let config = Config::new(B::mac_address(&device).into());
    let clock = BoardClock::<B>::new;
    let mut stack = Stack::new(config, device, parts.slots, clock(), BoardIdle::<B>::new());
    stack.add_ip(ADDRESS).expect("one address fits");
    let stack = RefCell::new(stack);
    let stop = ShutdownFlag::new();
    let hooks = || NicHooks::<B>(PhantomData);

    let listener = TcpListener::bind(&stack, UPPER_PORT, parts.upper, &stop).expect("upper");
    let dispatch = SyncDispatch::<_, _, [u8; 256], [u8; 0]>::with_hooks(|| UpperOnce, hooks());
    let mut upper = Server::new(listener, dispatch, clock());

    let mut listener = TcpListener::bind(&stack, ECHO_PORT, parts.echo, &stop).expect("echo");
    listener.set_timeout(Some(Duration::from_millis(READ_TIMEOUT_MS)));
    let dispatch =
        SyncDispatch::<_, _, [u8; LINE_CAPACITY], [u8; 0]>::with_hooks(|| EchoLines, hooks());
    let mut echo = Server::new(listener, dispatch, clock());

    let socket = UdpSocket::bind(&stack, UDP_PORT, parts.udp, &stop).expect("udp");
    let dispatch =
        SyncDispatch::<_, _, [u8; 256], [u8; 256]>::with_hooks(|| UpperDatagram, hooks());
    let mut datagram = Server::new(socket, dispatch, clock());

    let control = stack.borrow_mut().sockets_mut().add(parts.control);

    announce::<B>();
    // serve_forever serves one transport; three share this loop (as the
    // smoltcp_tap example's two do): each pass takes what is ready from
    // each, and idles only when none took anything, until the control
    // port stops them.
    while !stop.is_requested() {
        let took = [
            upper.handle_request_noblock(),
            echo.handle_request_noblock(),
            datagram.handle_request_noblock(),
        ];
        if took.iter().all(|t| *t == Took::Nothing) {
            let mut stack = stack.borrow_mut();
            stack.poll_wait(Duration::from_millis(10), &stop);
            if stop_requested::<B>(stack.sockets_mut().get_mut(control)) {
                stop.request();
                // Sends the answer.
                stack.poll();
            }
        }
    }
    say!(B, "stopped");
    B::exit(true)
}
