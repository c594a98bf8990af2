//! The board: QEMU's RISC-V `virt` machine (`qemu-system-riscv32 -M virt
//! -bios none`), one hart in machine mode, the image in RAM at
//! `0x8000_0000`. What it supplies to the shared serving loops ([`Virt`]):
//!
//! - the NIC: a virtio-net device on one of the eight virtio-mmio slots
//!   ([`probe`]), driven by [`virtio_net`];
//! - the clock: the CLINT's `mtime` (10 MHz), read directly;
//! - the idle wait: `wfi` until the NIC's interrupt (through the PLIC) or
//!   the CLINT's timer a millisecond on. Interrupts are enabled per source
//!   (`mie`) but never globally (`mstatus.MIE` stays 0): `wfi` wakes on a
//!   pending enabled interrupt all the same, and no trap handler runs, so
//!   nothing runs behind the loop's back;
//! - the console: the NS16550 UART at `0x1000_0000` (QEMU's `-serial`);
//! - the exit: QEMU's test device at `0x10_0000` ("sifive_test").
//!
//! Every `unsafe` here is a device register access with its `SAFETY:` note.
#![no_std]
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod virtio_net;

// For `nic_image!`, which expands in the binaries.
#[doc(hidden)]
pub use {riscv_rt, socketserver_firmware};

use core::fmt::{self, Write};
use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};

use smoltcp::wire::EthernetAddress;
use socketserver_firmware::nic::{NicMemory, NicSlots};
use socketserver_firmware::Board;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};

use crate::virtio_net::{Buffers, VirtioNet};

/// The UART's transmit register, and its line status register.
const UART: usize = 0x1000_0000;
const UART_LSR: usize = UART + 5;
const LSR_THR_EMPTY: u8 = 1 << 5;

/// The CLINT's `mtime` (ticks at [`MTIME_HZ`]) and hart 0's `mtimecmp`.
const MTIME: usize = 0x0200_BFF8;
const MTIMECMP: usize = 0x0200_4000;
/// `mtime`'s rate on QEMU's virt machine.
pub const MTIME_HZ: u64 = 10_000_000;
const TICKS_PER_MS: u64 = MTIME_HZ / 1000;

/// The PLIC: a priority per source, hart 0's machine-mode context (enable
/// bits, priority threshold, claim/complete).
const PLIC: usize = 0x0C00_0000;
const PLIC_ENABLE: usize = PLIC + 0x2000;
const PLIC_THRESHOLD: usize = PLIC + 0x20_0000;
const PLIC_CLAIM: usize = PLIC + 0x20_0004;

/// The virtio-mmio slots: eight, 4 KiB apart, slot n on PLIC source n + 1.
const VIRTIO_MMIO: usize = 0x1000_1000;
const VIRTIO_SLOTS: usize = 8;
const VIRTIO_SLOT_SIZE: usize = 0x1000;
const VIRTIO_IRQ_FIRST: usize = 1;

/// QEMU's test device: writing one of these ends QEMU.
const TEST_DEVICE: usize = 0x0010_0000;
const TEST_PASS: u32 = 0x5555;
/// `FAIL` with exit status 1 in the upper half.
const TEST_FAIL: u32 = (1 << 16) | 0x3333;

fn read32(address: usize) -> u32 {
    // SAFETY: every caller passes one of the word-aligned device registers
    // above, which QEMU's virt machine always maps; reading one touches no
    // memory Rust knows about. Volatile, because the device changes it.
    unsafe { ptr::read_volatile(address as *const u32) }
}

fn write32(address: usize, value: u32) {
    // SAFETY: as in `read32`; writing changes the device's state, never
    // memory Rust knows about.
    unsafe { ptr::write_volatile(address as *mut u32, value) }
}

/// `mtime`: a 64-bit counter read as two halves, again if the high half
/// moved in between.
fn mtime() -> u64 {
    loop {
        let high = read32(MTIME + 4);
        let low = read32(MTIME);
        if read32(MTIME + 4) == high {
            return (u64::from(high) << 32) | u64::from(low);
        }
    }
}

/// Sets hart 0's timer to fire at `at` (which also clears a pending one),
/// without a moment at which the half-written value is due.
fn set_timer(at: u64) {
    write32(MTIMECMP + 4, u32::MAX);
    write32(MTIMECMP, at as u32);
    write32(MTIMECMP + 4, (at >> 32) as u32);
}

/// Finds the virtio network device: probes every slot (QEMU fills them from
/// the last one), and returns its transport and PLIC source.
pub fn probe() -> Option<(MmioTransport<'static>, usize)> {
    (0..VIRTIO_SLOTS).find_map(|slot| {
        let header = NonNull::new((VIRTIO_MMIO + slot * VIRTIO_SLOT_SIZE) as *mut VirtIOHeader)?;
        // SAFETY: each slot is a 4 KiB virtio-mmio region (header and
        // config space) that QEMU's virt machine always maps, aligned,
        // for the image's whole life, and that nothing else in the image
        // touches. An empty slot reads as device 0, which `new` refuses.
        let transport = unsafe { MmioTransport::new(header, VIRTIO_SLOT_SIZE) }.ok()?;
        // Another kind of device would be reset as the transport drops:
        // this image uses no other.
        (transport.device_type() == DeviceType::Network)
            .then_some((transport, VIRTIO_IRQ_FIRST + slot))
    })
}

/// Starts the board's NIC: finds it, starts it over `buffers`, and lets its
/// interrupt and the timer's end a `wfi` (never a trap: see the crate docs).
///
/// # Panics
/// If there is no virtio network device, or it does not start.
pub fn start_nic(buffers: &'static mut Buffers) -> VirtioNet<'static> {
    let (transport, irq) = probe().expect("a virtio-net device (-device virtio-net-device)");
    let nic = VirtioNet::new(transport, buffers).expect("the virtio-net device starts");
    write32(PLIC + 4 * irq, 1);
    write32(PLIC_ENABLE + 4 * (irq / 32), 1 << (irq % 32));
    write32(PLIC_THRESHOLD, 0);
    set_timer(u64::MAX);
    // SAFETY: this sets the machine external and timer interrupt enables
    // only; with `mstatus.MIE` clear (as at reset, and never set here)
    // they wake `wfi` and trap nowhere.
    unsafe {
        riscv::register::mie::set_mext();
        riscv::register::mie::set_mtimer();
    }
    nic
}

/// What a NIC image starts from, each taken once: the NIC, started
/// ([`start_nic`]), and the sockets' memory. All of it is built at run time
/// into `.bss`: `None` of an `Option<MaybeUninit<_>>` (a `singleton!`) is
/// zero bits, where that of an `Option<NicSlots>` would not be (`.data`).
///
/// # Panics
/// On a second call, and as [`start_nic`].
pub fn start() -> (
    VirtioNet<'static>,
    &'static mut NicMemory,
    &'static mut NicSlots,
) {
    let frames = riscv::singleton!(: MaybeUninit<Buffers> = MaybeUninit::uninit());
    let frames = frames.expect("started once").write(Buffers::new());
    let memory = riscv::singleton!(: MaybeUninit<NicMemory> = MaybeUninit::uninit());
    let memory = memory.expect("started once").write(NicMemory::new());
    let slots = riscv::singleton!(: MaybeUninit<NicSlots> = MaybeUninit::uninit());
    let slots = slots.expect("started once").write(NicSlots::new());
    (start_nic(frames), memory, slots)
}

/// Completes every interrupt the PLIC holds for hart 0: the device's line
/// is low again once the device is acknowledged, so none comes back.
fn plic_complete_all() {
    loop {
        let irq = read32(PLIC_CLAIM);
        if irq == 0 {
            return;
        }
        write32(PLIC_CLAIM, irq);
    }
}

/// The console: the UART, a byte at a time.
struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            // SAFETY: the UART's line status register, always mapped; a
            // byte register, read as a byte.
            while unsafe { ptr::read_volatile(UART_LSR as *const u8) } & LSR_THR_EMPTY == 0 {}
            // SAFETY: its transmit register, likewise; writing sends a byte.
            unsafe { ptr::write_volatile(UART as *mut u8, byte) };
        }
        Ok(())
    }
}

/// The board, for the shared serving loops.
pub struct Virt;

impl Board for Virt {
    type Nic = VirtioNet<'static>;

    fn now_ms() -> u64 {
        mtime() / TICKS_PER_MS
    }

    fn idle(nic: &mut VirtioNet<'static>) {
        // Clear what woke the last wait, then look: a frame that comes in
        // after the look raises an interrupt that ends the `wfi` at once.
        nic.ack_interrupt();
        plic_complete_all();
        if nic.has_frame() {
            return;
        }
        set_timer(mtime() + TICKS_PER_MS);
        riscv::asm::wfi();
    }

    fn mac_address(nic: &VirtioNet<'static>) -> EthernetAddress {
        nic.mac_address()
    }

    fn print(line: fmt::Arguments<'_>) {
        let _ = writeln!(Uart, "{line}");
    }

    fn exit(success: bool) -> ! {
        write32(TEST_DEVICE, if success { TEST_PASS } else { TEST_FAIL });
        // Only reached without QEMU's test device.
        loop {
            riscv::asm::wfi();
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    Virt::print(format_args!("panicked: {info}"));
    Virt::exit(false)
}

/// A NIC image's entry point: [`start`], then the serving loop of
/// `socketserver_firmware::$loop` (`serve` or `bare`).
#[macro_export]
macro_rules! nic_image {
    ($loop:ident) => {
        #[$crate::riscv_rt::entry]
        fn main() -> ! {
            let (nic, memory, slots) = $crate::start();
            $crate::socketserver_firmware::$loop::serve::<$crate::Virt>(nic, memory, slots)
        }
    };
}
