//! A smoltcp [`Device`] for the Ethernet controller of TI's Stellaris
//! LM3S6965, the NIC that QEMU's `lm3s6965evb` board emulates.
//!
//! Self-contained: it needs `cortex-m` and `smoltcp` only, so copy this file
//! into your own firmware. Every `unsafe` block is a register access or the
//! NVIC unmask, each with its `SAFETY:` note.
//!
//! The controller has one FIFO each way, reached through one data register:
//!
//! - transmit: the first word written holds the payload length (frame
//!   length − 14) in its low half and the first two frame bytes in its high
//!   half; the rest of the frame follows as little-endian words; writing 1
//!   to `TR` sends it (the controller pads short frames and adds the FCS);
//! - receive: while `NP` (frames waiting) is not zero, the first word read
//!   holds frame length + 6 in its low half (the length field and the FCS
//!   count) and the first two frame bytes in its high half; a frame is
//!   `ceil((length + 6) / 4)` words in all.
//!
//! A received frame raises interrupt [`IRQ`] (42). Route it to
//! [`StellarisEnet::on_interrupt`], which only acknowledges it: the
//! interrupt's job is to end [`StellarisEnet::wait_for_frame`]'s `WFI`, and
//! the frames are read from the FIFO when smoltcp polls. Without a
//! peripheral access crate, cortex-m-rt sends every device interrupt to
//! `DefaultHandler`:
//!
//! ```ignore
//! #[exception]
//! unsafe fn DefaultHandler(irqn: i16) {
//!     if irqn == stellaris_enet::IRQ as i16 {
//!         StellarisEnet::on_interrupt();
//!     }
//! }
//! ```
//!
//! On a real board, also power the PHY and check the link (MII registers);
//! QEMU models neither, and its controller filters no MAC address (smoltcp
//! drops frames for others).
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::NVIC;
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::EthernetAddress;

/// The controller's registers.
const BASE: usize = 0x4004_8000;
/// Its interrupt number (the NVIC's, exception number − 16).
pub const IRQ: u16 = 42;

// Register offsets.
/// Raw interrupt status (read); interrupt acknowledge (write 1s to clear).
const RIS_IACK: usize = 0x00;
/// Interrupt mask: a bit set here lets that interrupt reach the NVIC.
const IM: usize = 0x04;
const RCTL: usize = 0x08;
const TCTL: usize = 0x0C;
const DATA: usize = 0x10;
/// The MAC address: bytes 0-3, then bytes 4-5.
const IA0: usize = 0x14;
const IA1: usize = 0x18;
/// Frames waiting in the receive FIFO.
const NP: usize = 0x34;
/// Transmission request: write 1 to send; reads 1 while sending.
const TR: usize = 0x38;

const INT_RX: u32 = 0x01;
const INT_ALL: u32 = 0x7F;
const RCTL_RXEN: u32 = 0x01;
const RCTL_AMUL: u32 = 0x02;
const RCTL_BADCRC: u32 = 0x08;
const RCTL_RSTFIFO: u32 = 0x10;
const TCTL_TXEN: u32 = 0x01;
const TCTL_PADEN: u32 = 0x02;
const TCTL_CRC: u32 = 0x04;
const TCTL_DUPLEX: u32 = 0x08;

/// The system controller's clock gating of the controller and its PHY
/// (`RCGC2`: EMAC0 and EPHY0).
const RCGC2: usize = 0x400F_E108;
const RCGC2_ETHERNET: u32 = (1 << 28) | (1 << 30);

/// The largest Ethernet frame sent or received, without FCS (IP MTU 1500).
pub const MTU: usize = 1514;
/// Room for the largest frame in FIFO layout: 2 length bytes, the frame,
/// the 4 FCS bytes, rounded up to whole words.
const FIFO_FRAME: usize = (2 + MTU + 4).div_ceil(4) * 4;

static TAKEN: AtomicBool = AtomicBool::new(false);

fn read(offset: usize) -> u32 {
    // SAFETY: `offset` is one of the register offsets above, so this is a
    // word-aligned device register of the controller, always mapped; reading it has no effect on memory Rust knows about.
    // Volatile, because the hardware changes it.
    unsafe { ptr::read_volatile((BASE + offset) as *const u32) }
}

fn write(offset: usize, value: u32) {
    // SAFETY: as in `read`; writing a register moves data into the FIFO or
    // changes the controller's state, never memory Rust knows about.
    unsafe { ptr::write_volatile((BASE + offset) as *mut u32, value) }
}

/// The controller's interrupt, for the NVIC.
#[derive(Clone, Copy)]
struct Irq;

// SAFETY: one variant, and its number is constant.
unsafe impl InterruptNumber for Irq {
    fn number(self) -> u16 {
        IRQ
    }
}

/// The frame buffers a [`StellarisEnet`] copies frames through, one each
/// way. All zero bits, so a `static` of it costs no flash.
pub struct Buffers {
    rx: [u8; FIFO_FRAME],
    tx: [u8; FIFO_FRAME],
}

impl Buffers {
    /// Zeroed buffers.
    pub const fn new() -> Self {
        Buffers {
            rx: [0; FIFO_FRAME],
            tx: [0; FIFO_FRAME],
        }
    }
}

impl Default for Buffers {
    fn default() -> Self {
        Self::new()
    }
}

/// The Ethernet controller as a smoltcp device (see the module docs).
pub struct StellarisEnet<'b> {
    buffers: &'b mut Buffers,
    dropped: u32,
}

impl<'b> StellarisEnet<'b> {
    /// Takes the controller, the first time only: resets its receive FIFO,
    /// enables receiving and sending (padding short frames, adding the FCS,
    /// full duplex) and the receive interrupt, and unmasks [`IRQ`] in the
    /// NVIC. Route that interrupt to [`on_interrupt`](Self::on_interrupt)
    /// before calling this.
    pub fn take(buffers: &'b mut Buffers) -> Option<Self> {
        if TAKEN.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: RCGC2 is the system controller's clock gating register,
        // word-aligned and always mapped; setting the two Ethernet bits
        // only starts the controller's clocks.
        unsafe {
            let rcgc2 = RCGC2 as *mut u32;
            ptr::write_volatile(rcgc2, ptr::read_volatile(rcgc2) | RCGC2_ETHERNET);
        }
        write(IM, 0);
        write(RCTL, RCTL_RSTFIFO);
        write(RCTL, RCTL_RXEN | RCTL_AMUL | RCTL_BADCRC);
        write(TCTL, TCTL_TXEN | TCTL_PADEN | TCTL_CRC | TCTL_DUPLEX);
        write(RIS_IACK, INT_ALL);
        write(IM, INT_RX);
        // SAFETY: unmasking can break a critical section that relies on
        // this interrupt being masked; critical sections here mask every
        // interrupt (PRIMASK), and the handler only acknowledges.
        unsafe { NVIC::unmask(Irq) };
        Some(StellarisEnet {
            buffers,
            dropped: 0,
        })
    }

    /// The MAC address the controller was given (QEMU: 52:54:00:12:34:56
    /// unless `-nic ...,mac=` says otherwise).
    pub fn mac_address(&self) -> EthernetAddress {
        let [a, b, c, d] = read(IA0).to_le_bytes();
        let [e, f, _, _] = read(IA1).to_le_bytes();
        EthernetAddress([a, b, c, d, e, f])
    }

    /// Frames waiting in the receive FIFO.
    pub fn frames_waiting(&self) -> u32 {
        read(NP)
    }

    /// Frames received that did not fit [`MTU`] (read and dropped).
    pub fn dropped(&self) -> u32 {
        self.dropped
    }

    /// Sleeps (`WFI`) until an interrupt, unless a frame is already
    /// waiting. Any interrupt ends it: a frame's, and SysTick's, which
    /// bounds the sleep. Interrupts are masked from the check to the `WFI`
    /// (which still wakes on one pending), so a frame that arrives in
    /// between is not slept through.
    pub fn wait_for_frame(&self) {
        cortex_m::interrupt::free(|_| {
            if self.frames_waiting() == 0 {
                cortex_m::asm::wfi();
            }
        });
    }

    /// The interrupt handler's work: acknowledges whatever the controller
    /// raised. Frames stay in the FIFO for the next poll.
    pub fn on_interrupt() {
        write(RIS_IACK, read(RIS_IACK));
    }
}

impl Device for StellarisEnet<'_> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        if self.frames_waiting() == 0 {
            return None;
        }
        let Buffers { rx, tx } = &mut *self.buffers;
        Some((
            RxToken {
                buf: rx,
                dropped: &mut self.dropped,
            },
            TxToken { buf: tx },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        // A real controller holds one frame; QEMU sends at once.
        (read(TR) & 1 == 0).then_some(TxToken {
            buf: &mut self.buffers.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps
    }
}

/// Reads the next frame out of the FIFO when consumed.
pub struct RxToken<'a> {
    buf: &'a mut [u8; FIFO_FRAME],
    dropped: &'a mut u32,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let first = read(DATA);
        // Frame length + 6: the length field and the FCS.
        let len = (first & 0xFFFF) as usize;
        let words = len.div_ceil(4).max(1);
        let fits = (6..=FIFO_FRAME).contains(&len);
        self.buf[..4].copy_from_slice(&first.to_le_bytes());
        for i in 1..words {
            let word = read(DATA);
            if fits {
                self.buf[4 * i..4 * i + 4].copy_from_slice(&word.to_le_bytes());
            }
        }
        if fits {
            f(&self.buf[2..len - 4])
        } else {
            // An empty frame: smoltcp skips it.
            *self.dropped += 1;
            f(&[])
        }
    }
}

/// Writes a frame into the FIFO and sends it when consumed.
pub struct TxToken<'a> {
    buf: &'a mut [u8; FIFO_FRAME],
}

impl phy::TxToken for TxToken<'_> {
    /// # Panics
    /// If `len` exceeds [`MTU`] (smoltcp never asks for more).
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let result = f(&mut self.buf[2..2 + len]);
        // A real controller holds one frame at a time.
        while read(TR) & 1 != 0 {}
        let payload = len.saturating_sub(14) as u16;
        self.buf[..2].copy_from_slice(&payload.to_le_bytes());
        for chunk in self.buf[..2 + len].chunks(4) {
            let mut word = [0; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            write(DATA, u32::from_le_bytes(word));
        }
        write(TR, 1);
        result
    }
}
