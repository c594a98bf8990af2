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
//! A built server can also be served by pre-forked worker processes on
//! one port ([`Prefork`]).
//!
//! Besides the inline dispatch, every server type comes threaded
//! ([`ThreadingDispatch`], Python's `ThreadingMixIn`, with an optional
//! bound on the number of threads), forked ([`ForkingDispatch`],
//! `ForkingMixIn`) or pooled ([`PoolDispatch`], for short connections:
//! workers started once, fed through a bounded queue, refusing clients
//! visibly when none is free in time); the predefined aliases such as
//! [`ThreadingTcpServer`] and [`ForkingUdpServer`] are Python's.
//!
//! On Windows the TCP and UDP servers, threaded and pooled, are all there
//! is: forking and the Unix servers exist on Unix only, as in Python (see
//! the guide's platform page).
//!
//! On WASI preview 2 (`wasm32-wasip2`) the TCP and UDP servers with the
//! inline dispatch serve from a WebAssembly component (run it with
//! `wasmtime run -S inherit-network=y -S tcp=y -S udp=y`); threads, forking,
//! Unix sockets and signals do not exist there, nor what needs them (see
//! `docs/guide/wasi.md`).
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
#[cfg(unix)]
pub mod activation;
#[cfg(not(target_os = "wasi"))]
mod concurrent;
mod connection;
mod dispatch;
mod endpoint;
mod family;
#[cfg(unix)]
mod forking;
#[cfg(not(target_os = "wasi"))]
mod parking;
#[cfg(not(target_os = "wasi"))]
mod pool;
#[cfg(unix)]
mod prefork;
mod server;
mod shutdown;
#[cfg_attr(not(unix), path = "socket_file_none.rs")]
mod socket_file;
#[allow(unsafe_code)]
mod sys;
#[cfg(not(target_os = "wasi"))]
mod threading;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
mod transport;

pub use access::{AllowList, Guarded, Network, NetworkError};
pub use connection::TcpConnection;
#[cfg(unix)]
pub use connection::{PeerCredentials, UnixConnection};
pub use dispatch::{BufferSizes, DispatchConfig, InlineDispatch};
#[cfg(unix)]
pub use family::UnixAddr;
#[cfg(unix)]
pub use forking::{
    ForkingDispatch, ForkingTcpServer, ForkingUdpServer, ForkingUnixDatagramServer,
    ForkingUnixStreamServer, DEFAULT_MAX_CHILDREN, FORKING_TIMEOUT,
};
#[cfg(all(unix, not(target_os = "wasi")))]
pub use parking::PersistentUnixStreamServer;
#[cfg(not(target_os = "wasi"))]
pub use parking::{
    Full, Parkable, ParkingDispatch, ParkingStats, PersistentTcpServer, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
};
#[cfg(all(unix, not(target_os = "wasi")))]
pub use pool::PoolUnixStreamServer;
#[cfg(not(target_os = "wasi"))]
pub use pool::{
    default_workers, PoolDispatch, PoolTcpServer, RefusedCounter, DEFAULT_QUEUE_TIMEOUT,
};
#[cfg(unix)]
pub use prefork::{Forkable, Prefork, MIN_WORKER_LIFETIME, RESPAWN_PAUSE};
pub use server::{
    Options, ServerBuilder, SocketServer, TcpServer, UdpServer, DEFAULT_POLL_INTERVAL,
    DEFAULT_REQUEST_QUEUE_SIZE, PYTHON_REQUEST_QUEUE_SIZE,
};
#[cfg(unix)]
pub use server::{UnixDatagramServer, UnixStreamServer};
#[cfg(not(target_os = "wasi"))]
pub use shutdown::{SecondSignal, SignalGuard};
pub use shutdown::{ShutdownError, ShutdownHandle};
#[cfg(not(target_os = "wasi"))]
pub use threading::{ThreadingDispatch, ThreadingTcpServer, ThreadingUdpServer};
#[cfg(all(unix, not(target_os = "wasi")))]
pub use threading::{ThreadingUnixDatagramServer, ThreadingUnixStreamServer};
pub use transport::{SocketTransport, TcpTransport, UdpReply, UdpTransport};
#[cfg(unix)]
pub use transport::{UnixDatagramReply, UnixDatagramTransport, UnixStreamTransport};

pub use socket2;
pub use socketserver_core as core;
pub use socketserver_core::StdClock;
