//! Processing requests on the serving thread: the core's [`SyncDispatch`]
//! with heap buffers sized when the server is built.

use socketserver_core::{DefaultHooks, HandlerFactory, SyncDispatch};

/// The buffers a dispatch allocates once, when the server is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BufferSizes {
    /// Streams: the `rfile` buffer, which bounds a line. Datagrams: the
    /// receive buffer (`max_packet_size`); longer datagrams are flagged
    /// truncated.
    pub read: usize,
    /// Streams: the `wfile` buffer of handlers that ask for one. Datagrams:
    /// the largest reply.
    pub write: usize,
}

impl Default for BufferSizes {
    /// 8 KiB each, Python's `max_packet_size`.
    fn default() -> Self {
        BufferSizes::new(8192, 8192)
    }
}

impl BufferSizes {
    /// `read` and `write` bytes.
    pub const fn new(read: usize, write: usize) -> Self {
        BufferSizes { read, write }
    }

    /// A zeroed read buffer of [`read`](Self::read) bytes.
    pub fn read_buffer(&self) -> Box<[u8]> {
        vec![0; self.read].into_boxed_slice()
    }

    /// A zeroed write buffer of [`write`](Self::write) bytes.
    pub fn write_buffer(&self) -> Box<[u8]> {
        vec![0; self.write].into_boxed_slice()
    }

    /// Python's default `process_request` with buffers of these sizes:
    /// each request is handled to the end on the serving thread, and a
    /// panicking handler is reported to `handle_error` as
    /// [`Error::Panicked`](socketserver_core::Error::Panicked) while the
    /// server goes on.
    pub fn inline<F: HandlerFactory, H>(&self, factory: F, hooks: H) -> InlineDispatch<F, H> {
        SyncDispatch::with_buffers(factory, hooks, self.read_buffer(), self.write_buffer())
    }
}

/// The core's synchronous dispatch with heap buffers: what [`TcpServer`],
/// [`UdpServer`] and the Unix servers serve with (build one with
/// [`BufferSizes::inline`]).
///
/// [`TcpServer`]: crate::TcpServer
/// [`UdpServer`]: crate::UdpServer
pub type InlineDispatch<F, H = DefaultHooks> = SyncDispatch<F, H, Box<[u8]>, Box<[u8]>>;
