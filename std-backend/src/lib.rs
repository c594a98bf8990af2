//! OS-socket backend of `socketserver` (filled in by the std backend work).
#![warn(missing_docs)]

pub use socketserver_core as core;
