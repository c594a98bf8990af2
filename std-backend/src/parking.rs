//! Persistent connections parked between messages: a fixed set of workers
//! that wait on a shared poller and serve whichever connection has a whole
//! message, one message per turn.

use std::any::Any;
use std::fmt;
use std::io;
use std::net::ToSocketAddrs;
#[cfg(unix)]
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use socket2::Socket;
use socketserver_core::transport::kind;
use socketserver_core::{
    shutdown_request, take_stream_request, Connection, DefaultHooks, Dispatch, Error,
    HandlerFactory, Hooks, Incoming, Lifecycle, Listener, MessageHandler, ServerHooks, Session,
    Took, Turn,
};

use crate::concurrent::{wait_until, Drain, ThreadOptions};
use crate::dispatch::{BufferSizes, DispatchConfig};
use crate::server::new_with_defaults;
use crate::shutdown::{ShutdownHandle, CUT_GRACE};
use crate::sys::{self, Interest, Parker, Ready};
#[cfg(unix)]
use crate::transport::UnixStreamTransport;
use crate::transport::{SocketTransport, TcpTransport};
use crate::SocketServer;

/// A connection type a [`ParkingDispatch`] can park: the std backend's
/// [`TcpConnection`](crate::TcpConnection) and
/// [`UnixConnection`](crate::UnixConnection). Sealed.
pub trait Parkable: Connection + Send + 'static {
    /// The connection's socket.
    #[doc(hidden)]
    fn socket(&self) -> &Socket;
}

/// What a [`ParkingDispatch`] does with a new connection when
/// [`max_connections`](ParkingDispatch::max_connections) are open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Full {
    /// Close the connection that has been idle longest (parked, with no
    /// partial message) to make room; refuse the new one if none is idle.
    /// The default.
    #[default]
    ShedIdlest,
    /// Refuse the new connection (it is shut down at once).
    Refuse,
}

/// What a [`ParkingDispatch`] has done, for monitoring:
/// [`ParkingDispatch::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParkingStats {
    /// Connections open now (parked or being served).
    pub open: usize,
    /// Connections refused because the bound was reached.
    pub refused: u64,
    /// Idle connections closed to make room for new ones.
    pub shed: u64,
    /// Connections closed because they stayed idle longer than the idle
    /// timeout.
    pub idle_closed: u64,
    /// Connections closed because a message did not arrive whole within
    /// the handler's `request_timeout`.
    pub timed_out: u64,
}

#[derive(Debug, Default)]
struct Counters {
    refused: AtomicU64,
    shed: AtomicU64,
    idle_closed: AtomicU64,
    timed_out: AtomicU64,
}

/// The default number of workers: the available parallelism.
fn default_workers() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// The default idle timeout of a parked connection.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The default bound on open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Serves [`MessageHandler`]s on persistent connections with a fixed set of
/// worker threads, parking each connection in the system's poller between
/// messages (beyond Python, whose handlers own their connection; the model
/// of Tomcat's NIO connector).
///
/// The serving thread accepts, builds the connection's handler and parks
/// the connection in a poller (epoll on Linux, registered edge-triggered
/// once; elsewhere one-shot, re-armed after each turn) that every worker
/// waits on. When bytes arrive, one worker takes the connection (an event
/// for a connection a worker already serves only makes that worker look
/// again, so no two serve it at once), reads what is there without
/// waiting and, once the handler's
/// [`message_complete`](MessageHandler::message_complete) says a message is
/// whole, runs [`handle_message`](MessageHandler::handle_message) for it on
/// its own buffers; then parks the connection again. No thread is handed a
/// connection per message, and a parked connection holds no thread and,
/// unless part of a message has arrived, no buffer: its handler value, the
/// socket and a few words.
///
/// - **Fairness.** One message per turn: a connection with more messages
///   pipelined goes to the back of the ready queue, so a connection
///   with a message waiting is served before a busy one gets another turn.
/// - **Slow clients** cost a parked connection, not a thread: a partial
///   message is kept (at most the `rfile` buffer) until it completes or the
///   handler's [`request_timeout`](socketserver_core::StreamOptions::request_timeout)
///   runs out from its first byte (then the connection is closed and
///   `handle_error` gets a `TimedOut` error). Only what a handler reads
///   beyond the message it was handed (a body, say) blocks its worker,
///   bounded by the handler's `timeout`.
/// - **Idle connections** are closed after
///   [`idle_timeout`](Self::idle_timeout) ([`DEFAULT_IDLE_TIMEOUT`]).
/// - **A bound**, [`max_connections`](Self::max_connections)
///   ([`DEFAULT_MAX_CONNECTIONS`]); at it, [`Full`] says what happens to a
///   new connection. Refusals and sheds are counted in
///   [`stats`](Self::stats) and reported to `handle_error`.
/// - **Stopping.** Closing the server stops the workers after the message
///   each is serving, within the server's drain timeout (then their
///   connections are cut), and closes every parked connection (`finish`
///   runs for each).
///
/// The factory runs on the serving thread; handlers move between workers,
/// hence `Send`.
pub struct ParkingDispatch<F, H = DefaultHooks> {
    served: Arc<Served<F, H>>,
    settings: Settings,
    counters: Arc<Counters>,
    pool: Option<Box<dyn Pool>>,
    stop: Option<ShutdownHandle>,
}

/// The factory and hooks.
struct Served<F, H> {
    factory: F,
    hooks: H,
}

#[derive(Clone, Copy)]
struct Settings {
    workers: usize,
    idle_timeout: Option<Duration>,
    max_connections: usize,
    when_full: Full,
    sizes: BufferSizes,
}

impl<F: HandlerFactory, H> ParkingDispatch<F, H> {
    /// Serves with handlers from `factory` and the config's hooks; each
    /// worker has buffers of the config's sizes (`config` as for
    /// [`ThreadingDispatch::new`](crate::ThreadingDispatch::new)).
    pub fn new(factory: F, config: impl Into<DispatchConfig<H>>) -> Self {
        let DispatchConfig { sizes, hooks } = config.into();
        ParkingDispatch {
            served: Arc::new(Served { factory, hooks }),
            settings: Settings {
                workers: default_workers(),
                idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
                max_connections: DEFAULT_MAX_CONNECTIONS,
                when_full: Full::ShedIdlest,
                sizes,
            },
            counters: Arc::default(),
            pool: None,
            stop: None,
        }
    }

    /// The number of worker threads, which is also how many messages are
    /// served at once. Default: the available parallelism.
    ///
    /// # Panics
    /// If `n` is zero, or the workers have already started.
    pub fn workers(mut self, n: usize) -> Self {
        assert!(n > 0, "a parking dispatch needs at least one worker");
        assert!(self.pool.is_none(), "the workers already started");
        self.settings.workers = n;
        self
    }

    /// How long a connection may stay parked with nothing received before
    /// it is closed (`finish` runs; nothing is reported). `None`: for ever.
    /// Default: [`DEFAULT_IDLE_TIMEOUT`]. Checked a few times per timeout,
    /// so a connection may live up to a quarter longer.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.idle_timeout = timeout;
        self
    }

    /// At most `n` connections are open at once; see [`Full`] for what
    /// happens to the next. Default: [`DEFAULT_MAX_CONNECTIONS`].
    ///
    /// # Panics
    /// If `n` is zero.
    pub fn max_connections(mut self, n: usize) -> Self {
        assert!(n > 0, "max_connections must allow one connection");
        self.settings.max_connections = n;
        self
    }

    /// What happens to a new connection at the bound. Default:
    /// [`Full::ShedIdlest`].
    pub fn when_full(mut self, policy: Full) -> Self {
        self.settings.when_full = policy;
        self
    }
}

impl<F, H> ParkingDispatch<F, H> {
    /// What the dispatch has done so far.
    pub fn stats(&self) -> ParkingStats {
        let c = &self.counters;
        ParkingStats {
            open: self.pool.as_ref().map_or(0, |p| p.open()),
            refused: c.refused.load(Ordering::Relaxed),
            shed: c.shed.load(Ordering::Relaxed),
            idle_closed: c.idle_closed.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
        }
    }
}

impl<F, H> fmt::Debug for ParkingDispatch<F, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParkingDispatch")
            .field("workers", &self.settings.workers)
            .field("idle_timeout", &self.settings.idle_timeout)
            .field("max_connections", &self.settings.max_connections)
            .field("when_full", &self.settings.when_full)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<F, H: ServerHooks> Lifecycle for ParkingDispatch<F, H> {
    type Hooks = H;

    fn hooks(&self) -> &H {
        &self.served.hooks
    }

    fn server_close(&mut self) {
        if let Some(mut pool) = self.pool.take() {
            pool.close(&Drain::starting_now(self.stop.as_ref()));
        }
    }
}

impl<L, F, H> Dispatch<L, kind::Stream> for ParkingDispatch<F, H>
where
    L: Listener + SocketTransport,
    L::Connection: Parkable,
    L::Addr: Send + 'static,
    F: HandlerFactory + Send + Sync + 'static,
    F::Handler: MessageHandler<L::Connection> + Send + 'static,
    H: Hooks<L::Connection, L::Addr> + ServerHooks + Send + Sync + 'static,
{
    fn take(&mut self, listener: &mut L) -> Took {
        let (conn, addr) = match take_stream_request(listener, &self.served.hooks) {
            Incoming::Request(request) => request,
            other => return other.took(),
        };
        if self.stop.is_none() {
            self.stop = Some(listener.shutdown_handle());
        }
        if self.pool.is_none() {
            match Workers::<L::Connection, F, H>::start(&self.served, self.settings, &self.counters)
            {
                Ok(workers) => self.pool = Some(Box::new(workers)),
                Err(err) => {
                    self.served.hooks.handle_error(&addr, &Error::from_io(err));
                    shutdown_request(conn);
                    return Took::Request;
                }
            }
        }
        let pool = self.pool.as_mut().map(|p| p.as_any());
        let Some(workers) = pool.and_then(|p| p.downcast_mut::<Workers<L::Connection, F, H>>())
        else {
            unreachable!("a dispatch serves one connection type");
        };
        workers.park(conn, addr);
        Took::Request
    }
}

/// The typed worker pool, seen without its types.
trait Pool: Send {
    fn as_any(&mut self) -> &mut dyn Any;
    fn open(&self) -> usize;
    fn close(&mut self, drain: &Drain);
}

/// How many slots a chunk of the table holds.
const CHUNK: usize = 64;

/// Parked connections by slot: chunks allocated as the table grows and
/// never moved, each slot with a state word that says who holds its
/// connection ([`Slot::notify`]) and its own lock (held by the worker
/// serving it, so a sweep skips busy slots), with a generation that tells
/// a stale event from one for the slot's current connection.
struct Table<E> {
    chunks: Box<[OnceLock<Chunk<E>>]>,
    free: Mutex<Free>,
    open: AtomicUsize,
}

/// [`CHUNK`] slots, allocated together.
type Chunk<E> = Box<[Slot<E>]>;

struct Slot<E> {
    /// The generation of the slot's connection (the high half, as in its
    /// key), and [`HELD`] and [`NOTIFIED`]; neither: the connection is
    /// parked, and the next event's worker takes it.
    state: AtomicU64,
    inner: Mutex<SlotInner<E>>,
}

/// A worker holds the connection: it is serving it, or the connection is
/// queued for a turn (or a sweep or a shed is ending it). Only the holder
/// reads, serves, parks or ends it, so no two workers serve it at once.
const HELD: u64 = 1;
/// An event came while the connection was held: its holder looks at the
/// socket again before letting it go, so the event is not lost.
const NOTIFIED: u64 = 2;
/// An event said the peer closed or the connection failed ([`Ready::closed`]):
/// from then on a turn reads until the read says so, not trusting a short
/// read to have emptied the socket. Kept until the connection ends.
const CLOSED: u64 = 4;

impl<E> Slot<E> {
    fn idle_word(generation: u32) -> u64 {
        u64::from(generation) << 32
    }

    /// Moves the state word of the connection of `generation` on by `next`
    /// (`None`: leave it), in one compare-and-swap loop: `Ok` with the word
    /// before if it did; `Err` if `next` declined or the generation is
    /// stale.
    fn update(&self, generation: u32, next: impl Fn(u64) -> Option<u64>) -> Result<u64, u64> {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                ((now >> 32) as u32 == generation)
                    .then_some(now)
                    .and_then(&next)
            })
    }

    /// An event for the slot's connection of `generation`: takes the
    /// connection if it is parked (`true`: the caller holds it now), else
    /// tells its holder to look again (`false`); `false` for a stale event.
    fn notify(&self, generation: u32, closed: bool) -> bool {
        let closed = if closed { CLOSED } else { 0 };
        let before = self.update(generation, |now| {
            if now & (NOTIFIED | closed) == NOTIFIED | closed {
                None // its holder looks again already
            } else if now & HELD == 0 {
                Some(now | HELD | closed)
            } else {
                Some(now | NOTIFIED | closed)
            }
        });
        before.is_ok_and(|now| now & HELD == 0)
    }

    /// Takes the parked connection of `generation` to end it (a sweep, a
    /// shed); `false` if a worker holds it, or it is gone.
    fn take_idle(&self, generation: u32) -> bool {
        self.update(generation, |now| (now & HELD == 0).then_some(now | HELD))
            .is_ok()
    }

    /// The holder is about to look at the socket: that look covers every
    /// event so far. Whether one said the peer closed ([`CLOSED`]).
    fn look(&self) -> bool {
        self.state.fetch_and(!NOTIFIED, Ordering::AcqRel) & CLOSED != 0
    }

    /// The holder parks the connection: whether it did, which it does not
    /// if an event came since its last [`look`](Self::look) (then it still
    /// holds the connection, and owes it another turn).
    fn let_go(&self, generation: u32) -> bool {
        self.update(generation, |now| {
            (now & (HELD | NOTIFIED) == HELD).then_some(now & !HELD)
        })
        .is_ok()
    }

    /// The slot's connection is gone: the next is parked under `generation`.
    fn renew(&self, generation: u32) {
        self.state
            .store(Self::idle_word(generation), Ordering::Release);
    }
}

struct SlotInner<E> {
    generation: u32,
    entry: Option<Box<E>>,
}

#[derive(Default)]
struct Free {
    list: Vec<u32>,
    next: u32,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn try_lock<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

impl<E> Table<E> {
    fn new(capacity: usize) -> Self {
        let chunks = capacity.div_ceil(CHUNK);
        Table {
            chunks: (0..chunks).map(|_| OnceLock::new()).collect(),
            free: Mutex::default(),
            open: AtomicUsize::new(0),
        }
    }

    fn slot(&self, index: u32) -> Option<&Slot<E>> {
        let index = index as usize;
        let chunk = self.chunks.get(index / CHUNK)?.get()?;
        chunk.get(index % CHUNK)
    }

    /// A free slot's index (allocating its chunk), or `None` when all are taken.
    fn reserve(&self) -> Option<(u32, &Slot<E>)> {
        let mut free = lock(&self.free);
        let index = match free.list.pop() {
            Some(index) => index,
            None if (free.next as usize) < self.chunks.len() * CHUNK => {
                free.next += 1;
                free.next - 1
            }
            None => return None,
        };
        drop(free);
        let chunk = self.chunks[index as usize / CHUNK].get_or_init(|| {
            (0..CHUNK)
                .map(|_| Slot {
                    state: AtomicU64::new(0),
                    inner: Mutex::new(SlotInner {
                        generation: 0,
                        entry: None,
                    }),
                })
                .collect()
        });
        self.open.fetch_add(1, Ordering::AcqRel);
        Some((index, &chunk[index as usize % CHUNK]))
    }

    fn release(&self, index: u32) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        lock(&self.free).list.push(index);
    }

    /// Every slot handed out so far, with its index.
    fn slots(&self) -> impl Iterator<Item = (u32, &Slot<E>)> {
        let next = lock(&self.free).next;
        (0..next).filter_map(move |i| self.slot(i).map(|s| (i, s)))
    }
}

/// The poller key of a slot's current connection.
fn key(index: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

fn split(key: u64) -> (u32, u32) {
    ((key & 0xFFFF_FFFF) as u32, (key >> 32) as u32)
}

/// A parked connection.
struct Entry<C: Connection, Hd> {
    session: Session<C, Hd>,
    /// Bytes received and not yet served: part of a message, or pipelined
    /// messages. Empty (no allocation) for an idle connection.
    pending: Vec<u8>,
    /// With `pending`, when its message began; else the last activity.
    since: Instant,
    /// A reply is unfinished ([`Turn::Resume`]): the next turn resumes it,
    /// when the socket can be written.
    writing: bool,
}

/// What a turn leaves.
enum After {
    /// The connection ended.
    Done,
    /// Park it until it needs another turn for this.
    Park(Interest),
}

/// What the workers share.
struct Parked<C: Connection, F: HandlerFactory, H> {
    served: Arc<Served<F, H>>,
    parker: Parker,
    table: Table<Entry<C, F::Handler>>,
    settings: Settings,
    counters: Arc<Counters>,
    closing: AtomicBool,
    /// When the next sweep for timeouts is due, as nanoseconds after `epoch`.
    next_sweep: AtomicU64,
    /// The shortest `request_timeout` of the handlers seen, in nanoseconds.
    shortest_deadline: AtomicU64,
    epoch: Instant,
    /// Ready connections a busy worker handed over to idle ones: held
    /// ([`HELD`]), each by whichever worker takes it from here.
    ready: Mutex<std::collections::VecDeque<u64>>,
    /// How many `ready` holds, to look without the lock.
    queued: AtomicUsize,
    /// Workers waiting for work.
    idle: AtomicUsize,
    /// Workers still running.
    running: Mutex<usize>,
    ended: Condvar,
}

/// The pool of one connection type: the shared state and spare buffers
/// for the serving thread's own retirements.
struct Workers<C: Connection, F: HandlerFactory, H> {
    shared: Arc<Parked<C, F, H>>,
    buffers: Buffers,
}

struct Buffers {
    read: Vec<u8>,
    write: Vec<u8>,
}

impl Buffers {
    fn new(sizes: BufferSizes) -> Self {
        Buffers {
            read: vec![0; sizes.read],
            write: vec![0; sizes.write],
        }
    }
}

impl<C, F, H> Workers<C, F, H>
where
    C: Parkable,
    C::Addr: Send + 'static,
    F: HandlerFactory + Send + Sync + 'static,
    F::Handler: MessageHandler<C> + Send + 'static,
    H: Hooks<C, C::Addr> + Send + Sync + 'static,
{
    fn start(
        served: &Arc<Served<F, H>>,
        settings: Settings,
        counters: &Arc<Counters>,
    ) -> io::Result<Self> {
        let shared = Arc::new(Parked {
            served: Arc::clone(served),
            parker: Parker::new()?,
            table: Table::new(settings.max_connections),
            settings,
            counters: Arc::clone(counters),
            closing: AtomicBool::new(false),
            next_sweep: AtomicU64::new(0),
            shortest_deadline: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
            ready: Mutex::default(),
            queued: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            running: Mutex::new(0),
            ended: Condvar::new(),
        });
        let threads = ThreadOptions {
            name: Some("parked".into()),
            stack_size: None,
        };
        for n in 1..=settings.workers {
            *lock(&shared.running) += 1;
            let worker = Arc::clone(&shared);
            let spawned = threads.builder(n as u64).spawn(move || {
                let _running = Running(&worker);
                worker.work();
            });
            if let Err(err) = spawned {
                *lock(&shared.running) -= 1;
                if n == 1 {
                    return Err(err);
                }
                break;
            }
        }
        Ok(Workers {
            shared,
            buffers: Buffers::new(settings.sizes),
        })
    }

    /// Parks a new connection, making room first if the table is full.
    fn park(&mut self, conn: C, addr: C::Addr) {
        let shared = Arc::clone(&self.shared);
        let shared = &*shared;
        if shared.table.open.load(Ordering::Acquire) >= shared.settings.max_connections
            && !self.make_room(&addr)
        {
            shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            let why = format!(
                "connection refused: {} connections open (max_connections)",
                shared.settings.max_connections
            );
            shared.served.hooks.handle_error(&addr, &Error::other(why));
            shutdown_request(conn);
            return;
        }
        let Some((index, slot)) = shared.table.reserve() else {
            shutdown_request(conn);
            return;
        };
        let handler = shared.served.factory.build();
        let session = Session::new(conn, addr, handler);
        if let Some(bound) = session.options().request_timeout {
            let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
            shared.shortest_deadline.fetch_min(nanos, Ordering::AcqRel);
        }
        let mut inner = lock(&slot.inner);
        let key = key(index, inner.generation);
        let added = shared.parker.add(session.connection().socket(), key);
        match added {
            Ok(()) => {
                inner.entry = Some(Box::new(Entry {
                    session,
                    pending: Vec::new(),
                    since: Instant::now(),
                    writing: false,
                }));
            }
            Err(err) => {
                // Never registered, so no event comes for it; a new
                // generation all the same, for the slot's next connection.
                inner.generation = inner.generation.wrapping_add(1);
                slot.renew(inner.generation);
                drop(inner);
                shared.table.release(index);
                let bufs = &mut self.buffers;
                session.end(
                    Some(Error::from_io(err)),
                    &mut bufs.read,
                    &mut bufs.write,
                    &shared.served.hooks,
                );
            }
        }
    }

    /// At the bound: sheds the longest-idle connection if the policy says
    /// so and one is idle; whether there is room now.
    fn make_room(&mut self, addr: &C::Addr) -> bool {
        let shared = Arc::clone(&self.shared);
        let shared = &*shared;
        if shared.settings.when_full != Full::ShedIdlest {
            return false;
        }
        let mut idlest: Option<(Instant, u32, u32)> = None;
        for (index, slot) in shared.table.slots() {
            let Some(inner) = try_lock(&slot.inner) else {
                continue;
            };
            if let Some(entry) = inner.entry.as_deref() {
                let older = idlest.is_none_or(|(since, ..)| entry.since < since);
                let held = slot.state.load(Ordering::Acquire) & HELD != 0;
                if entry.pending.is_empty() && older && !held {
                    idlest = Some((entry.since, index, inner.generation));
                }
            }
        }
        let Some((_, index, generation)) = idlest else {
            return false;
        };
        let Some(slot) = shared.table.slot(index) else {
            return false;
        };
        let Some(mut inner) = try_lock(&slot.inner) else {
            return false;
        };
        if inner.generation != generation || inner.entry.is_none() || !slot.take_idle(generation) {
            return false;
        }
        shared.counters.shed.fetch_add(1, Ordering::Relaxed);
        let why = format!(
            "closed the longest idle connection to make room for {addr:?} ({} open, max_connections)",
            shared.settings.max_connections
        );
        let bufs = &mut self.buffers;
        shared.retire(
            index,
            &mut inner,
            Some(Error::other(why)),
            &mut bufs.read,
            &mut bufs.write,
        );
        true
    }
}

impl<C, F, H> Pool for Workers<C, F, H>
where
    C: Parkable,
    C::Addr: Send + 'static,
    F: HandlerFactory + Send + Sync + 'static,
    F::Handler: MessageHandler<C> + Send + 'static,
    H: Hooks<C, C::Addr> + Send + Sync + 'static,
{
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }

    fn open(&self) -> usize {
        self.shared.table.open.load(Ordering::Acquire)
    }

    fn close(&mut self, drain: &Drain) {
        let shared = &*self.shared;
        shared.closing.store(true, Ordering::Release);
        if shared.parker.stop().is_ok() {
            let running = lock(&shared.running);
            if !wait_until(&shared.ended, running, drain.deadline(), |n| *n > 0) {
                drain.cut();
                let grace = Some(Instant::now() + CUT_GRACE);
                wait_until(&shared.ended, lock(&shared.running), grace, |n| *n > 0);
            }
        }
        // Parked connections: `finish` for each, then closed. A worker
        // still in a message after the grace keeps its own; it is closed
        // when the last worker lets the table go.
        let bufs = &mut self.buffers;
        for (index, slot) in shared.table.slots() {
            if let Some(mut inner) = try_lock(&slot.inner) {
                if inner.entry.is_some() {
                    shared.retire(index, &mut inner, None, &mut bufs.read, &mut bufs.write);
                }
            }
        }
    }
}

/// Counts a worker out when it ends, however it ends.
struct Running<'a, C: Connection, F: HandlerFactory, H>(&'a Parked<C, F, H>);

impl<C: Connection, F: HandlerFactory, H> Drop for Running<'_, C, F, H> {
    fn drop(&mut self) {
        *lock(&self.0.running) -= 1;
        self.0.ended.notify_all();
    }
}

impl<C, F, H> Parked<C, F, H>
where
    C: Parkable,
    F: HandlerFactory,
    F::Handler: MessageHandler<C>,
    H: Hooks<C, C::Addr>,
{
    /// A worker: waits on the poller and serves what it reports, until the
    /// dispatch closes.
    fn work(&self) {
        let mut bufs = Buffers::new(self.settings.sizes);
        while !self.closing.load(Ordering::Acquire) {
            match self.next_key() {
                Ok(Some(Parker::STOP)) => return,
                Ok(Some(key)) => self.serve(key, &mut bufs),
                Ok(None) => {}
                Err(err) => {
                    // Not expected of a live poller; nothing to serve with.
                    eprintln!("socketserver: a parking worker stops: waiting failed: {err}");
                    return;
                }
            }
            self.sweep_if_due(&mut bufs);
        }
    }

    /// The next ready connection, held by this worker now: one another
    /// worker queued, or else one the poller reports now (waiting for it,
    /// as an idle worker); `None` when the wait ended for a sweep, or
    /// reported only connections that workers hold already (each of those
    /// is marked [`NOTIFIED`] for its holder).
    ///
    /// A wait takes up to 16 events, keeps the first connection it takes
    /// and queues the rest for whichever worker is free next, so a turn
    /// that takes long (a handler that blocks) never holds ready
    /// connections behind it while another worker could serve them.
    fn next_key(&self) -> io::Result<Option<u64>> {
        // Idle before looking at the queue: a worker that queues after
        // this look sees it idle and wakes it.
        self.idle.fetch_add(1, Ordering::SeqCst);
        if self.queued.load(Ordering::SeqCst) > 0 {
            if let Some(queued) = self.pop() {
                self.idle.fetch_sub(1, Ordering::SeqCst);
                return Ok(Some(queued));
            }
        }
        let mut ready = [Ready::default(); 16];
        let waited = self.parker.wait(&mut ready, self.sweep_in());
        self.idle.fetch_sub(1, Ordering::SeqCst);
        let ready = &ready[..waited?];
        if ready.iter().any(|r| r.key == Parker::STOP) {
            return Ok(Some(Parker::STOP));
        }
        let mut taken = [0u64; 16];
        let taken = self.take(ready, &mut taken);
        let Some((&first, rest)) = taken.split_first() else {
            return Ok(None);
        };
        if !rest.is_empty() {
            self.enqueue(rest.iter().copied());
        }
        Ok(Some(first))
    }

    /// Takes the connections of `ready` that are parked, into `taken`.
    fn take<'k>(&self, ready: &[Ready], taken: &'k mut [u64]) -> &'k [u64] {
        let mut n = 0;
        for &Ready { key, closed } in ready {
            if key == Parker::WAKE || key == Parker::STOP {
                continue;
            }
            let (index, generation) = split(key);
            let slot = self.table.slot(index);
            if slot.is_some_and(|s| s.notify(generation, closed)) {
                taken[n] = key;
                n += 1;
            }
        }
        &taken[..n]
    }

    fn pop(&self) -> Option<u64> {
        let mut queue = lock(&self.ready);
        let key = queue.pop_front();
        self.queued.store(queue.len(), Ordering::SeqCst);
        key
    }

    /// Queues held connections for the next free workers, and wakes one if
    /// any waits.
    fn enqueue(&self, keys: impl IntoIterator<Item = u64>) {
        let mut queue = lock(&self.ready);
        queue.extend(keys);
        self.queued.store(queue.len(), Ordering::SeqCst);
        drop(queue);
        if self.idle.load(Ordering::SeqCst) > 0 {
            let _ = self.parker.wake();
        }
    }

    /// Queues a held connection for another turn, behind the connections
    /// the poller has ready now (one message per turn: a connection with
    /// pipelined messages never keeps the others waiting, nor the poller
    /// unread while the queue is never empty).
    fn again(&self, key: u64) {
        let mut ready = [Ready::default(); 16];
        let polled = self.parker.wait(&mut ready, Some(Duration::ZERO));
        let ready = &ready[..polled.unwrap_or(0)];
        let mut taken = [0u64; 16];
        let taken = self.take(ready, &mut taken);
        self.enqueue(taken.iter().copied().chain([key]));
    }

    /// A held connection's turn: resumes its unfinished reply, or reads
    /// what arrived and serves a message if one is whole; then parks the
    /// connection again, queues it for another turn, or ends it.
    fn serve(&self, key: u64, bufs: &mut Buffers) {
        let (index, generation) = split(key);
        let Some(slot) = self.table.slot(index) else {
            return;
        };
        let mut inner = lock(&slot.inner);
        if inner.generation != generation || inner.entry.is_none() {
            return;
        }
        // Events from here on are for bytes this turn may not see.
        let closed = slot.look();
        let After::Park(interest) = self.turn(index, &mut inner, closed, bufs) else {
            return;
        };
        let Some(entry) = inner.entry.as_deref() else {
            return;
        };
        let socket = entry.session.connection();
        let parked = self
            .parker
            .park(socket.socket(), key, interest, || slot.let_go(generation));
        drop(socket);
        match parked {
            Ok(false) => {}
            Ok(true) => {
                drop(inner);
                self.again(key);
            }
            Err(err) => {
                let why = Some(Error::from_io(err));
                self.retire(index, &mut inner, why, &mut bufs.read, &mut bufs.write);
            }
        }
    }

    /// The turn itself: what the connection needs next, unless it ended.
    /// `closed`: the peer closed (or the connection failed), so no read is
    /// taken to have emptied the socket until one says so.
    fn turn(
        &self,
        index: u32,
        inner: &mut SlotInner<Entry<C, F::Handler>>,
        closed: bool,
        bufs: &mut Buffers,
    ) -> After {
        let Some(entry) = inner.entry.as_deref_mut() else {
            return After::Done;
        };
        let rbuf = &mut bufs.read[..];
        let mut filled = entry.pending.len().min(rbuf.len());
        rbuf[..filled].copy_from_slice(&entry.pending[..filled]);
        let hooks = &self.served.hooks;
        if entry.writing {
            let turn = entry.session.resume(rbuf, filled, &mut bufs.write, hooks);
            return self.settle(index, inner, turn, false, false, bufs);
        }
        let received = match receive(entry, rbuf, &mut filled, !closed) {
            Ok(read) => read,
            Err(err) => {
                let why = Some(Error::from_io(err));
                self.retire(index, inner, why, rbuf, &mut bufs.write);
                return After::Done;
            }
        };
        let Received {
            eof,
            complete,
            drained,
        } = received;
        // Unless a message is whole, `receive` read until the socket had
        // nothing more (or the end of the stream, or a full buffer).
        if filled == 0 {
            if eof {
                self.retire(index, inner, None, rbuf, &mut bufs.write);
                return After::Done;
            }
            return After::Park(Interest::Read);
        }
        if !(complete || eof || filled == rbuf.len()) {
            if entry.pending.is_empty() {
                entry.since = Instant::now();
            }
            entry.pending = rbuf[..filled].to_vec();
            return After::Park(Interest::Read);
        }
        let turn = entry.session.serve(rbuf, filled, &mut bufs.write, hooks);
        self.settle(index, inner, turn, eof, drained, bufs)
    }

    /// After a message or a piece of a reply: keeps the unread bytes and
    /// says what the connection waits for next, or ends it. Edge-triggered
    /// ([`Parker::DRAIN`]), bytes already there raise no new event: unless
    /// a whole message is buffered, or this turn's last read found the
    /// socket `drained` (after the turn's [`Slot::look`], so what came
    /// since has marked it [`NOTIFIED`]), it first reads until there is
    /// nothing more.
    fn settle(
        &self,
        index: u32,
        inner: &mut SlotInner<Entry<C, F::Handler>>,
        turn: Turn,
        mut eof: bool,
        drained: bool,
        bufs: &mut Buffers,
    ) -> After {
        let Some(entry) = inner.entry.as_deref_mut() else {
            return After::Done;
        };
        let writing = matches!(turn, Turn::Resume(_));
        let unread = match turn {
            Turn::Park(unread) | Turn::Resume(unread) => unread,
            Turn::Close => {
                self.remove(index, inner);
                return After::Done;
            }
        };
        entry.since = Instant::now();
        entry.writing = writing;
        if writing {
            entry.pending = bufs.read[unread].to_vec();
            return After::Park(Interest::Write);
        }
        let mut filled = unread.len();
        bufs.read.copy_within(unread, 0);
        let whole = filled > 0 && entry.session.message_complete(&bufs.read[..filled]);
        if Parker::DRAIN && !eof && !whole && !drained {
            match receive(entry, &mut bufs.read, &mut filled, false) {
                Ok(received) => eof = received.eof,
                Err(err) => {
                    let why = Some(Error::from_io(err));
                    self.retire(index, inner, why, &mut bufs.read, &mut bufs.write);
                    return After::Done;
                }
            }
        }
        entry.pending = bufs.read[..filled].to_vec();
        if entry.pending.is_empty() {
            if eof {
                self.retire(index, inner, None, &mut bufs.read, &mut bufs.write);
                return After::Done;
            }
            return After::Park(Interest::Read);
        }
        let full = filled == bufs.read.len();
        if eof || full || whole || entry.session.message_complete(&entry.pending) {
            After::Park(Interest::Again)
        } else {
            After::Park(Interest::Read)
        }
    }

    /// Takes a slot's connection out of the poller and the table.
    fn unpark(
        &self,
        index: u32,
        inner: &mut SlotInner<Entry<C, F::Handler>>,
    ) -> Option<Box<Entry<C, F::Handler>>> {
        let entry = inner.entry.take()?;
        inner.generation = inner.generation.wrapping_add(1);
        // Whoever held it (the caller) lets go; events for the old
        // generation are stale from here on.
        if let Some(slot) = self.table.slot(index) {
            slot.renew(inner.generation);
        }
        // Before the descriptor closes (it may be reused at once).
        let _ = self.parker.delete(entry.session.connection().socket());
        self.table.release(index);
        Some(entry)
    }

    /// Ends a connection whose handler closed it (`finish` has run).
    fn remove(&self, index: u32, inner: &mut SlotInner<Entry<C, F::Handler>>) {
        if let Some(entry) = self.unpark(index, inner) {
            entry.session.close();
        }
    }

    /// Ends a connection without another message: `finish`, the report of
    /// `why`, the close.
    fn retire(
        &self,
        index: u32,
        inner: &mut SlotInner<Entry<C, F::Handler>>,
        why: Option<Error>,
        rbuf: &mut [u8],
        wbuf: &mut [u8],
    ) {
        if let Some(entry) = self.unpark(index, inner) {
            entry.session.end(why, rbuf, wbuf, &self.served.hooks);
        }
    }

    /// How often timeouts are checked: a quarter of the shortest bound in
    /// force (the idle timeout, the shortest `request_timeout` of a handler
    /// seen), within 10 ms and 1 s.
    fn sweep_every(&self) -> Duration {
        let shortest = Duration::from_nanos(self.shortest_deadline.load(Ordering::Acquire));
        let bound = self
            .settings
            .idle_timeout
            .map_or(shortest, |t| t.min(shortest));
        (bound / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// How long a worker may wait before the next sweep is due.
    fn sweep_in(&self) -> Option<Duration> {
        let due = Duration::from_nanos(self.next_sweep.load(Ordering::Acquire));
        let now = self.epoch.elapsed();
        Some(due.saturating_sub(now).min(self.sweep_every()))
    }

    /// Closes the connections whose idle time or partial message ran out,
    /// if a sweep is due and no other worker has claimed it.
    fn sweep_if_due(&self, bufs: &mut Buffers) {
        let every = self.sweep_every();
        let now = self.epoch.elapsed();
        let due = self.next_sweep.load(Ordering::Acquire);
        if (now.as_nanos() as u64) < due {
            return;
        }
        let next = (now + every).as_nanos() as u64;
        let claimed =
            self.next_sweep
                .compare_exchange(due, next, Ordering::AcqRel, Ordering::Acquire);
        if claimed.is_ok() {
            self.sweep(Instant::now(), bufs);
        }
    }

    fn sweep(&self, now: Instant, bufs: &mut Buffers) {
        let idle = self.settings.idle_timeout;
        for (index, slot) in self.table.slots() {
            let Some(mut inner) = try_lock(&slot.inner) else {
                continue;
            };
            let Some(entry) = inner.entry.as_deref() else {
                continue;
            };
            let age = now.saturating_duration_since(entry.since);
            // A reply the peer does not take counts as idleness.
            let idled = entry.pending.is_empty() || entry.writing;
            let bound = if idled {
                idle
            } else {
                entry.session.options().request_timeout
            };
            // Only a parked connection: a worker may take it meanwhile.
            if bound.is_none_or(|t| age < t) || !slot.take_idle(inner.generation) {
                continue;
            }
            let why = if idled {
                self.counters.idle_closed.fetch_add(1, Ordering::Relaxed);
                None
            } else {
                self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                let late = io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the message did not arrive whole within the request timeout",
                );
                Some(Error::from_io(late))
            };
            self.retire(index, &mut inner, why, &mut bufs.read, &mut bufs.write);
        }
    }
}

/// What [`receive`] found.
#[derive(Clone, Copy)]
struct Received {
    /// The peer closed its end.
    eof: bool,
    /// The bytes make a whole message.
    complete: bool,
    /// The socket had nothing more when last read: `EAGAIN`, or fewer
    /// bytes than there was room for. A stream socket's `recv` takes all
    /// it has queued, up to the room given (TCP and Unix alike), so a short
    /// read empties it, as `EAGAIN` would say one call later (tokio clears
    /// a socket's readiness on a short read the same way). Bytes that come
    /// after it raise an event. Not so for the end of the stream or an
    /// error behind the bytes, which a short read leaves for the next one:
    /// once an event said the peer closed ([`CLOSED`]), only `EAGAIN`
    /// counts. Nor where the kernel stops a read early on purpose, at TCP
    /// urgent data or at a Unix message carrying descriptors: such a peer's
    /// next bytes (or its idle timeout) end the wait it made for itself.
    drained: bool,
}

/// Reads what the connection has received, without waiting, after the
/// `filled` bytes already in `rbuf`, until a message is whole, the buffer
/// is full, or nothing more is there (a short read says so when
/// `short_drains`, see [`Received::drained`]).
fn receive<C: Parkable, Hd: MessageHandler<C>>(
    entry: &Entry<C, Hd>,
    rbuf: &mut [u8],
    filled: &mut usize,
    short_drains: bool,
) -> io::Result<Received> {
    let mut complete = *filled > 0 && entry.session.message_complete(&rbuf[..*filled]);
    let mut drained = false;
    while !complete && *filled < rbuf.len() {
        let room = rbuf.len() - *filled;
        let got = sys::recv_now(entry.session.connection().socket(), &mut rbuf[*filled..]);
        match got {
            Ok(0) => {
                return Ok(Received {
                    eof: true,
                    complete: false,
                    drained: true,
                })
            }
            Ok(n) => {
                *filled += n;
                drained = short_drains && n < room;
                complete = entry.session.message_complete(&rbuf[..*filled]);
                if drained {
                    break;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                drained = true;
                break;
            }
            Err(err) => return Err(err),
        }
    }
    Ok(Received {
        eof: false,
        complete,
        drained,
    })
}

/// A [`ParkingDispatch`] server over TCP: persistent connections served a
/// message at a time by a few workers.
pub type PersistentTcpServer<F, H = DefaultHooks> =
    SocketServer<TcpTransport, ParkingDispatch<F, H>>;
#[cfg(unix)]
/// A [`ParkingDispatch`] server over a Unix stream socket.
#[cfg(unix)]
pub type PersistentUnixStreamServer<F, H = DefaultHooks> =
    SocketServer<UnixStreamTransport, ParkingDispatch<F, H>>;

new_with_defaults!(
    TcpTransport,
    ParkingDispatch,
    tcp,
    impl ToSocketAddrs,
    "A persistent TCP server (`ParkingDispatch`)"
);
#[cfg(unix)]
new_with_defaults!(
    UnixStreamTransport,
    ParkingDispatch,
    unix_stream,
    impl Into<PathBuf>,
    "A persistent Unix stream server (`ParkingDispatch`)"
);
