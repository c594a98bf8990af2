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

    /// A [`DispatchConfig`] of these sizes with `hooks`.
    pub fn with_hooks<H>(self, hooks: H) -> DispatchConfig<H> {
        DispatchConfig { sizes: self, hooks }
    }
}

/// What every dispatch is built from besides its handler factory: the
/// buffer sizes and the hooks. [`ServerBuilder::build_with`] hands one to
/// its closure, with the sizes and hooks set on the builder; every
/// dispatch's `new(factory, config)` takes one (or plain
/// [`BufferSizes`], for the default hooks).
///
/// [`ServerBuilder::build_with`]: crate::ServerBuilder::build_with
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct DispatchConfig<H = DefaultHooks> {
    /// The buffers each request is served with.
    pub sizes: BufferSizes,
    /// Python's overridable server methods.
    pub hooks: H,
}

impl<H> DispatchConfig<H> {
    /// `sizes` and `hooks`.
    pub fn new(sizes: BufferSizes, hooks: H) -> Self {
        DispatchConfig { sizes, hooks }
    }

    /// The same sizes with other hooks.
    pub fn with_hooks<H2>(self, hooks: H2) -> DispatchConfig<H2> {
        DispatchConfig {
            sizes: self.sizes,
            hooks,
        }
    }

    /// Python's default `process_request`: each request is handled to the
    /// end on the serving thread, and a panicking handler is reported to
    /// `handle_error` as
    /// [`Error::Panicked`](socketserver_core::Error::Panicked) while the
    /// server goes on.
    pub fn inline<F: HandlerFactory>(self, factory: F) -> InlineDispatch<F, H> {
        let (read, write) = (self.sizes.read_buffer(), self.sizes.write_buffer());
        SyncDispatch::with_buffers(factory, self.hooks, read, write)
    }
}

impl From<BufferSizes> for DispatchConfig {
    fn from(sizes: BufferSizes) -> Self {
        sizes.with_hooks(DefaultHooks)
    }
}

/// The core's synchronous dispatch with heap buffers: what [`TcpServer`],
/// [`UdpServer`] and the Unix servers serve with (build one with
/// [`DispatchConfig::inline`]).
///
/// [`TcpServer`]: crate::TcpServer
/// [`UdpServer`]: crate::UdpServer
pub type InlineDispatch<F, H = DefaultHooks> = SyncDispatch<F, H, Box<[u8]>, Box<[u8]>>;
