//! The interface, device, socket set and clock that transports share.

use core::cell::RefCell;
use core::time::Duration;

use smoltcp::iface::{Config, Interface, PollResult, SocketSet, SocketStorage};
use smoltcp::phy::Device;
use smoltcp::wire::IpCidr;
use socketserver_core::{Clock, Instant, Readiness, ShutdownFlag};

/// The longest a [`Stack`] idles by default before looking at its shutdown
/// flags again (see [`Stack::set_max_idle`]).
pub const DEFAULT_MAX_IDLE: Duration = Duration::from_millis(10);

/// What a [`Stack`] does while it has nothing to do: sleep until the device
/// may have a frame, for at most `timeout`.
///
/// Returning early is always allowed (the stack polls and asks again), so
/// the simplest hook, [`Spin`], does nothing. On firmware a hook executes
/// `WFI`; with the `std` feature, `tap::FdWait` sleeps on
/// the device's file descriptor. Any `FnMut(Duration)` is a hook too.
pub trait Idle<D: ?Sized> {
    /// Whether [`idle`](Self::idle) may sleep. A hook that never does
    /// ([`Spin`], [`Busy`]) sets it to `false`, and the stack then skips
    /// working out how long it could sleep (smoltcp's `poll_delay`, which
    /// visits every socket), in time and in code size.
    const SLEEPS: bool = true;

    /// Sleeps until `device` may have a frame or `timeout` passes. A hook
    /// that does not sleep is called with a zero `timeout`.
    fn idle(&mut self, device: &mut D, timeout: Duration);
}

/// The idle hook that returns at once: the stack polls in a busy loop.
/// Right for in-memory devices and for hosts that must never sleep.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spin;

impl<D: ?Sized> Idle<D> for Spin {
    const SLEEPS: bool = false;

    fn idle(&mut self, _device: &mut D, _timeout: Duration) {}
}

/// An idle hook that runs `F` and never sleeps: for a loop that has other
/// work to do between polls (another stack to drive, a simulated peer to
/// step), so the stack need not work out how long it could sleep.
#[derive(Clone, Copy, Debug, Default)]
pub struct Busy<F>(pub F);

impl<D: ?Sized, F: FnMut()> Idle<D> for Busy<F> {
    const SLEEPS: bool = false;

    fn idle(&mut self, _device: &mut D, _timeout: Duration) {
        (self.0)()
    }
}

impl<D: ?Sized, F: FnMut(Duration)> Idle<D> for F {
    fn idle(&mut self, _device: &mut D, timeout: Duration) {
        self(timeout)
    }
}

/// What transports need from a [`Stack`], with its device, clock and idle
/// hook types erased so that transports name only lifetimes.
///
/// Transports hold a `&RefCell<dyn Net>`; a `&RefCell<Stack<..>>` coerces to it.
pub trait Net<'a> {
    /// The current time of the stack's clock.
    fn now(&self) -> Instant;

    /// Runs the interface once: takes in every frame the device has and
    /// sends what the sockets have queued. Returns whether any socket may
    /// have changed state.
    fn poll(&mut self) -> bool;

    /// How many times [`poll`](Self::poll) has run (wrapping). A transport
    /// that remembers the count it last looked at its sockets with knows
    /// whether the stack may have changed since, without polling again.
    fn polls(&self) -> u32;

    /// Idles until the device may have a frame, a timer of the interface is
    /// due, `deadline` passes or the stack's maximum idle time is over,
    /// whichever comes first. Never blocks when something is due now.
    fn idle_until(&mut self, deadline: Option<Instant>);

    /// The interface and the sockets, for operations that need both
    /// (such as `tcp::Socket::connect`).
    fn parts(&mut self) -> (&mut Interface, &mut SocketSet<'a>);

    /// How many more sockets the socket set can take.
    fn free_slots(&self) -> usize;

    /// A local port for an outgoing connection, from the dynamic range.
    fn ephemeral_port(&mut self) -> u16;
}

/// A smoltcp interface with its device, socket set, clock and idle hook:
/// what every transport of this crate runs on.
///
/// Share it as a `RefCell<Stack>` between a listener (or a datagram socket)
/// and its connections: each blocking operation borrows it while it drives
/// [`Interface::poll`], and releases it before returning. Nothing here
/// allocates; the socket storage and all socket buffers come from the caller.
pub struct Stack<'a, D: Device, K: Clock, I: Idle<D> = Spin> {
    iface: Interface,
    device: D,
    sockets: SocketSet<'a>,
    capacity: usize,
    clock: K,
    idle: I,
    max_idle: Duration,
    next_port: u16,
    polls: u32,
}

const EPHEMERAL_FIRST: u16 = 49152;

impl<'a, D: Device, K: Clock, I: Idle<D>> Stack<'a, D, K, I> {
    /// A stack over `device`, with an interface built from `config` at the
    /// clock's current time and sockets kept in `storage`.
    ///
    /// The interface has no address yet: add some with
    /// [`add_ip`](Self::add_ip) or [`iface_mut`](Self::iface_mut).
    pub fn new(
        config: Config,
        mut device: D,
        storage: &'a mut [SocketStorage<'a>],
        clock: K,
        idle: I,
    ) -> Self {
        let iface = Interface::new(config, &mut device, to_smoltcp(clock.now()));
        let capacity = storage.len();
        Stack {
            iface,
            device,
            sockets: SocketSet::new(storage),
            capacity,
            clock,
            idle,
            max_idle: DEFAULT_MAX_IDLE,
            next_port: EPHEMERAL_FIRST,
            polls: 0,
        }
    }

    /// Adds an address (with its prefix) to the interface.
    ///
    /// # Errors
    /// Hands `cidr` back when the interface holds no more addresses
    /// (smoltcp's `iface-max-addr-count`).
    pub fn add_ip(&mut self, cidr: IpCidr) -> Result<(), IpCidr> {
        let mut result = Ok(());
        self.iface
            .update_ip_addrs(|addrs| result = addrs.push(cidr));
        result
    }

    /// Bounds every idle period, so that a [`ShutdownFlag`] raised by
    /// another thread or an interrupt (which cannot wake the idle hook) is
    /// seen within `max`. Default: [`DEFAULT_MAX_IDLE`].
    pub fn set_max_idle(&mut self, max: Duration) {
        self.max_idle = max;
    }

    /// Polls, then idles until the device may have a frame, a timer is due
    /// or `max` passes, then polls again: the step of a client's loop that
    /// drives the stack between its own socket operations. Returns early
    /// when `shutdown` is requested.
    pub fn poll_wait(&mut self, max: Duration, shutdown: &ShutdownFlag) {
        if !self.poll() && !shutdown.is_requested() {
            let deadline = self.clock.now() + max;
            self.idle_until(Some(deadline));
            self.poll();
        }
    }

    /// The interface.
    pub fn iface(&self) -> &Interface {
        &self.iface
    }

    /// The interface, mutably (addresses, routes).
    pub fn iface_mut(&mut self) -> &mut Interface {
        &mut self.iface
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, mutably.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The socket set.
    pub fn sockets(&self) -> &SocketSet<'a> {
        &self.sockets
    }

    /// The socket set, mutably.
    pub fn sockets_mut(&mut self) -> &mut SocketSet<'a> {
        &mut self.sockets
    }

    /// The clock.
    pub fn clock(&self) -> &K {
        &self.clock
    }
}

impl<'a, D: Device, K: Clock, I: Idle<D>> Net<'a> for Stack<'a, D, K, I> {
    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn poll(&mut self) -> bool {
        self.polls = self.polls.wrapping_add(1);
        let now = to_smoltcp(self.clock.now());
        matches!(
            self.iface.poll(now, &mut self.device, &mut self.sockets),
            PollResult::SocketStateChanged
        )
    }

    fn polls(&self) -> u32 {
        self.polls
    }

    fn idle_until(&mut self, deadline: Option<Instant>) {
        if !I::SLEEPS {
            self.idle.idle(&mut self.device, Duration::ZERO);
            return;
        }
        let now = self.clock.now();
        let mut timeout = self.max_idle;
        if let Some(delay) = self.iface.poll_delay(to_smoltcp(now), &self.sockets) {
            timeout = timeout.min(Duration::from_micros(delay.total_micros()));
        }
        if let Some(deadline) = deadline {
            timeout = timeout.min(deadline - now);
        }
        if !timeout.is_zero() {
            self.idle.idle(&mut self.device, timeout);
        }
    }

    fn parts(&mut self) -> (&mut Interface, &mut SocketSet<'a>) {
        (&mut self.iface, &mut self.sockets)
    }

    fn free_slots(&self) -> usize {
        self.capacity - self.sockets.iter().count()
    }

    fn ephemeral_port(&mut self) -> u16 {
        let port = self.next_port;
        self.next_port = self.next_port.checked_add(1).unwrap_or(EPHEMERAL_FIRST);
        port
    }
}

/// The smoltcp instant for a core instant (same microsecond count).
pub fn to_smoltcp(instant: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(i64::try_from(instant.total_micros()).unwrap_or(i64::MAX))
}

/// The core instant for a smoltcp instant; times before the epoch become zero.
pub fn from_smoltcp(instant: smoltcp::time::Instant) -> Instant {
    Instant::from_micros(u64::try_from(instant.total_micros()).unwrap_or(0))
}

/// The loop under every blocking operation: ask `done`, and poll and idle
/// until it says yes, `deadline` passes or `shutdown` is requested (never
/// [`Readiness::Interrupted`]). One copy of the loop for every blocking
/// operation, not one per closure (firmware pays for each copy in flash).
///
/// `done` is asked before the first poll too: when data is already there,
/// a poll (a system call on a TAP device) would only cost time.
pub(crate) fn drive_until<'a>(
    net: &mut (dyn Net<'a> + '_),
    deadline: Option<Instant>,
    shutdown: Option<&ShutdownFlag>,
    done: &mut dyn FnMut(&mut SocketSet<'a>) -> bool,
) -> Readiness {
    if done(net.parts().1) {
        return Readiness::Ready;
    }
    loop {
        net.poll();
        if done(net.parts().1) {
            return Readiness::Ready;
        }
        if shutdown.is_some_and(ShutdownFlag::is_requested) {
            return Readiness::Shutdown;
        }
        if deadline.is_some_and(|d| net.now() >= d) {
            return Readiness::TimedOut;
        }
        net.idle_until(deadline);
    }
}

/// A transport's `wait`: idles and polls until a poll says that a socket
/// may have changed state, `timeout` passes or `shutdown` is requested.
/// Never looks at the transport's sockets: the take after it does.
///
/// `seen` is the poll count the transport last looked at its sockets
/// with ([`look`]); when something polled the stack since (a connection,
/// another transport), the transport has not seen that poll yet, so this
/// reports [`Readiness::Ready`] at once rather than sleep on a frame that
/// is already in.
pub(crate) fn wait_for_change(
    net: &RefCell<dyn Net<'_> + '_>,
    seen: u32,
    timeout: Option<Duration>,
    shutdown: &ShutdownFlag,
) -> Readiness {
    let mut net = borrow_stack(net);
    if net.polls() != seen {
        return Readiness::Ready;
    }
    let deadline = deadline(&*net, timeout);
    loop {
        if shutdown.is_requested() {
            return Readiness::Shutdown;
        }
        if deadline.is_some_and(|d| net.now() >= d) {
            return Readiness::TimedOut;
        }
        net.idle_until(deadline);
        if net.poll() {
            return Readiness::Ready;
        }
    }
}

/// Before a transport looks at its sockets (a take): polls, unless
/// something polled the stack since the transport last looked (its wait,
/// a connection, another transport), then records the count it looks with.
/// So a take after a wait, or after serving a connection, costs no poll.
pub(crate) fn look(net: &mut (dyn Net<'_> + '_), seen: &mut u32) {
    if net.polls() == *seen {
        net.poll();
    }
    *seen = net.polls();
}

/// Borrows the stack for one operation of a transport or a connection:
/// one copy of the borrow check and its panic in the image, not one per
/// call site. The borrow is released before the operation returns, and
/// no operation calls code of the caller's while it holds it except the
/// idle hook (which cannot reach a transport of its own stack), so it can
/// only fail when the caller holds a `RefCell` borrow of the stack across
/// a call of this crate.
///
/// # Panics
/// If the stack is borrowed elsewhere, as `RefCell::borrow_mut` does.
#[inline(never)]
pub(crate) fn borrow_stack<'s, 'a>(
    net: &'s RefCell<dyn Net<'a> + 's>,
) -> core::cell::RefMut<'s, dyn Net<'a> + 's> {
    net.borrow_mut()
}

/// Whether a `Drop` must leave the stack alone: the thread is unwinding
/// from a panic and the stack is borrowed, so borrowing it would panic a
/// second time and abort the process. In every other case a drop borrows
/// the stack with [`borrow_stack`], and panics as every operation does.
pub(crate) fn unwinding_while_borrowed(net: &RefCell<dyn Net<'_> + '_>) -> bool {
    #[cfg(any(feature = "std", test))]
    return std::thread::panicking() && net.try_borrow_mut().is_err();
    #[cfg(not(any(feature = "std", test)))]
    {
        let _ = net;
        false
    }
}

/// The deadline `timeout` from now, if any.
pub(crate) fn deadline(net: &(dyn Net<'_> + '_), timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| net.now() + t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_convert_both_ways() {
        let core = Instant::from_micros(1_234_567);
        assert_eq!(to_smoltcp(core).total_micros(), 1_234_567);
        assert_eq!(from_smoltcp(to_smoltcp(core)), core);
        assert_eq!(
            from_smoltcp(smoltcp::time::Instant::from_micros(-5)),
            Instant::ZERO
        );
        assert_eq!(
            to_smoltcp(Instant::from_micros(u64::MAX)).total_micros(),
            i64::MAX
        );
    }
}
