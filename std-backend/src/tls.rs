//! TLS on any stream server (feature `tls`): the handler sees a stream, as
//! over plain TCP; rustls (with its ring provider) does the rest.
//!
//! Python users wrap the accepted socket with `ssl` in `get_request`. Here
//! [`ServerBuilder::tls`](crate::ServerBuilder::tls) wraps the listening
//! transport in a [`TlsTransport`], whose connections are
//! [`TlsConnection`]s: the same [`StreamHandler`](socketserver_core::StreamHandler)
//! serves them unchanged, with every dispatch.
//!
//! ```no_run
//! use socketserver_core::handlers::UpperLine;
//! use socketserver_std::{tls, ServerBuilder, ThreadingDispatch};
//!
//! let config = tls::server_config("cert.pem", "key.pem")?;
//! let mut server = ServerBuilder::tcp("127.0.0.1:8443")
//!     .tls(config)
//!     .build_with(|config| ThreadingDispatch::new(|| UpperLine, config))?;
//! server.serve_forever(socketserver_std::DEFAULT_POLL_INTERVAL)?;
//! # std::io::Result::Ok(())
//! ```
//!
//! The handshake runs on the request's side (the serving thread of an
//! inline server, the request's thread, worker or child otherwise), not in
//! the accept loop, as [`Connection::establish`]: after the handler's
//! options are applied, so its `timeout` and `request_timeout` bound it
//! (when it sets neither, [`DEFAULT_HANDSHAKE_TIMEOUT`] does). A failed
//! handshake (a plaintext client, a certificate the client refuses, a
//! timeout) is the request's error: `handle_error` gets rustls' message,
//! the handler's `setup`/`handle`/`finish` do not run, and the server goes
//! on serving the others.
//!
//! A peer that closes its connection without TLS's `close_notify` reads as
//! an end of file, as with Python's default `suppress_ragged_eofs`; a
//! handler that needs to tell a truncated stream from a complete one frames
//! its messages (lengths, or a final line).

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};
use socket2::Socket;
use socketserver_core::embedded_io;
use socketserver_core::transport::kind;
use socketserver_core::{Connection, Listener, Readiness, Transport};

use crate::shutdown::ShutdownHandle;
use crate::transport::SocketTransport;
use crate::Options;

/// How long a handshake may take when the handler sets no timeout of its
/// own (neither `timeout` nor `request_timeout`): 10 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server configuration from PEM files: the certificate chain (the
/// server's certificate first) and its private key (PKCS#8, PKCS#1 or
/// SEC1), with rustls' safe defaults (TLS 1.2 and 1.3) on the ring
/// provider (classical key exchange: X25519, P-256, P-384; no
/// post-quantum hybrid) and no client authentication. Build a [`ServerConfig`]
/// yourself for anything else (ALPN, client certificates, session
/// storage).
///
/// # Errors
/// A file cannot be read or holds no certificate or key (`InvalidData`,
/// naming the file), or rustls refuses the key for the certificate.
pub fn server_config(
    cert_chain: impl AsRef<Path>,
    private_key: impl AsRef<Path>,
) -> io::Result<Arc<ServerConfig>> {
    let (cert_chain, private_key) = (cert_chain.as_ref(), private_key.as_ref());
    let unreadable = |path: &Path, err: rustls::pki_types::pem::Error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {err}", path.display()),
        )
    };
    let certs = CertificateDer::pem_file_iter(cert_chain)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| unreadable(cert_chain, err))?;
    if certs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: no certificate in it", cert_chain.display()),
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(private_key).map_err(|err| unreadable(private_key, err))?;
    // ring builds from crates.io with a C compiler alone (aws-lc-rs needs
    // more); rustls 0.23.48 deprecates its provider for lacking the
    // post-quantum key exchange, which a `ServerConfig` built on aws-lc-rs
    // offers, served the same way through `ServerBuilder::tls`.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(tls_error)?;
    Ok(Arc::new(config))
}

/// A rustls error as an I/O error, its message kept.
fn tls_error(err: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}

/// A stream transport whose connections speak TLS: `T`'s socket, with each
/// accepted connection wrapped in a [`TlsConnection`]. Built by
/// [`ServerBuilder::tls`](crate::ServerBuilder::tls).
///
/// Without a configuration (`.tls(None)`), its connections are plaintext:
/// so a program that serves TLS only when given a certificate has one
/// server type either way.
pub struct TlsTransport<T> {
    inner: T,
    config: Option<Arc<ServerConfig>>,
}

impl<T> TlsTransport<T> {
    /// The plain transport underneath.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The configuration each connection starts from; `None`: plaintext.
    pub fn config(&self) -> Option<&Arc<ServerConfig>> {
        self.config.as_ref()
    }
}

impl<T: fmt::Debug> fmt::Debug for TlsTransport<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTransport")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

fn with_config<T>(
    options: &Options,
    inner: impl FnOnce() -> io::Result<T>,
) -> io::Result<TlsTransport<T>> {
    Ok(TlsTransport {
        inner: inner()?,
        config: options.tls.clone(),
    })
}

impl<T: SocketTransport<Kind = kind::Stream>> Transport for TlsTransport<T> {
    type Kind = kind::Stream;
    type Addr = T::Addr;
    type Error = io::Error;

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<Readiness> {
        self.inner.wait(timeout)
    }

    fn shutdown_requested(&self) -> bool {
        self.inner.shutdown_requested()
    }

    fn clear_shutdown(&mut self) {
        self.inner.clear_shutdown();
    }

    fn close(&mut self) {
        self.inner.close();
    }
}

impl<T> SocketTransport for TlsTransport<T>
where
    T: SocketTransport<Kind = kind::Stream>,
{
    /// `T`'s socket, with the configuration set by
    /// [`ServerBuilder::tls`](crate::ServerBuilder::tls) (none: plaintext).
    ///
    /// # Errors
    /// As `T`'s.
    fn open(address: T::Addr, options: &Options) -> io::Result<Self> {
        with_config(options, || T::open(address, options))
    }

    fn adopt(socket: Socket, options: &Options) -> io::Result<Self> {
        with_config(options, || T::adopt(socket, options))
    }

    fn server_bind(&mut self) -> io::Result<()> {
        self.inner.server_bind()
    }

    fn server_activate(&mut self) -> io::Result<()> {
        self.inner.server_activate()
    }

    fn local_addr(&self) -> &T::Addr {
        self.inner.local_addr()
    }

    fn socket(&self) -> Option<&Socket> {
        self.inner.socket()
    }

    fn shutdown_handle(&self) -> ShutdownHandle {
        self.inner.shutdown_handle()
    }
}

impl<T, C> Listener for TlsTransport<T>
where
    T: SocketTransport<Kind = kind::Stream> + Listener<Connection = C>,
    C: Connection<Addr = T::Addr> + embedded_io::ErrorType<Error = io::Error> + Read + Write,
{
    type Connection = TlsConnection<C>;

    /// `T`'s accept, with the configuration its TLS session will start
    /// from: the session and its handshake wait for the request
    /// ([`Connection::establish`]), so neither a slow client nor the
    /// session's setup holds up the accept loop.
    fn try_accept(&mut self) -> io::Result<Option<(TlsConnection<C>, T::Addr)>> {
        let Some((conn, addr)) = self.inner.try_accept()? else {
            return Ok(None);
        };
        let conn = TlsConnection {
            conn,
            pending: self.config.clone(),
            tls: None,
            bounded: [false; 2],
        };
        Ok(Some((conn, addr)))
    }
}

impl<T: AsRawFd> AsRawFd for TlsTransport<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl<T: AsFd> AsFd for TlsTransport<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

/// An accepted connection speaking TLS over the stream connection `C`
/// ([`TcpConnection`](crate::TcpConnection) or
/// [`UnixConnection`](crate::UnixConnection)).
///
/// Reads return the peer's plaintext; each write is encrypted and sent
/// before it returns (so `wfile`'s all-or-error promise holds). Its
/// [`shutdown_write`](Connection::shutdown_write) sends TLS's
/// `close_notify` before shutting the socket's sending side. Implements
/// embedded-io and `std::io` `Read`/`Write`, as `C` does.
///
/// On a transport without a configuration it passes bytes through as
/// they are (plaintext).
pub struct TlsConnection<C> {
    conn: C,
    /// The configuration of a session not started yet.
    pending: Option<Arc<ServerConfig>>,
    /// The session once started; `None` (and nothing pending): plaintext.
    tls: Option<ServerConnection>,
    /// Whether the handler bounded each operation, and the request as a
    /// whole, itself.
    bounded: [bool; 2],
}

impl<C> TlsConnection<C> {
    /// The connection underneath: its socket, peer address, credentials.
    pub fn get_ref(&self) -> &C {
        &self.conn
    }

    /// The TLS session: the server name the client asked for, the
    /// negotiated protocol version, cipher suite and ALPN protocol; `None`
    /// on a plaintext connection, and before the request starts (the
    /// handler always sees it started).
    pub fn tls(&self) -> Option<&ServerConnection> {
        self.tls.as_ref()
    }

    fn is_handshaking(&self) -> bool {
        self.pending.is_some() || self.tls.as_ref().is_some_and(|tls| tls.is_handshaking())
    }

    /// Starts the session, if one is pending.
    fn start(&mut self) -> io::Result<()> {
        if let Some(config) = self.pending.take() {
            self.tls = Some(ServerConnection::new(config).map_err(tls_error)?);
        }
        Ok(())
    }
}

impl<C> TlsConnection<C>
where
    C: Connection + embedded_io::ErrorType<Error = io::Error> + Read + Write,
{
    /// Runs the handshake to its end; each read and write is bounded by
    /// the connection's timeouts.
    fn handshake(&mut self) -> io::Result<()> {
        self.start()?;
        if let Some(tls) = &mut self.tls {
            while tls.is_handshaking() {
                tls.complete_io(&mut self.conn)?;
            }
        }
        Ok(())
    }

    /// Sends every TLS record waiting to go out.
    fn send_pending(&mut self) -> io::Result<()> {
        let Some(tls) = &mut self.tls else {
            return Ok(());
        };
        while tls.wants_write() {
            if tls.write_tls(&mut self.conn)? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.start()?;
        let Some(tls) = &mut self.tls else {
            return Read::read(&mut self.conn, buf);
        };
        match rustls::Stream::new(tls, &mut self.conn).read(buf) {
            // No close_notify: an end of file all the same, as Python's
            // `suppress_ragged_eofs` (the handshake's own EOF is an error).
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof && !tls.is_handshaking() => {
                Ok(0)
            }
            other => other,
        }
    }

    fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.handshake()?;
        let Some(tls) = &mut self.tls else {
            return Write::write(&mut self.conn, buf);
        };
        let n = tls.writer().write(buf)?;
        self.send_pending()?;
        Ok(n)
    }
}

impl<C: fmt::Debug> fmt::Debug for TlsConnection<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnection")
            .field("conn", &self.conn)
            .field("tls", &(self.tls.is_some() || self.pending.is_some()))
            .field("handshaking", &self.is_handshaking())
            .finish_non_exhaustive()
    }
}

impl<C> embedded_io::ErrorType for TlsConnection<C> {
    type Error = io::Error;
}

/// The embedded-io and `std::io` traits, written once.
macro_rules! tls_io {
    ($read:path, $write:path) => {
        impl<C> $read for TlsConnection<C>
        where
            C: Connection + embedded_io::ErrorType<Error = io::Error> + Read + Write,
        {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.recv(buf)
            }
        }

        impl<C> $write for TlsConnection<C>
        where
            C: Connection + embedded_io::ErrorType<Error = io::Error> + Read + Write,
        {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.send(buf)
            }

            fn flush(&mut self) -> io::Result<()> {
                self.send_pending()
            }
        }
    };
}

tls_io!(embedded_io::Read, embedded_io::Write);
tls_io!(io::Read, io::Write);

impl<C> Connection for TlsConnection<C>
where
    C: Connection + embedded_io::ErrorType<Error = io::Error> + Read + Write,
{
    type Addr = C::Addr;

    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.bounded[0] = timeout.is_some();
        self.conn.set_timeout(timeout)
    }

    fn set_request_timeout(&mut self, total: Option<Duration>) -> io::Result<()> {
        self.bounded[1] = total.is_some();
        self.conn.set_request_timeout(total)
    }

    fn set_nodelay(&mut self, nodelay: bool) -> io::Result<()> {
        self.conn.set_nodelay(nodelay)
    }

    /// The TLS handshake, bounded by the handler's timeouts, or when it set
    /// none by the module's `DEFAULT_HANDSHAKE_TIMEOUT` (10 s). Turns Nagle's algorithm off
    /// first (`TCP_NODELAY`, as Go does for every TCP connection): every
    /// write is sent as a whole record, which Nagle would only delay. Its error carries rustls'
    /// message (`received corrupt message of type InvalidContentType` for
    /// a plaintext client, say).
    fn establish(&mut self) -> io::Result<()> {
        if !self.is_handshaking() {
            return Ok(());
        }
        // Each write is a whole record already: Nagle's algorithm would
        // only hold one back (close_notify after a reply, a record after
        // a handshake flight) until the peer's delayed ACK, 40 ms later.
        self.conn.set_nodelay(true)?;
        if self.bounded.contains(&true) {
            return self.handshake();
        }
        self.conn
            .set_request_timeout(Some(DEFAULT_HANDSHAKE_TIMEOUT))?;
        let done = self.handshake();
        self.conn.set_request_timeout(None)?;
        done
    }

    /// Sends `close_notify`, then shuts the socket's sending side.
    fn shutdown_write(&mut self) -> io::Result<()> {
        if let Some(tls) = self.tls.as_mut().filter(|tls| !tls.is_handshaking()) {
            tls.send_close_notify();
            self.send_pending()?;
        }
        self.conn.shutdown_write()
    }
}

impl<C: AsFd> AsFd for TlsConnection<C> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.conn.as_fd()
    }
}

impl<C: AsRawFd> AsRawFd for TlsConnection<C> {
    fn as_raw_fd(&self) -> RawFd {
        self.conn.as_raw_fd()
    }
}
