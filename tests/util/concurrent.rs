//! What the threading, pool and forking tests share: TCP clients and a
//! handler that fails or panics on request.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};

use socketserver::{Connection, Error, StreamHandler, StreamRequest};

use super::PATIENCE;

/// A client whose reads give up after [`PATIENCE`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Everything until EOF.
pub fn read_all(client: &mut impl Read) -> String {
    let mut reply = String::new();
    client.read_to_string(&mut reply).expect("a reply");
    reply
}

/// Sends `data`, shuts the sending side, reads the reply to EOF.
pub fn tcp_exchange(addr: SocketAddr, data: &[u8]) -> String {
    let mut stream = connect(addr);
    stream.write_all(data).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    read_all(&mut stream)
}

/// Reads a line: fails on `fail`, panics on `panic`, replies `ok` otherwise.
#[derive(Default)]
pub struct Moody;

impl<C: Connection> StreamHandler<C> for Moody {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        match &*socketserver::handlers::strip(req.rfile.read_line()?) {
            b"fail" => Err(Error::Handler("asked to fail")),
            b"panic" => panic!("asked to panic"),
            _ => req.wfile.write_all(b"ok"),
        }
    }
}

/// [`tcp_exchange`] with a Unix stream server.
#[cfg(unix)]
pub fn unix_exchange(path: &std::path::Path, data: &[u8]) -> String {
    let mut stream = std::os::unix::net::UnixStream::connect(path).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(data).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    read_all(&mut stream)
}
