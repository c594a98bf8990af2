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
