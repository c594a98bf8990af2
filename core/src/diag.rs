//! Diagnostics routed to `log`, `defmt`, or nowhere.

/// Accepting or receiving a request failed; the server goes on (Python
/// ignores these `OSError`s silently).
pub(crate) fn accept_failed<E: embedded_io::Error>(err: &E) {
    #[cfg(feature = "log")]
    log::warn!("failed to get a request: {err:?}");
    #[cfg(feature = "defmt")]
    defmt::warn!("failed to get a request: {}", err.kind());
    let _ = err;
}

/// An error and its `source()` chain, as `error: cause: cause`.
#[cfg(any(feature = "log", feature = "std"))]
pub(crate) struct Chain<'e>(pub(crate) &'e (dyn core::error::Error + 'static));

#[cfg(any(feature = "log", feature = "std"))]
impl core::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(self.0, f)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            f.write_str(": ")?;
            core::fmt::Display::fmt(err, f)?;
            source = err.source();
        }
        Ok(())
    }
}
