//! The socketserver handlers on the emulated NIC, serving the host's own
//! clients through QEMU's network (`serve.sh`): the shared serving loop
//! (`socketserver_firmware::serve`) on the Stellaris controller, sleeping
//! (`WFI`) until its interrupt or SysTick. Exits through semihosting once
//! stopped.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use panic_semihosting as _;

firmware_lm3s6965evb::nic_image!(serve);
