//! The docs' upper-casing handlers served over the core's in-memory
//! transport: no sockets, no threads, no heap. Prints each exchange.

#[path = "common/args.rs"]
mod args;

use socketserver::handlers::{UpperLine, UpperOnce};
use socketserver::memory::{ManualClock, MemoryConnection, MemoryListener, Transcript};
use socketserver::{Server, ShutdownFlag, StreamHandler, SyncDispatch};

fn exchange<H: for<'t> StreamHandler<MemoryConnection<'t, 256>>>(
    name: &str,
    make: fn() -> H,
    request: &[u8],
) {
    let transcript = Transcript::<256>::new();
    let shutdown = ShutdownFlag::new();
    let mut listener = MemoryListener::<1, 256>::new(&transcript, &shutdown);
    listener
        .push(request, 1)
        .expect("request fits the listener");
    let mut server = Server::new(
        listener,
        SyncDispatch::<_, _, [u8; 256], [u8; 0]>::new(make),
        ManualClock::new(),
    );
    server.handle_request().expect("in-memory wait cannot fail");
    transcript.with(|reply| {
        println!(
            "{name}: sent {:?}, received {:?}",
            String::from_utf8_lossy(request),
            String::from_utf8_lossy(reply)
        );
    });
}

fn main() {
    args::Args::parse("usage: memory_demo (no arguments)").done();
    exchange("UpperOnce", || UpperOnce, b"hello world with TCP");
    exchange(
        "UpperLine",
        || UpperLine,
        b"hello world via rfile\nignored\n",
    );
}
