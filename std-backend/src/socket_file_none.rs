//! Systems without Unix domain sockets (WASI): no server is bound to a
//! socket file, as no Unix server exists there.

use std::io;

use socket2::{SockAddr, Socket};

use crate::Options;

/// The socket file of a Unix server, which cannot exist here.
#[derive(Debug)]
pub(crate) enum SocketFile {}

impl SocketFile {
    /// Refuses: only IPv4 and IPv6 addresses can be bound here.
    pub(crate) fn bind(
        _socket: &Socket,
        _addr: &SockAddr,
        _options: &Options,
    ) -> io::Result<Option<SocketFile>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "Unix domain sockets are not available on this system",
        ))
    }

    pub(crate) fn remove(self) {
        match self {}
    }

    pub(crate) fn keep(&mut self) {
        match *self {}
    }
}
