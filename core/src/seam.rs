//! The code-size seam: the two trait objects that keep one copy of the
//! request path in a firmware image however many servers it has.
//!
//! Generic code is copied for every combination of types it is used with.
//! An image with three servers (two handlers on two listeners, one datagram
//! server) would carry three copies of [`Server::handle_request`]'s waiting
//! loop and of everything a connection goes through after the accept. Two
//! traits cut those copies along the types that do not matter there:
//!
//! - [`RequestSteps`]: the wait-and-take loop of `handle_request`
//!   ([`take_or_wait`]) sees the server only as "now, take, wait", so it
//!   exists once per image;
//! - [`Serve`]: serving an accepted connection ([`serve_accepted`],
//!   [`serve_with`]) sees the handler factory only as "build and run a
//!   handler over this connection", so it exists once per connection and
//!   hooks type, whatever the handlers.
//!
//! Both functions are `#[inline(never)]`: inlined, each caller would get its
//! copy back. Everywhere else the core uses plain generics. The firmware's
//! `run.sh` measures what this buys (flash overhead over a bare smoltcp
//! image, in bytes).
//!
//! [`Server::handle_request`]: crate::Server::handle_request

use core::cell::RefCell;
use core::time::Duration;

use crate::handler::{HandlerFactory, Hooks, StreamHandler};
use crate::server::{verify_connection, Incoming, Took};
use crate::stream::{finish_request, shutdown_request};
use crate::time::Instant;
use crate::transport::{Connection, Readiness};
use crate::Error;

/// What `handle_request` needs of a server, whatever its types.
pub(crate) trait RequestSteps {
    /// The clock's time.
    fn now(&self) -> Instant;
    /// Whether shutdown was requested.
    fn shutdown_requested(&self) -> bool;
    /// `Dispatch::take`: whether a request was taken, or taking failed.
    fn take(&mut self) -> bool;
    /// The transport's wait; `None` when it failed (the error is kept).
    fn wait(&mut self, timeout: Option<Duration>) -> Option<Readiness>;
}

/// The body of `Server::handle_request`: takes a ready request, or waits
/// for one at most `timeout` and takes it. Returns `true` when the whole
/// timeout passed with nothing taken (`handle_timeout` is due).
#[inline(never)]
pub(crate) fn take_or_wait(steps: &mut dyn RequestSteps, timeout: Option<Duration>) -> bool {
    let deadline = timeout.map(|t| steps.now() + t);
    let mut timed_out = false;
    loop {
        if steps.shutdown_requested() {
            return false;
        }
        if steps.take() {
            return false;
        }
        let remaining = match deadline {
            Some(d) if timed_out || steps.now() >= d => return true,
            Some(d) => Some(d - steps.now()),
            None => None,
        };
        match steps.wait(remaining) {
            None | Some(Readiness::Shutdown) => return false,
            // One last take: a request may have come with the deadline.
            Some(Readiness::TimedOut) => timed_out = deadline.is_some(),
            // Ready, or woken early: take again.
            Some(_) => {}
        }
    }
}

/// Builds a handler and runs it over a connection ([`finish_request`]):
/// the part of serving a connection that depends on the handler type.
pub(crate) trait Serve<C: Connection> {
    fn serve(
        &self,
        conn: &RefCell<C>,
        client_address: C::Addr,
        rbuf: &mut [u8],
        wbuf: &mut [u8],
    ) -> Result<(), Error>;
}

/// A handler factory as a [`Serve`] (a wrapper, so that unsized factories
/// can be served too).
pub(crate) struct Factory<'f, F: ?Sized>(pub(crate) &'f F);

impl<C, F> Serve<C> for Factory<'_, F>
where
    C: Connection,
    F: HandlerFactory + ?Sized,
    F::Handler: StreamHandler<C>,
{
    fn serve(
        &self,
        conn: &RefCell<C>,
        client_address: C::Addr,
        rbuf: &mut [u8],
        wbuf: &mut [u8],
    ) -> Result<(), Error> {
        // The handler is dropped here, before `handle_error` runs (in
        // Python too, the handler is gone by then).
        finish_request(&mut self.0.build(), conn, client_address, rbuf, wbuf)
    }
}

/// `handle_stream_request` after the accept: verifies the connection and
/// serves it. Returns what `Dispatch::take` reports.
#[inline(never)]
pub(crate) fn serve_accepted<C, E, H>(
    accepted: Result<Option<(C, C::Addr)>, E>,
    factory: &dyn Serve<C>,
    hooks: &H,
    rbuf: &mut [u8],
    wbuf: &mut [u8],
) -> Took
where
    C: Connection,
    E: embedded_io::Error,
    H: Hooks<C, C::Addr> + ?Sized,
{
    match verify_connection(accepted, hooks) {
        Incoming::Request((conn, addr)) => {
            serve_with(conn, addr, factory, hooks, rbuf, wbuf);
            Took::Request
        }
        other => other.took(),
    }
}

/// Serves one connection to the end: the handler (panics caught with the
/// `std` feature), `handle_error` for its error, then `shutdown_request`.
pub(crate) fn serve_with<C, H>(
    conn: C,
    client_address: C::Addr,
    serve: &dyn Serve<C>,
    hooks: &H,
    rbuf: &mut [u8],
    wbuf: &mut [u8],
) where
    C: Connection,
    H: Hooks<C, C::Addr> + ?Sized,
{
    let conn = RefCell::new(conn);
    let served = crate::unwind::catch(|| serve.serve(&conn, client_address.clone(), rbuf, wbuf));
    if let Err(error) = served {
        hooks.handle_error(&client_address, &error);
    }
    shutdown_request(conn.into_inner());
}
