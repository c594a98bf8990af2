//! The board: QEMU's `lm3s6965evb` (a TI Stellaris LM3S6965, Cortex-M3 at
//! 12.5 MHz, 256 KiB flash, 64 KiB RAM). What it supplies to the shared
//! serving loops ([`Lm3s`]): the Stellaris Ethernet controller
//! ([`stellaris_enet`]), the SysTick millisecond clock, `WFI` until the
//! controller's interrupt or SysTick, and semihosting for the console and
//! the exit code. Its self-test images (`framework`, `bare`) run the
//! handlers over an in-memory cable instead ([`selftest`]).
#![no_std]
#![deny(unsafe_code)]

pub mod selftest;
pub mod stellaris_enet;

// For the macros, which expand in the binaries.
#[doc(hidden)]
pub use {cortex_m, cortex_m_rt, socketserver_firmware};

use core::cell::Cell;
use core::fmt;

use cortex_m::interrupt::Mutex;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_semihosting::{debug, hprintln};
use smoltcp::wire::EthernetAddress;
use socketserver_firmware::Board;

use crate::stellaris_enet::StellarisEnet;

/// The core clock of QEMU's lm3s6965evb (its reset RCC value divides the
/// 200 MHz PLL by 16), which SysTick counts.
pub const CORE_HZ: u32 = 12_500_000;

static MILLIS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));

/// Starts SysTick interrupting every millisecond; each image's `SysTick`
/// handler calls [`tick`].
pub fn start_clock(syst: &mut SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(CORE_HZ / 1000 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Advances the clock by a millisecond (from the SysTick handler).
pub fn tick() {
    cortex_m::interrupt::free(|cs| {
        let millis = MILLIS.borrow(cs);
        millis.set(millis.get() + 1);
    });
}

/// Milliseconds since [`start_clock`]. A u64 behind a critical section
/// rather than an atomic: Cortex-M3 has no 64-bit atomics, and a u32 would
/// wrap after 49 days.
pub fn now_ms() -> u64 {
    cortex_m::interrupt::free(|cs| MILLIS.borrow(cs).get())
}

/// The clock as smoltcp reads it.
pub fn smol_now() -> smoltcp::time::Instant {
    socketserver_firmware::smol_now::<Lm3s>()
}

/// The board, for the shared serving loops.
pub struct Lm3s;

impl Board for Lm3s {
    type Nic = StellarisEnet<'static>;

    fn now_ms() -> u64 {
        now_ms()
    }

    fn idle(nic: &mut StellarisEnet<'static>) {
        nic.wait_for_frame();
    }

    fn mac_address(nic: &StellarisEnet<'static>) -> EthernetAddress {
        nic.mac_address()
    }

    fn print(line: fmt::Arguments<'_>) {
        hprintln!("{}", line);
    }

    fn exit(success: bool) -> ! {
        debug::exit(if success {
            debug::EXIT_SUCCESS
        } else {
            debug::EXIT_FAILURE
        });
        // Only reached without a debugger or QEMU to end the run.
        loop {
            cortex_m::asm::wfi();
        }
    }
}

/// The interrupt handlers both NIC images need, defined in the binary that
/// invokes it (cortex-m-rt wants them there): SysTick advances the
/// millisecond clock, and the device interrupt goes to the Stellaris
/// controller's handler. Without a peripheral access crate, every device
/// interrupt arrives at `DefaultHandler`.
#[macro_export]
macro_rules! nic_exceptions {
    () => {
        #[$crate::cortex_m_rt::exception]
        fn SysTick() {
            $crate::tick();
        }

        // SAFETY: cortex-m-rt makes a default handler `unsafe fn` because it
        // also catches NMI, which preempts critical sections; this one
        // touches no data, only the controller's interrupt status.
        #[allow(unsafe_code)]
        #[$crate::cortex_m_rt::exception]
        unsafe fn DefaultHandler(irqn: i16) {
            if irqn == $crate::stellaris_enet::IRQ as i16 {
                $crate::stellaris_enet::StellarisEnet::on_interrupt();
            } else {
                panic!("unexpected exception {}", irqn);
            }
        }
    };
}

/// A NIC image's entry point and interrupt handlers: starts SysTick and
/// the Stellaris controller over buffers in `.bss` (the entry point's
/// `static mut`s), builds the socket slots at run time, and hands it all to
/// the serving loop of `socketserver_firmware::$loop` (`serve` or `bare`).
#[macro_export]
macro_rules! nic_image {
    ($loop:ident) => {
        $crate::nic_exceptions!();

        #[$crate::cortex_m_rt::entry]
        fn main() -> ! {
            // cortex-m-rt hands these out as `&'static mut`.
            static mut MEMORY: $crate::socketserver_firmware::nic::NicMemory =
                $crate::socketserver_firmware::nic::NicMemory::new();
            static mut FRAMES: $crate::stellaris_enet::Buffers =
                $crate::stellaris_enet::Buffers::new();

            use $crate::socketserver_firmware::nic::NicSlots;
            use $crate::stellaris_enet::StellarisEnet;

            let mut core = $crate::cortex_m::Peripherals::take().expect("peripherals taken once");
            $crate::start_clock(&mut core.SYST);
            let slots =
                $crate::cortex_m::singleton!(: NicSlots = NicSlots::new()).expect("runs once");
            let device = StellarisEnet::take(FRAMES).expect("the controller is taken once");
            $crate::socketserver_firmware::$loop::serve::<$crate::Lm3s>(device, MEMORY, slots)
        }
    };
}
