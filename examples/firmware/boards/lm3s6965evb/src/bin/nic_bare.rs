//! The `nic` image's services with smoltcp alone, on the same controller,
//! clock and memory (`socketserver_firmware::bare`): measured against `nic`
//! by `run.sh` (sizes) and `bench_nic.py` (speed).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use cortex_m_rt::entry;
use firmware_lm3s6965evb::stellaris_enet::{Buffers, StellarisEnet};
use firmware_lm3s6965evb::{start_clock, Lm3s};
use panic_semihosting as _;
use socketserver_firmware::nic::{NicMemory, NicSlots};

firmware_lm3s6965evb::nic_exceptions!();

#[entry]
fn main() -> ! {
    // Buffers in .bss (see `NicMemory`), slots built at run time.
    static mut MEMORY: NicMemory = NicMemory::new();
    static mut FRAMES: Buffers = Buffers::new();

    let mut core = cortex_m::Peripherals::take().expect("peripherals taken once");
    start_clock(&mut core.SYST);
    let slots = cortex_m::singleton!(: NicSlots = NicSlots::new()).expect("runs once");
    let device = StellarisEnet::take(FRAMES).expect("the controller is taken once");
    socketserver_firmware::bare::serve::<Lm3s>(device, MEMORY, slots)
}
