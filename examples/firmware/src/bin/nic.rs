//! The socketserver handlers on the emulated NIC, serving the host's own
//! clients through QEMU's network (`serve.sh`).
//!
//! Three servers (`Server` + `SyncDispatch`) share one smoltcp stack on the
//! Stellaris controller ([`stellaris_enet`]): `UpperOnce` on TCP 9999 with a
//! backlog of 8, `EchoLines` on TCP 9998, `UpperDatagram` on UDP 9999; the
//! datagram `stop` on UDP 9997 ends them. One loop serves whichever has a request and
//! sleeps (`WFI`) when none has, until the NIC's interrupt or SysTick wakes
//! it. Exits through semihosting once stopped.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::time::Duration;

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use panic_semihosting as _;
use smoltcp::iface::Config;
use smoltcp::wire::IpEndpoint;
use socketserver_core::handlers::{EchoLines, UpperDatagram, UpperOnce};
use socketserver_core::{
    Clock, Error, Hooks, Instant, Server, ServerHooks, ShutdownFlag, SyncDispatch, Took,
};
use socketserver_firmware::nic::{
    refused, stop_requested, NicMemory, NicSlots, ADDRESS, CONTROL_PORT, ECHO_PORT, LINE_CAPACITY,
    READ_TIMEOUT_MS, UDP_PORT, UPPER_PORT,
};
use socketserver_firmware::stellaris_enet::StellarisEnet;
use socketserver_firmware::{now_ms, start_clock};
use socketserver_smoltcp::{Idle, Net, Stack, TcpListener, UdpSocket};

/// The SysTick millisecond counter as the core's clock.
struct SysTickClock;

impl Clock for SysTickClock {
    fn now(&self) -> Instant {
        Instant::from_millis(now_ms())
    }
}

socketserver_firmware::nic_exceptions!();

/// The stack's idle hook: sleep until the NIC or SysTick interrupts.
struct Sleep;

impl Idle<StellarisEnet<'_>> for Sleep {
    // SysTick ends every sleep within a millisecond, the clock's resolution,
    // so working out how long the stack could sleep would gain nothing (and
    // cost 1 KB of flash): the stack calls this as if it never slept.
    const SLEEPS: bool = false;

    fn idle(&mut self, nic: &mut StellarisEnet<'_>, _timeout: Duration) {
        nic.wait_for_frame();
    }
}

/// The server's overridden methods, as Python's docs would write them.
struct NicHooks;

impl<R: ?Sized> Hooks<R, IpEndpoint> for NicHooks {
    fn verify_request(&self, _request: &R, client: &IpEndpoint) -> bool {
        if refused(client) {
            hprintln!("verify_request refuses {}", client);
            return false;
        }
        true
    }

    fn handle_error(&self, client: &IpEndpoint, error: &Error) {
        hprintln!("handle_error: {}: {}", client, error);
    }
}

impl ServerHooks for NicHooks {}

#[entry]
fn main() -> ! {
    // Buffers in .bss (see `NicMemory`), slots built at run time.
    static mut MEMORY: NicMemory = NicMemory::new();

    let mut core = cortex_m::Peripherals::take().expect("peripherals taken once");
    start_clock(&mut core.SYST);
    let slots = cortex_m::singleton!(: NicSlots = NicSlots::new()).expect("runs once");
    let parts = MEMORY.split(slots);
    let config = Config::new(parts.device.mac_address().into());
    let mut stack = Stack::new(config, parts.device, parts.slots, SysTickClock, Sleep);
    stack.add_ip(ADDRESS).expect("one address fits");
    let stack = core::cell::RefCell::new(stack);
    let stop = ShutdownFlag::new();

    let listener = TcpListener::bind(&stack, UPPER_PORT, parts.upper, &stop).expect("upper");
    let dispatch = SyncDispatch::<_, _, [u8; 256], [u8; 0]>::with_hooks(|| UpperOnce, NicHooks);
    let mut upper = Server::new(listener, dispatch, SysTickClock);

    let mut listener = TcpListener::bind(&stack, ECHO_PORT, parts.echo, &stop).expect("echo");
    listener.set_timeout(Some(Duration::from_millis(READ_TIMEOUT_MS)));
    let dispatch =
        SyncDispatch::<_, _, [u8; LINE_CAPACITY], [u8; 0]>::with_hooks(|| EchoLines, NicHooks);
    let mut echo = Server::new(listener, dispatch, SysTickClock);

    let socket = UdpSocket::bind(&stack, UDP_PORT, parts.udp, &stop).expect("udp");
    let dispatch =
        SyncDispatch::<_, _, [u8; 256], [u8; 256]>::with_hooks(|| UpperDatagram, NicHooks);
    let mut datagram = Server::new(socket, dispatch, SysTickClock);

    let control = stack.borrow_mut().sockets_mut().add(parts.control);

    hprintln!(
        "serving on {}: tcp {} (UpperOnce), tcp {} (EchoLines), udp {} (UpperDatagram), udp {} (stop)",
        ADDRESS.address(),
        UPPER_PORT,
        ECHO_PORT,
        UDP_PORT,
        CONTROL_PORT
    );
    // serve_forever serves one transport; three share this loop (as the
    // smoltcp_tap example's two do): each pass takes what is ready from
    // each, and sleeps only when none took anything, until the control
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
            if stop_requested(stack.sockets_mut().get_mut(control)) {
                stop.request();
                // Sends the answer.
                stack.poll();
            }
        }
    }
    hprintln!("stopped");
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::wfi();
    }
}
