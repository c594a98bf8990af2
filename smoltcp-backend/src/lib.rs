//! smoltcp backend of `socketserver` (filled in by the smoltcp backend work).
#![no_std]
#![warn(missing_docs)]

pub use socketserver_core as core;
