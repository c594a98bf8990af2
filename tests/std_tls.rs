//! TLS (feature `tls`): the same stream handlers over rustls, with every
//! dispatch; failed handshakes reported to `handle_error` with rustls'
//! message while the others are served; Python's `ssl` client against the
//! `tls_server` example. Certificates are made by each test (rcgen); no
//! key is committed.
#![cfg(feature = "tls")]

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use socketserver::handlers::{EchoLines, UpperLine};
use socketserver::os::tls::{self, rustls};
use socketserver::{
    Connection, Error, ForkingDispatch, PoolDispatch, ServerBuilder, StreamHandler, StreamOptions,
    StreamRequest, ThreadingDispatch,
};
use util::announce::announced_address;
use util::process::{example, python_client, terminate, Running};
use util::{Recorder, Serving, TempDir, PATIENCE};

const POLL: Duration = Duration::from_millis(50);

/// A certificate for `localhost` and its key, as PEM files in a directory
/// of the test's own.
struct Certificate {
    dir: TempDir,
    der: rustls::pki_types::CertificateDer<'static>,
}

impl Certificate {
    fn new(tag: &str) -> Self {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = TempDir::new(tag);
        std::fs::write(dir.path("cert.pem"), made.cert.pem()).unwrap();
        std::fs::write(dir.path("key.pem"), made.signing_key.serialize_pem()).unwrap();
        Certificate {
            der: made.cert.der().clone(),
            dir,
        }
    }

    fn cert(&self) -> PathBuf {
        self.dir.path("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path("key.pem")
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        tls::server_config(self.cert(), self.key()).unwrap()
    }

    /// A client that trusts this certificate only.
    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        #[allow(deprecated)] // the provider the server uses; see tls::server_config
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

/// A TLS client connection to `address`.
fn connect(
    address: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(address).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let name = "localhost".try_into().unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Sends `request`, then `close_notify`; returns everything the server
/// sent until its own `close_notify`.
fn exchange(address: SocketAddr, config: &Arc<rustls::ClientConfig>, request: &[u8]) -> String {
    let mut stream = connect(address, config);
    stream.write_all(request).unwrap();
    stream.conn.send_close_notify();
    stream.flush().unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn upper_line_over_tls_with_every_dispatch() {
    let cert = Certificate::new("tls-dispatch");
    let client = cert.client_config();
    let builder = || ServerBuilder::tcp("127.0.0.1:0").tls(cert.server_config());
    let mut servers = Vec::new();
    macro_rules! start {
        ($server:expr) => {{
            let server = $server.unwrap();
            let address = *server.local_addr();
            servers.push((Serving::start(server, POLL), address));
        }};
    }
    start!(builder().build(|| UpperLine));
    start!(builder().build_with(|c| ThreadingDispatch::new(|| UpperLine, c)));
    start!(builder().build_with(|c| PoolDispatch::new(|| UpperLine, c).workers(2)));
    start!(builder().build_with(|c| ForkingDispatch::new(|| UpperLine, c)));
    for (serving, address) in servers {
        assert_eq!(exchange(address, &client, b"hello tls\n"), "HELLO TLS");
        serving.stop().unwrap();
    }
}

/// `EchoLines` unchanged: every line back until the client's
/// `close_notify`, in one session, with a line longer than a TLS record.
#[test]
fn echo_lines_over_tls() {
    let cert = Certificate::new("tls-echo");
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .tls(cert.server_config())
        .buffer_sizes(socketserver::BufferSizes::new(64 * 1024, 0))
        .build_with(|c| ThreadingDispatch::new(|| EchoLines, c))
        .unwrap();
    let address = *server.local_addr();
    let serving = Serving::start(server, POLL);
    let long = "x".repeat(40_000);
    let request = format!("one\ntwo\n{long}\n");
    assert_eq!(
        exchange(address, &cert.client_config(), request.as_bytes()),
        request
    );
    serving.stop().unwrap();
}

/// Without a configuration, the same server type serves plaintext.
#[test]
fn no_configuration_serves_plaintext() {
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .tls(None)
        .build(|| UpperLine)
        .unwrap();
    let address = *server.local_addr();
    let serving = Serving::start(server, POLL);
    let mut client = TcpStream::connect(address).unwrap();
    client.write_all(b"plain\n").unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "PLAIN");
    serving.stop().unwrap();
}

/// A plaintext client on the TLS port: its request is reported with
/// rustls' message and gets no handler; a client that connects and says
/// nothing holds only its own thread; TLS clients are served meanwhile.
#[test]
fn a_plaintext_client_is_reported_and_does_not_disturb_others() {
    let cert = Certificate::new("tls-plain");
    let client = cert.client_config();
    let recorder = Recorder::default();
    let builds = util::Builds::default();
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .tls(cert.server_config())
        .hooks(recorder.clone())
        .build_with(|c| ThreadingDispatch::new(builds.factory::<UpperLine>(), c))
        .unwrap();
    let address = *server.local_addr();
    let serving = Serving::start(server, POLL);

    let silent = TcpStream::connect(address).unwrap();
    let mut plain = TcpStream::connect(address).unwrap();
    plain.set_read_timeout(Some(PATIENCE)).unwrap();
    plain.write_all(b"hello in plaintext\n").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.windows(5).any(|w| w == b"HELLO"),
        "no handler answered the plaintext"
    );
    let errors = recorder.wait_errors(1);
    let message = errors[0].1.to_string();
    assert!(message.contains("corrupt message"), "{message}");
    assert_eq!(errors[0].0, format!("{:?}", plain.local_addr().unwrap()));

    for n in 0..3 {
        let reply = exchange(address, &client, format!("client {n}\n").as_bytes());
        assert_eq!(reply, format!("CLIENT {n}"));
    }
    assert_eq!(
        recorder.errors().len(),
        1,
        "only the plaintext client failed"
    );
    drop(silent);
    serving.stop().unwrap();
}

/// A handler with a timeout of its own.
#[derive(Default)]
struct Impatient;

impl<C: Connection> StreamHandler<C> for Impatient {
    fn options(&self) -> StreamOptions {
        StreamOptions::new().timeout(Some(Duration::from_millis(200)))
    }

    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        UpperLine.handle(req)
    }
}

/// A client that connects and never starts the handshake: the handler's
/// timeout ends it, reported as a timeout.
#[test]
fn the_handshake_is_bounded_by_the_handlers_timeout() {
    let cert = Certificate::new("tls-timeout");
    let recorder = Recorder::default();
    let server = ServerBuilder::tcp("127.0.0.1:0")
        .tls(cert.server_config())
        .hooks(recorder.clone())
        .build_with(|c| ThreadingDispatch::new(|| Impatient, c))
        .unwrap();
    let address = *server.local_addr();
    let serving = Serving::start(server, POLL);
    let _silent = TcpStream::connect(address).unwrap();
    let errors = recorder.wait_errors(1);
    assert_eq!(
        errors[0].1.kind(),
        socketserver::embedded_io::ErrorKind::TimedOut,
        "{}",
        errors[0].1
    );
    serving.stop().unwrap();
}

#[test]
fn unreadable_pem_files_are_named_in_the_error() {
    let cert = Certificate::new("tls-files");
    let missing = cert.dir.path("missing.pem");
    let err = tls::server_config(&missing, cert.key()).unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
    // A certificate where the key should be.
    let err = tls::server_config(cert.cert(), cert.cert()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    assert!(err.to_string().contains("cert.pem"), "{err}");
}

/// Starts the `tls_server` example with `cert` on port 0, its stderr
/// piped; returns it with the address it announced.
fn start_tls_server(cert: &Certificate) -> (Running, String) {
    let mut child = Command::new(example("tls_server"))
        .arg("127.0.0.1:0")
        .arg("--tls-cert")
        .arg(cert.cert())
        .arg("--tls-key")
        .arg(cert.key())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tls_server");
    let bound = announced_address(&mut child);
    (Running(Some(child)), bound)
}

/// The docs' TCP client, wrapped in Python's `ssl` with the test's
/// certificate as its CA, against the `tls_server` example; then the
/// example serves on after a plaintext client, which it reports on stderr.
#[test]
fn tls_server_with_pythons_ssl_client() {
    let cert = Certificate::new("tls-python");
    let (mut running, bound) = start_tls_server(&cert);
    let cafile = cert.cert();
    let python = |message: &str| {
        let mut args = vec![bound.as_str(), cafile.to_str().unwrap()];
        args.extend(message.split(' '));
        python_client("tls_client.py", &args)
    };
    let stdout = python("hello with ssl");
    assert!(stdout.contains("Received: HELLO WITH SSL"), "{stdout}");
    assert!(stdout.contains("Version:  TLSv1.3"), "{stdout}");

    let mut plain = TcpStream::connect(bound.as_str()).unwrap();
    plain.set_read_timeout(Some(PATIENCE)).unwrap();
    plain.write_all(b"plaintext\n").unwrap();
    let _ = plain.read_to_end(&mut Vec::new());
    let stdout = python("still served");
    assert!(stdout.contains("Received: STILL SERVED"), "{stdout}");

    let mut stderr = terminate(&mut running, "tls_server").expect("stderr is piped");
    let mut text = String::new();
    stderr.read_to_string(&mut text).unwrap();
    assert_eq!(
        text.lines().count(),
        1,
        "one failed request reported: {text}"
    );
    assert!(text.contains("corrupt message"), "{text}");
}

/// curl, with the test's certificate as its only CA (`--cacert`), against
/// `tls_server`: a TLS stack that is neither rustls nor Python's. The
/// server answers the request line upper-cased (`UpperLine`), which curl
/// takes as an HTTP/0.9 reply.
#[test]
fn curl_with_cacert_against_tls_server() {
    let cert = Certificate::new("tls-curl");
    let (mut running, bound) = start_tls_server(&cert);
    let port = bound.rsplit_once(':').unwrap().1;
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--http0.9", "--max-time", "10"])
        .arg("--cacert")
        .arg(cert.cert())
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .arg(format!("https://localhost:{port}/curl"))
        .output()
        .expect("curl is installed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout, "GET /CURL HTTP/1.1");
    // Without the CA, curl refuses the certificate: the CA made the difference.
    let refused = Command::new("curl")
        .args(["--silent", "--http0.9", "--max-time", "10"])
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .arg(format!("https://localhost:{port}/curl"))
        .status()
        .expect("curl is installed");
    assert!(!refused.success());
    terminate(&mut running, "tls_server");
}
