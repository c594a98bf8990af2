#![doc = include_str!("../README.md")]
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

mod datagram;
mod diag;
mod error;
mod handler;
pub mod handlers;
pub mod memory;
mod message;
mod message_loop;
mod seam;
mod server;
mod stream;
mod time;
pub mod transport;
mod unwind;

#[cfg(test)]
mod tests;

pub use datagram::{serve_datagram, DatagramRequest, PacketReader, PacketWriter};
pub use error::Error;
pub use handler::{
    report_error, DatagramHandler, DefaultHooks, HandlerFactory, Hooks, ServerHooks, StreamHandler,
    StreamOptions,
};
pub use message::{MessageHandler, MessageLoop, Next, Session, Turn};
pub use message_loop::MessageDispatch;
pub use server::{
    handle_datagram_request, handle_stream_request, take_datagram_request, take_stream_request,
    Dispatch, Incoming, Lifecycle, Server, SyncDispatch, Took,
};
pub use stream::{finish_request, serve_connection, shutdown_request, RFile, StreamRequest, WFile};
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
pub use time::StdClock;
pub use time::{Clock, Instant};
pub use transport::{
    Address, Connection, DatagramSocket, Listener, Readiness, Received, ReplySocket, ShutdownFlag,
    Transport,
};

/// Re-export of the embedded-io version whose traits handlers use.
pub use embedded_io;
