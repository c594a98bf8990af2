//! Programs a new user writes from the README alone, kept as tests so that
//! they go on compiling without naming any type the README does not
//! introduce: a threaded key-value server with hooks, and one handler
//! crate (`tests/no_std_handler`, `no_std`, built for Cortex-M by the test
//! command) served unchanged on OS sockets and on smoltcp.
#![cfg(all(feature = "std", feature = "smoltcp"))]

#[path = "util/smoltcp.rs"]
#[allow(unused)] // the harness's case list is for the smoltcp_* tests
mod smol;
mod util;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use no_std_handler::NumberedEcho;
use smol::{memory_stack, Client, ServeFn, ServeOn, SmolClient, IO_TIMEOUT};
use socketserver::os::TcpConnection;
use socketserver::{
    Connection, Error, Hooks, ServerBuilder, ServerHooks, StreamHandler, StreamRequest, TcpServer,
    ThreadingDispatch,
};
use util::PATIENCE;

type Store = Arc<Mutex<HashMap<String, String>>>;

/// `SET key value` and `GET key`, one command per line, until the client
/// closes; anything else fails the request with a message of its own.
struct Kv(Store);

impl<C: Connection> StreamHandler<C> for Kv {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        loop {
            let line = req.rfile.read_line()?;
            if line.is_empty() {
                return Ok(());
            }
            let line = std::str::from_utf8(line).map_err(Error::other)?.trim();
            let mut words = line.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("SET"), Some(key), Some(value)) => {
                    self.0.lock().unwrap().insert(key.into(), value.into());
                    req.wfile.write_all(b"OK\n")?;
                }
                (Some("GET"), Some(key), None) => {
                    let value = self.0.lock().unwrap().get(key).cloned();
                    writeln!(req.wfile, "{}", value.as_deref().unwrap_or("(nil)"))?;
                }
                _ => return Err(Error::other(format!("unknown command {line:?}"))),
            }
        }
    }
}

/// Serves loopback clients only, and keeps what `handle_error` saw.
#[derive(Clone, Default)]
struct LocalOnly {
    errors: Arc<Mutex<Vec<String>>>,
}

impl Hooks<TcpConnection, SocketAddr> for LocalOnly {
    fn verify_request(&self, _conn: &TcpConnection, client: &SocketAddr) -> bool {
        client.ip().is_loopback()
    }

    fn handle_error(&self, client: &SocketAddr, error: &Error) {
        self.errors
            .lock()
            .unwrap()
            .push(format!("{client}: {error}"));
    }
}

impl ServerHooks for LocalOnly {}

/// Sends `lines`, half-closes, and returns every line that comes back.
fn converse(addr: SocketAddr, lines: &[&str]) -> Vec<String> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    for line in lines {
        writeln!(stream, "{line}").unwrap();
    }
    stream.shutdown(Shutdown::Write).unwrap();
    BufReader::new(stream).lines().map(Result::unwrap).collect()
}

#[test]
fn a_threaded_key_value_server_with_hooks() {
    let store = Store::default();
    let hooks = LocalOnly::default();
    let factory = move || Kv(store.clone());
    let mut server = ServerBuilder::tcp("127.0.0.1:0")
        .hooks(hooks.clone())
        .build_with(|config| ThreadingDispatch::new(factory, config).max_threads(Some(8)))
        .unwrap();
    let addr = *server.local_addr();
    let stop = server.shutdown_handle();
    let serving = std::thread::spawn(move || server.serve_forever(Duration::from_millis(500)));

    assert_eq!(
        converse(addr, &["SET lang rust", "GET lang"]),
        ["OK", "rust"]
    );
    assert_eq!(
        converse(addr, &["GET lang", "GET nothing"]),
        ["rust", "(nil)"]
    );
    assert_eq!(converse(addr, &["DROP everything"]), Vec::<String>::new());
    let deadline = std::time::Instant::now() + PATIENCE;
    while hooks.errors.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    let errors = hooks.errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("127.0.0.1:")
            && errors[0].contains("unknown command \"DROP everything\""),
        "{errors:?}"
    );

    stop.shutdown().unwrap();
    serving.join().unwrap().unwrap();
}

/// The `no_std` crate's handler on OS sockets...
#[test]
fn a_no_std_handler_crate_serves_on_os_sockets() {
    let mut server = TcpServer::new("127.0.0.1:0", || NumberedEcho).unwrap();
    let addr = *server.local_addr();
    let stop = server.shutdown_handle();
    let serving = std::thread::spawn(move || server.serve_forever(Duration::from_millis(500)));
    assert_eq!(
        converse(addr, &["first", "second"]),
        ["1: first", "2: second"]
    );
    stop.shutdown().unwrap();
    serving.join().unwrap().unwrap();
}

/// ... and the very same type over smoltcp.
#[test]
fn a_no_std_handler_crate_serves_on_smoltcp() {
    use socketserver::smoltcp::memory::Cable;
    use socketserver::smoltcp::wire::IpAddress;

    let (server_ip, client_ip) = (IpAddress::v4(10, 0, 0, 1), IpAddress::v4(10, 0, 0, 2));
    let mut cable = Cable::<64>::new();
    let (server_end, client_end) = cable.split();
    let stack = memory_stack(client_end, 2, client_ip);
    let client = SmolClient {
        stack: &stack,
        server: server_ip,
        ip: client_ip,
    };
    let mut echoed = Vec::new();
    let server = ServeOn(move || memory_stack(server_end, 1, server_ip), IO_TIMEOUT);
    let report = server.stream(NumberedEcho, None, || {
        echoed = client.echo(b"first\nsecond\n");
    });
    assert_eq!(echoed, b"1: first\n2: second\n");
    assert_eq!(report.served, 1);
}
