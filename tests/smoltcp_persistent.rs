//! Persistent connections on smoltcp: one loop (`MessageDispatch`) serving
//! several keep-alive clients of one stack, a message at a time, over an
//! in-memory cable.
#![cfg(all(feature = "smoltcp", feature = "std"))]

#[path = "util/smoltcp.rs"]
mod util;

use std::time::{Duration, Instant};

use socketserver::embedded_io::{Read, Write};
use socketserver::handlers::EchoLines;
use socketserver::smoltcp::memory::Cable;
use socketserver::smoltcp::wire::IpAddress;
use socketserver::smoltcp::{SmoltcpConnection, StdClock, TcpListener};
use socketserver::{MessageDispatch, Server};
use util::*;

const SERVER: IpAddress = IpAddress::v4(10, 0, 0, 1);
const CLIENT: IpAddress = IpAddress::v4(10, 0, 0, 2);
const CLIENTS: usize = 4;

/// Reads one line (up to and including `\n`), or what comes before EOF.
fn read_line(conn: &mut SmoltcpConnection<'_, 'static>) -> Vec<u8> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        match conn.read(&mut byte).expect("read") {
            0 => break,
            _ => line.push(byte[0]),
        }
    }
    line
}

/// Serves `EchoLines` on `CLIENTS` persistent connections until stopped.
fn serve(
    stop: &socketserver::ShutdownFlag,
    bound: std::sync::mpsc::SyncSender<()>,
    server_end: impl socketserver::smoltcp::phy::Device,
    idle: Option<Duration>,
) -> Report {
    let stack = memory_stack(server_end, 1, SERVER);
    let sockets = core::array::from_fn::<_, CLIENTS, _>(|_| tcp_socket());
    let mut listener = TcpListener::bind(&stack, PORT, sockets, stop).unwrap();
    listener.set_timeout(Some(IO_TIMEOUT));
    bound.send(()).unwrap();
    let hooks = TestHooks::default();
    let dispatch =
        MessageDispatch::<_, _, _, _, CLIENTS, 256, 0>::new(|| EchoLines, &hooks, StdClock)
            .idle_timeout(idle);
    let mut server = Server::new(listener, dispatch, StdClock);
    server.serve_forever(Duration::from_millis(20)).unwrap();
    server.server_close();
    Report {
        errors: hooks.errors.get(),
        ..Report::default()
    }
}

#[test]
fn one_loop_serves_interleaved_keep_alive_clients() {
    let mut cable = Cable::<64>::new();
    let (server_end, client_end) = cable.split();
    let stack = memory_stack(client_end, 2, CLIENT);
    let report = run_server(
        || {
            let mut clients: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    SmoltcpConnection::connect(
                        &stack,
                        tcp_socket(),
                        (SERVER, PORT),
                        Some(IO_TIMEOUT),
                    )
                    .unwrap()
                })
                .collect();
            for round in 0..5 {
                // Every client sends before any reads: all are open at once.
                for (i, client) in clients.iter_mut().enumerate() {
                    client
                        .write_all(format!("client {i} round {round}\n").as_bytes())
                        .unwrap();
                }
                for (i, client) in clients.iter_mut().enumerate().rev() {
                    assert_eq!(
                        read_line(client),
                        format!("client {i} round {round}\n").as_bytes()
                    );
                }
            }
            // A line in two pieces is one message.
            clients[0].write_all(b"split ").unwrap();
            clients[1].write_all(b"whole\n").unwrap();
            assert_eq!(read_line(&mut clients[1]), b"whole\n");
            clients[0].write_all(b"line\n").unwrap();
            assert_eq!(read_line(&mut clients[0]), b"split line\n");
            // Closed in order (a dropped client would reset its connection,
            // which the server reports).
            for client in clients {
                client.close().unwrap();
            }
        },
        |stop, bound| serve(stop, bound, server_end, None),
    );
    assert_eq!(report.errors, 0);
}

#[test]
fn an_idle_connection_is_closed_and_its_slot_serves_the_next_client() {
    let mut cable = Cable::<64>::new();
    let (server_end, client_end) = cable.split();
    let stack = memory_stack(client_end, 2, CLIENT);
    run_server(
        || {
            let connect = || {
                SmoltcpConnection::connect(&stack, tcp_socket(), (SERVER, PORT), Some(IO_TIMEOUT))
                    .unwrap()
            };
            let mut idle = connect();
            // Before the message: the server's idle time starts after its reply.
            let start = Instant::now();
            idle.write_all(b"hello\n").unwrap();
            assert_eq!(read_line(&mut idle), b"hello\n");
            assert_eq!(read_line(&mut idle), b"", "closed by the server");
            assert!(start.elapsed() >= Duration::from_millis(200));
            drop(idle);
            let mut next = connect();
            next.write_all(b"next\n").unwrap();
            assert_eq!(read_line(&mut next), b"next\n");
        },
        |stop, bound| serve(stop, bound, server_end, Some(Duration::from_millis(200))),
    );
}
