//! The backlog's state machine and a connection's end of life, on two
//! stacks joined by an in-memory cable (see `crate::testing`).

use core::time::Duration;

use smoltcp::socket::tcp::{self, State};
use smoltcp::socket::AnySocket;
use socketserver_core::embedded_io::{Read, Write};
use socketserver_core::{DatagramSocket, Listener, Readiness, ShutdownFlag, Transport};

use super::{SmoltcpConnection, TcpListener};
use crate::stack::Net;
use crate::testing::*;
use crate::SmoltcpError;

/// A shutdown flag for the life of the test process.
fn flag() -> &'static ShutdownFlag {
    Box::leak(Box::new(ShutdownFlag::new()))
}

// --- the backlog ---

/// Three queued connections: each take looks at the sockets once, and
/// polls only when nothing polled the stack since the last look (the
/// first take uses the poll that brought the connections in). A wait never
/// looks at the sockets.
#[test]
fn a_take_looks_once_and_polls_only_when_needed() {
    let net = network(silent);
    let mut listener = TcpListener::bind(&net.server, PORT, backlog::<3>(), flag()).unwrap();
    for _ in 0..3 {
        net.dial();
    }
    net.settle();
    let mut taken = Vec::new();
    for polls in [0, 1, 1] {
        let before = net.counts();
        taken.push(listener.try_accept().unwrap().expect("a queued connection"));
        let after = net.counts();
        assert_eq!((after.0 - before.0, after.1 - before.1), (polls, 1));
    }
    let before = net.counts();
    assert!(listener.try_accept().unwrap().is_none());
    let after = net.counts();
    assert_eq!((after.0 - before.0, after.1 - before.1), (1, 1));

    let waited = listener.wait(Some(Duration::from_millis(5))).unwrap();
    assert_eq!(waited, Readiness::TimedOut);
    assert_eq!(net.counts().1, after.1, "a wait looked at the sockets");
}

/// A wait reports readiness at once, without polling, when something
/// polled the stack since the last take: that poll may have brought a
/// connection the listener has not looked for.
#[test]
fn a_wait_after_someone_elses_poll_is_ready_at_once() {
    let net = network(silent);
    let mut listener = TcpListener::bind(&net.server, PORT, backlog::<1>(), flag()).unwrap();
    assert!(listener.try_accept().unwrap().is_none());
    net.server.borrow_mut().poll();
    let before = net.counts();
    assert_eq!(listener.wait(None).unwrap(), Readiness::Ready);
    assert_eq!(net.counts(), before);
}

/// The take after a connection's close finds its socket free and makes it
/// listen again; a new client is then served on it.
#[test]
fn a_closed_connections_socket_is_rearmed_by_the_next_take() {
    let net = network(polite);
    let mut listener = TcpListener::bind(&net.server, PORT, backlog::<1>(), flag()).unwrap();
    net.dial();
    let (conn, _) = accept(&mut listener);
    let handle = conn.handle();
    assert_eq!(conn.close(), Ok(()));
    assert!(matches!(
        net.server_state(handle),
        State::TimeWait | State::Closed
    ));
    assert!(listener.try_accept().unwrap().is_none());
    assert_eq!(net.server_state(handle), State::Listen);
    net.dial();
    let (again, _) = accept(&mut listener);
    assert_eq!(again.handle(), handle);
}

/// A connection reset before it was taken frees its socket: the next take
/// re-arms it and finds nothing.
#[test]
fn a_connection_reset_before_it_was_taken_is_rearmed() {
    let net = network(silent);
    let mut listener = TcpListener::bind(&net.server, PORT, backlog::<1>(), flag()).unwrap();
    let client = net.dial();
    net.settle();
    net.peer_socket(client, |socket| socket.abort());
    net.settle();
    assert!(listener.try_accept().unwrap().is_none());
    let server = net.server.borrow().stack.sockets().iter().next().unwrap().0;
    assert_eq!(net.server_state(server), State::Listen);
}

/// A lent socket is not handed out again while its peer half-closes, nor
/// re-armed; once the peer resets it, it is free, and the connection
/// reports the reset.
#[test]
fn a_lent_socket_is_neither_taken_again_nor_rearmed_while_it_serves() {
    let net = network(silent);
    let mut listener = TcpListener::bind(&net.server, PORT, backlog::<1>(), flag()).unwrap();
    let client = net.dial();
    let (mut conn, _) = accept(&mut listener);
    net.peer_socket(client, |socket| socket.close());
    net.settle();
    assert_eq!(net.server_state(conn.handle()), State::CloseWait);
    assert!(listener.try_accept().unwrap().is_none());
    assert_eq!(net.server_state(conn.handle()), State::CloseWait);
    assert_eq!(conn.read(&mut [0; 8]), Ok(0));

    net.peer_socket(client, |socket| socket.abort());
    net.settle();
    assert!(listener.try_accept().unwrap().is_none());
    assert_eq!(net.server_state(conn.handle()), State::Listen);
    assert_eq!(conn.write(b"late"), Err(SmoltcpError::Reset));
    assert_eq!(conn.close(), Err(SmoltcpError::Reset));
}

/// With every socket of the backlog taken (one lent, one queued), the next
/// client is refused at once; the queued one is still served.
#[test]
fn a_full_backlog_refuses_at_once() {
    let net = network(silent);
    let mut listener = TcpListener::bind(&net.server, PORT, backlog::<2>(), flag()).unwrap();
    net.dial();
    net.dial();
    net.settle();
    let (_lent, _) = listener.try_accept().unwrap().unwrap();
    let refused = net.dial();
    net.settle();
    assert_eq!(net.peer_state(refused), State::Closed);
    assert!(listener.try_accept().unwrap().is_some());
}

/// Closing the listener resets its connections and gives its sockets back;
/// its connections then fail with `Closed`.
#[test]
fn closing_the_listener_gives_the_sockets_back() {
    let net = network(silent);
    let stop = flag();
    let mut listener = TcpListener::bind(&net.server, PORT, backlog::<2>(), stop).unwrap();
    let client = net.dial();
    let (mut conn, _) = accept(&mut listener);
    listener.close();
    listener.close();
    net.settle();
    assert_eq!(net.peer_state(client), State::Closed);
    assert_eq!(conn.write(b"x"), Err(SmoltcpError::Closed));
    assert_eq!(listener.try_accept().unwrap_err(), SmoltcpError::Closed);
    assert_eq!(listener.wait(None), Err(SmoltcpError::Closed));
    drop(conn);
    TcpListener::bind(&net.server, PORT, backlog::<2>(), stop).unwrap();
}

/// A bind that fails (too few free slots) adds no socket and removes
/// none: the other transports' sockets are untouched.
#[test]
fn a_failed_bind_leaves_the_socket_set_as_it_was() {
    let net = network(silent);
    let stop = flag();
    let mut udp = crate::UdpSocket::bind(&net.server, 9, udp_socket(), stop).unwrap();
    let free = net.server.borrow().stack.free_slots();
    let bound = TcpListener::bind(&net.server, PORT, backlog::<8>(), stop);
    assert!(matches!(bound, Err(SmoltcpError::NoSocketSpace)));
    assert_eq!(net.server.borrow().stack.free_slots(), free);
    assert_eq!(udp.try_recv_from(&mut [0; 8]), Ok(None));
    let zero = TcpListener::bind(&net.server, 0, backlog::<1>(), stop);
    assert!(matches!(zero, Err(SmoltcpError::Unaddressable)));
}

// --- a connection's end of life ---

/// A peer that reads everything and closes: `close` says the connection
/// ended cleanly.
#[test]
fn close_reports_a_clean_end() {
    let net = network(polite);
    let mut listener = TcpListener::bind(&net.server, PORT, backlog::<1>(), flag()).unwrap();
    net.dial();
    let (mut conn, peer) = accept(&mut listener);
    assert_eq!(conn.peer_addr(), peer);
    assert_eq!(conn.local_addr().unwrap().port, PORT);
    conn.write_all(b"bye").unwrap();
    assert_eq!(conn.close(), Ok(()));
}

/// A peer that never closes: `close` lingers its time, then resets.
#[test]
fn close_times_out_on_a_silent_peer_and_resets() {
    let net = network(silent);
    let mut listener = TcpListener::bind(&net.server, PORT, backlog::<1>(), flag()).unwrap();
    listener.set_linger(Duration::from_millis(50));
    let client = net.dial();
    let (conn, _) = accept(&mut listener);
    assert_eq!(conn.close(), Err(SmoltcpError::TimedOut));
    net.peer.borrow_mut().poll();
    assert_eq!(net.peer_state(client), State::Closed);
}

/// A shutdown request made before the close ends its linger at once: one
/// poll for the linger, one for the reset.
#[test]
fn shutdown_before_close_ends_the_linger_at_once() {
    let net = network(silent);
    let stop = flag();
    let mut listener = TcpListener::bind(&net.server, PORT, backlog::<1>(), stop).unwrap();
    listener.set_linger(Duration::from_secs(3600));
    let client = net.dial();
    let (conn, _) = accept(&mut listener);
    stop.request();
    let before = net.counts().0;
    assert_eq!(conn.close(), Err(SmoltcpError::Aborted));
    assert_eq!(net.counts().0 - before, 2);
    net.peer.borrow_mut().poll();
    assert_eq!(net.peer_state(client), State::Closed);
}

/// A shutdown request made while the close lingers (here by the peer's
/// script, as an interrupt would) ends it at the next poll.
#[test]
fn shutdown_during_the_linger_ends_it() {
    let stop = flag();
    let mut idles = 0;
    let net = network(move |_| {
        idles += 1;
        if idles == 10 {
            stop.request();
        }
    });
    let mut listener = TcpListener::bind(&net.server, PORT, backlog::<1>(), stop).unwrap();
    listener.set_linger(Duration::from_secs(3600));
    net.dial();
    let (conn, _) = accept(&mut listener);
    let before = net.counts().0;
    assert_eq!(conn.close(), Err(SmoltcpError::Aborted));
    assert!(net.counts().0 - before < 20, "the linger went on");
}

/// A peer that resets while data it has not acknowledged is in flight:
/// `close` reports the reset.
#[test]
fn close_reports_a_reset_with_data_unacknowledged() {
    let mut idles = 0;
    let net = network(move |peer| {
        idles += 1;
        if idles == 20 {
            for (_, socket) in peer.sockets_mut().iter_mut() {
                if let Some(socket) = tcp::Socket::downcast_mut(socket) {
                    socket.abort();
                }
            }
        }
    });
    let mut listener = TcpListener::bind(&net.server, PORT, backlog::<1>(), flag()).unwrap();
    net.dial();
    let (mut conn, _) = accept(&mut listener);
    // More than the peer's 1 KiB window: some stays unacknowledged.
    assert!(conn.write(&[7; 4096]).unwrap() > 1024);
    assert_eq!(conn.close(), Err(SmoltcpError::Reset));
}

/// A write that fits does not poll: the reply leaves with the FIN after
/// it, in the one poll of `shutdown_write` (a firmware NIC pays per frame).
#[test]
fn a_reply_leaves_with_the_fin() {
    use socketserver_core::Connection;

    let net = network(silent);
    let mut listener = TcpListener::bind(&net.server, PORT, backlog::<1>(), flag()).unwrap();
    let client = net.dial();
    let (mut conn, _) = accept(&mut listener);
    let before = net.counts().0;
    conn.write_all(b"REPLY").unwrap();
    assert_eq!(net.counts().0 - before, 0, "the write polled");
    conn.shutdown_write().unwrap();
    assert_eq!(net.counts().0 - before, 1);
    net.peer.borrow_mut().poll();
    assert_eq!(net.peer_state(client), State::CloseWait);
    let mut reply = [0; 8];
    let n = net.peer_socket(client, |socket| socket.recv_slice(&mut reply).unwrap());
    assert_eq!(&reply[..n], b"REPLY");
}

/// On the request path (`Connection::close`), the close waits for the
/// peer's acknowledgement of everything, its FIN included, but not for the
/// peer's own FIN: the socket stays in FIN-WAIT-2, lent, while the next
/// takes discard what the peer still sends; once the peer closes, the take
/// re-arms it with the ACK delay and timeout the close changed restored.
#[test]
fn a_request_close_leaves_the_peers_fin_to_the_backlog() {
    use socketserver_core::Connection;

    let net = network(silent);
    let mut listener = TcpListener::bind(&net.server, PORT, backlog::<1>(), flag()).unwrap();
    listener.set_linger(Duration::from_secs(3600));
    let client = net.dial();
    let (mut conn, _) = accept(&mut listener);
    let handle = conn.handle();
    conn.write_all(b"reply").unwrap();
    Connection::close(conn);
    assert_eq!(net.server_state(handle), State::FinWait2);
    assert_eq!(net.peer_state(client), State::CloseWait);
    let mut reply = [0; 8];
    let n = net.peer_socket(client, |socket| socket.recv_slice(&mut reply).unwrap());
    assert_eq!(&reply[..n], b"reply", "the reply was not acknowledged");

    // More than the socket's receive buffer, sent after the close: the
    // takes discard it, so the window never closes on the peer.
    let junk = [b'x'; 1024];
    for _ in 0..8 {
        net.peer_socket(client, |socket| socket.send_slice(&junk).unwrap());
        net.settle();
        assert!(listener.try_accept().unwrap().is_none());
        assert_eq!(net.server_state(handle), State::FinWait2);
    }
    assert_eq!(net.peer_socket(client, |socket| socket.send_queue()), 0);

    net.peer_socket(client, tcp::Socket::close);
    net.settle();
    assert!(listener.try_accept().unwrap().is_none());
    assert_eq!(net.server_state(handle), State::Listen);
    let restored = net
        .server
        .borrow_mut()
        .stack
        .sockets_mut()
        .get_mut::<tcp::Socket>(handle)
        .ack_delay();
    assert_eq!(restored, Some(smoltcp::time::Duration::from_millis(10)));
    net.dial();
    let (again, _) = accept(&mut listener);
    assert_eq!(again.handle(), handle);
}

/// A peer that acknowledges the request's close but never closes its side
/// holds the socket for the linger time at most: smoltcp's timeout then
/// resets it, and the next take re-arms it.
#[test]
fn a_silent_peer_holds_a_closed_requests_socket_for_the_linger_at_most() {
    use socketserver_core::Connection;

    let net = network(silent);
    let mut listener = TcpListener::bind(&net.server, PORT, backlog::<1>(), flag()).unwrap();
    listener.set_linger(Duration::from_millis(50));
    let client = net.dial();
    let (conn, _) = accept(&mut listener);
    let handle = conn.handle();
    // The stacks' clock steps with every poll.
    let start = net.server.borrow().stack.now();
    Connection::close(conn);
    assert_eq!(net.server_state(handle), State::FinWait2);
    for _ in 0..1000 {
        if net.server_state(handle) == State::Listen {
            break;
        }
        assert!(listener.try_accept().unwrap().is_none());
        listener.wait(Some(Duration::from_millis(10))).unwrap();
    }
    assert_eq!(net.server_state(handle), State::Listen, "never re-armed");
    let held = net.server.borrow().stack.now() - start;
    assert!(held >= Duration::from_millis(50), "re-armed after {held:?}");
    net.settle();
    assert_eq!(net.peer_state(client), State::Closed, "no reset");
}

/// A request's close with shutdown requested resets at once, as
/// `SmoltcpConnection::close` does.
#[test]
fn a_request_close_after_shutdown_resets() {
    use socketserver_core::Connection;

    let net = network(silent);
    let stop = flag();
    let mut listener = TcpListener::bind(&net.server, PORT, backlog::<1>(), stop).unwrap();
    listener.set_linger(Duration::from_secs(3600));
    let client = net.dial();
    let (conn, _) = accept(&mut listener);
    stop.request();
    Connection::close(conn);
    net.peer.borrow_mut().poll();
    assert_eq!(net.peer_state(client), State::Closed);
}

/// Dropping a connection resets it at once: one poll, no waiting.
#[test]
fn drop_aborts_without_waiting() {
    let net = network(silent);
    let mut listener = TcpListener::bind(&net.server, PORT, backlog::<1>(), flag()).unwrap();
    let client = net.dial();
    let (mut conn, _) = accept(&mut listener);
    conn.write_all(b"unread").unwrap();
    let before = net.counts().0;
    drop(conn);
    assert_eq!(net.counts().0 - before, 1);
    net.peer.borrow_mut().poll();
    assert_eq!(net.peer_state(client), State::Closed);
}

/// A borrowed stack is a caller's bug, reported by a panic, never a close
/// that silently does nothing.
#[test]
#[should_panic(expected = "already")]
fn close_with_the_stack_borrowed_panics() {
    let net = network(silent);
    let mut listener = TcpListener::bind(&net.server, PORT, backlog::<1>(), flag()).unwrap();
    net.dial();
    let (conn, _) = accept(&mut listener);
    let _held = net.server.borrow();
    let _ = conn.close();
}

/// A client connection's socket leaves the socket set when it ends.
#[test]
fn a_client_connection_leaves_the_socket_set() {
    let net = network(polite);
    {
        let mut peer = net.peer.borrow_mut();
        let handle = peer.sockets_mut().add(tcp_socket(1024));
        let socket = peer.sockets_mut().get_mut::<tcp::Socket>(handle);
        socket.listen(9000).unwrap();
    }
    let free = net.server.borrow().stack.free_slots();
    let timeout = Some(Duration::from_secs(1));
    let conn = SmoltcpConnection::connect(&net.server, tcp_socket(1024), (PEER, 9000), timeout);
    let conn = conn.unwrap();
    assert_eq!(net.server.borrow().stack.free_slots(), free - 1);
    drop(conn);
    assert_eq!(net.server.borrow().stack.free_slots(), free);
}

// --- served by the core ---

/// With `std`, a handler's panic is caught once per request and reported
/// to `handle_error`; the connection is shut down and the server goes on.
#[cfg(feature = "std")]
#[test]
fn a_panicking_handler_is_reported_and_the_server_goes_on() {
    use core::cell::{Cell, RefCell};
    use socketserver_core::{Connection, Hooks, Server, ServerHooks, StreamHandler};
    use socketserver_core::{StreamRequest, SyncDispatch};

    struct Boom(bool);
    impl<C: Connection> StreamHandler<C> for Boom {
        fn handle(
            &mut self,
            request: &mut StreamRequest<'_, C>,
        ) -> Result<(), socketserver_core::Error> {
            assert!(!self.0, "the handler panics");
            request.wfile.write_all(b"ok")
        }
    }
    #[derive(Default)]
    struct Errors(RefCell<Vec<socketserver_core::Error>>);
    impl<R: ?Sized, A> Hooks<R, A> for Errors {
        fn handle_error(&self, _: &A, error: &socketserver_core::Error) {
            self.0.borrow_mut().push(error.clone());
        }
    }
    impl ServerHooks for Errors {}

    let net = network(polite);
    let listener = TcpListener::bind(&net.server, PORT, backlog::<2>(), flag()).unwrap();
    let (built, errors) = (Cell::new(0), Errors::default());
    let factory = || {
        built.set(built.get() + 1);
        Boom(built.get() == 1)
    };
    let dispatch = SyncDispatch::<_, _, [u8; 64], [u8; 64]>::with_hooks(factory, &errors);
    let clock = crate::memory::StepClock::new(Duration::from_micros(100));
    let mut server = Server::new(listener, dispatch, clock);
    server.set_timeout(Some(Duration::from_secs(1)));
    net.dial();
    net.dial();
    server.handle_request().unwrap();
    server.handle_request().unwrap();
    assert_eq!(built.get(), 2);
    let errors = errors.0.borrow();
    assert!(
        matches!(errors[..], [socketserver_core::Error::Panicked]),
        "{errors:?}"
    );
}
