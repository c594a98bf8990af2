//! Zeroed buffers on the heap, where no anonymous mapping is used (Windows):
//! the same type as `pages.rs` offers on Unix, allocated with `calloc`'s
//! zeroing (which touches the pages it clears).

/// A zeroed buffer of bytes.
#[derive(Debug)]
pub(crate) struct Pages(Box<[u8]>);

impl Pages {
    /// `len` zero bytes.
    pub(crate) fn zeroed(len: usize) -> Pages {
        Pages(vec![0; len].into_boxed_slice())
    }
}

impl std::ops::Deref for Pages {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for Pages {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}
