//! A handler crate written from the README alone, as a firmware author
//! would: `no_std`, no allocator, the facade without default features. The
//! test command builds it for thumbv7em-none-eabihf; tests/new_user.rs
//! serves its handler on std sockets and on smoltcp.
#![no_std]

use socketserver::{Connection, Error, StreamHandler, StreamRequest};

/// Numbers each line it echoes: `1: first`, `2: second`, ... until the
/// client closes. Needs no heap: the line stays in the server's buffer.
#[derive(Clone, Copy, Debug, Default)]
pub struct NumberedEcho;

impl<C: Connection> StreamHandler<C> for NumberedEcho {
    fn handle(&mut self, req: &mut StreamRequest<'_, C>) -> Result<(), Error> {
        let mut n = 0u32;
        loop {
            let line = req.rfile.read_line()?;
            if line.is_empty() {
                return Ok(());
            }
            n += 1;
            write!(req.wfile, "{n}: ")?;
            req.wfile.write_all(line)?;
        }
    }
}
