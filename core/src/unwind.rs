//! Catching a handler's panic, once per request, where the target can.

use crate::Error;

/// Runs one request; with the `std` feature a panic becomes
/// [`Error::Panicked`], so it reaches `handle_error` like any failure and
/// the server goes on. Without it (firmware: `panic = "abort"`), a panic
/// follows the target's panic strategy.
#[cfg(feature = "std")]
pub(crate) fn catch<T>(request: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(request)).unwrap_or(Err(Error::Panicked))
}

/// Runs one request (no unwinding to catch without `std`).
#[cfg(not(feature = "std"))]
#[inline(always)]
pub(crate) fn catch<T>(request: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    request()
}
