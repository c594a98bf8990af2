//! The datagram path, as every datagram dispatch runs it:
//! `handle_datagram_request` (receive, `verify_request`, `serve_datagram`,
//! send the reply) with arbitrary packets, packet and reply buffer sizes,
//! refusals, failing hooks and sends, and a handler that does arbitrary
//! reads and writes (or the docs' `UpperDatagram`).
//!
//! Checked: the handler sees the packet's head up to `max_packet_size`,
//! flagged truncated exactly when it was longer; no handler is built for a
//! refused datagram; a reply write that does not fit fails whole and keeps
//! nothing; the reply sent is what was written, never more than the reply
//! buffer, sent only when not empty and `setup` succeeded; every failure
//! reaches `handle_error` exactly once, as the first error.
#![no_main]

use std::cell::{Cell, RefCell};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use socketserver_core::embedded_io::ErrorKind;
use socketserver_core::handlers::UpperDatagram;
use socketserver_core::transport::kind;
use socketserver_core::{
    handle_datagram_request, DatagramHandler, DatagramRequest, DatagramSocket, Error, Hooks,
    Readiness, Received, ReplySocket, Transport,
};

#[derive(Arbitrary, Debug, Clone)]
enum Op {
    ReadLine,
    Read(u16),
    FillConsume(u16),
    Write(Vec<u8>),
    Clear,
}

#[derive(Arbitrary, Debug)]
struct Input {
    packet: Vec<u8>,
    max_packet_size: u16,
    reply_capacity: u16,
    refuse: bool,
    send_fails: bool,
    /// Serve the docs' `UpperDatagram` instead of the scripted handler.
    upper: bool,
    setup_fails: bool,
    handle: Vec<Op>,
    handle_fails: bool,
    finish: Vec<Op>,
    finish_fails: bool,
}

/// A socket holding one datagram, which it truncates as the kernel does.
struct OneDatagram<'a> {
    packet: &'a [u8],
    sent: Vec<Vec<u8>>,
    send_fails: bool,
}

impl Transport for OneDatagram<'_> {
    type Kind = kind::Datagram;
    type Addr = u16;
    type Error = ErrorKind;

    fn wait(&mut self, _timeout: Option<Duration>) -> Result<Readiness, ErrorKind> {
        Ok(Readiness::Ready)
    }
    fn shutdown_requested(&self) -> bool {
        false
    }
    fn clear_shutdown(&mut self) {}
    fn close(&mut self) {}
}

impl DatagramSocket for OneDatagram<'_> {
    fn try_recv_from(&mut self, buf: &mut [u8]) -> Result<Option<Received<u16>>, ErrorKind> {
        let len = self.packet.len().min(buf.len());
        buf[..len].copy_from_slice(&self.packet[..len]);
        Ok(Some(Received::new(len, self.packet.len() > buf.len(), 7)))
    }

    fn send_to(&mut self, data: &[u8], addr: &u16) -> Result<(), ErrorKind> {
        assert_eq!(*addr, 7, "the reply goes to the sender");
        if self.send_fails {
            return Err(ErrorKind::ConnectionRefused);
        }
        self.sent.push(data.to_vec());
        Ok(())
    }
}

struct Recorder<'a> {
    refuse: bool,
    visible: &'a [u8],
    errors: RefCell<Vec<Error>>,
}

impl Hooks<[u8], u16> for Recorder<'_> {
    fn verify_request(&self, packet: &[u8], client: &u16) -> bool {
        assert_eq!(
            packet, self.visible,
            "verify_request sees the packet received"
        );
        assert_eq!(*client, 7);
        !self.refuse
    }

    fn handle_error(&self, client: &u16, error: &Error) {
        assert_eq!(*client, 7);
        self.errors.borrow_mut().push(error.clone());
    }
}

/// A handler that runs `ops` and checks every result against a model of
/// the packet reader and the reply.
struct Scripted<'a> {
    input: &'a Input,
    visible: &'a [u8],
    truncated: bool,
    capacity: usize,
    pos: usize,
    reply: Vec<u8>,
    /// The reply as the model has it when `finish` returns.
    expected_reply: &'a RefCell<Vec<u8>>,
}

impl Scripted<'_> {
    fn run<S: ReplySocket>(&mut self, req: &mut DatagramRequest<'_, S>, ops: &[Op]) {
        assert_eq!(req.truncated, self.truncated);
        assert_eq!(req.rfile.packet(), self.visible);
        assert_eq!(req.wfile.capacity(), self.capacity);
        let mut out = [0u8; 512];
        for op in ops {
            let rest = &self.visible[self.pos..];
            match op {
                Op::ReadLine => {
                    let line = req.rfile.read_line();
                    let want = rest
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(rest.len(), |i| i + 1);
                    assert_eq!(line, &rest[..want]);
                    self.pos += want;
                }
                Op::Read(n) => {
                    let out = &mut out[..usize::from(*n) % 512];
                    let k = req.rfile.read(out).expect("reading a packet never fails");
                    assert_eq!(k, rest.len().min(out.len()));
                    assert_eq!(&out[..k], &rest[..k]);
                    self.pos += k;
                }
                Op::FillConsume(n) => {
                    let available = req.rfile.fill_buf().expect("never fails");
                    assert_eq!(available, rest);
                    let take = usize::from(*n).min(rest.len());
                    req.rfile.consume(take);
                    self.pos += take;
                }
                Op::Write(data) => {
                    let fits = self.reply.len() + data.len() <= self.capacity;
                    match req.wfile.write(data) {
                        Ok(n) => {
                            assert!(fits, "a write past the reply buffer was accepted");
                            assert_eq!(n, data.len(), "a reply write is whole");
                            self.reply.extend_from_slice(data);
                        }
                        Err(Error::ReplyTooLong { capacity }) => {
                            assert!(!fits, "a write that fits was refused");
                            assert_eq!(capacity, self.capacity);
                        }
                        Err(other) => panic!("unexpected write error {other:?}"),
                    }
                }
                Op::Clear => {
                    req.wfile.clear();
                    self.reply.clear();
                }
            }
            assert_eq!(
                req.wfile.written(),
                &self.reply[..],
                "the reply differs from the model"
            );
        }
    }
}

impl<S: socketserver_core::ReplySocket> DatagramHandler<S> for Scripted<'_> {
    fn setup(&mut self, _req: &mut DatagramRequest<'_, S>) -> Result<(), Error> {
        if self.input.setup_fails {
            return Err(Error::Handler("setup"));
        }
        Ok(())
    }

    fn handle(&mut self, req: &mut DatagramRequest<'_, S>) -> Result<(), Error> {
        let ops = &self.input.handle;
        self.run(req, ops);
        if self.input.handle_fails {
            return Err(Error::Handler("handle"));
        }
        Ok(())
    }

    fn finish(&mut self, req: &mut DatagramRequest<'_, S>) -> Result<(), Error> {
        let ops = &self.input.finish;
        self.run(req, ops);
        *self.expected_reply.borrow_mut() = self.reply.clone();
        if self.input.finish_fails {
            return Err(Error::Handler("finish"));
        }
        Ok(())
    }
}

/// The docs' handler's reply: the packet stripped and upper-cased.
fn upper(packet: &[u8]) -> Vec<u8> {
    packet.trim_ascii().to_ascii_uppercase()
}

fuzz_target!(|input: Input| {
    let max_packet_size = usize::from(input.max_packet_size % 2048);
    let capacity = usize::from(input.reply_capacity % 2048);
    let visible = &input.packet[..input.packet.len().min(max_packet_size)];
    let truncated = input.packet.len() > max_packet_size;
    let mut socket = OneDatagram {
        packet: &input.packet,
        sent: Vec::new(),
        send_fails: input.send_fails,
    };
    let hooks = Recorder {
        refuse: input.refuse,
        visible,
        errors: RefCell::new(Vec::new()),
    };
    let built = Cell::new(0);
    let expected_reply = RefCell::new(Vec::new());
    let mut rbuf = vec![0u8; max_packet_size];
    let mut wbuf = vec![0u8; capacity];

    if input.upper {
        let factory = || {
            built.set(built.get() + 1);
            UpperDatagram
        };
        let _ = handle_datagram_request(&mut socket, &factory, &hooks, &mut rbuf, &mut wbuf);
        let errors = hooks.errors.borrow();
        if input.refuse {
            assert_eq!(built.get(), 0);
            assert!(socket.sent.is_empty() && errors.is_empty());
            return;
        }
        let whole = upper(visible);
        let sent = socket.sent.first().map(Vec::as_slice).unwrap_or(b"");
        assert!(socket.sent.len() <= 1);
        assert!(sent.len() <= capacity);
        let send_fails = input.send_fails && !whole.is_empty();
        if whole.len() <= capacity && !send_fails {
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(sent, &whole[..]);
        } else {
            // Too long: the reply so far may go out, but never silently.
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(whole.starts_with(sent));
        }
        return;
    }

    let factory = || {
        built.set(built.get() + 1);
        Scripted {
            input: &input,
            visible,
            truncated,
            capacity,
            pos: 0,
            reply: Vec::new(),
            expected_reply: &expected_reply,
        }
    };
    let _ = handle_datagram_request(&mut socket, &factory, &hooks, &mut rbuf, &mut wbuf);
    let errors = hooks.errors.borrow();
    if input.refuse {
        assert_eq!(built.get(), 0, "a handler for a refused datagram");
        assert!(socket.sent.is_empty() && errors.is_empty());
        return;
    }
    assert_eq!(built.get(), 1);
    if input.setup_fails {
        assert!(socket.sent.is_empty(), "a reply after a failed setup");
        assert!(
            matches!(errors[..], [Error::Handler("setup")]),
            "{errors:?}"
        );
        return;
    }
    let reply = expected_reply.borrow();
    let send_failed = input.send_fails && !reply.is_empty();
    if reply.is_empty() || input.send_fails {
        assert!(socket.sent.is_empty());
    } else {
        assert_eq!(socket.sent.len(), 1);
        assert_eq!(socket.sent[0], *reply);
    }
    let first = if input.handle_fails {
        Some(Error::Handler("handle"))
    } else if input.finish_fails {
        Some(Error::Handler("finish"))
    } else if send_failed {
        Some(Error::io(ErrorKind::ConnectionRefused))
    } else {
        None
    };
    // Error has no PartialEq: compare what the variants print.
    let shown = |e: Option<&Error>| e.map(|e| format!("{e:?}"));
    assert_eq!(shown(errors.first()), shown(first.as_ref()));
    assert!(errors.len() <= 1, "one request, one report: {errors:?}");
});
