//! The socketserver handlers inside a Cortex-M3 image.
//!
//! Three servers (`Server` + `SyncDispatch`, the core's ready-made handlers,
//! `socketserver-smoltcp` transports) share one smoltcp stack on an
//! in-memory cable; the client of `lib.rs` sits on the cable's other end and
//! is stepped from the server stack's idle hook, so one thread serves and
//! plays the client. No heap: every buffer is in a static or on the stack.
//! Time is SysTick. Exits through semihosting with success only if every
//! check passed.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::cell::{Cell, RefCell};
use core::time::Duration;

use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::hprintln;
use firmware_lm3s6965evb::selftest::{
    check, config, finish, Listed, Memory, Service, Slots, EXCHANGE_TIMEOUT_MS, IDLE_TIMEOUT_MS,
    LINE_CAPACITY, READ_TIMEOUT_MS, SCRIPT, SERVER_CIDR, STRANGER,
};
use firmware_lm3s6965evb::{now_ms, start_clock, tick};
use panic_semihosting as _;
use smoltcp::wire::IpEndpoint;
use socketserver_core::embedded_io::ErrorKind;
use socketserver_core::handlers::{EchoLines, UpperDatagram, UpperOnce};
use socketserver_core::{
    Clock, Error, Hooks, Instant, Server, ServerHooks, ShutdownFlag, SyncDispatch,
};
use socketserver_smoltcp::{Busy, Stack, TcpListener, UdpSocket};

/// The SysTick millisecond counter as the core's clock.
struct SysTickClock;

impl Clock for SysTickClock {
    fn now(&self) -> Instant {
        Instant::from_millis(now_ms())
    }
}

#[exception]
fn SysTick() {
    tick();
}

/// The server's overridden methods, recording what they saw.
#[derive(Default)]
struct Checks {
    refused: RefCell<heapless::Vec<IpEndpoint, 2>>,
    errors: RefCell<heapless::Vec<Error, 4>>,
    timeouts: Cell<u32>,
    built: Cell<u32>,
}

impl<R: ?Sized> Hooks<R, IpEndpoint> for Checks {
    fn verify_request(&self, _request: &R, client: &IpEndpoint) -> bool {
        if client.addr != STRANGER {
            return true;
        }
        hprintln!("  server: verify_request refuses {}", client);
        let _ = self.refused.borrow_mut().push(*client);
        false
    }

    fn handle_error(&self, client: &IpEndpoint, error: &Error) {
        hprintln!("  server: handle_error: {}: {}", client, error);
        // Four fit; more would be failures the final check reports anyway.
        let _ = self.errors.borrow_mut().push(error.clone());
    }
}

impl ServerHooks for Checks {
    fn handle_timeout(&self) {
        hprintln!("  server: handle_timeout");
        self.timeouts.set(self.timeouts.get() + 1);
    }
}

/// A factory of `handler` that counts the handlers it builds.
fn counting<'c, H: Copy + 'c>(built: &'c Cell<u32>, handler: H) -> impl Fn() -> H + 'c {
    move || {
        built.set(built.get() + 1);
        handler
    }
}

#[entry]
fn main() -> ! {
    // cortex-m-rt hands the entry point's `static mut`s out as
    // `&'static mut`: the cable and the socket buffers live in .bss.
    static mut MEMORY: Memory = Memory::new();

    let mut core = cortex_m::Peripherals::take().expect("peripherals taken once");
    start_clock(&mut core.SYST);
    hprintln!("socketserver firmware: three servers on smoltcp over an in-memory cable");

    let slots = cortex_m::singleton!(: Slots = Slots::new()).expect("runs once");
    let (client, parts) = MEMORY.split(slots);
    let client = RefCell::new(client);
    let play_client = Busy(|| client.borrow_mut().step());
    let mut stack = Stack::new(
        config(1),
        parts.device,
        parts.slots,
        SysTickClock,
        play_client,
    );
    stack.add_ip(SERVER_CIDR).expect("one address fits");
    let stack = RefCell::new(stack);
    let stop = ShutdownFlag::new();
    let checks = Checks::default();
    let patience = Some(Duration::from_millis(EXCHANGE_TIMEOUT_MS));

    let listener = TcpListener::bind(&stack, Service::Upper.port(), parts.upper, &stop)
        .expect("upper listener");
    let dispatch = SyncDispatch::<_, _, [u8; 256], [u8; 0]>::with_hooks(
        counting(&checks.built, UpperOnce),
        &checks,
    );
    let mut upper = Server::new(listener, dispatch, SysTickClock);
    upper.set_timeout(patience);

    let mut listener =
        TcpListener::bind(&stack, Service::Echo.port(), [parts.echo], &stop).expect("echo");
    // Connections start with this timeout, which EchoLines keeps.
    listener.set_timeout(Some(Duration::from_millis(READ_TIMEOUT_MS)));
    let dispatch = SyncDispatch::<_, _, [u8; LINE_CAPACITY], [u8; 0]>::with_hooks(
        counting(&checks.built, EchoLines),
        &checks,
    );
    let mut echo = Server::new(listener, dispatch, SysTickClock);
    echo.set_timeout(patience);

    let socket = UdpSocket::bind(&stack, Service::Datagram.port(), parts.udp, &stop).expect("udp");
    let dispatch = SyncDispatch::<_, _, [u8; 256], [u8; 256]>::with_hooks(
        counting(&checks.built, UpperDatagram),
        &checks,
    );
    let mut datagram = Server::new(socket, dispatch, SysTickClock);
    datagram.set_timeout(patience);

    // One request per connection of the script, each by its service's server.
    for exchange in SCRIPT {
        for _ in exchange.conns {
            let served = match exchange.service {
                Service::Upper => upper.handle_request(),
                Service::Echo => echo.handle_request(),
                Service::Datagram => datagram.handle_request(),
            };
            // The error itself would need the backend's error messages,
            // which the bare image has no use for: the service is enough.
            if served.is_err() {
                check(false, format_args!("handle_request for {}", exchange.name));
            }
        }
    }
    // The last acknowledgements are still on their way to the client.
    let deadline = now_ms() + EXCHANGE_TIMEOUT_MS;
    while !client.borrow().done() && now_ms() < deadline {
        stack
            .borrow_mut()
            .poll_wait(Duration::from_millis(1), &stop);
    }

    hprintln!(
        "[timeout] handle_request with a {} ms timeout and no client",
        IDLE_TIMEOUT_MS
    );
    let before = checks.timeouts.get();
    upper.set_timeout(Some(Duration::from_millis(IDLE_TIMEOUT_MS)));
    let start = now_ms();
    let waited = upper.handle_request();
    let took = now_ms() - start;
    check(
        waited.is_ok()
            && checks.timeouts.get() == before + 1
            && (IDLE_TIMEOUT_MS..IDLE_TIMEOUT_MS + 500).contains(&took),
        format_args!("handle_timeout called once, after {took} ms"),
    );

    hprintln!("[server] what the hooks saw");
    check(
        checks.timeouts.get() == 1,
        format_args!(
            "handle_timeout called {} time(s) in all",
            checks.timeouts.get()
        ),
    );
    let refused = checks.refused.borrow();
    check(
        matches!(refused[..], [peer] if peer.addr == STRANGER && peer.port != 0),
        format_args!("verify_request refused {}", Listed(&refused)),
    );
    let errors = checks.errors.borrow();
    check(
        matches!(
            errors[..],
            [
                Error::LineTooLong {
                    capacity: LINE_CAPACITY,
                },
                Error::Io {
                    kind: ErrorKind::TimedOut,
                    ..
                },
            ]
        ),
        format_args!("handle_error reported {}", Listed(&errors)),
    );
    // Every connection but the refused one, and the datagram.
    let expected: usize = SCRIPT.iter().map(|e| e.conns.len()).sum::<usize>() - 1;
    check(
        checks.built.get() as usize == expected,
        format_args!("{} handlers built", checks.built.get()),
    );
    let dropped = client.borrow().dropped() + stack.borrow().device().dropped();
    check(
        dropped == 0,
        format_args!("{dropped} frames dropped by the cable"),
    );

    // No `server_close`: `finish` ends the program (as a firmware that
    // serves for ever never closes), and the bare image closes nothing.
    finish()
}
