//! Address families: IPv4/IPv6 (`Inet`) and Unix domain sockets (`Unix`),
//! the parameter of the logic TCP and Unix servers share. Crate-private:
//! the public types are the nominal ones built on them (`TcpConnection`,
//! `UdpTransport`, ...), so that user code and compiler errors never name
//! a family.

#[cfg(unix)]
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::net::SocketAddr;
#[cfg(unix)]
use std::os::unix::ffi::OsStrExt;
#[cfg(unix)]
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr};

/// An address family a server can be bound in: [`Inet`] or [`Unix`].
pub(crate) trait Family: Send + Sync + 'static {
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

    /// Whether a datagram from `source`, received by a server bound at
    /// `server`, comes from the server's own address: answering it would
    /// make the server answer itself, for ever. Datagram servers drop such
    /// datagrams before any handler sees them.
    ///
    /// For [`Inet`], that is any source with the server's port on this
    /// host: the server's address, an unspecified or loopback address, or
    /// (asked of the kernel by binding a probe socket to it, only for
    /// datagrams from the server's port) any other address of this host,
    /// which a wildcard server also receives on. So a twin instance on the
    /// same port of this host is not answered either. A forged source
    /// naming *another* responder (a different port, or another host)
    /// cannot be told from a client, and is answered; see the README's
    /// guarantees. For [`Unix`], it is the server's own name, which no
    /// other socket can hold while the server is bound to it.
    fn is_own_address(server: &Self::Addr, source: &Self::Addr) -> bool;

    /// The address a socket made elsewhere (inherited, or built by the
    /// program) is bound to, or why it cannot serve as a server socket of
    /// this family: it is another family's, or bound to nothing.
    fn bound_address(addr: &SockAddr) -> Result<Self::Addr, &'static str>;
}

/// IPv4 and IPv6: TCP and UDP servers. The family follows the address.
#[derive(Debug)]
pub(crate) enum Inet {}

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

    fn bound_address(addr: &SockAddr) -> Result<SocketAddr, &'static str> {
        match addr.as_socket() {
            None => Err("is not an IPv4 or IPv6 socket"),
            Some(addr) if addr.port() == 0 => Err("is not bound to a port"),
            Some(addr) => Ok(addr),
        }
    }

    #[inline]
    fn is_own_address(server: &SocketAddr, source: &SocketAddr) -> bool {
        // Almost every datagram stops here.
        if source.port() != server.port() {
            return false;
        }
        let ip = source.ip().to_canonical();
        ip == server.ip().to_canonical()
            || ip.is_unspecified()
            || ip.is_loopback()
            || is_local(source)
    }
}

/// Whether `addr`'s IP address is one of this host's: a socket can be
/// bound to it. `false` when that cannot be asked (no descriptor left).
/// Where non-local binds are allowed (`ip_nonlocal_bind`), every address
/// counts as local.
#[cold]
fn is_local(addr: &SocketAddr) -> bool {
    let mut probe = *addr;
    probe.set_port(0);
    if let SocketAddr::V6(v6) = probe {
        if let Some(v4) = v6.ip().to_ipv4_mapped() {
            probe = SocketAddr::from((v4, 0));
        }
    }
    socket2::Socket::new(Domain::for_address(probe), socket2::Type::DGRAM, None)
        .and_then(|socket| socket.bind(&probe.into()))
        .is_ok()
}

#[cfg(unix)]
/// Unix domain sockets: Unix stream and Unix datagram servers.
#[derive(Debug)]
pub(crate) enum Unix {}

#[cfg(unix)]
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

#[cfg(unix)]
impl UnixAddr {
    /// The socket file's path, for a [`Pathname`](Self::Pathname) address.
    pub fn as_pathname(&self) -> Option<&Path> {
        match self {
            UnixAddr::Pathname(path) => Some(path),
            _ => None,
        }
    }
}

#[cfg(unix)]
impl From<PathBuf> for UnixAddr {
    fn from(path: PathBuf) -> Self {
        UnixAddr::Pathname(path)
    }
}

#[cfg(unix)]
impl From<&Path> for UnixAddr {
    fn from(path: &Path) -> Self {
        UnixAddr::Pathname(path.to_owned())
    }
}

#[cfg(unix)]
impl From<&str> for UnixAddr {
    fn from(path: &str) -> Self {
        UnixAddr::Pathname(path.into())
    }
}

#[cfg(unix)]
impl fmt::Display for UnixAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnixAddr::Pathname(path) => write!(f, "{}", path.display()),
            UnixAddr::Abstract(name) => write!(f, "@{}", name.escape_ascii()),
            UnixAddr::Unnamed => f.write_str("(unnamed)"),
        }
    }
}

#[cfg(unix)]
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
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
    fn own_addresses_are_the_servers_port_on_this_host() {
        let own = |server: &str, source: &str| {
            Inet::is_own_address(&server.parse().unwrap(), &source.parse().unwrap())
        };
        assert!(own("127.0.0.1:7", "127.0.0.1:7"));
        assert!(own("0.0.0.0:7", "127.0.0.1:7"));
        assert!(own("0.0.0.0:7", "127.0.0.2:7"), "all of 127/8 is loopback");
        assert!(own("[::]:7", "[::ffff:127.0.0.1]:7"), "v4-mapped");
        assert!(own("[::]:7", "[::1]:7"));
        assert!(
            own("127.0.0.1:7", "0.0.0.0:7"),
            "a reply to 0.0.0.0 is local"
        );
        assert!(own("127.0.0.1:7", "127.0.0.2:7"), "a twin on this host");
        assert!(!own("127.0.0.1:7", "127.0.0.1:8"), "another port");
        assert!(!own("0.0.0.0:7", "203.0.113.7:7"), "another host");
        assert!(!own("[::]:7", "[2001:db8::7]:7"), "another host");
    }

    #[cfg(unix)]
    #[test]
    fn own_unix_addresses_are_the_servers_name() {
        let path = UnixAddr::from("/run/s.sock");
        assert!(Unix::is_own_address(&path, &path));
        assert!(!Unix::is_own_address(&path, &UnixAddr::from("/run/c.sock")));
        let unnamed = UnixAddr::Unnamed;
        assert!(!Unix::is_own_address(&unnamed, &unnamed));
    }

    #[test]
    fn inet_family_follows_the_address() {
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(Inet::domain(&v6), Domain::IPV6);
        assert_eq!(Inet::from_sock_addr(&Inet::to_sock_addr(&v6).unwrap()), v6);
    }
}
