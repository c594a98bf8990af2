//! Production defaults: the listen backlog is large enough for a burst of
//! clients, and Python's values are one call away
//! (`ServerBuilder::python_defaults`).
#![cfg(all(feature = "std", target_os = "linux"))]

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;

use util::announce::announced_address;
use util::process::{example, Running};
use util::PATIENCE;

const CLIENTS: usize = 200;

/// With Python's backlog of 5, 61-75 of 200 clients connecting at once were
/// not answered within 40 s (the kernel drops what overflows the queue,
/// and the clients retry after 1, 3, 7, 15 s ...).
#[test]
fn threaded_server_answers_two_hundred_clients_at_once() {
    let mut server = Command::new(example("threaded_server"))
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let address = announced_address(&mut server);
    let _running = Running(Some(server));
    let start = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (address, start) = (address.clone(), Arc::clone(&start));
            thread::spawn(move || -> std::io::Result<String> {
                start.wait();
                let mut client = TcpStream::connect(&address)?;
                client.set_read_timeout(Some(PATIENCE))?;
                client.write_all(format!("client {i}").as_bytes())?;
                let mut reply = String::new();
                client.read_to_string(&mut reply)?;
                Ok(reply)
            })
        })
        .collect();
    let failed: Vec<String> = clients
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| match c.join().unwrap() {
            Ok(reply) if reply.ends_with(&format!(": client {i}")) => None,
            other => Some(format!("client {i}: {other:?}")),
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {CLIENTS} not answered within {PATIENCE:?}: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
}
