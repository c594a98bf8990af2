//! Time as an input: the core never reads a clock, it is handed one.

use core::fmt;
use core::ops::{Add, Sub};
use core::time::Duration;

/// A point on a monotonic time line, in microseconds since an arbitrary epoch
/// chosen by the [`Clock`] that produced it.
///
/// Only instants from the same clock can be compared meaningfully.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant {
    micros: u64,
}

impl Instant {
    /// The epoch of the clock.
    pub const ZERO: Instant = Instant { micros: 0 };

    /// An instant `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Instant { micros }
    }

    /// An instant `millis` milliseconds after the epoch (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Instant {
            micros: millis.saturating_mul(1000),
        }
    }

    /// Microseconds since the epoch.
    pub const fn total_micros(self) -> u64 {
        self.micros
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.micros.saturating_sub(earlier.micros))
    }

    /// `self + d`, or `None` if that cannot be represented.
    pub fn checked_add(self, d: Duration) -> Option<Instant> {
        let add = u64::try_from(d.as_micros()).ok()?;
        self.micros.checked_add(add).map(Instant::from_micros)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturates at the far end of the time line instead of overflowing.
    fn add(self, d: Duration) -> Instant {
        self.checked_add(d)
            .unwrap_or(Instant::from_micros(u64::MAX))
    }
}

impl Sub for Instant {
    type Output = Duration;

    /// Saturates at zero when `rhs` is later than `self`.
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:06}s",
            self.micros / 1_000_000,
            self.micros % 1_000_000
        )
    }
}

/// A monotonic clock.
///
/// On std this is backed by `std::time::Instant`; on firmware by a hardware
/// timer such as SysTick, or a counter the main loop advances.
pub trait Clock {
    /// The current instant. Must never go backwards.
    fn now(&self) -> Instant;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Instant {
        (**self).now()
    }
}

/// The host's clock (feature `std`): [`Clock`] read from
/// [`std::time::Instant`], counting from its first reading in the process,
/// so every `StdClock` (in either backend) tells the same time.
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
#[derive(Clone, Copy, Debug, Default)]
pub struct StdClock;

#[cfg(feature = "std")]
impl Clock for StdClock {
    fn now(&self) -> Instant {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let epoch = *EPOCH.get_or_init(std::time::Instant::now);
        Instant::from_micros(u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let a = Instant::from_millis(5);
        let b = a + Duration::from_millis(7);
        assert_eq!(b.total_micros(), 12_000);
        assert_eq!(b - a, Duration::from_millis(7));
        assert_eq!(a - b, Duration::ZERO);
        assert_eq!((a + Duration::MAX).total_micros(), u64::MAX);
        assert_eq!(a.checked_add(Duration::MAX), None);
    }
}
