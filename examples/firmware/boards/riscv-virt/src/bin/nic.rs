//! The socketserver handlers on virtio-net, serving the host's own clients
//! through QEMU's network (`serve.sh --board riscv-virt`): the shared
//! serving loop (`socketserver_firmware::serve`) on the virt machine's NIC,
//! waiting (`wfi`) for its interrupt or the timer. Ends QEMU once stopped.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::mem::MaybeUninit;

use firmware_riscv_virt::virtio_net::Buffers;
use firmware_riscv_virt::{start_nic, Virt};
use socketserver_firmware::nic::{NicMemory, NicSlots};

#[riscv_rt::entry]
fn main() -> ! {
    // In .bss, built at run time: `None` of an `Option<MaybeUninit<_>>` is
    // zero bits, where that of an `Option<NicSlots>` would not be (.data).
    let memory = riscv::singleton!(: MaybeUninit<NicMemory> = MaybeUninit::uninit());
    let memory = memory.expect("runs once").write(NicMemory::new());
    let slots = riscv::singleton!(: MaybeUninit<NicSlots> = MaybeUninit::uninit());
    let slots = slots.expect("runs once").write(NicSlots::new());
    let frames = riscv::singleton!(: MaybeUninit<Buffers> = MaybeUninit::uninit());
    let frames = frames.expect("runs once").write(Buffers::new());
    socketserver_firmware::serve::serve::<Virt>(start_nic(frames), memory, slots)
}
