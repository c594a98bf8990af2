//! std helpers on Linux: sleeping on a device's file descriptor, a
//! ready-made stack on a TAP device, and a private network namespace.

use std::io;
use std::os::unix::io::AsRawFd;
use std::time::Duration;

use smoltcp::iface::{Config, SocketStorage};
use smoltcp::phy::{Medium, TunTapInterface};
use smoltcp::wire::{EthernetAddress, IpCidr};

use crate::stack::{Idle, Stack};
use crate::StdClock;

/// The idle hook that sleeps until the device's file descriptor is readable
/// (smoltcp's `phy::wait`), so a stack on a TAP device uses no CPU while
/// idle. A signal ends the sleep early, which is how SIGINT reaches a
/// [`ShutdownFlag`](socketserver_core::ShutdownFlag) promptly.
#[derive(Clone, Copy, Debug, Default)]
pub struct FdWait;

impl<D: AsRawFd + ?Sized> Idle<D> for FdWait {
    fn idle(&mut self, device: &mut D, timeout: Duration) {
        let micros = u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX);
        // An error (EINTR) only ends the sleep early, which is allowed.
        let _ = smoltcp::phy::wait(
            device.as_raw_fd(),
            Some(smoltcp::time::Duration::from_micros(micros)),
        );
    }
}

/// A [`Stack`] on a TAP device.
pub type TapStack<'a> = Stack<'a, TunTapInterface, StdClock, FdWait>;

/// The Ethernet address of [`tap_stack`]'s interface (locally administered).
pub const TAP_MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 0x00, 0x53, 0x53, 0x01]);

/// Opens the existing TAP device `name` (see the README for `ip tuntap`)
/// and builds a stack on it with the address `cidr`, sockets in `storage`.
///
/// # Errors
/// Opening the device failed: it does not exist, or this process may not
/// open `/dev/net/tun`.
pub fn tap_stack<'a>(
    name: &str,
    cidr: IpCidr,
    storage: &'a mut [SocketStorage<'a>],
) -> io::Result<TapStack<'a>> {
    let device = TunTapInterface::new(name, Medium::Ethernet)?;
    let mut config = Config::new(TAP_MAC.into());
    config.random_seed = u64::from(std::process::id());
    let mut stack = Stack::new(config, device, storage, StdClock, FdWait);
    stack.add_ip(cidr).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface has no room for the address",
        )
    })?;
    Ok(stack)
}

/// A private network namespace with a TAP device, for test harnesses and
/// benchmarks that run a smoltcp stack against the host kernel's own TCP/IP
/// without touching the host's network.
///
/// The harness re-runs its own executable under `unshare -n`
/// ([`rerun_inside`](netns::rerun_inside)); the re-run sees
/// [`inside`](netns::inside) true, creates the device with
/// [`add_tap`](netns::add_tap) and does its work. Addresses given there
/// exist only in that namespace, which vanishes with the process.
pub mod netns {
    use std::io;
    use std::process::Command;

    use smoltcp::wire::IpCidr;

    /// Set in the environment of the re-run.
    pub const INSIDE_VAR: &str = "SOCKETSERVER_SMOLTCP_NETNS";

    /// Whether this process is the re-run inside the namespace.
    pub fn inside() -> bool {
        std::env::var_os(INSIDE_VAR).is_some()
    }

    /// Checks what making the namespace needs: root, `/dev/net/tun`,
    /// `unshare` and `ip`.
    ///
    /// # Errors
    /// A sentence saying what is missing.
    pub fn check() -> Result<(), String> {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let euid = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1));
        if euid != Some("0") {
            return Err("needs root, to create a network namespace and a tap device".into());
        }
        if !std::path::Path::new("/dev/net/tun").exists() {
            return Err(
                "needs /dev/net/tun (modprobe tun; in a container, pass the device)".into(),
            );
        }
        for tool in ["unshare", "ip"] {
            if Command::new(tool).arg("-V").output().is_err() {
                return Err(format!("needs `{tool}` on PATH (util-linux, iproute2)"));
            }
        }
        Ok(())
    }

    /// A command that runs this executable again with `args`, inside a new
    /// network namespace, with [`INSIDE_VAR`] set.
    ///
    /// # Errors
    /// The path of this executable is unknown.
    pub fn rerun_inside(args: &[&str]) -> io::Result<Command> {
        let mut command = Command::new("unshare");
        command
            .args(["-n", "--"])
            .arg(std::env::current_exe()?)
            .args(args)
            .env(INSIDE_VAR, "1");
        Ok(command)
    }

    /// Brings `lo` up and creates the TAP device `name`, up, with the
    /// host side's address `host` (smoltcp takes another address of that
    /// subnet). Meant for the re-run: outside a private namespace it would
    /// change the host's network.
    ///
    /// # Errors
    /// An `ip` command failed.
    pub fn add_tap(name: &str, host: IpCidr) -> io::Result<()> {
        let host = host.to_string();
        for args in [
            &["link", "set", "lo", "up"][..],
            &["tuntap", "add", "dev", name, "mode", "tap"],
            &["addr", "add", &host, "dev", name],
            &["link", "set", name, "up"],
        ] {
            let status = Command::new("ip").args(args).status()?;
            if !status.success() {
                return Err(io::Error::other(format!("`ip {}` failed", args.join(" "))));
            }
        }
        Ok(())
    }
}
