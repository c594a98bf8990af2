//! Finding the file a request names: only regular files under the served
//! directory, opened once, and every check made on the opened file.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use nix::libc::{O_NOCTTY, O_NONBLOCK};

use crate::request::{origin_path, percent_decode};
use crate::response::Status;
use crate::text::decimal;
use crate::Site;

/// A file found for a request.
pub struct Found {
    pub file: File,
    pub size: u64,
    pub modified: Option<u64>,
    pub mime: &'static str,
}

/// Where a request target leads.
pub enum Resolved {
    File(Found),
    /// A directory named without its final `/`.
    AddSlash,
}

/// Maps targets to files, in buffers kept from one request to the next (a
/// worker's, not a connection's).
#[derive(Default)]
pub struct Resolver {
    /// The target's path, percent-decoded.
    decoded: Vec<u8>,
    /// That path's segments joined by `/`, without `.` and empty ones.
    rel: Vec<u8>,
    path: PathBuf,
    link: PathBuf,
}

impl Resolver {
    /// The cleaned path of the last target resolved, relative to the root.
    pub fn rel(&self) -> &[u8] {
        &self.rel
    }

    /// Maps the request target to an open file under the root.
    pub fn resolve(&mut self, site: &Site, target: &[u8]) -> Result<Resolved, Status> {
        let path = origin_path(target).ok_or(Status::BadRequest)?;
        percent_decode(path, &mut self.decoded).ok_or(Status::BadRequest)?;
        self.rel.clear();
        for segment in self.decoded.split(|&b| b == b'/') {
            match segment {
                b"" | b"." => {}
                b".." => return Err(Status::NotFound),
                _ if segment.contains(&0) => return Err(Status::BadRequest),
                _ => {
                    if !self.rel.is_empty() {
                        self.rel.push(b'/');
                    }
                    self.rel.extend_from_slice(segment);
                }
            }
        }
        let path = self.path.as_mut_os_string();
        path.clear();
        path.push(site.root.as_os_str());
        path.push("/");
        path.push(std::ffi::OsStr::from_bytes(&self.rel));
        let (mut file, mut meta) = self.open_inside(site)?;
        let slash = self.decoded.ends_with(b"/");
        if meta.is_dir() {
            if !slash {
                return Ok(Resolved::AddSlash);
            }
            self.path.push("index.html");
            (file, meta) = self.open_inside(site)?;
        } else if slash {
            // `file/` names a directory that does not exist.
            return Err(Status::NotFound);
        }
        // Regular files only: no FIFO, device or socket.
        if !meta.is_file() {
            return Err(Status::NotFound);
        }
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        Ok(Resolved::File(Found {
            file,
            size: meta.len(),
            modified,
            mime: mime_type(self.path.as_os_str().as_bytes()),
        }))
    }

    /// Opens `self.path`, then checks what was opened, never the path
    /// again: a link or a FIFO swapped in after a check cannot slip past
    /// it. `O_NONBLOCK` so that opening a FIFO does not wait for a writer
    /// (it has no effect on reading regular files); `O_NOCTTY` so that a
    /// terminal never becomes the server's.
    fn open_inside(&mut self, site: &Site) -> Result<(File, fs::Metadata), Status> {
        let file = File::options()
            .read(true)
            .custom_flags(O_NONBLOCK | O_NOCTTY)
            .open(&self.path)
            .map_err(|_| Status::NotFound)?;
        let meta = file.metadata().map_err(|_| Status::NotFound)?;
        if !self.inside_root(site, &file, &meta) {
            return Err(Status::NotFound);
        }
        Ok((file, meta))
    }

    /// Whether `file`, opened from `self.path`, really is under the root once
    /// symbolic links are resolved: by its `/proc/self/fd` link, or else by
    /// resolving the path again and finding the same file there.
    fn inside_root(&mut self, site: &Site, file: &File, meta: &fs::Metadata) -> bool {
        let root = &site.root;
        if !site.proc_fd {
            return fs::canonicalize(&self.path).is_ok_and(|real| {
                real.starts_with(root)
                    && fs::metadata(&real)
                        .is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()))
            });
        }
        let mut digits = [0; 20];
        let link = self.link.as_mut_os_string();
        link.clear();
        link.push("/proc/self/fd/");
        link.push(std::ffi::OsStr::from_bytes(decimal(
            file.as_raw_fd() as u64,
            &mut digits,
        )));
        fs::read_link(&self.link).is_ok_and(|real| real.starts_with(root))
    }
}

/// The media type of a file, by its extension.
fn mime_type(path: &[u8]) -> &'static str {
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    let Some(dot) = name.iter().rposition(|&b| b == b'.') else {
        return "application/octet-stream";
    };
    let ext = &name[dot + 1..];
    let mut lower = [0u8; 5];
    if ext.len() > lower.len() {
        return "application/octet-stream";
    }
    let lower = &mut lower[..ext.len()];
    lower.copy_from_slice(ext);
    lower.make_ascii_lowercase();
    match &*lower {
        b"html" | b"htm" => "text/html",
        b"css" => "text/css",
        b"js" | b"mjs" => "text/javascript",
        b"json" => "application/json",
        b"txt" => "text/plain",
        b"md" => "text/markdown",
        b"csv" => "text/csv",
        b"xml" => "application/xml",
        b"svg" => "image/svg+xml",
        b"png" => "image/png",
        b"jpg" | b"jpeg" => "image/jpeg",
        b"gif" => "image/gif",
        b"webp" => "image/webp",
        b"ico" => "image/vnd.microsoft.icon",
        b"pdf" => "application/pdf",
        b"wasm" => "application/wasm",
        b"zip" => "application/zip",
        b"gz" => "application/gzip",
        b"tar" => "application/x-tar",
        b"mp3" => "audio/mpeg",
        b"mp4" => "video/mp4",
        b"webm" => "video/webm",
        b"woff" => "font/woff",
        b"woff2" => "font/woff2",
        b"ttf" => "font/ttf",
        b"otf" => "font/otf",
        _ => "application/octet-stream",
    }
}
