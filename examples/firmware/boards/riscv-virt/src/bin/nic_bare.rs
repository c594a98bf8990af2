//! The `nic` image's services with smoltcp alone, on the same NIC, clock
//! and memory (`socketserver_firmware::bare`): measured against `nic` by
//! `run.sh` (sizes) and `bench_nic.py` (speed).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use firmware_riscv_virt::{start, Virt};

#[riscv_rt::entry]
fn main() -> ! {
    let (nic, memory, slots) = start();
    socketserver_firmware::bare::serve::<Virt>(nic, memory, slots)
}
