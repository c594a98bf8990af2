//! The socketserver handlers on virtio-net, serving the host's own clients
//! through QEMU's network (`serve.sh --board riscv-virt`): the shared
//! serving loop (`socketserver_firmware::serve`) on the virt machine's NIC,
//! waiting (`wfi`) for its interrupt or the timer. Ends QEMU once stopped.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

firmware_riscv_virt::nic_image!(serve);
