//! Connections per second of the concurrent dispatches, each beside a
//! hand-written std thread-per-connection server in the same run.
//!
//! Workload: 4 client threads, each in a loop: connect, send a line, read
//! the reply to EOF, close. Every server reads the line and replies with it
//! stripped and upper-cased, with a listen backlog of 128, in a process of
//! its own (this program, re-run as `bench_conn serve KIND ADDRESS`).
//!
//! Usage: `cargo run --release --example bench_conn --features std -- [SECONDS]`
//! (default 1 s per server and round; 5 rounds). Prints a markdown table. With `python3` on the
//! path, CPython's `ForkingTCPServer` (`bench/cpython_forking_server.py`)
//! runs too, as the reference for the forking row.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use socketserver::handlers::UpperLine;
use socketserver::os::TcpTransport;
use socketserver::{
    Dispatch, ForkingDispatch, PoolDispatch, ServerBuilder, SocketServer, ThreadingDispatch,
    DEFAULT_POLL_INTERVAL,
};

const CLIENTS: usize = 4;
const BACKLOG: i32 = 128;
const WARM_UP: Duration = Duration::from_millis(200);
const ROUNDS: usize = 5;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        return serve(&args[1], &args[2]);
    }
    let seconds: f64 = match args.first() {
        Some(s) => s.parse().map_err(|_| invalid("SECONDS must be a number"))?,
        None => 1.0,
    };
    let duration = Duration::from_secs_f64(seconds);
    let me = std::env::current_exe()?;

    // Rounds in rotating order, reported by their median, so that neither
    // the order nor a noisy moment favours one server.
    let mut kinds: Vec<(&str, Command)> = ["hand-written", "threading", "pool", "forking"]
        .into_iter()
        .map(|kind| {
            let mut command = Command::new(&me);
            command.args(["serve", kind, "127.0.0.1:0"]);
            (kind, command)
        })
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/cpython_forking_server.py");
    let mut python = Command::new("python3");
    python.arg(script).arg("127.0.0.1:0");
    let cpython_available = Server::start(&mut python).and_then(Server::stop).is_ok();
    if cpython_available {
        kinds.push(("CPython ForkingTCPServer", python));
    }
    let mut samples: Vec<Vec<Rate>> = kinds.iter().map(|_| Vec::new()).collect();
    for round in 0..ROUNDS {
        for i in 0..kinds.len() {
            let i = (i + round) % kinds.len();
            let server = Server::start(&mut kinds[i].1)?;
            samples[i].push(measure(server.address, duration));
            server.stop()?;
        }
    }
    let rows: Vec<(&str, Rate)> = kinds
        .iter()
        .zip(samples)
        .map(|((kind, _), mut rates)| {
            rates.sort_by(|a, b| a.rate.total_cmp(&b.rate));
            (*kind, rates.swap_remove(ROUNDS / 2))
        })
        .collect();

    let base = rows[0].1.rate;
    println!(
        "| server ({CLIENTS} clients, median of {ROUNDS} x {seconds} s) | conn/s | vs hand-written | errors |"
    );
    println!("|---|---:|---:|---:|");
    for (kind, r) in &rows {
        println!(
            "| {kind} | {:.0} | {:.2}x | {} |",
            r.rate,
            r.rate / base,
            r.errors
        );
    }
    println!();
    match rows.get(4) {
        Some((_, cpython)) => println!(
            "forking vs CPython ForkingTCPServer: {:.2}x",
            rows[3].1.rate / cpython.rate
        ),
        None => println!("(python3 not found: CPython ForkingTCPServer not measured)"),
    }
    Ok(())
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// A server process that printed `listening on ADDRESS`.
struct Server {
    child: Child,
    address: SocketAddr,
}

impl Server {
    fn start(command: &mut Command) -> io::Result<Self> {
        let mut child = command.stdout(Stdio::piped()).spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let address = line
            .trim_end()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok());
        match address {
            Some(address) => Ok(Server { child, address }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(invalid("the server did not announce its address"))
            }
        }
    }

    fn stop(mut self) -> io::Result<()> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        self.child.wait().map(drop)
    }
}

struct Rate {
    rate: f64,
    errors: u64,
}

/// Runs the clients for `WARM_UP`, then counts completed connections for
/// `duration`.
fn measure(address: SocketAddr, duration: Duration) -> Rate {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (done, errors, stop) = (done.clone(), errors.clone(), stop.clone());
            thread::spawn(move || {
                let mut reply = Vec::with_capacity(64);
                while !stop.load(Ordering::Relaxed) {
                    reply.clear();
                    match one_connection(address, &mut reply) {
                        Ok(()) if reply == b"HELLO WORLD" => done.fetch_add(1, Ordering::Relaxed),
                        _ => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    thread::sleep(WARM_UP);
    let (start_done, start_errors) = (done.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    let start = Instant::now();
    thread::sleep(duration);
    let (end_done, end_errors) = (done.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.join();
    }
    Rate {
        rate: (end_done - start_done) as f64 / elapsed.as_secs_f64(),
        errors: end_errors - start_errors,
    }
}

fn one_connection(address: SocketAddr, reply: &mut Vec<u8>) -> io::Result<()> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b" hello world \n")?;
    stream.read_to_end(reply)?;
    Ok(())
}

/// The server side: `serve KIND ADDRESS`, until SIGTERM.
fn serve(kind: &str, address: &str) -> io::Result<()> {
    let builder = ServerBuilder::tcp(address).request_queue_size(BACKLOG);
    match kind {
        "hand-written" => hand_written(address),
        "threading" => run(builder.build_with(|s| ThreadingDispatch::new(|| UpperLine, s))?),
        "pool" => run(builder.build_with(|s| PoolDispatch::new(|| UpperLine, s))?),
        "forking" => run(builder.build_forking_with(|s| ForkingDispatch::new(|| UpperLine, s))?),
        _ => Err(invalid("unknown server kind")),
    }
}

fn run<D: Dispatch<TcpTransport>>(mut server: SocketServer<TcpTransport, D>) -> io::Result<()> {
    let _signals = server.shutdown_handle().stop_on_signals()?;
    println!("listening on {}", server.server_address());
    io::stdout().flush()?;
    server.serve_forever(DEFAULT_POLL_INTERVAL)?;
    server.server_close();
    Ok(())
}

/// What one would write without this crate: std's listener (backlog 128)
/// and a thread per connection. Ended by SIGTERM's default action.
fn hand_written(address: &str) -> io::Result<()> {
    let listener = TcpListener::bind(address)?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        thread::spawn(move || {
            let mut line = String::new();
            let mut reader = BufReader::new(&stream);
            if reader.read_line(&mut line).is_ok() {
                let reply = line.trim().to_uppercase();
                let _ = (&stream).write_all(reply.as_bytes());
            }
            let _ = stream.shutdown(Shutdown::Write);
        });
    }
    Ok(())
}
