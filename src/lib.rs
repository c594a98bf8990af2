//! socketserver facade (documented in the README).
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

pub use socketserver_core::*;

// --- std backend re-exports ---
// --- end std backend ---

// --- smoltcp backend re-exports ---
// --- end smoltcp backend ---
