//! Servers run as processes announce themselves on their first line of
//! output (`listening on ADDRESS`); reading it is how a test waits for
//! them to be ready.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::thread;

use super::PATIENCE;

/// The first line `child` prints on its piped stdout (which this takes),
/// waiting at most [`PATIENCE`].
pub fn first_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(PATIENCE)
        .expect("the server prints its address")
}

/// The address in `child`'s first line, `listening on ADDRESS`.
pub fn announced_address(child: &mut Child) -> String {
    let line = first_line(child);
    line.trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned()
}
