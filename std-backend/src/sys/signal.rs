//! The process's handler of the stop signals (`SIGINT`, `SIGTERM`), shared
//! by every live [`SignalWatch`](super::SignalWatch).
//!
//! The first watch installs it; when the last one ends, the dispositions it
//! replaced are put back, so a dropped guard leaves the process as it found
//! it. The handler wakes each registered target (the platform's
//! async-signal-safe [`deliver`]) and then runs
//! the handler it replaced, if any. A second stop signal while it is
//! installed ends the process at once, by that signal's default action,
//! unless a [`KeepDraining`] lives.
//! A target's drain timer may send `SIGTERM` too: that one the target
//! recognizes ([`expire`]), and it counts as no stop signal.
//!
//! In a forked child ([`in_child`]) the handler obeys only the parent: a
//! stop signal from anyone else (the process group's, the terminal's) is
//! ignored, since the parent stops its children itself, after its drain.

use std::ffi::{c_int, c_void};
use std::io;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard, PoisonError};

use nix::errno::Errno;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;

use super::platform::{deliver, expire, Target};
use super::unix::STOP_SIGNALS;

/// How many watches (servers that called `stop_on_signals`) may live at once.
const MAX_WATCHES: usize = 32;

/// What the handler wakes; null slots are free.
static TARGETS: [AtomicPtr<Target>; MAX_WATCHES] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_WATCHES];
/// Handlers running now, on any thread: a target is released only once
/// this is zero after its slot was cleared.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
/// Stop signals received since the handler was installed.
static RECEIVED: AtomicUsize = AtomicUsize::new(0);
/// Live guards that asked to keep draining through a second stop signal.
static KEEP_DRAINING: AtomicUsize = AtomicUsize::new(0);

/// While one lives, a stop signal after the first is no reason to end the
/// process: the drain runs its course.
#[derive(Debug)]
pub(crate) struct KeepDraining(());

impl KeepDraining {
    pub(crate) fn new() -> Self {
        KEEP_DRAINING.fetch_add(1, SeqCst);
        KeepDraining(())
    }
}

impl Drop for KeepDraining {
    fn drop(&mut self) {
        KEEP_DRAINING.fetch_sub(1, SeqCst);
    }
}
/// The replaced handler of each stop signal, as an address (0: none to
/// run), and whether it takes `siginfo`. Written only while the handler is
/// not installed and no instance of it runs.
static CHAINED: [AtomicUsize; 2] = [const { AtomicUsize::new(0) }; 2];
static CHAINED_SIGINFO: [AtomicBool; 2] = [const { AtomicBool::new(false) }; 2];

/// In a forked child, the parent's process id: the only sender whose stop
/// signals count. 0 in a process that was not forked by this crate.
static OBEYED: AtomicI32 = AtomicI32::new(0);

/// The dispositions the handler replaced, while it is installed.
static INSTALLED: Mutex<Option<[SigAction; 2]>> = Mutex::new(None);

fn installed() -> MutexGuard<'static, Option<[SigAction; 2]>> {
    INSTALLED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A target's place in the handler's table; dropping it removes the
/// target, and once no handler can still be using it, returns.
#[derive(Debug)]
pub(super) struct Registration {
    slot: usize,
}

/// Has the handler wake `target` until the registration is dropped.
/// `target` must stay valid until then.
pub(super) fn register(target: &Target) -> io::Result<Registration> {
    let mut installed = installed();
    let target = ptr::from_ref(target).cast_mut();
    let slot = TARGETS
        .iter()
        .position(|t| {
            t.compare_exchange(ptr::null_mut(), target, SeqCst, SeqCst)
                .is_ok()
        })
        .ok_or_else(|| {
            io::Error::other(format!(
                "more than {MAX_WATCHES} stop_on_signals guards at once"
            ))
        })?;
    if installed.is_none() {
        match install() {
            Ok(previous) => *installed = Some(previous),
            Err(err) => {
                TARGETS[slot].store(ptr::null_mut(), SeqCst);
                return Err(err);
            }
        }
    }
    Ok(Registration { slot })
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut installed = installed();
        TARGETS[self.slot].store(ptr::null_mut(), SeqCst);
        if TARGETS.iter().all(|t| t.load(SeqCst).is_null()) {
            if let Some(previous) = installed.take() {
                restore(&previous);
            }
        }
        // A handler that loaded this target before the store above has
        // counted itself in `RUNNING` before loading it.
        quiesce();
    }
}

/// [`on_stop_signal`] as a disposition: restarting interrupted calls, with
/// both stop signals blocked while it runs.
fn our_action() -> SigAction {
    let mut mask = SigSet::empty();
    for signal in STOP_SIGNALS {
        mask.add(signal);
    }
    SigAction::new(
        SigHandler::SigAction(on_stop_signal),
        SaFlags::SA_RESTART,
        mask,
    )
}

/// Installs [`on_stop_signal`] for both signals; returns what it replaced.
fn install() -> io::Result<[SigAction; 2]> {
    let action = our_action();
    RECEIVED.store(0, SeqCst);
    let mut previous = [action; 2];
    for (i, signal) in STOP_SIGNALS.into_iter().enumerate() {
        // SAFETY: `on_stop_signal` only does what a signal handler may: it
        // touches atomics, calls `deliver` (async-signal-safe by its
        // contract), sigaction(2) and raise(3) (both async-signal-safe), and
        // the handler it replaced, which was installed to run as a handler.
        // It allocates nothing, takes no lock, and restores errno.
        let replaced = unsafe { sigaction(signal, &action) };
        match replaced {
            Ok(old) => {
                previous[i] = old;
                chain_to(i, &old);
            }
            Err(err) => {
                restore(&previous[..i]);
                return Err(err.into());
            }
        }
    }
    Ok(previous)
}

/// Records `old` as the handler to run after ours for `STOP_SIGNALS[i]`.
fn chain_to(i: usize, old: &SigAction) {
    let (address, siginfo) = match old.handler() {
        // Ours already (a forked child's, see `in_child`): nothing to chain.
        _ if is_ours(old) => (0, false),
        SigHandler::SigDfl | SigHandler::SigIgn => (0, false),
        SigHandler::Handler(f) => (f as usize, false),
        SigHandler::SigAction(f) => (f as usize, true),
    };
    CHAINED[i].store(address, SeqCst);
    CHAINED_SIGINFO[i].store(siginfo, SeqCst);
}

/// Puts `previous` back for the stop signals whose handler is still ours
/// (one that the program installed since is left alone).
fn restore(previous: &[SigAction]) {
    for (signal, old) in STOP_SIGNALS.into_iter().zip(previous) {
        // SAFETY: `old` is what sigaction(2) returned for `signal` when
        // ours was installed: the program's own disposition, which was
        // valid to run as a handler then and is put back as it was.
        let Ok(current) = (unsafe { sigaction(signal, old) }) else {
            continue;
        };
        if !is_ours(&current) {
            // SAFETY: as above, `current` was the installed disposition a
            // moment ago.
            let _ = unsafe { sigaction(signal, &current) };
        }
    }
}

fn is_ours(action: &SigAction) -> bool {
    matches!(action.handler(), SigHandler::SigAction(f) if f as usize == on_stop_signal as *const () as usize)
}

/// The handler: counts the signal, ends the process on the second one
/// (unless a guard keeps draining: then it only chains), wakes the targets
/// on the first, then runs the handler it replaced. A drain timer's
/// expiry (a `SIGTERM` its target recognizes, see [`expire`]) is no stop
/// signal: its target handles it, and nothing else happens.
extern "C" fn on_stop_signal(signo: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    let errno = Errno::last_raw();
    RUNNING.fetch_add(1, SeqCst);
    if !targets().any(|target| expire(info, target)) && obeys(info) {
        let index = STOP_SIGNALS.iter().position(|s| *s as c_int == signo);
        let forked = OBEYED.load(SeqCst) != 0;
        if forked && targets().next().is_none() {
            // The parent stops a child that serves one request (it has no
            // loop to stop): the default action, unless the request put a
            // handler of its own in place (which chained to this one).
            if is_installed(signo) {
                exit_by(signo);
            }
            RUNNING.fetch_sub(1, SeqCst);
            Errno::set_raw(errno);
            return;
        }
        let first = RECEIVED.fetch_add(1, SeqCst) == 0;
        if !first && KEEP_DRAINING.load(SeqCst) == 0 {
            exit_by(signo);
        } else {
            if first {
                targets().for_each(deliver);
            }
            if let Some(i) = index {
                run_chained(i, signo, info, context);
            }
        }
    }
    RUNNING.fetch_sub(1, SeqCst);
    Errno::set_raw(errno);
}

/// Whether a stop signal counts: always, except in a forked child, where
/// only the parent's do.
fn obeys(info: *const libc::siginfo_t) -> bool {
    match OBEYED.load(SeqCst) {
        0 => true,
        parent => sender(info) == Some(parent),
    }
}

/// Whether [`on_stop_signal`] is `signo`'s disposition now (rather than
/// a handler that replaced it and runs it as the one it replaced).
/// Async-signal-safe: sigaction(2) only reads.
fn is_installed(signo: c_int) -> bool {
    let mut now = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the disposition into `now`,
    // which sigaction(2) fills in when it succeeds.
    let read = unsafe { libc::sigaction(signo, ptr::null(), now.as_mut_ptr()) } == 0;
    // SAFETY: zeroed, and filled in when `read`.
    read && unsafe { now.assume_init() }.sa_sigaction == on_stop_signal as *const () as usize
}

/// Who sent the signal `info` describes (for a `kill(2)`), if anyone.
fn sender(info: *const libc::siginfo_t) -> Option<i32> {
    // SAFETY: the kernel hands an `SA_SIGINFO` handler a valid `siginfo_t`
    // (or a chaining handler passes on its own); null is checked. Reading
    // `si_pid` of a signal that was not sent by a process reads 0 or the
    // field of another variant, which is no parent's id either.
    let info = unsafe { info.as_ref() }?;
    Some(unsafe { info.si_pid() })
}

/// Sets up a forked child's stop signals, right after the fork (the child
/// has one thread): the parent's targets are forgotten (they would wake the
/// parent's loop through the descriptors both share), and [`on_stop_signal`]
/// is installed for `SIGINT` and `SIGTERM` (unless the parent ignored them)
/// obeying only `parent`. A child that serves one request then ends by the
/// parent's first stop signal; a pre-forked worker that calls
/// `stop_on_signals` is stopped by it, as a server; both ignore everyone
/// else's. Async-signal-safe apart from the lock's `try_lock`, which
/// cannot block.
pub(super) fn in_child(parent: Pid) {
    for target in &TARGETS {
        target.store(ptr::null_mut(), SeqCst);
    }
    RECEIVED.store(0, SeqCst);
    OBEYED.store(parent.as_raw(), SeqCst);
    // Locked only if another thread of the parent held it at the fork: the
    // child then cannot watch signals of its own (`stop_on_signals` would
    // block), and is documented so.
    match INSTALLED.try_lock() {
        Ok(mut installed) => *installed = None,
        Err(std::sync::TryLockError::Poisoned(poisoned)) => *poisoned.into_inner() = None,
        Err(std::sync::TryLockError::WouldBlock) => {}
    }
    let action = our_action();
    for (i, signal) in STOP_SIGNALS.into_iter().enumerate() {
        CHAINED[i].store(0, SeqCst);
        // SAFETY: as in `install`: `on_stop_signal` is async-signal-safe,
        // and with no targets and nothing chained it only counts, compares
        // the sender and ends the process by the signal.
        if let Ok(old) = unsafe { sigaction(signal, &action) } {
            if matches!(old.handler(), SigHandler::SigIgn) {
                // SAFETY: ignoring runs no code.
                let _ = unsafe { sigaction(signal, &old) };
            }
        }
    }
}

/// The registered targets, for the handler only: it counts itself in
/// `RUNNING` first and uses them no longer than it is counted there.
fn targets() -> impl Iterator<Item = &'static Target> {
    TARGETS.iter().filter_map(|target| {
        // SAFETY: a non-null target stays valid until its registration is
        // dropped, which waits for the handlers that may have loaded it
        // (`RUNNING`).
        unsafe { target.load(SeqCst).as_ref() }
    })
}

/// Waits until no stop-signal handler runs, on any thread.
pub(super) fn quiesce() {
    while RUNNING.load(SeqCst) != 0 {
        std::thread::yield_now();
    }
}

/// Runs the handler that ours replaced for `STOP_SIGNALS[i]`, if any.
fn run_chained(i: usize, signo: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    let address = CHAINED[i].load(SeqCst);
    if address == 0 {
        return;
    }
    if CHAINED_SIGINFO[i].load(SeqCst) {
        type Action = extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void);
        // SAFETY: `address` came from a `SigHandler::SigAction` that
        // sigaction(2) reported as installed for this signal, a function
        // of exactly this type; it gets the kernel's own arguments.
        let action: Action = unsafe { std::mem::transmute::<usize, Action>(address) };
        action(signo, info, context);
    } else {
        type Handler = extern "C" fn(c_int);
        // SAFETY: as above, from a `SigHandler::Handler`.
        let handler: Handler = unsafe { std::mem::transmute::<usize, Handler>(address) };
        handler(signo);
    }
}

/// Ends the process by `signo`'s default action, as if no handler had been
/// installed: the signal is raised again, pending while this handler runs
/// (it is in the handler's mask) and delivered when it returns.
fn exit_by(signo: c_int) {
    let Ok(signal) = Signal::try_from(signo) else {
        return;
    };
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: the default action runs no code of ours.
    if unsafe { sigaction(signal, &default) }.is_ok() {
        let _ = nix::sys::signal::raise(signal);
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use crate::shutdown::Shared;
    use crate::sys::SignalWatch;

    /// The address of `signal`'s handler now (or `SIG_DFL`, `SIG_IGN`).
    fn handler_of(signal: Signal) -> usize {
        let mut now = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: a null new action only reads the disposition into `now`.
        let rc = unsafe { libc::sigaction(signal as c_int, ptr::null(), now.as_mut_ptr()) };
        assert_eq!(rc, 0);
        // SAFETY: sigaction(2) filled it in.
        unsafe { now.assume_init() }.sa_sigaction
    }

    fn set(signal: Signal, handler: SigHandler) {
        let action = SigAction::new(handler, SaFlags::empty(), SigSet::empty());
        // SAFETY: only the default action and `SIG_IGN`, which run no code.
        unsafe { sigaction(signal, &action) }.unwrap();
    }

    /// The first registration installs the handler, the last one puts back
    /// what it found, except where the program installed another since.
    #[test]
    fn the_last_registration_gives_the_dispositions_back() {
        let ours = on_stop_signal as *const () as usize;
        let (a, b) = (Shared::new().unwrap(), Shared::new().unwrap());
        let first = SignalWatch::start(&a).unwrap();
        let second = SignalWatch::start(&b).unwrap();
        assert_eq!(handler_of(Signal::SIGTERM), ours);
        drop(first);
        assert_eq!(handler_of(Signal::SIGINT), ours, "one registration left");
        set(Signal::SIGINT, SigHandler::SigIgn);
        drop(second);
        assert_eq!(handler_of(Signal::SIGTERM), libc::SIG_DFL);
        assert_eq!(handler_of(Signal::SIGINT), libc::SIG_IGN, "left alone");
        set(Signal::SIGINT, SigHandler::SigDfl);
        assert!(installed().is_none());
        assert!(TARGETS.iter().all(|t| t.load(SeqCst).is_null()));
    }
}
