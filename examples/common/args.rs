//! The examples' command line, one behaviour for all: `--help` (or `-h`)
//! prints the usage on stdout and exits 0; a bad argument prints one line,
//! `error: ...`, on stderr and exits 2. Each example includes this file
//! with `#[path = "common/args.rs"] mod args;`.
#![allow(dead_code)] // each example uses what it needs

use std::str::FromStr;

/// The arguments after the program's name, with the example's usage line.
pub struct Args {
    usage: &'static str,
    rest: Vec<String>,
}

impl Args {
    /// The process's arguments; answers `--help` and `-h` at once.
    pub fn parse(usage: &'static str) -> Args {
        let rest: Vec<String> = std::env::args().skip(1).collect();
        if rest.iter().any(|a| a == "--help" || a == "-h") {
            println!("{usage}");
            std::process::exit(0);
        }
        Args { usage, rest }
    }

    /// Ends the program with `error: WHY` on stderr and status 2.
    pub fn fail(&self, why: &str) -> ! {
        eprintln!(
            "error: {why} (usage: {})",
            self.usage.trim_start_matches("usage: ")
        );
        std::process::exit(2);
    }

    /// The next argument that is not an option, or `default`.
    pub fn next_or(&mut self, default: &str) -> String {
        match self.rest.iter().position(|a| !a.starts_with("--")) {
            Some(i) => self.rest.remove(i),
            None => default.to_owned(),
        }
    }

    /// The next argument that is not an option, as a `HOST:PORT` that
    /// resolves (a name, an IPv4 or a bracketed IPv6 address), or `default`.
    pub fn address(&mut self, default: &str) -> String {
        let address = self.next_or(default);
        if let Err(err) = std::net::ToSocketAddrs::to_socket_addrs(address.as_str()) {
            self.fail(&format!("{address} is not a HOST:PORT address ({err})"));
        }
        address
    }

    /// The value of `--NAME VALUE`, if given; a missing or bad value fails.
    pub fn option<T: FromStr>(&mut self, name: &str) -> Option<T> {
        let i = self.rest.iter().position(|a| a == name)?;
        self.rest.remove(i);
        if i >= self.rest.len() {
            self.fail(&format!("{name} needs a value"));
        }
        let value = self.rest.remove(i);
        match value.parse() {
            Ok(v) => Some(v),
            Err(_) => self.fail(&format!("{name} {value}: not a valid value")),
        }
    }

    /// Fails on any argument left unused.
    pub fn done(self) {
        if let Some(extra) = self.rest.first() {
            self.fail(&format!("unexpected argument {extra}"));
        }
    }
}
