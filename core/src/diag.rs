//! Diagnostics routed to `log`, `defmt`, or nowhere.

use embedded_io::ErrorKind;

/// Accepting or receiving a request failed; the server goes on (Python
/// ignores these `OSError`s silently).
pub(crate) fn accept_failed(kind: ErrorKind) {
    #[cfg(feature = "log")]
    log::warn!("failed to get a request: {kind:?}");
    #[cfg(feature = "defmt")]
    defmt::warn!("failed to get a request: {}", kind);
    let _ = kind;
}
