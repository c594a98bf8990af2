//! Systems without Unix domain sockets here: no server is bound to a
//! socket file (the Unix servers do not exist on them).

use std::io;

use socket2::{SockAddr, Socket};

use crate::Options;

/// The socket file of a Unix server, which cannot exist here.
#[derive(Debug)]
pub(crate) enum SocketFile {}

impl SocketFile {
    /// Refuses: no Unix server is built on this system.
    pub(crate) fn bind(
        _socket: &Socket,
        _addr: &SockAddr,
        _options: &Options,
    ) -> io::Result<Option<SocketFile>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "Unix domain socket servers are not available on this system",
        ))
    }

    pub(crate) fn remove(self) {
        match self {}
    }

    pub(crate) fn keep(&mut self) {
        match *self {}
    }
}
