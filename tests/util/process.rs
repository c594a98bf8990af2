//! Running the examples from tests: where they are built, killing them when
//! a test fails first, and waiting for them no longer than [`PATIENCE`].

use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, ExitStatus, Output};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::PATIENCE;

/// The built example `name` (in the test binary's profile directory).
/// `cargo test` builds the examples; `cargo test --test X` alone does not.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --example {name}` (a plain `cargo test` does)",
        path.display()
    );
    path
}

/// Kills the process if the test fails before it exits.
pub struct Running(pub Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `finish` on `child` in another thread; kills the child and fails
/// the test if that takes longer than `patience`.
fn bounded<T: Send + 'static>(
    child: Child,
    patience: Duration,
    finish: impl FnOnce(Child) -> std::io::Result<T> + Send + 'static,
) -> T {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(finish(child));
    });
    match rx.recv_timeout(patience) {
        Ok(result) => result.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("process {pid} did not exit");
        }
    }
}

/// Waits for `child`, at most [`PATIENCE`].
pub fn wait_bounded(child: Child) -> ExitStatus {
    bounded(child, PATIENCE, |mut child| child.wait())
}

/// `child`'s output, at most [`PATIENCE`] after this call.
pub fn output_bounded(child: Child) -> Output {
    output_within(child, PATIENCE)
}

/// `child`'s output, at most `patience` after this call.
pub fn output_within(child: Child, patience: Duration) -> Output {
    bounded(child, patience, Child::wait_with_output)
}

/// Runs the Python client `script` of tests/py with `args`; returns its
/// stdout, failing the test on a non-zero exit (with its output).
pub fn python_client(script: &str, args: &[&str]) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let output = Command::new("python3")
        .arg(path)
        .args(args)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{script}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// SIGTERMs the process and waits for it, at most [`PATIENCE`]; it must
/// exit 0. Returns its stderr, when that was piped, to be read to the end.
pub fn terminate(running: &mut Running, name: &str) -> Option<ChildStderr> {
    let mut child = running.0.take().expect("still running");
    let stderr = child.stderr.take();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(killed.unwrap().success());
    let status = wait_bounded(child);
    assert!(status.success(), "{name} exited with {status}");
    stderr
}
