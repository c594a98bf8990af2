//! Zeroed bytes that take memory only where they are used: an anonymous
//! mapping, whose pages the kernel supplies zero-filled on first touch.
//!
//! A request thread's buffers are 16 KiB by default, and a line of 64
//! bytes touches one page of them. From the heap they would be zeroed
//! (`calloc` clears memory it reuses), so every page would be resident for
//! as long as the connection lives: 12 KiB more per connection than a
//! hand-written server's `BufReader`, which leaves its buffer uninitialized.

use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

/// `len` zeroed bytes, in a mapping of their own (or, if mapping fails,
/// on the heap).
pub(crate) struct Pages(Storage);

enum Storage {
    Mapped {
        ptr: NonNull<u8>,
        len: usize,
    },
    /// No mapping (none needed, or the system refused one): zeroed heap
    /// bytes, every page of them resident.
    Heap(Box<[u8]>),
}

// SAFETY: a `Pages` owns its mapping exclusively (nothing else holds the
// pointer), like a `Box<[u8]>`, so moving it to another thread is sound.
unsafe impl Send for Pages {}

impl Pages {
    /// `len` zeroed bytes; no page is resident until it is touched.
    pub(crate) fn zeroed(len: usize) -> Pages {
        let Some(size) = NonZeroUsize::new(len) else {
            return Pages(Storage::Heap(Box::default()));
        };
        // SAFETY: a new private anonymous mapping at an address the kernel
        // picks: it aliases no memory of this process.
        let mapped = unsafe {
            mmap_anonymous(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        };
        match mapped {
            Ok(ptr) => Pages(Storage::Mapped {
                ptr: ptr.cast(),
                len,
            }),
            Err(err) => {
                log::debug!("mapping {len} bytes failed ({err}); zeroing them on the heap");
                Pages(Storage::Heap(vec![0; len].into_boxed_slice()))
            }
        }
    }
}

impl std::ops::Deref for Pages {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            // SAFETY: the mapping is `len` bytes, readable and writable,
            // initialized (zero-filled by the kernel, then written only
            // through these slices), and lives until `drop`; `&self`
            // excludes a `&mut` view meanwhile.
            Storage::Mapped { ptr, len } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr(), *len)
            },
            Storage::Heap(bytes) => bytes,
        }
    }
}

impl std::ops::DerefMut for Pages {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.0 {
            // SAFETY: as in `deref`; `&mut self` makes this view the only one.
            Storage::Mapped { ptr, len } => unsafe {
                std::slice::from_raw_parts_mut(ptr.as_ptr(), *len)
            },
            Storage::Heap(bytes) => bytes,
        }
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        if let Storage::Mapped { ptr, len } = self.0 {
            // SAFETY: the mapping made in `zeroed`, of `len` bytes, unmapped
            // once: no slice of it outlives `self`.
            if let Err(err) = unsafe { munmap(ptr.cast(), len) } {
                log::warn!("unmapping a request buffer failed: {err}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_writable_and_any_length() {
        for len in [0, 1, 8192, 16384 + 3] {
            let mut pages = Pages::zeroed(len);
            assert_eq!(pages.len(), len);
            assert!(pages.iter().all(|&b| b == 0));
            if len > 0 {
                pages[len - 1] = 7;
                assert_eq!(pages[len - 1], 7);
            }
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn untouched_pages_are_not_resident() {
        // 64 MiB mapped, one byte written: the resident set grows by far
        // less than the mapping (it would grow by all of it if zeroed).
        let before = resident_kib();
        let mut pages = Pages::zeroed(64 << 20);
        pages[0] = 1;
        let grown = resident_kib().saturating_sub(before);
        assert!(grown < 8 << 10, "resident set grew by {grown} KiB");
        drop(pages);
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn resident_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}
