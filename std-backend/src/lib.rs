//! OS-socket backend of `socketserver`: Python's `TCPServer`, `UDPServer`,
//! `UnixStreamServer` and `UnixDatagramServer`, serving the core's
//! handlers over [`socket2`] sockets.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use std::time::Duration;
//!
//! use socketserver_core::handlers::UpperOnce;
//! use socketserver_std::TcpServer;
//!
//! let mut server = TcpServer::new("127.0.0.1:0", || UpperOnce)?;
//! let address = *server.local_addr();
//! let stop = server.shutdown_handle();
//! let serving = std::thread::spawn(move || server.serve_forever(Duration::from_millis(500)));
//!
//! let mut client = TcpStream::connect(address)?;
//! client.write_all(b"hello world with TCP\n")?;
//! let mut reply = String::new();
//! client.read_to_string(&mut reply)?;
//! assert_eq!(reply, "HELLO WORLD WITH TCP");
//!
//! stop.shutdown().expect("called from another thread");
//! serving.join().unwrap()?;
//! # std::io::Result::Ok(())
//! ```
//!
//! Besides the inline dispatch, every server type comes threaded
//! ([`ThreadingDispatch`], Python's `ThreadingMixIn`, with an optional
//! bound on the number of threads), forked ([`ForkingDispatch`],
//! `ForkingMixIn`) or pooled ([`PoolDispatch`], for short connections:
//! workers started once, fed through a bounded queue, refusing clients
//! visibly when none is free in time); the predefined aliases such as
//! [`ThreadingTcpServer`] and [`ForkingUdpServer`] are Python's.
//!
//! Every socket is close-on-exec. `serve_forever` sleeps on the socket and
//! on a wake-up, so [`ShutdownHandle::shutdown`] returns as soon as the
//! current request is done, whatever the poll interval. A panicking handler
//! is reported to `handle_error` and the server goes on; writing to a
//! closed peer is an error, never `SIGPIPE`.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod access;
mod concurrent;
mod connection;
mod dispatch;
mod endpoint;
mod family;
mod forking;
mod pool;
mod server;
mod shutdown;
#[allow(unsafe_code)]
mod sys;
mod threading;
mod transport;

pub use access::{AllowList, Guarded, Network, NetworkError};
pub use connection::{PeerCredentials, TcpConnection, UnixConnection};
pub use dispatch::{BufferSizes, DispatchConfig, InlineDispatch};
pub use family::UnixAddr;
pub use forking::{
    ForkingDispatch, ForkingTcpServer, ForkingUdpServer, ForkingUnixDatagramServer,
    ForkingUnixStreamServer, DEFAULT_MAX_CHILDREN, FORKING_TIMEOUT,
};
pub use pool::{
    default_workers, PoolDispatch, PoolTcpServer, PoolUnixStreamServer, RefusedCounter,
    DEFAULT_QUEUE_TIMEOUT,
};
pub use server::{
    Options, ServerBuilder, SocketServer, TcpServer, UdpServer, UnixDatagramServer,
    UnixStreamServer, DEFAULT_POLL_INTERVAL,
};
pub use shutdown::{ShutdownError, ShutdownHandle, SignalGuard};
pub use threading::{
    ThreadingDispatch, ThreadingTcpServer, ThreadingUdpServer, ThreadingUnixDatagramServer,
    ThreadingUnixStreamServer,
};
pub use transport::{
    SocketTransport, TcpTransport, UdpReply, UdpTransport, UnixDatagramReply,
    UnixDatagramTransport, UnixStreamTransport,
};

pub use socket2;
pub use socketserver_core as core;
pub use socketserver_core::StdClock;
