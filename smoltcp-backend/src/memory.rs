//! An in-memory Ethernet cable: two smoltcp devices joined back to back,
//! for tests, examples and firmware that talks to itself. No allocation.

use core::cell::Cell;
use core::time::Duration;

use heapless::spsc::{Consumer, Producer, Queue};
use heapless::Vec;
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use socketserver_core::Clock;

/// The Ethernet MTU of a [`Cable`] by default: 1500 bytes of IP plus the
/// 14-byte header.
pub const ETHERNET_MTU: usize = 1514;

type Frame<const MTU: usize> = Vec<u8, MTU>;

/// Two frame queues, one per direction, holding `Q - 1` frames of at most
/// `MTU` bytes each. [`split`](Self::split) gives its two ends.
///
/// A frame sent while the peer's queue is full is dropped, as by a switch
/// with a full buffer, and counted ([`CableEnd::dropped`]); TCP sends it
/// again. (Refusing to transmit instead would be worse: smoltcp 0.14 loses a
/// fast retransmission that a busy device refuses, and the connection
/// stalls for ever.) Choose `Q` above the TCP window in segments to avoid
/// drops. The ends are `Send`, so each may run in its own thread; the
/// queues are lock-free.
pub struct Cable<const Q: usize = 16, const MTU: usize = ETHERNET_MTU> {
    a_to_b: Queue<Frame<MTU>, Q>,
    b_to_a: Queue<Frame<MTU>, Q>,
}

impl<const Q: usize, const MTU: usize> Cable<Q, MTU> {
    /// An empty cable (usable in a `static`).
    pub const fn new() -> Self {
        Cable {
            a_to_b: Queue::new(),
            b_to_a: Queue::new(),
        }
    }

    /// The two ends of the cable.
    pub fn split(&mut self) -> (CableEnd<'_, MTU>, CableEnd<'_, MTU>) {
        let (a_tx, b_rx) = self.a_to_b.split();
        let (b_tx, a_rx) = self.b_to_a.split();
        let end = |tx, rx| CableEnd { tx, rx, dropped: 0 };
        (end(a_tx, a_rx), end(b_tx, b_rx))
    }
}

impl<const Q: usize, const MTU: usize> Default for Cable<Q, MTU> {
    fn default() -> Self {
        Self::new()
    }
}

/// One end of a [`Cable`]: an Ethernet [`Device`].
pub struct CableEnd<'c, const MTU: usize = ETHERNET_MTU> {
    tx: Producer<'c, Frame<MTU>>,
    rx: Consumer<'c, Frame<MTU>>,
    dropped: usize,
}

impl<const MTU: usize> CableEnd<'_, MTU> {
    /// Frames waiting to be received at this end.
    pub fn pending(&self) -> usize {
        self.rx.len()
    }

    /// Frames sent from this end and dropped because the queue was full.
    pub fn dropped(&self) -> usize {
        self.dropped
    }
}

impl<'c, const MTU: usize> Device for CableEnd<'c, MTU> {
    type RxToken<'t>
        = RxToken<MTU>
    where
        Self: 't;
    type TxToken<'t>
        = TxToken<'t, 'c, MTU>
    where
        Self: 't;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<MTU>, TxToken<'_, 'c, MTU>)> {
        let frame = self.rx.dequeue()?;
        let tx = TxToken {
            queue: &mut self.tx,
            dropped: &mut self.dropped,
        };
        Some((RxToken(frame), tx))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_, 'c, MTU>> {
        Some(TxToken {
            queue: &mut self.tx,
            dropped: &mut self.dropped,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps
    }
}

/// A frame taken from a [`CableEnd`].
pub struct RxToken<const MTU: usize>(Frame<MTU>);

impl<const MTU: usize> phy::RxToken for RxToken<MTU> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

/// The sending side of a [`CableEnd`], for one frame.
pub struct TxToken<'t, 'c, const MTU: usize> {
    queue: &'t mut Producer<'c, Frame<MTU>>,
    dropped: &'t mut usize,
}

impl<const MTU: usize> phy::TxToken for TxToken<'_, '_, MTU> {
    /// # Panics
    /// If `len` exceeds the MTU, which smoltcp never asks for.
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = Frame::<MTU>::new();
        frame
            .resize(len, 0)
            .expect("frame longer than the cable's MTU");
        let result = f(&mut frame);
        if self.queue.enqueue(frame).is_err() {
            *self.dropped += 1;
        }
        result
    }
}

/// A clock that moves `step` forward each time it is read: time for a
/// device with no timer, and runs that do not depend on the host's speed.
#[derive(Debug)]
pub struct StepClock {
    now: Cell<u64>,
    step: u64,
}

impl StepClock {
    /// A clock at its epoch, advancing `step` per reading.
    pub fn new(step: Duration) -> Self {
        StepClock {
            now: Cell::new(0),
            step: u64::try_from(step.as_micros()).unwrap_or(u64::MAX),
        }
    }
}

impl Clock for StepClock {
    fn now(&self) -> socketserver_core::Instant {
        let now = self.now.get();
        self.now.set(now.saturating_add(self.step));
        socketserver_core::Instant::from_micros(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::{RxToken as _, TxToken as _};

    fn send<const MTU: usize>(end: &mut CableEnd<'_, MTU>, byte: u8) {
        let token = end
            .transmit(Instant::ZERO)
            .expect("a cable always transmits");
        token.consume(3, |frame| frame.fill(byte));
    }

    fn recv<const MTU: usize>(end: &mut CableEnd<'_, MTU>) -> Option<heapless::Vec<u8, 8>> {
        let (token, _) = end.receive(Instant::ZERO)?;
        Some(token.consume(|frame| heapless::Vec::from_slice(frame).unwrap()))
    }

    #[test]
    fn frames_cross_in_order_both_ways() {
        let mut cable = Cable::<4, 64>::new();
        let (mut a, mut b) = cable.split();
        send(&mut a, 1);
        send(&mut a, 2);
        send(&mut b, 9);
        assert_eq!(b.pending(), 2);
        assert_eq!(recv(&mut b).unwrap(), [1, 1, 1]);
        assert_eq!(recv(&mut b).unwrap(), [2, 2, 2]);
        assert!(recv(&mut b).is_none());
        assert_eq!(recv(&mut a).unwrap(), [9, 9, 9]);
        assert_eq!(b.capabilities().max_transmission_unit, 64);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let mut cable = Cable::<4, 64>::new();
        let (mut a, mut b) = cable.split();
        for byte in 0..5 {
            send(&mut a, byte);
        }
        // Q - 1 = 3 frames fit; the last two are dropped.
        assert_eq!(a.dropped(), 2);
        assert_eq!(b.pending(), 3);
        assert_eq!(recv(&mut b).unwrap(), [0, 0, 0]);
        // Receiving works while the other direction is full.
        for byte in 0..4 {
            send(&mut b, byte);
        }
        assert!(recv(&mut b).is_some());
    }

    #[test]
    fn step_clock_moves_per_reading() {
        let clock = StepClock::new(core::time::Duration::from_millis(2));
        assert_eq!(clock.now().total_micros(), 0);
        assert_eq!(clock.now().total_micros(), 2000);
    }
}
