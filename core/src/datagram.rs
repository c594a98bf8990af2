//! Datagram requests: Python's `DatagramRequestHandler` with a bounded reply.

use embedded_io::{BufRead, ErrorType, Read, Write};

use crate::handler::{DatagramHandler, HandlerFactory, Hooks};
use crate::transport::ReplySocket;
use crate::Error;

/// One datagram received on a socket `S`, as a handler sees it.
#[non_exhaustive]
pub struct DatagramRequest<'a, S: ReplySocket> {
    /// Reader over the received packet.
    pub rfile: PacketReader<'a>,
    /// The reply, sent to the client after `finish` if not empty (or if
    /// [`send_empty`](PacketWriter::send_empty) asked for it).
    pub wfile: PacketWriter<'a>,
    /// Who sent the packet; the reply goes there.
    pub client_address: S::Addr,
    /// The datagram was longer than the server's packet buffer
    /// (`max_packet_size`) and `rfile` holds only its head.
    pub truncated: bool,
    socket: &'a mut S,
}

impl<'a, S: ReplySocket> DatagramRequest<'a, S> {
    /// A request for `packet` from `client_address`, replying through
    /// `reply_buf` and then `socket`.
    pub fn new(
        packet: &'a [u8],
        truncated: bool,
        client_address: S::Addr,
        reply_buf: &'a mut [u8],
        socket: &'a mut S,
    ) -> Self {
        DatagramRequest {
            rfile: PacketReader::new(packet),
            wfile: PacketWriter::new(reply_buf),
            client_address,
            truncated,
            socket,
        }
    }

    /// The server's socket (Python's `self.request[1]`): send more
    /// datagrams, larger ones than `wfile` holds, or to other addresses.
    /// On a threaded server this is a second descriptor of the same socket.
    pub fn socket(&mut self) -> &mut S {
        self.socket
    }
}

/// Python's datagram `rfile`: reads the packet.
#[derive(Clone, Debug)]
pub struct PacketReader<'a> {
    packet: &'a [u8],
    pos: usize,
}

impl<'a> PacketReader<'a> {
    /// A reader at the start of `packet`.
    pub fn new(packet: &'a [u8]) -> Self {
        PacketReader { packet, pos: 0 }
    }

    /// The whole packet, whatever has been read of it.
    pub fn packet(&self) -> &'a [u8] {
        self.packet
    }

    /// Reads into `out` ([`Read::read`]); inherent, as on the stream
    /// `rfile`, so the call needs no trait in scope.
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        Read::read(self, out)
    }

    /// The unread rest of the packet ([`BufRead::fill_buf`]).
    pub fn fill_buf(&mut self) -> Result<&[u8], Error> {
        BufRead::fill_buf(self)
    }

    /// Marks `amt` bytes as read ([`BufRead::consume`]).
    pub fn consume(&mut self, amt: usize) {
        BufRead::consume(self, amt);
    }

    /// Reads up to and including the next `\n`, or the rest of the packet;
    /// empty once everything was read.
    pub fn read_line(&mut self) -> &'a [u8] {
        let rest = &self.packet[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        self.pos += len;
        &rest[..len]
    }
}

impl ErrorType for PacketReader<'_> {
    type Error = Error;
}

impl Read for PacketReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        let rest = &self.packet[self.pos..];
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl BufRead for PacketReader<'_> {
    fn fill_buf(&mut self) -> Result<&[u8], Error> {
        Ok(&self.packet[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.packet.len());
    }
}

/// Python's datagram `wfile`: collects the reply in a fixed buffer.
///
/// A write that does not fit entirely fails with [`Error::ReplyTooLong`]
/// and stores nothing, so a reply is never cut silently.
#[derive(Debug)]
pub struct PacketWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    send_empty: bool,
}

impl<'a> PacketWriter<'a> {
    /// An empty reply in `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        PacketWriter {
            buf,
            len: 0,
            send_empty: false,
        }
    }

    /// Sends the reply even if nothing is written to it: an empty datagram,
    /// as Python's `DatagramRequestHandler` always sends. By default an
    /// empty reply sends nothing.
    pub fn send_empty(&mut self) {
        self.send_empty = true;
    }

    /// Whether the reply goes out: something was written, or
    /// [`send_empty`](Self::send_empty) asked for it.
    pub fn will_send(&self) -> bool {
        self.len > 0 || self.send_empty
    }

    /// The reply so far.
    pub fn written(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The largest reply this writer holds.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Drops what was written so far.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Writes all of `data` or nothing ([`Write::write_all`]). Inherent, as
    /// on the stream `wfile`, so that the call needs no trait in scope and
    /// resolves the same with `std::io::Write` imported.
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), Error> {
        Write::write_all(self, data)
    }

    /// Writes all of `data` and returns its length, or nothing
    /// ([`Write::write`]).
    pub fn write(&mut self, data: &[u8]) -> Result<usize, Error> {
        Write::write(self, data)
    }

    /// Does nothing: the reply goes out after `finish` ([`Write::flush`]).
    pub fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// Formatted output (`write!(req.wfile, ...)`), all or nothing of each
    /// piece.
    pub fn write_fmt(&mut self, args: core::fmt::Arguments<'_>) -> Result<(), Error> {
        Write::write_fmt(self, args).map_err(Into::into)
    }
}

impl ErrorType for PacketWriter<'_> {
    type Error = Error;
}

impl Write for PacketWriter<'_> {
    fn write(&mut self, data: &[u8]) -> Result<usize, Error> {
        let end = self.len + data.len();
        if end > self.buf.len() {
            return Err(Error::ReplyTooLong {
                capacity: self.buf.len(),
            });
        }
        self.buf[self.len..end].copy_from_slice(data);
        self.len = end;
        Ok(data.len())
    }

    /// The same as [`write`](Write::write), which already stores all or
    /// nothing (no retry loop needed).
    fn write_all(&mut self, data: &[u8]) -> Result<(), Error> {
        self.write(data).map(drop)
    }

    fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// Serves one received datagram to the end: builds a handler, runs
/// `setup`, `handle`, `finish`, sends the reply through `socket` (if
/// anything was written, or the handler asked for an empty one), and
/// reports the first error to `handle_error`.
///
/// As in Python, the reply is sent even when `handle` failed (it is part of
/// `finish`), but not when `setup` did. `reply_buf` bounds the reply. With
/// the core's `std` feature, a panic in the handler is caught here, once
/// per request, and reported as [`Error::Panicked`] (no reply is sent).
pub fn serve_datagram<S, F, H>(
    packet: &[u8],
    truncated: bool,
    client_address: S::Addr,
    factory: &F,
    hooks: &H,
    reply_buf: &mut [u8],
    socket: &mut S,
) where
    S: ReplySocket,
    F: HandlerFactory + ?Sized,
    F::Handler: DatagramHandler<S>,
    H: Hooks<[u8], S::Addr> + ?Sized,
{
    let client = client_address.clone();
    let result = crate::unwind::catch(|| {
        let mut handler = factory.build();
        let mut request =
            DatagramRequest::new(packet, truncated, client_address, reply_buf, socket);
        handler.setup(&mut request)?;
        let handled = handler.handle(&mut request);
        let finished = handler.finish(&mut request);
        let sent = if request.wfile.will_send() {
            let DatagramRequest {
                wfile,
                client_address,
                socket,
                ..
            } = request;
            socket
                .send_to(wfile.written(), &client_address)
                .map_err(Into::into)
        } else {
            Ok(())
        };
        handled.and(finished).and(sent)
    });
    if let Err(error) = result {
        hooks.handle_error(&client, &error);
    }
}
