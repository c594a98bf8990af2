//! Address families: IPv4/IPv6 (`Inet`) and Unix domain sockets (`Unix`).

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr};

mod sealed {
    pub trait Sealed {}
}

/// An address family a server can be bound in: [`Inet`] or [`Unix`]. Sealed.
pub trait Family: sealed::Sealed + Send + Sync + 'static {
    /// How servers and clients of this family are addressed.
    type Addr: Clone + fmt::Debug + Send + Sync + 'static;

    /// The socket domain for binding `addr`.
    fn domain(addr: &Self::Addr) -> Domain;

    /// `addr` as a socket address for `bind`, `connect` and `sendto`.
    ///
    /// # Errors
    /// When `addr` cannot be used as a destination: an unnamed Unix address
    /// (a client that did not bind its socket), or a path too long.
    fn to_sock_addr(addr: &Self::Addr) -> io::Result<SockAddr>;

    /// The address the kernel reported.
    fn from_sock_addr(addr: &SockAddr) -> Self::Addr;
}

/// IPv4 and IPv6: TCP and UDP servers. The family follows the address.
#[derive(Debug)]
pub enum Inet {}

impl sealed::Sealed for Inet {}

impl Family for Inet {
    type Addr = SocketAddr;

    fn domain(addr: &SocketAddr) -> Domain {
        Domain::for_address(*addr)
    }

    fn to_sock_addr(addr: &SocketAddr) -> io::Result<SockAddr> {
        Ok(SockAddr::from(*addr))
    }

    fn from_sock_addr(addr: &SockAddr) -> SocketAddr {
        // An inet socket only ever reports inet addresses.
        addr.as_socket()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }
}

/// Unix domain sockets: Unix stream and Unix datagram servers.
#[derive(Debug)]
pub enum Unix {}

impl sealed::Sealed for Unix {}

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
    fn inet_family_follows_the_address() {
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(Inet::domain(&v6), Domain::IPV6);
        assert_eq!(Inet::from_sock_addr(&Inet::to_sock_addr(&v6).unwrap()), v6);
    }
}
