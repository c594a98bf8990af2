//! The `nic` image's services with smoltcp alone, on the same NIC, clock
//! and memory (`socketserver_firmware::bare`): measured against `nic` by
//! `run.sh` (sizes) and `bench_nic.py` (speed).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

firmware_riscv_virt::nic_image!(bare);
