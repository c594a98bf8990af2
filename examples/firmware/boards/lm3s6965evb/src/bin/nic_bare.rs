//! The `nic` image's services with smoltcp alone, on the same controller,
//! clock and memory (`socketserver_firmware::bare`): measured against `nic`
//! by `run.sh` (sizes) and `bench_nic.py` (speed).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use panic_semihosting as _;

firmware_lm3s6965evb::nic_image!(bare);
