//! Access control for `verify_request`: an allow-list of IP networks.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use socketserver_core::{Error, Hooks, ServerHooks};

/// An IPv4 or IPv6 network: an address and a prefix length, written
/// `10.0.0.0/8` or `fd00::/8`; a bare address is the network of that one
/// host (`/32` or `/128`).
///
/// IPv4 and IPv6 are told apart as the kernel reports them, except for
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, how a dual-stack IPv6
/// server sees its IPv4 clients): those are the IPv4 address they carry, so
/// `127.0.0.0/8` contains `::ffff:127.0.0.1` and `::ffff:0:0/96` contains
/// `127.0.0.1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Network {
    addr: IpAddr,
    prefix_len: u8,
}

impl Network {
    /// The network of `addr`'s first `prefix_len` bits.
    ///
    /// # Errors
    /// [`NetworkError::PrefixTooLong`] past 32 bits for IPv4 or 128 for
    /// IPv6; [`NetworkError::HostBitsSet`] when `addr` has bits set after
    /// the prefix (`10.0.0.1/8`), which is most often a typo.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, NetworkError> {
        let text = || format!("{addr}/{prefix_len}");
        let max = max_prefix_len(addr);
        if prefix_len > max {
            return Err(NetworkError::PrefixTooLong { input: text(), max });
        }
        let network = Network { addr, prefix_len };
        if network.masked(addr) != addr {
            return Err(NetworkError::HostBitsSet {
                input: text(),
                network: Network {
                    addr: network.masked(addr),
                    prefix_len,
                }
                .to_string(),
            });
        }
        Ok(network)
    }

    /// The network holding only `addr` (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Self {
        Network {
            addr,
            prefix_len: max_prefix_len(addr),
        }
    }

    /// The network's first address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// How many leading bits an address shares with the network to be in it.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `addr` is in this network, an IPv4-mapped IPv6 address
    /// counting as the IPv4 address it carries.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let (v4, v6) = both_forms(addr);
        match self.addr {
            IpAddr::V4(_) => v4.is_some_and(|a| self.masked(IpAddr::V4(a)) == self.addr),
            IpAddr::V6(_) => self.masked(IpAddr::V6(v6)) == self.addr,
        }
    }

    /// `addr` with the bits after the prefix cleared, in `addr`'s family.
    fn masked(&self, addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_len));
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask.unwrap_or(0)))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix_len));
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask.unwrap_or(0)))
            }
        }
    }
}

fn max_prefix_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// `addr` as IPv4 (when it is IPv4 or IPv4-mapped) and as IPv6.
fn both_forms(addr: IpAddr) -> (Option<Ipv4Addr>, Ipv6Addr) {
    match addr {
        IpAddr::V4(a) => (Some(a), a.to_ipv6_mapped()),
        IpAddr::V6(a) => (a.to_ipv4_mapped(), a),
    }
}

impl FromStr for Network {
    type Err = NetworkError;

    /// Parses `ADDRESS/PREFIX_LEN` or a bare `ADDRESS`, surrounding
    /// whitespace ignored.
    fn from_str(text: &str) -> Result<Self, NetworkError> {
        let input = text.trim();
        let (addr_text, prefix_text) = match input.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (input, None),
        };
        let addr = IpAddr::from_str(addr_text).map_err(|_| NetworkError::InvalidAddress {
            input: input.to_owned(),
        })?;
        let Some(prefix_text) = prefix_text else {
            return Ok(Network::host(addr));
        };
        let invalid_prefix = || NetworkError::InvalidPrefix {
            input: input.to_owned(),
        };
        // `u8::from_str` takes a leading `+`; a prefix length is digits only.
        if prefix_text.is_empty() || !prefix_text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid_prefix());
        }
        let max = max_prefix_len(addr);
        let prefix_len = match prefix_text.parse::<u8>() {
            Ok(len) => len,
            Err(_) => {
                return Err(NetworkError::PrefixTooLong {
                    input: input.to_owned(),
                    max,
                })
            }
        };
        Network::new(addr, prefix_len).map_err(|err| err.with_input(input))
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Why a network ([`Network`]) or an allow-list ([`AllowList`]) did not
/// parse. Each variant holds the entry that failed, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetworkError {
    /// The part before `/` is not an IPv4 or IPv6 address.
    InvalidAddress {
        /// The entry.
        input: String,
    },
    /// The part after `/` is not a decimal number.
    InvalidPrefix {
        /// The entry.
        input: String,
    },
    /// The prefix length is longer than the address.
    PrefixTooLong {
        /// The entry.
        input: String,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
    /// The address has bits set after the prefix, as in `10.0.0.1/8`.
    HostBitsSet {
        /// The entry.
        input: String,
        /// The network that was probably meant, as in `10.0.0.0/8`.
        network: String,
    },
}

impl NetworkError {
    fn with_input(self, text: &str) -> Self {
        let input = text.to_owned();
        match self {
            NetworkError::InvalidAddress { .. } => NetworkError::InvalidAddress { input },
            NetworkError::InvalidPrefix { .. } => NetworkError::InvalidPrefix { input },
            NetworkError::PrefixTooLong { max, .. } => NetworkError::PrefixTooLong { input, max },
            NetworkError::HostBitsSet { network, .. } => {
                NetworkError::HostBitsSet { input, network }
            }
        }
    }
}

impl fmt::Display for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkError::InvalidAddress { input } => {
                write!(f, "{input:?}: not an IPv4 or IPv6 address (or network)")
            }
            NetworkError::InvalidPrefix { input } => {
                write!(f, "{input:?}: the prefix length after '/' is not a number")
            }
            NetworkError::PrefixTooLong { input, max } => {
                write!(f, "{input:?}: the prefix length is more than {max} bits")
            }
            NetworkError::HostBitsSet { input, network } => write!(
                f,
                "{input:?}: the address has bits set after the prefix (did you mean {network}?)"
            ),
        }
    }
}

impl std::error::Error for NetworkError {}

/// The networks whose clients a server serves: as [`Hooks`], its
/// `verify_request` refuses every client address outside them, so that the
/// connection (or datagram) is dropped before a handler is built.
///
/// An empty list allows nobody. For TCP and UDP servers (client addresses
/// are [`SocketAddr`]s); Unix sockets have no addresses to filter on, see
/// [`UnixConnection::peer_credentials`](crate::UnixConnection::peer_credentials)
/// instead. Use it as the server's hooks, or put it in front of your own
/// with [`guard`](Self::guard).
///
/// An address is what the kernel reports for the peer: on the open
/// internet it can be spoofed for datagrams (UDP has no handshake), and
/// behind a proxy or NAT it is the proxy's. Checking it costs a scan of
/// the list per request.
///
/// ```
/// use socketserver_core::handlers::UpperOnce;
/// use socketserver_std::{AllowList, ServerBuilder};
///
/// let allow: AllowList = "127.0.0.0/8, ::1".parse()?;
/// assert!(allow.allows("127.0.0.1".parse()?));
/// assert!(allow.allows("::ffff:127.0.0.1".parse()?)); // IPv4 on a dual-stack socket
/// assert!(!allow.allows("192.0.2.7".parse()?));
///
/// // As the server's hooks: a refused client is closed before a handler is built.
/// let server = ServerBuilder::tcp("127.0.0.1:0").hooks(allow).build(|| UpperOnce)?;
/// # drop(server);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    networks: Vec<Network>,
}

impl AllowList {
    /// An empty list: nobody is allowed.
    pub fn new() -> Self {
        AllowList::default()
    }

    /// The loopback networks, `127.0.0.0/8` and `::1/128`: only clients on
    /// this machine.
    pub fn loopback() -> Self {
        AllowList::new()
            .allow(Network {
                addr: Ipv4Addr::new(127, 0, 0, 0).into(),
                prefix_len: 8,
            })
            .allow(Network::host(Ipv6Addr::LOCALHOST.into()))
    }

    /// A list from entries such as `"10.0.0.0/8"` or `"::1"` (see
    /// [`Network`]'s `FromStr`).
    ///
    /// # Errors
    /// The first entry that does not parse.
    pub fn parse<I>(entries: I) -> Result<Self, NetworkError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        entries
            .into_iter()
            .map(|entry| entry.as_ref().parse())
            .collect()
    }

    /// The list with `network` added.
    pub fn allow(mut self, network: Network) -> Self {
        self.push(network);
        self
    }

    /// Adds `network`.
    pub fn push(&mut self, network: Network) {
        self.networks.push(network);
    }

    /// The networks allowed, in the order they were added.
    pub fn networks(&self) -> &[Network] {
        &self.networks
    }

    /// Whether `addr` is in one of the networks.
    pub fn allows(&self, addr: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(addr))
    }

    /// Hooks that refuse what this list does not allow, and leave the rest,
    /// and every other hook, to `hooks`.
    pub fn guard<H>(self, hooks: H) -> Guarded<H> {
        Guarded {
            allow: self,
            inner: hooks,
        }
    }
}

impl FromStr for AllowList {
    type Err = NetworkError;

    /// Parses networks separated by commas or whitespace, as in
    /// `"127.0.0.0/8, ::1"`; an empty string is the empty list.
    fn from_str(text: &str) -> Result<Self, NetworkError> {
        AllowList::parse(
            text.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|entry| !entry.is_empty()),
        )
    }
}

impl FromIterator<Network> for AllowList {
    fn from_iter<I: IntoIterator<Item = Network>>(iter: I) -> Self {
        AllowList {
            networks: iter.into_iter().collect(),
        }
    }
}

impl Extend<Network> for AllowList {
    fn extend<I: IntoIterator<Item = Network>>(&mut self, iter: I) {
        self.networks.extend(iter);
    }
}

impl fmt::Display for AllowList {
    /// The networks separated by `", "`, which parses back to this list.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, network) in self.networks.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{network}")?;
        }
        Ok(())
    }
}

fn verify(allow: &AllowList, client_address: &SocketAddr) -> bool {
    let allowed = allow.allows(client_address.ip());
    if !allowed {
        log::debug!("refused {client_address}: not in the allow-list");
    }
    allowed
}

impl<R: ?Sized> Hooks<R, SocketAddr> for AllowList {
    /// Whether the client's IP address is in the list.
    fn verify_request(&self, _request: &R, client_address: &SocketAddr) -> bool {
        verify(self, client_address)
    }
}

impl ServerHooks for AllowList {}

/// Hooks `H` behind an [`AllowList`] (made by [`AllowList::guard`]): a
/// client outside the list is refused before `H::verify_request` is asked;
/// every other hook is `H`'s.
#[derive(Clone, Debug, Default)]
pub struct Guarded<H> {
    allow: AllowList,
    inner: H,
}

impl<H> Guarded<H> {
    /// The allow-list.
    pub fn allow_list(&self) -> &AllowList {
        &self.allow
    }

    /// The guarded hooks.
    pub fn inner(&self) -> &H {
        &self.inner
    }
}

impl<R: ?Sized, H: Hooks<R, SocketAddr>> Hooks<R, SocketAddr> for Guarded<H> {
    fn verify_request(&self, request: &R, client_address: &SocketAddr) -> bool {
        verify(&self.allow, client_address) && self.inner.verify_request(request, client_address)
    }

    fn handle_error(&self, client_address: &SocketAddr, error: &Error) {
        self.inner.handle_error(client_address, error);
    }
}

impl<H: ServerHooks> ServerHooks for Guarded<H> {
    fn handle_timeout(&self) {
        self.inner.handle_timeout();
    }

    fn service_actions(&self) {
        self.inner.service_actions();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn net(text: &str) -> Network {
        text.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_print_back() {
        for text in [
            "127.0.0.0/8",
            "10.1.2.3/32",
            "0.0.0.0/0",
            "::1/128",
            "fd00::/8",
            "::/0",
        ] {
            assert_eq!(net(text).to_string(), text);
        }
        assert_eq!(net(" 192.0.2.1 "), Network::host(ip("192.0.2.1")));
        assert_eq!(net("::1").prefix_len(), 128);
        assert_eq!(net("10.0.0.0/8").addr(), ip("10.0.0.0"));
    }

    #[test]
    fn parse_errors_name_the_entry_and_the_fault() {
        let cases = [
            ("10.0.0/8", "not an IPv4 or IPv6 address"),
            ("localhost", "not an IPv4 or IPv6 address"),
            ("fe80::1%eth0/64", "not an IPv4 or IPv6 address"),
            ("10.0.0.0/", "not a number"),
            ("10.0.0.0/+8", "not a number"),
            ("10.0.0.0/8/8", "not a number"),
            ("10.0.0.0/33", "more than 32 bits"),
            ("10.0.0.0/300", "more than 32 bits"),
            ("::/129", "more than 128 bits"),
            ("10.0.0.1/8", "did you mean 10.0.0.0/8?"),
            ("fd00::1/8", "did you mean fd00::/8?"),
        ];
        for (text, expected) in cases {
            let err = text.parse::<Network>().unwrap_err().to_string();
            assert!(err.starts_with(&format!("{text:?}: ")), "{err}");
            assert!(err.contains(expected), "{text}: {err}");
        }
        let err = Network::new(ip("10.0.0.1"), 24).unwrap_err();
        assert_eq!(
            err,
            NetworkError::HostBitsSet {
                input: "10.0.0.1/24".into(),
                network: "10.0.0.0/24".into()
            }
        );
    }

    #[test]
    fn prefixes_match_on_bit_boundaries() {
        let n = net("192.168.4.0/22");
        assert!(n.contains(ip("192.168.4.0")));
        assert!(n.contains(ip("192.168.7.255")));
        assert!(!n.contains(ip("192.168.8.0")));
        assert!(!n.contains(ip("192.168.3.255")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!net("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
        let v6 = net("2001:db8:80::/41");
        assert!(v6.contains(ip("2001:db8:ff::1")));
        assert!(!v6.contains(ip("2001:db8:100::")));
        assert!(net("::1/128").contains(ip("::1")));
        assert!(!net("::1/128").contains(ip("::2")));
    }

    #[test]
    fn ipv4_mapped_addresses_are_their_ipv4_address() {
        let list: AllowList = "127.0.0.0/8".parse().unwrap();
        assert!(list.allows(ip("::ffff:127.0.0.1")));
        assert!(!list.allows(ip("::ffff:10.0.0.1")));
        // An IPv4-compatible address (deprecated) is not an IPv4 address.
        assert!(!list.allows(ip("::127.0.0.1")));
        let mapped: AllowList = "::ffff:10.0.0.0/104".parse().unwrap();
        assert!(mapped.allows(ip("10.1.2.3")));
        assert!(mapped.allows(ip("::ffff:10.1.2.3")));
        assert!(!mapped.allows(ip("11.0.0.0")));
        // IPv4 networks never match a plain IPv6 address.
        assert!(!"0.0.0.0/0".parse::<AllowList>().unwrap().allows(ip("::1")));
    }

    #[test]
    fn lists_parse_from_text_and_entries() {
        let list: AllowList = "127.0.0.0/8, ::1\n10.0.0.0/8,,".parse().unwrap();
        assert_eq!(list.to_string(), "127.0.0.0/8, ::1/128, 10.0.0.0/8");
        assert_eq!(list.to_string().parse::<AllowList>().unwrap(), list);
        assert_eq!(
            AllowList::parse(["127.0.0.0/8", "::1"]).unwrap(),
            AllowList::loopback()
        );
        let err = "127.0.0.0/8, 10.0.0.1/8".parse::<AllowList>().unwrap_err();
        assert!(
            matches!(err, NetworkError::HostBitsSet { ref input, .. } if input == "10.0.0.1/8")
        );
        let empty: AllowList = "".parse().unwrap();
        assert!(!empty.allows(ip("127.0.0.1")));
        let mut grown: AllowList = [net("10.0.0.0/8")].into_iter().collect();
        grown.extend([net("::1")]);
        assert_eq!(grown.networks().len(), 2);
    }

    #[derive(Default)]
    struct Inner(std::cell::Cell<usize>);

    impl Hooks<(), SocketAddr> for Inner {
        fn verify_request(&self, _request: &(), client_address: &SocketAddr) -> bool {
            self.0.set(self.0.get() + 1);
            client_address.port() != 666
        }
    }

    impl ServerHooks for Inner {
        fn service_actions(&self) {
            self.0.set(self.0.get() + 100);
        }
    }

    #[test]
    fn guarded_hooks_see_only_allowed_clients() {
        let hooks = AllowList::loopback().guard(Inner::default());
        let sa = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert!(hooks.verify_request(&(), &sa("127.0.0.1:1")));
        assert!(!hooks.verify_request(&(), &sa("127.0.0.1:666")));
        assert!(!hooks.verify_request(&(), &sa("192.0.2.1:1")));
        assert_eq!(
            hooks.inner().0.get(),
            2,
            "the outsider never reached the inner hooks"
        );
        hooks.service_actions();
        assert_eq!(hooks.inner().0.get(), 102);
        assert_eq!(hooks.allow_list(), &AllowList::loopback());
    }
}
