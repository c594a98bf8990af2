//! Unix domain sockets as a [`Family`]: Unix stream and Unix datagram
//! servers, and their addresses.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr};

use super::Family;

/// Unix domain sockets: Unix stream and Unix datagram servers.
#[derive(Debug)]
pub(crate) enum Unix {}

/// The address of a Unix domain socket (Python gives the path, or `''` for
/// a client that did not bind).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnixAddr {
    /// A socket file in the file system.
    Pathname(PathBuf),
    /// A name in Linux's abstract namespace (without the leading NUL).
    Abstract(Vec<u8>),
    /// A socket that was never bound: nothing can be sent to it.
    Unnamed,
}

impl UnixAddr {
    /// The socket file's path, for a [`Pathname`](Self::Pathname) address.
    pub fn as_pathname(&self) -> Option<&Path> {
        match self {
            UnixAddr::Pathname(path) => Some(path),
            _ => None,
        }
    }
}

impl From<PathBuf> for UnixAddr {
    fn from(path: PathBuf) -> Self {
        UnixAddr::Pathname(path)
    }
}

impl From<&Path> for UnixAddr {
    fn from(path: &Path) -> Self {
        UnixAddr::Pathname(path.to_owned())
    }
}

impl From<&str> for UnixAddr {
    fn from(path: &str) -> Self {
        UnixAddr::Pathname(path.into())
    }
}

impl fmt::Display for UnixAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnixAddr::Pathname(path) => write!(f, "{}", path.display()),
            UnixAddr::Abstract(name) => write!(f, "@{}", name.escape_ascii()),
            UnixAddr::Unnamed => f.write_str("(unnamed)"),
        }
    }
}

impl Family for Unix {
    type Addr = UnixAddr;

    fn domain(_addr: &UnixAddr) -> Domain {
        Domain::UNIX
    }

    fn to_sock_addr(addr: &UnixAddr) -> io::Result<SockAddr> {
        match addr {
            UnixAddr::Pathname(path) => SockAddr::unix(path),
            UnixAddr::Abstract(name) => {
                let mut bytes = Vec::with_capacity(name.len() + 1);
                bytes.push(0);
                bytes.extend_from_slice(name);
                SockAddr::unix(OsStr::from_bytes(&bytes))
            }
            UnixAddr::Unnamed => Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "the peer's socket is unbound: there is no address to send to",
            )),
        }
    }

    fn from_sock_addr(addr: &SockAddr) -> UnixAddr {
        if let Some(path) = addr.as_pathname() {
            UnixAddr::Pathname(path.to_owned())
        } else if let Some(name) = addr.as_abstract_namespace() {
            UnixAddr::Abstract(name.to_owned())
        } else {
            UnixAddr::Unnamed
        }
    }

    fn bound_address(addr: &SockAddr) -> Result<UnixAddr, &'static str> {
        if !addr.is_unix() {
            return Err("is not a Unix domain socket");
        }
        match Unix::from_sock_addr(addr) {
            UnixAddr::Unnamed => Err("is not bound to a path or name"),
            bound => Ok(bound),
        }
    }

    #[inline]
    fn is_own_address(server: &UnixAddr, source: &UnixAddr) -> bool {
        *source != UnixAddr::Unnamed && source == server
    }

    fn is_other_server(source: &UnixAddr) -> bool {
        matches!(source, UnixAddr::Pathname(path) if crate::socket_file::is_held(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_addresses_round_trip_through_the_kernel_form() {
        for addr in [
            UnixAddr::from("/tmp/x.sock"),
            UnixAddr::Abstract(b"name".to_vec()),
        ] {
            let sock = Unix::to_sock_addr(&addr).unwrap();
            assert_eq!(Unix::from_sock_addr(&sock), addr);
        }
        let err = Unix::to_sock_addr(&UnixAddr::Unnamed).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable);
        assert_eq!(UnixAddr::from("/a").to_string(), "/a");
        assert_eq!(UnixAddr::Abstract(b"n\0".to_vec()).to_string(), "@n\\x00");
    }

    #[test]
    fn own_addresses_are_the_servers_own_name() {
        let path = UnixAddr::from("/run/s.sock");
        assert!(Unix::is_own_address(&path, &path));
        assert!(!Unix::is_own_address(&path, &UnixAddr::from("/run/c.sock")));
        let unnamed = UnixAddr::Unnamed;
        assert!(!Unix::is_own_address(&unnamed, &unnamed));
    }
}
