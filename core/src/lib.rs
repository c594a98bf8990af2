#![doc = include_str!("../README.md")]
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

#[cfg(test)]
extern crate std;

mod datagram;
mod diag;
mod error;
mod handler;
pub mod handlers;
pub mod memory;
mod server;
mod stream;
mod time;
pub mod transport;

#[cfg(test)]
mod tests;

pub use datagram::{serve_datagram, DatagramRequest, PacketReader, PacketWriter};
pub use error::Error;
pub use handler::{
    report_error, DatagramHandler, DefaultHooks, HandlerFactory, Hooks, StreamHandler,
    StreamOptions,
};
pub use server::{
    get_datagram_request, get_stream_request, handle_datagram_request, handle_stream_request,
    Dispatch, Server, SyncDispatch, Taken,
};
pub use stream::{finish_request, serve_connection, shutdown_request, RFile, StreamRequest, WFile};
pub use time::{Clock, Instant};
pub use transport::{
    Address, Connection, DatagramSocket, Listener, Readiness, Received, ShutdownFlag, Transport,
};

/// Re-export of the embedded-io version whose traits handlers use.
pub use embedded_io;
