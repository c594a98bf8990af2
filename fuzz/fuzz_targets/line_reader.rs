//! `RFile`, the bounded line reader of stream handlers, over a connection
//! that hands out arbitrary chunks and fails when told to, driven by an
//! arbitrary mix of `read_line`, `read` and `fill_buf`/`consume`.
//!
//! Checked against the input after every call: each byte reaches the caller
//! once and in order; a line is at most the capacity and ends at the first
//! `\n` (or at the end of the stream); `LineTooLong` drops exactly one
//! buffer of bytes that hold no `\n`; an I/O error loses nothing; an empty
//! result means the stream really is exhausted.
#![no_main]

use std::cell::RefCell;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use socketserver_core::embedded_io::{ErrorKind, ErrorType, Read, Write};
use socketserver_core::{Connection, Error, RFile};

/// What the connection does on one `read` call.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Step {
    /// Hands out at most this many bytes (at least one while any are left).
    Bytes(u8),
    /// Fails with `TimedOut` and hands out nothing.
    Fail,
}

#[derive(Arbitrary, Debug)]
enum Op {
    ReadLine,
    Read(u16),
    FillConsume(u16),
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: u16,
    steps: Vec<Step>,
    ops: Vec<Op>,
    data: Vec<u8>,
}

/// A connection whose reads follow `steps`, then hand out everything asked.
struct Chunked<'a> {
    data: &'a [u8],
    pos: usize,
    steps: std::slice::Iter<'a, Step>,
}

impl ErrorType for Chunked<'_> {
    type Error = ErrorKind;
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let rest = &self.data[self.pos..];
        let limit = match self.steps.next() {
            Some(Step::Fail) => return Err(ErrorKind::TimedOut),
            Some(Step::Bytes(n)) => usize::from(*n).max(1),
            None => usize::MAX,
        };
        let n = rest.len().min(buf.len()).min(limit);
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Chunked<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl Connection for Chunked<'_> {
    type Addr = u8;

    fn set_timeout(&mut self, _timeout: Option<Duration>) -> Result<(), ErrorKind> {
        Ok(())
    }

    fn set_request_timeout(&mut self, _total: Option<Duration>) -> Result<(), ErrorKind> {
        Ok(())
    }

    fn set_nodelay(&mut self, _nodelay: bool) -> Result<(), ErrorKind> {
        Ok(())
    }

    fn shutdown_write(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

/// Checks one `read_line` result against the input at `pos`; returns how
/// many bytes the call took off the stream.
fn check_line(result: Result<&mut [u8], Error>, data: &[u8], pos: usize, cap: usize) -> usize {
    let rest = &data[pos..];
    match result {
        Ok([]) => {
            assert!(rest.is_empty(), "empty line with {} bytes left", rest.len());
            0
        }
        Ok(line) => {
            let len = line.len();
            assert!(len <= cap, "a {len}-byte line from a {cap}-byte buffer");
            assert_eq!(&*line, &rest[..len], "line differs from the input");
            let newline = rest.iter().position(|&b| b == b'\n');
            match newline {
                Some(i) => assert_eq!(len, i + 1, "the line does not end at the first newline"),
                None => assert_eq!(len, rest.len(), "an unterminated line before the end"),
            }
            len
        }
        Err(err @ Error::LineTooLong { capacity }) => {
            assert_eq!(capacity, cap);
            // A protocol error, not a memory one (Python's bounded readline).
            assert_eq!(err.kind(), ErrorKind::InvalidData);
            assert!(
                rest.len() >= cap,
                "LineTooLong with only {} bytes left",
                rest.len()
            );
            assert!(
                !rest[..cap].contains(&b'\n'),
                "LineTooLong although a newline was within the capacity"
            );
            cap
        }
        Err(Error::Io {
            kind: ErrorKind::TimedOut,
            ..
        }) => 0,
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

fuzz_target!(|input: Input| {
    let cap = usize::from(input.capacity % 512);
    let data = &input.data[..];
    let conn = RefCell::new(Chunked {
        data,
        pos: 0,
        steps: input.steps.iter(),
    });
    let mut buf = vec![0u8; cap];
    let mut rfile = RFile::new(&conn, &mut buf);
    assert_eq!(rfile.capacity(), cap);
    let mut pos = 0;
    let mut out = vec![0u8; 1024];
    for op in &input.ops {
        match *op {
            Op::ReadLine => {
                pos += check_line(rfile.read_line(), data, pos, cap);
            }
            Op::Read(n) => {
                let out = &mut out[..usize::from(n) % 1024];
                match rfile.read(out) {
                    Ok(k) => {
                        assert!(k <= out.len());
                        assert_eq!(
                            &out[..k],
                            &data[pos..pos + k],
                            "read differs from the input"
                        );
                        assert!(
                            k > 0 || out.is_empty() || pos == data.len(),
                            "read gave 0 bytes with {} left",
                            data.len() - pos
                        );
                        pos += k;
                    }
                    Err(Error::Io {
                        kind: ErrorKind::TimedOut,
                        ..
                    }) => {}
                    Err(other) => panic!("unexpected read error {other:?}"),
                }
            }
            Op::FillConsume(n) => match rfile.fill_buf() {
                Ok(available) => {
                    let len = available.len();
                    assert!(len <= cap);
                    assert_eq!(
                        available,
                        &data[pos..pos + len],
                        "fill_buf differs from the input"
                    );
                    assert!(
                        len > 0 || pos == data.len(),
                        "fill_buf gave nothing with {} bytes left",
                        data.len() - pos
                    );
                    let take = usize::from(n).min(len);
                    rfile.consume(take);
                    pos += take;
                }
                Err(Error::Io {
                    kind: ErrorKind::TimedOut,
                    ..
                }) => {}
                // No buffer to fill (fixed: it used to fake the end of stream).
                Err(Error::Io {
                    kind: ErrorKind::OutOfMemory,
                    ..
                }) if cap == 0 => {}
                Err(other) => panic!("unexpected fill_buf error {other:?}"),
            },
        }
    }
});
