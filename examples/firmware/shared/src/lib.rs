//! What every firmware board serves, and how: the NIC images' services and
//! rules ([`nic`]), the framework's serving loop ([`serve`]) and its bare
//! smoltcp twin ([`bare`]), written once against a [`Board`].
//!
//! A board (a folder under `boards/`) supplies what differs: its NIC as a
//! smoltcp device, a millisecond clock, the idle wait, a console and a way
//! to end the run. Its `nic` and `nic_bare` binaries build the device and
//! hand it to [`serve::serve`] or [`bare::serve`].
#![no_std]
#![deny(unsafe_code)]

pub mod bare;
pub mod nic;
pub mod serve;

use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;

use smoltcp::phy::Device;
use smoltcp::wire::EthernetAddress;
use socketserver_core::{Clock, Instant};
use socketserver_smoltcp::Idle;

/// What a board supplies to the serving loops.
pub trait Board: 'static {
    /// The board's NIC.
    type Nic: Device;

    /// Milliseconds since the board started.
    fn now_ms() -> u64;

    /// Sleeps until the NIC may have a frame (or finished sending one) or
    /// the clock's next tick, at most about a millisecond: the loops do not
    /// tell it how long they could sleep.
    fn idle(nic: &mut Self::Nic);

    /// The NIC's MAC address.
    fn mac_address(nic: &Self::Nic) -> EthernetAddress;

    /// Writes one line to the console.
    fn print(line: fmt::Arguments<'_>);

    /// Ends the run: QEMU exits with success or failure.
    fn exit(success: bool) -> !;
}

/// Prints a line on board `$board`'s console: `say!(B, "x = {}", x)`.
#[macro_export]
macro_rules! say {
    ($board:ty, $($arg:tt)*) => {
        <$board as $crate::Board>::print(format_args!($($arg)*))
    };
}

/// The board's clock as the core's [`Clock`].
pub struct BoardClock<B>(PhantomData<B>);

impl<B> BoardClock<B> {
    /// The clock.
    pub const fn new() -> Self {
        BoardClock(PhantomData)
    }
}

impl<B> Default for BoardClock<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Board> Clock for BoardClock<B> {
    fn now(&self) -> Instant {
        Instant::from_millis(B::now_ms())
    }
}

/// The board's clock as smoltcp reads it.
pub fn smol_now<B: Board>() -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_millis(i64::try_from(B::now_ms()).unwrap_or(i64::MAX))
}

/// The stack's idle hook: [`Board::idle`].
pub struct BoardIdle<B>(PhantomData<B>);

impl<B> BoardIdle<B> {
    /// The hook.
    pub const fn new() -> Self {
        BoardIdle(PhantomData)
    }
}

impl<B> Default for BoardIdle<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Board> Idle<B::Nic> for BoardIdle<B> {
    // The board's tick ends every sleep within a millisecond, the clock's
    // resolution, so working out how long the stack could sleep would gain
    // nothing (and cost 1 KB of flash): the stack calls this as if it never
    // slept.
    const SLEEPS: bool = false;

    fn idle(&mut self, nic: &mut B::Nic, _timeout: Duration) {
        B::idle(nic);
    }
}
