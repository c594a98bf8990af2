//! Python's `socketserver` model in Rust: one request handler, written once,
//! served from OS sockets (feature `std`, default), from the smoltcp TCP/IP
//! stack over any `phy::Device` (feature `smoltcp`), or from firmware
//! (`default-features = false, features = ["smoltcp"]`).
//!
//! ```
//! use socketserver::memory::{ManualClock, MemoryListener, Transcript};
//! use socketserver::{Connection, Error, Server, ShutdownFlag, StreamHandler, StreamRequest, SyncDispatch};
//!
//! /// Python's docs example with `rfile`: read a line, reply upper-cased.
//! struct Upper;
//!
//! impl<C: Connection> StreamHandler<C> for Upper {
//!     fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
//!         let line = req.rfile.read_line()?; // bounded by the server's line buffer
//!         line.make_ascii_uppercase();
//!         req.wfile.write_all(line)
//!     }
//! }
//!
//! // The same handler serves on every backend; here, the in-memory one.
//! let transcript = Transcript::<64>::new();
//! let shutdown = ShutdownFlag::new();
//! let mut listener = MemoryListener::<1, 64>::new(&transcript, &shutdown);
//! listener.push(b"hello\n", 1).unwrap();
//! let mut server = Server::new(listener, SyncDispatch::<_, _, [u8; 64], [u8; 0]>::new(|| Upper), ManualClock::new());
//! server.handle_request()?;
//! transcript.with(|reply| assert_eq!(reply, b"HELLO\n"));
//! # Ok::<(), socketserver::embedded_io::ErrorKind>(())
//! ```
//!
//! The pieces are those of `socketserver-core`, re-exported here: [`Server`]
//! (Python's `BaseServer`), [`Dispatch`] (`process_request`), [`Hooks`]
//! (`verify_request`, `handle_error`, ...), [`StreamHandler`] and
//! [`DatagramHandler`] (the request handler classes). The backends add
//! transports and, on std, threading, forking and pooled dispatch.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use socketserver_core::*;

// --- std backend re-exports ---
/// The OS-socket backend (`socketserver-std`): transports, connections and
/// the rest of what the servers below are made of.
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
pub use socketserver_std as os;
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
pub use socketserver_std::{
    AllowList, BufferSizes, DispatchConfig, Guarded, InlineDispatch, Network, NetworkError,
    ServerBuilder, ShutdownError, ShutdownHandle, SocketServer, SocketTransport, TcpServer,
    UdpServer, DEFAULT_POLL_INTERVAL, DEFAULT_REQUEST_QUEUE_SIZE, PYTHON_REQUEST_QUEUE_SIZE,
};
// Forking and the Unix servers need Unix; threads, pools and signals do not
// exist on WASI.
#[cfg(all(feature = "std", not(target_os = "wasi")))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "std", not(target_os = "wasi")))))]
pub use socketserver_std::{
    default_workers, Full, ParkingDispatch, ParkingStats, PersistentTcpServer, PoolDispatch,
    PoolTcpServer, SecondSignal, SignalGuard, ThreadingDispatch, ThreadingTcpServer,
    ThreadingUdpServer, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
};
#[cfg(all(feature = "std", unix))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "std", unix))))]
pub use socketserver_std::{
    ForkingDispatch, ForkingTcpServer, ForkingUdpServer, ForkingUnixDatagramServer,
    ForkingUnixStreamServer, PeerCredentials, PersistentUnixStreamServer, PoolUnixStreamServer,
    Prefork, ThreadingUnixDatagramServer, ThreadingUnixStreamServer, UnixAddr, UnixDatagramServer,
    UnixStreamServer, DEFAULT_MAX_CHILDREN, FORKING_TIMEOUT, MIN_WORKER_LIFETIME, RESPAWN_PAUSE,
};
// --- end std backend ---

// --- smoltcp backend re-exports ---
/// The smoltcp backend (`socketserver-smoltcp`): TCP and UDP servers over any
/// smoltcp `phy::Device`, with smoltcp's own modules (`smoltcp::wire`, ...).
#[cfg(feature = "smoltcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "smoltcp")))]
pub use socketserver_smoltcp as smoltcp;
// --- end smoltcp backend ---

/// The README's and the guide's Rust code, compiled (and run unless marked
/// `no_run`) as doctests by `cargo test --features std,smoltcp`, so that
/// no page drifts from the API. One line per page: to add a page, add its
/// line here and link it from the README's map.
#[cfg(all(doctest, feature = "std", feature = "smoltcp"))]
mod guide {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../docs/guide/porting.md")]
    struct Porting;
    #[doc = include_str!("../docs/guide/std.md")]
    struct Std;
    #[doc = include_str!("../docs/guide/smoltcp.md")]
    struct Smoltcp;
    #[doc = include_str!("../docs/guide/firmware.md")]
    struct Firmware;
    #[doc = include_str!("../docs/guide/benchmarks.md")]
    struct Benchmarks;
    #[doc = include_str!("../docs/guide/guarantees.md")]
    struct Guarantees;
    #[doc = include_str!("../docs/guide/persistent.md")]
    struct Persistent;
    #[cfg(feature = "tls")]
    #[doc = include_str!("../docs/guide/deployment.md")]
    struct Deployment;
    #[doc = include_str!("../docs/guide/wasi.md")]
    struct Wasi;
    #[doc = include_str!("../docs/guide/http_server.md")]
    struct HttpServer;
}
