#![doc = include_str!("../README.md")]
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod error;
pub mod memory;
mod stack;
#[cfg(all(feature = "std", any(target_os = "linux", target_os = "android")))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(feature = "std", any(target_os = "linux", target_os = "android"))))
)]
pub mod tap;
mod tcp;
#[cfg(test)]
mod testing;
mod udp;

pub use error::SmoltcpError;
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
pub use socketserver_core::StdClock;
pub use stack::{from_smoltcp, to_smoltcp, Busy, Idle, Net, Spin, Stack, DEFAULT_MAX_IDLE};
pub use tcp::{NetRef, SmoltcpConnection, TcpListener, DEFAULT_LINGER};
pub use udp::{UdpSocket, DEFAULT_SEND_TIMEOUT};

/// The smoltcp version the transports are built on: its modules are
/// re-exported here (`socketserver_smoltcp::wire::IpCidr`, or through the
/// facade `socketserver::smoltcp::wire::IpCidr`), so the path never names
/// smoltcp twice.
pub use smoltcp::{iface, phy, socket, time, wire};
/// Re-export of the core crate.
pub use socketserver_core as core;
