//! nginx as the `http` workload's reference: Debian's `nginx-light`, run
//! on loopback from a configuration and prefix in a temporary directory.

use std::fs::{self, File};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long nginx may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The configuration, as the results state it: `{prefix}`, `{port}` and
/// `{root}` are filled in.
pub const CONFIG: &str = "\
worker_processes 2;
daemon off;
pid {prefix}/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {
        listen 127.0.0.1:{port};
        root {root};
    }
}
";

/// The settings that matter, for the results: everything else is
/// nginx's default.
pub const SUMMARY: &str = "`worker_processes 2`, `access_log off`, `sendfile on`, \
    `keepalive_requests 100000`, everything else nginx's default";

/// Whether nginx is installed, or why not.
pub fn available() -> Result<(), String> {
    let ok = Command::new("nginx")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err("needs `nginx` on PATH (apt-get install -y nginx-light)".into())
    }
}

/// nginx's version line (`nginx version: nginx/1.22.1`).
pub fn version() -> String {
    Command::new("nginx")
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_default()
}

/// A running nginx serving `root`.
pub struct Nginx {
    child: Child,
    /// Where it listens.
    pub address: SocketAddr,
}

impl Nginx {
    /// Starts nginx with its prefix in `prefix` (created), serving `root`,
    /// its stderr to `log`; returns once it accepts connections.
    ///
    /// # Errors
    /// It could not start, or did not accept connections in time.
    pub fn start(prefix: &Path, root: &Path, log: &Path) -> io::Result<Nginx> {
        fs::create_dir_all(prefix)?;
        // A free port, given back for nginx to take (nginx cannot take
        // port 0 and say which port it got).
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = CONFIG
            .replace("{prefix}", &text(prefix)?)
            .replace("{root}", &text(root)?)
            .replace("{port}", &port.to_string());
        let conf = prefix.join("nginx.conf");
        fs::write(&conf, config)?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&conf)
            .args(["-e", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(log)?)
            .spawn()?;
        let mut nginx = Nginx {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect(nginx.address).is_ok() {
                return Ok(nginx);
            }
            if let Some(status) = nginx.child.try_wait()? {
                return Err(io::Error::other(format!("nginx exited: {status}")));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "nginx accepted no connection in time",
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops nginx (SIGTERM: fast shutdown of the master and its workers;
    /// SIGKILL if it lingers) and reaps it.
    ///
    /// # Errors
    /// Waiting for it failed.
    pub fn stop(mut self) -> io::Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> io::Result<()> {
        crate::proc::end(&mut self.child)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.terminate();
        }
    }
}

fn text(path: &Path) -> io::Result<String> {
    path.to_str().map(str::to_owned).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not UTF-8", PathBuf::from(path).display()),
        )
    })
}
