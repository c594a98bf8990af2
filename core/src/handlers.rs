//! Ready-made handlers: the examples of Python's `socketserver` docs, plus
//! an echo. The examples, the tests of every backend and the firmware image
//! all serve these same types, which is how the crate shows that one handler
//! runs everywhere.

use embedded_io::Write;

use crate::transport::{Connection, ReplySocket};
use crate::{
    DatagramHandler, DatagramRequest, Error, MessageHandler, Next, StreamHandler, StreamRequest,
};

/// The docs' `MyTCPHandler`: one read of at most 1024 bytes, stripped of
/// surrounding whitespace, sent back upper-cased; then the server closes.
#[derive(Clone, Copy, Debug, Default)]
pub struct UpperOnce;

impl<C: Connection> StreamHandler<C> for UpperOnce {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let mut data = [0u8; 1024];
        let n = req.connection().read(&mut data).map_err(Into::into)?;
        let reply = strip(&mut data[..n]);
        reply.make_ascii_uppercase();
        req.wfile.write_all(reply)
    }
}

/// The docs' `StreamRequestHandler` variant: reads one line through
/// `rfile`, strips it, writes it back upper-cased.
#[derive(Clone, Copy, Debug, Default)]
pub struct UpperLine;

impl<C: Connection> StreamHandler<C> for UpperLine {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let line = strip(req.rfile.read_line()?);
        line.make_ascii_uppercase();
        req.wfile.write_all(line)
    }
}

/// Echoes every line back, newline included, until the client closes.
/// Lines are bounded by the `rfile` capacity.
#[derive(Clone, Copy, Debug, Default)]
pub struct EchoLines;

impl<C: Connection> StreamHandler<C> for EchoLines {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        loop {
            let line = req.rfile.read_line()?;
            if line.is_empty() {
                return Ok(());
            }
            req.wfile.write_all(line)?;
        }
    }
}

/// One line per message on a persistent connection: the same echo,
/// served by a message dispatch that parks the connection between lines.
impl<C: Connection> MessageHandler<C> for EchoLines {
    fn handle_message(&mut self, req: &mut StreamRequest<'_, C>) -> Result<Next, Error> {
        let line = req.rfile.read_line()?;
        req.wfile.write_all(line)?;
        Ok(Next::KeepOpen)
    }
}

/// Echoes raw bytes back until the client closes (for bulk transfers).
#[derive(Clone, Copy, Debug, Default)]
pub struct Echo;

impl<C: Connection> StreamHandler<C> for Echo {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let mut chunk = [0u8; 1024];
        loop {
            let n = req.rfile.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            req.wfile.write_all(&chunk[..n])?;
        }
    }
}

/// The docs' `MyUDPHandler`: replies with the datagram, stripped and
/// upper-cased.
#[derive(Clone, Copy, Debug, Default)]
pub struct UpperDatagram;

impl<S: ReplySocket> DatagramHandler<S> for UpperDatagram {
    fn handle(&mut self, req: &mut DatagramRequest<'_, S>) -> Result<(), Error> {
        let data = req.rfile.packet().trim_ascii();
        for chunk in data.chunks(64) {
            let mut upper = [0u8; 64];
            let upper = &mut upper[..chunk.len()];
            upper.copy_from_slice(chunk);
            upper.make_ascii_uppercase();
            req.wfile.write_all(upper)?;
        }
        Ok(())
    }
}

/// Python's `bytes.strip()` in place: the slice without leading and
/// trailing ASCII whitespace.
pub fn strip(bytes: &mut [u8]) -> &mut [u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &mut bytes[start..end]
}
