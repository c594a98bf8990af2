//! The host's clock, with `std`.

use std::sync::OnceLock;

use socketserver_core::{Clock, Instant};

/// The core [`Clock`] read from [`std::time::Instant`], counting from its
/// first reading in the process: every `StdClock` tells the same time, as
/// the std backend's `StdClock` does (same definition, same epoch rule).
#[derive(Clone, Copy, Debug, Default)]
pub struct StdClock;

impl Clock for StdClock {
    fn now(&self) -> Instant {
        static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
        let epoch = *EPOCH.get_or_init(std::time::Instant::now);
        Instant::from_micros(u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_clock_tells_the_same_time() {
        let first = StdClock.now();
        let second = StdClock.now();
        assert!(second >= first);
        assert!(second - first < core::time::Duration::from_secs(5));
    }
}
