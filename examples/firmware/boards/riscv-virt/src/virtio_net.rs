//! A smoltcp [`Device`] over a virtio network device, through
//! virtio-drivers' [`VirtIONetRaw`], without a heap.
//!
//! Self-contained: it needs `smoltcp` and `virtio-drivers` (with
//! `default-features = false`) only, so copy this file into your own
//! firmware. Every `unsafe` has its `SAFETY:` note.
//!
//! - **DMA.** [`StaticHal`] hands the driver's two virtqueues pages of one
//!   static, page-aligned region, with physical = virtual addresses (as in
//!   machine mode, or any identity-mapped guest). Pages are never given
//!   back: the device lives as long as the image.
//! - **Receiving.** [`RX_BUFFERS`] frame buffers are always posted to the
//!   device but the one smoltcp last read, which is posted again at the
//!   next [`Device::receive`]. virtio-drivers wants each buffer back with
//!   its own token; the device uses them in the order they were posted.
//! - **Sending.** [`TX_BUFFERS`] frame buffers in flight at most; finished
//!   ones are taken back when smoltcp asks for another. None free: smoltcp
//!   waits for the device's interrupt like for a frame.
//! - **Interrupts.** The device raises its interrupt when it has used a
//!   buffer (a frame in, a frame sent). The board routes it to the hart
//!   (the PLIC on QEMU's virt machine) and waits for it with `wfi`; before
//!   that it calls [`VirtioNet::ack_interrupt`] then
//!   [`VirtioNet::has_frame`], so a frame that arrived since the last poll
//!   is not slept through.
//!
//! Frames are copied into smoltcp's buffers and out of them once, as with
//! any smoltcp device; the virtio-net header (10 bytes on legacy devices,
//! 12 on modern ones) sits in front of each frame in the same buffer.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::EthernetAddress;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::mmio::MmioTransport;
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// Descriptors per virtqueue (a power of two; the device may offer more).
pub const QUEUE_SIZE: usize = 16;
/// Receive buffers posted to the device.
pub const RX_BUFFERS: usize = 8;
/// Frames sent and not yet finished by the device, at most.
pub const TX_BUFFERS: usize = 4;
/// The largest Ethernet frame sent or received, without FCS (IP MTU 1500).
pub const MTU: usize = 1514;
/// A frame and the largest virtio-net header in front of it.
const BUF: usize = 12 + MTU;

/// Pages of DMA memory: a virtqueue of [`QUEUE_SIZE`] takes two, legacy
/// or modern.
const DMA_PAGES: usize = 4;

#[repr(C, align(4096))]
struct DmaRegion(UnsafeCell<[u8; DMA_PAGES * PAGE_SIZE]>);

// SAFETY: Rust code never reads or writes the region through this static;
// `StaticHal::dma_alloc` only hands out pointers to disjoint runs of its
// pages, each run once.
unsafe impl Sync for DmaRegion {}

static DMA: DmaRegion = DmaRegion(UnsafeCell::new([0; DMA_PAGES * PAGE_SIZE]));
static DMA_NEXT: AtomicUsize = AtomicUsize::new(0);

/// virtio-drivers' [`Hal`] for identity-mapped memory and a static DMA
/// region (see the module docs).
pub struct StaticHal;

// SAFETY: `dma_alloc` returns page-aligned, zeroed (a static's initial
// zeros, never handed out twice), valid pointers that alias nothing else;
// `mmio_phys_to_virt` and `share` are the identity, which is right where
// physical = virtual addresses and the device reaches all of RAM.
unsafe impl Hal for StaticHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let first = DMA_NEXT.fetch_add(pages, Ordering::Relaxed);
        if first + pages > DMA_PAGES {
            // Physical address 0: virtio-drivers reports a DMA error.
            return (0, NonNull::dangling());
        }
        let start = DMA.0.get().cast::<u8>().wrapping_add(first * PAGE_SIZE);
        let start = NonNull::new(start).expect("a static is never at address 0");
        (start.as_ptr() as usize as PhysAddr, start)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        // Never reused (see the module docs); 0 is success.
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as usize as *mut u8).expect("no device registers at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.cast::<u8>().as_ptr() as usize as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

type Raw = VirtIONetRaw<StaticHal, MmioTransport<'static>, QUEUE_SIZE>;

/// The frame buffers a [`VirtioNet`] receives into and sends from. All
/// zero bits, so a `static` of it costs no flash.
pub struct Buffers {
    rx: [[u8; BUF]; RX_BUFFERS],
    tx: [[u8; BUF]; TX_BUFFERS],
}

impl Buffers {
    /// Zeroed buffers.
    pub const fn new() -> Self {
        Buffers {
            rx: [[0; BUF]; RX_BUFFERS],
            tx: [[0; BUF]; TX_BUFFERS],
        }
    }
}

impl Default for Buffers {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a virtio network device could not be started.
#[derive(Debug)]
pub struct StartError(pub virtio_drivers::Error);

/// The sending half: the driver itself and the send buffers (a
/// [`TxToken`] borrows it while a [`RxToken`] borrows a receive buffer).
struct Tx<'b> {
    raw: Raw,
    bufs: &'b mut [[u8; BUF]; TX_BUFFERS],
    /// The device's token and the length handed to it, per buffer in flight.
    in_flight: [Option<(u16, usize)>; TX_BUFFERS],
    /// Frames smoltcp gave that the device refused (it never should).
    dropped: u32,
}

impl Tx<'_> {
    /// Takes back every buffer the device has finished sending.
    fn reclaim(&mut self) {
        while let Some(token) = self.raw.poll_transmit() {
            let Some(i) = self
                .in_flight
                .iter()
                .position(|f| matches!(f, Some((t, _)) if *t == token))
            else {
                panic!("virtio-net: the device finished a frame never sent");
            };
            let (_, len) = self.in_flight[i].take().expect("found above");
            // SAFETY: `bufs[i][..len]` is the very slice `transmit_begin`
            // got with this token (`TxToken::consume`), untouched since.
            unsafe { self.raw.transmit_complete(token, &self.bufs[i][..len]) }
                .expect("the token the device used");
        }
    }

    fn free(&self) -> Option<usize> {
        self.in_flight.iter().position(Option::is_none)
    }
}

/// A virtio network device as a smoltcp device (see the module docs).
pub struct VirtioNet<'b> {
    tx: Tx<'b>,
    rx: &'b mut [[u8; BUF]; RX_BUFFERS],
    /// The device's token for each posted receive buffer.
    rx_tokens: [u16; RX_BUFFERS],
    /// The receive buffer smoltcp was handed last: posted again at the
    /// next receive.
    lent: Option<usize>,
}

impl<'b> VirtioNet<'b> {
    /// Starts the device behind `transport` (a network device): negotiates
    /// features, sets up its queues in [`StaticHal`]'s region, posts every
    /// receive buffer and enables its interrupts.
    ///
    /// # Errors
    /// What virtio-drivers reports: no DMA pages left (a second device),
    /// a device that refuses the queues.
    pub fn new(
        transport: MmioTransport<'static>,
        buffers: &'b mut Buffers,
    ) -> Result<Self, StartError> {
        let mut raw = Raw::new(transport).map_err(StartError)?;
        let Buffers { rx, tx } = buffers;
        let mut rx_tokens = [0; RX_BUFFERS];
        for (buf, token) in rx.iter_mut().zip(&mut rx_tokens) {
            // SAFETY: the buffer is the device's until its token comes back
            // from `poll_receive`; only `receive` touches it after that.
            *token = unsafe { raw.receive_begin(buf) }.map_err(StartError)?;
        }
        raw.enable_interrupts();
        Ok(VirtioNet {
            tx: Tx {
                raw,
                bufs: tx,
                in_flight: [None; TX_BUFFERS],
                dropped: 0,
            },
            rx,
            rx_tokens,
            lent: None,
        })
    }

    /// The device's MAC address.
    pub fn mac_address(&self) -> EthernetAddress {
        EthernetAddress(self.tx.raw.mac_address())
    }

    /// Acknowledges the device's interrupt, so that it can raise the next
    /// one. Call it before [`has_frame`](Self::has_frame) and the wait.
    pub fn ack_interrupt(&mut self) {
        self.tx.raw.ack_interrupt();
    }

    /// Whether a received frame waits (takes finished sends back first, so
    /// that their interrupt is not pending work).
    pub fn has_frame(&mut self) -> bool {
        self.tx.reclaim();
        self.tx.raw.poll_receive().is_some()
    }

    /// Frames smoltcp sent that the device refused.
    pub fn dropped(&self) -> u32 {
        self.tx.dropped
    }

    /// Posts the buffer lent to smoltcp last back to the device.
    fn repost(&mut self) {
        if let Some(i) = self.lent.take() {
            // SAFETY: smoltcp's `RxToken` borrowed this buffer, and it is
            // gone (it borrowed `self`); from here the buffer is the
            // device's until its new token comes back.
            self.rx_tokens[i] = unsafe { self.tx.raw.receive_begin(&mut self.rx[i]) }
                .expect("a descriptor freed by the frame taken");
        }
    }
}

impl<'b> Device for VirtioNet<'b> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, 'b>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_, 'b>)> {
        self.repost();
        self.tx.reclaim();
        // No frame is taken without room for the answer it may need.
        self.tx.free()?;
        let token = self.tx.raw.poll_receive()?;
        let i = self
            .rx_tokens
            .iter()
            .position(|&t| t == token)
            .expect("the device used a posted buffer");
        // SAFETY: `rx[i]` is the very buffer `receive_begin` got with this
        // token, and the device is done with it.
        let (header, len) = unsafe { self.tx.raw.receive_complete(token, &mut self.rx[i]) }
            .expect("the token the device used");
        self.lent = Some(i);
        Some((
            RxToken {
                frame: &self.rx[i][header..header + len],
            },
            TxToken { tx: &mut self.tx },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_, 'b>> {
        self.tx.reclaim();
        self.tx.free()?;
        Some(TxToken { tx: &mut self.tx })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps
    }
}

/// A received frame.
pub struct RxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

/// A free send buffer; the frame goes to the device when consumed.
pub struct TxToken<'a, 'b> {
    tx: &'a mut Tx<'b>,
}

impl phy::TxToken for TxToken<'_, '_> {
    /// # Panics
    /// If `len` exceeds [`MTU`] (smoltcp never asks for more).
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let tx = self.tx;
        let i = tx.free().expect("a token is made only with a free buffer");
        let buf = &mut tx.bufs[i];
        let header = tx.raw.fill_buffer_header(buf).expect("room for the header");
        let result = f(&mut buf[header..header + len]);
        let frame = &buf[..header + len];
        // SAFETY: the buffer is not touched again until the device gives
        // its token back (`Tx::reclaim`), which passes this same slice.
        match unsafe { tx.raw.transmit_begin(frame) } {
            Ok(token) => tx.in_flight[i] = Some((token, frame.len())),
            Err(_) => tx.dropped += 1,
        }
        result
    }
}
