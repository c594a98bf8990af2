//! What the threading and pool dispatches share: Python's
//! `process_request` order around requests packaged as jobs that own
//! everything they touch, so that any thread can run them.

use std::io;
use std::sync::{Arc, Condvar, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use socket2::Socket;
use socketserver_core::{
    serve_connection, serve_datagram, take_datagram_request, take_stream_request, DatagramHandler,
    Error, HandlerFactory, Hooks, Incoming, Listener, StreamHandler, Took,
};

use crate::dispatch::BufferSizes;
use crate::shutdown::{Shared, ShutdownHandle};
use crate::sys::Pages;
use crate::transport::{Replies, SocketTransport};

/// The buffers one request thread serves with: the read buffer, then the
/// write buffer, in one mapping whose pages take memory only once touched
/// (a line touches one page; an unbuffered `wfile` none), so that a thread
/// per connection costs what a hand-written one with a `BufReader` does.
pub(crate) struct Buffers {
    pages: Pages,
    read: usize,
}

impl Buffers {
    pub(crate) fn new(sizes: BufferSizes) -> Self {
        Buffers {
            pages: Pages::zeroed(sizes.read + sizes.write),
            read: sizes.read,
        }
    }

    /// The read and the write buffer.
    pub(crate) fn split(&mut self) -> (&mut [u8], &mut [u8]) {
        self.pages.split_at_mut(self.read)
    }
}

/// The names and stack size of the threads a dispatch starts.
#[derive(Default)]
pub(crate) struct ThreadOptions {
    pub(crate) name: Option<String>,
    pub(crate) stack_size: Option<usize>,
}

impl ThreadOptions {
    /// How to start the `n`th thread (named `{prefix}-{n}`).
    pub(crate) fn builder(&self, n: u64) -> thread::Builder {
        let mut builder = thread::Builder::new();
        if let Some(prefix) = &self.name {
            builder = builder.name(format!("{prefix}-{n}"));
        }
        if let Some(bytes) = self.stack_size {
            builder = builder.stack_size(bytes);
        }
        builder
    }
}

/// What becomes of a job: served with a thread's buffers, or refused
/// (reported to `handle_error` with this error, then closed unserved).
pub(crate) enum Turn<'a> {
    Serve(&'a mut Buffers),
    Refuse(&'a Error),
}

/// One request, ready to run on whichever thread takes it.
pub(crate) type Job = Box<dyn FnOnce(Turn<'_>) + Send + 'static>;

/// Where jobs run: a thread each, or a pool's workers.
pub(crate) trait Runner {
    /// Blocks until one more request may run (the thread or queue bound),
    /// and takes that room; or says it is refused. Returns
    /// [`Admission::Stopping`], taking nothing, once `stop` says the server
    /// is shutting down; a full server asks it every [`ADMIT_RECHECK`]
    /// while it waits.
    fn admit(&mut self, stop: &dyn Fn() -> bool) -> Admission;

    /// Starts `job`, which owns the room of [`admit`](Self::admit). On error the job was dropped,
    /// closing its connection.
    fn run(&mut self, job: Job) -> io::Result<()>;

    /// A pass of the serving loop (`service_actions`): the runner's own
    /// upkeep. Default: nothing.
    fn service_actions(&mut self) {}

    /// The server closed: no more jobs; wait for the running ones or not.
    /// Waiting, it cuts their connections once `drain` runs out, then waits
    /// at most [`CUT_GRACE`](crate::shutdown::CUT_GRACE) more.
    fn close(&mut self, drain: &Drain);
}

/// What [`Runner::admit`] decided for a request in hand.
pub(crate) enum Admission {
    /// Room was taken: run it.
    Room,
    /// Refused, for this reason (reported, then the request is dropped).
    Refuse(Error),
    /// The server is shutting down: drop it unserved.
    Stopping,
}

/// How closing treats the requests still running: until when it waits for
/// them, and how it cuts their connections after that.
pub(crate) struct Drain {
    deadline: Option<Instant>,
    shared: Option<Arc<Shared>>,
}

impl Drain {
    /// The server's drain, starting now; `stop` is its shutdown handle, if
    /// the dispatch has seen it (it has, once it took a request).
    pub(crate) fn starting_now(stop: Option<&ShutdownHandle>) -> Self {
        let bound = stop.and_then(ShutdownHandle::drain_timeout);
        Drain {
            deadline: bound.map(|b| Instant::now() + b),
            shared: stop.map(|s| Arc::clone(&s.0)),
        }
    }

    /// When waiting for the requests ends; `None`: never.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Cuts the server's connections still open.
    pub(crate) fn cut(&self) {
        if let Some(shared) = &self.shared {
            shared.conns.cut_all();
        }
    }
}

/// Waits on `changed` while `busy` holds, until `deadline` (`None`: for
/// ever); whether `busy` stopped holding.
pub(crate) fn wait_until<T>(
    changed: &Condvar,
    guard: MutexGuard<'_, T>,
    deadline: Option<Instant>,
    busy: impl FnMut(&mut T) -> bool,
) -> bool {
    let Some(at) = deadline else {
        drop(changed.wait_while(guard, busy));
        return true;
    };
    let left = at.saturating_duration_since(Instant::now());
    let waited = changed.wait_timeout_while(guard, left, busy);
    !waited.unwrap_or_else(PoisonError::into_inner).1.timed_out()
}

/// How often a server at its thread or queue bound looks whether shutdown
/// was requested while it waits for room (the wait is for another thread's
/// request to end, which a shutdown request cannot wake).
pub(crate) const ADMIT_RECHECK: Duration = Duration::from_millis(20);

/// The factory and hooks, shared by the serving thread and the requests.
struct Served<F, H> {
    factory: F,
    hooks: H,
}

/// A dispatch that hands every request to a [`Runner`].
pub(crate) struct Concurrent<R, F, H> {
    served: Arc<Served<F, H>>,
    read_size: usize,
    /// The serving thread's datagram receive buffer, allocated on first use.
    packet: Vec<u8>,
    /// Datagram servers: the descriptor replies are sent through.
    reply: Option<Arc<Socket>>,
    /// The server's shutdown handle, seen at the first request: closing
    /// drains with its bound and cuts its connections.
    stop: Option<ShutdownHandle>,
    pub(crate) runner: R,
}

impl<R: Runner, F, H> Concurrent<R, F, H> {
    pub(crate) fn new(factory: F, hooks: H, sizes: BufferSizes, runner: R) -> Self {
        Concurrent {
            served: Arc::new(Served { factory, hooks }),
            read_size: sizes.read,
            packet: Vec::new(),
            reply: None,
            stop: None,
            runner,
        }
    }

    pub(crate) fn hooks(&self) -> &H {
        &self.served.hooks
    }

    pub(crate) fn factory(&self) -> &F {
        &self.served.factory
    }

    /// Waits for room for a request that was taken, or refuses it;
    /// [`Admission::Stopping`] when shutdown was requested meanwhile (the
    /// request is then dropped unserved, as one that arrives during a
    /// shutdown).
    fn admit<T: SocketTransport>(&mut self, transport: &T) -> Admission {
        if self.stop.is_none() {
            self.stop = Some(transport.shutdown_handle());
        }
        self.runner.admit(&|| transport.shutdown_requested())
    }

    /// Python's `_handle_request_noblock` with a threading
    /// `process_request`: takes a ready connection, waits for room, and
    /// hands the job (`process_request_thread`) to the runner.
    pub(crate) fn stream_request<L>(&mut self, listener: &mut L) -> Took
    where
        L: Listener + SocketTransport,
        L::Connection: Send + 'static,
        L::Addr: Send + 'static,
        F: HandlerFactory + Send + Sync + 'static,
        F::Handler: StreamHandler<L::Connection>,
        H: Hooks<L::Connection, L::Addr> + Send + Sync + 'static,
    {
        let (conn, addr) = match take_stream_request(listener, &self.served.hooks) {
            Incoming::Request(request) => request,
            other => return other.took(),
        };
        let admission = self.admit(listener);
        if let Admission::Stopping = admission {
            return Took::Request;
        }
        let client = addr.clone();
        let served = Arc::clone(&self.served);
        let job = Box::new(move |turn: Turn<'_>| {
            let Served { factory, hooks } = &*served;
            match turn {
                Turn::Serve(bufs) => {
                    let (read, write) = bufs.split();
                    serve_connection(conn, addr, factory, hooks, read, write);
                }
                // Dropping the connection closes it.
                Turn::Refuse(why) => hooks.handle_error(&addr, why),
            }
        });
        if let Err(err) = self.run(admission, job) {
            self.served
                .hooks
                .handle_error(&client, &Error::from_io(err));
        }
        Took::Request
    }

    /// Hands an admitted `job` to the runner, or refuses it. On error the
    /// job was dropped, closing its connection.
    fn run(&mut self, admission: Admission, job: Job) -> io::Result<()> {
        match admission {
            Admission::Refuse(why) => {
                job(Turn::Refuse(&why));
                Ok(())
            }
            _ => self.runner.run(job),
        }
    }

    /// The datagram twin of [`stream_request`](Self::stream_request): the
    /// job owns a copy of the packet and replies through a second
    /// descriptor of the server socket.
    pub(crate) fn datagram_request<S>(&mut self, socket: &mut S) -> Took
    where
        S: Replies,
        S::Addr: Send + 'static,
        F: HandlerFactory + Send + Sync + 'static,
        F::Handler: DatagramHandler<S::Reply>,
        H: Hooks<[u8], S::Addr> + Send + Sync + 'static,
    {
        if self.packet.len() != self.read_size {
            self.packet = vec![0; self.read_size];
        }
        let rx = match take_datagram_request(socket, &self.served.hooks, &mut self.packet) {
            Incoming::Request(rx) => rx,
            other => return other.took(),
        };
        let reply = match &self.reply {
            Some(reply) => Arc::clone(reply),
            None => match socket.reply_socket() {
                Ok(reply) => Arc::clone(self.reply.insert(Arc::new(reply))),
                Err(err) => {
                    self.served
                        .hooks
                        .handle_error(&rx.addr, &Error::from_io(err));
                    return Took::Request;
                }
            },
        };
        let admission = self.admit(socket);
        if let Admission::Stopping = admission {
            return Took::Request;
        }
        let packet = self.packet[..rx.len].to_vec();
        let client = rx.addr.clone();
        let served = Arc::clone(&self.served);
        let mut reply = S::reply(reply);
        let job = Box::new(move |turn: Turn<'_>| {
            let Served { factory, hooks } = &*served;
            let bufs = match turn {
                Turn::Serve(bufs) => bufs,
                Turn::Refuse(why) => return hooks.handle_error(&rx.addr, why),
            };
            let (packet, reply_buf) = (&packet, bufs.split().1);
            serve_datagram(
                packet,
                rx.truncated,
                rx.addr,
                factory,
                hooks,
                reply_buf,
                &mut reply,
            );
        });
        if let Err(err) = self.run(admission, job) {
            self.served
                .hooks
                .handle_error(&client, &Error::from_io(err));
        }
        Took::Request
    }

    pub(crate) fn service_actions(&mut self) {
        self.runner.service_actions();
    }

    pub(crate) fn server_close(&mut self) {
        self.runner.close(&Drain::starting_now(self.stop.as_ref()));
        // Running datagram jobs keep their own reference.
        self.reply = None;
    }
}

/// The core's `Dispatch` for a public wrapper around [`Concurrent`]
/// (a field `inner`), for stream listeners and, one impl each so that
/// their bounds name the reply type, the datagram transports.
macro_rules! concurrent_dispatch {
    ($ty:ident) => {
        impl<F, H: socketserver_core::ServerHooks> socketserver_core::Lifecycle for $ty<F, H> {
            type Hooks = H;

            fn hooks(&self) -> &H {
                self.inner.hooks()
            }

            fn service_actions(&mut self) {
                self.inner.service_actions();
            }

            fn server_close(&mut self) {
                self.inner.server_close();
            }
        }

        impl<L, F, H> socketserver_core::Dispatch<L, socketserver_core::transport::kind::Stream>
            for $ty<F, H>
        where
            L: socketserver_core::Listener + $crate::SocketTransport,
            L::Connection: Send + 'static,
            L::Addr: Send + 'static,
            F: socketserver_core::HandlerFactory + Send + Sync + 'static,
            F::Handler: socketserver_core::StreamHandler<L::Connection>,
            H: socketserver_core::Hooks<L::Connection, L::Addr>
                + socketserver_core::ServerHooks
                + Send
                + Sync
                + 'static,
        {
            fn take(&mut self, listener: &mut L) -> socketserver_core::Took {
                self.inner.stream_request(listener)
            }
        }

        $crate::concurrent::concurrent_dispatch!(
            @datagram $ty, UdpTransport, UdpReply, std::net::SocketAddr
        );
        #[cfg(unix)]
        $crate::concurrent::concurrent_dispatch!(
            @datagram $ty, UnixDatagramTransport, UnixDatagramReply, $crate::UnixAddr
        );
    };
    (@datagram $ty:ident, $transport:ident, $reply:ident, $addr:ty) => {
        impl<F, H>
            socketserver_core::Dispatch<
                $crate::$transport,
                socketserver_core::transport::kind::Datagram,
            > for $ty<F, H>
        where
            F: socketserver_core::HandlerFactory + Send + Sync + 'static,
            F::Handler: socketserver_core::DatagramHandler<$crate::$reply>,
            H: socketserver_core::Hooks<[u8], $addr>
                + socketserver_core::ServerHooks
                + Send
                + Sync
                + 'static,
        {
            fn take(&mut self, socket: &mut $crate::$transport) -> socketserver_core::Took {
                self.inner.datagram_request(socket)
            }
        }
    };
}

pub(crate) use concurrent_dispatch;
