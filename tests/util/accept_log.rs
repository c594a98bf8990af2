//! A `log` logger that counts the core's reports of failed accepts, for
//! the tests that run a server out of descriptors.

use std::sync::atomic::{AtomicUsize, Ordering};

static ACCEPT_FAILURES: AtomicUsize = AtomicUsize::new(0);

/// Counts the records that report a failed accept.
struct CountAcceptFailures;

impl log::Log for CountAcceptFailures {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if record
            .args()
            .to_string()
            .contains("failed to get a request")
        {
            ACCEPT_FAILURES.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn flush(&self) {}
}

/// Makes the counter this process's logger, for warnings and worse (the
/// level the core reports failed accepts at).
///
/// # Panics
/// If a logger is already set.
pub fn install() {
    log::set_logger(&CountAcceptFailures).expect("a logger was already set");
    log::set_max_level(log::LevelFilter::Warn);
}

/// The failed accepts reported since [`install`].
pub fn failures() -> usize {
    ACCEPT_FAILURES.load(Ordering::SeqCst)
}
