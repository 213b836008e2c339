//! `cargo xtask serve [--port N] [--no-build] [--wasm-opt]`: builds `dist/` and serves it on 127.0.0.1.
//!
//! The server is a small static file server written with `std`: GET and HEAD, single HTTP
//! `Range` requests (206/416), correct MIME types (`application/wasm` for streaming
//! compilation), no caching, `..` refused. `cargo xtask test` starts the same server on a free
//! port with extra mounts for test data.

use crate::prereq::{self, Needs};
use crate::util::{has_flag, option_value, repo_root};
use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Default port of `cargo xtask serve`.
const DEFAULT_PORT: u16 = 8000;

/// Entry point of `cargo xtask serve`.
pub fn run(args: &[String]) -> Result<()> {
    let port = match option_value(args, "--port")? {
        Some(p) => p.parse::<u16>().with_context(|| format!("--port {p}: not a port number"))?,
        None => DEFAULT_PORT,
    };
    let dist = if has_flag(args, "--no-build") {
        repo_root().join("dist")
    } else {
        prereq::ensure(Needs::Build)?;
        crate::dist::dist_with(has_flag(args, "--wasm-opt"))?
    };
    let server = Server::start(port, vec![Mount::new("/", dist)])?;
    let url = server.url();
    println!("\nServing dist/ at {url}");
    println!("  viewer:       {url}index.html");
    println!("  demo data:    {url}index.html?demo");
    println!("  single file:  {url}mask-impact-viewer.html");
    println!("Press Ctrl-C to stop.");
    server.wait();
    Ok(())
}

/// A URL prefix (starting and ending with `/`) served from a directory.
#[derive(Clone, Debug)]
pub struct Mount {
    prefix: String,
    dir: PathBuf,
}

impl Mount {
    /// Serves `dir` under URL path `prefix` (`"/"`, `"/e2e-data/"`, …).
    pub fn new(prefix: &str, dir: PathBuf) -> Self {
        let mut prefix = prefix.trim_end_matches('/').to_owned();
        prefix.push('/');
        Mount { prefix, dir }
    }
}

/// A running static file server.
pub struct Server {
    port: u16,
    thread: std::thread::JoinHandle<()>,
}

impl Server {
    /// Binds 127.0.0.1:`port` (0: any free port) and serves `mounts` (longest prefix wins) on a
    /// background thread.
    pub fn start(port: u16, mut mounts: Vec<Mount>) -> Result<Server> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .with_context(|| format!("cannot listen on 127.0.0.1:{port} (in use? try --port)"))?;
        let port = listener.local_addr()?.port();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.prefix.len()));
        let mounts = Arc::new(mounts);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mounts = Arc::clone(&mounts);
                std::thread::spawn(move || {
                    // A client that goes away mid-response is not our problem.
                    let _ = handle(stream, &mounts);
                });
            }
        });
        Ok(Server { port, thread })
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Blocks while the server runs (forever, in practice).
    pub fn wait(self) {
        let _ = self.thread.join();
    }
}

/// The MIME type for a file name.
fn mime_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        Some("csv") => "text/csv; charset=utf-8",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("ico") => "image/x-icon",
        Some("parquet") => "application/vnd.apache.parquet",
        _ => "application/octet-stream",
    }
}

fn handle(stream: TcpStream, mounts: &[Mount]) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range_header = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range_header = Some(value.trim().to_owned());
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let mut out = stream;
    if method != "GET" && method != "HEAD" {
        return respond(&mut out, "405 Method Not Allowed", "text/plain", &[], b"method not allowed\n", true);
    }
    let head_only = method == "HEAD";
    let Some(path) = resolve(mounts, target) else {
        return respond(&mut out, "404 Not Found", "text/plain", &[], b"not found\n", !head_only);
    };
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(_) => return respond(&mut out, "404 Not Found", "text/plain", &[], b"not found\n", !head_only),
    };
    let size = file.metadata()?.len();
    let mime = mime_type(&path);
    let (status, start, len, content_range) = match range_header.as_deref().map(|r| parse_range(r, size)) {
        None | Some(RangeRequest::Ignore) => ("200 OK", 0, size, None),
        Some(RangeRequest::Bytes(start, end)) => {
            ("206 Partial Content", start, end - start + 1, Some(format!("bytes {start}-{end}/{size}")))
        }
        Some(RangeRequest::Unsatisfiable) => {
            let header = format!("Content-Range: bytes */{size}");
            return respond(&mut out, "416 Range Not Satisfiable", "text/plain", &[header], b"", !head_only);
        }
    };
    let mut header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {mime}\r\nContent-Length: {len}\r\nAccept-Ranges: bytes\r\n\
         Cache-Control: no-cache\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n"
    );
    if let Some(range) = content_range {
        header.push_str(&format!("Content-Range: {range}\r\n"));
    }
    header.push_str("\r\n");
    out.write_all(header.as_bytes())?;
    if !head_only {
        file.seek(SeekFrom::Start(start))?;
        std::io::copy(&mut file.take(len), &mut out)?;
    }
    out.flush()
}

fn respond(
    out: &mut TcpStream,
    status: &str,
    mime: &str,
    extra_headers: &[String],
    body: &[u8],
    send_body: bool,
) -> std::io::Result<()> {
    let mut header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {mime}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in extra_headers {
        header.push_str(h);
        header.push_str("\r\n");
    }
    header.push_str("\r\n");
    out.write_all(header.as_bytes())?;
    if send_body {
        out.write_all(body)?;
    }
    out.flush()
}

/// The file for request target `target`: percent-decoded path without query, under the mount
/// with the longest matching prefix; directories give their `index.html`; `..` is refused.
fn resolve(mounts: &[Mount], target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let path = percent_decode(path)?;
    let mount = mounts.iter().find(|m| path.starts_with(&m.prefix) || path == m.prefix.trim_end_matches('/'))?;
    let rest = path.get(mount.prefix.len()..).unwrap_or("");
    let relative = Path::new(rest);
    if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let mut file = mount.dir.join(relative);
    if file.is_dir() {
        file.push("index.html");
    }
    file.is_file().then_some(file)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What to do with a `Range` header.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// Serve the whole file (no usable single byte range, e.g. several ranges).
    Ignore,
    /// Serve bytes `start..=end`.
    Bytes(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-`, `bytes=-n` for a file of `size` bytes.
fn parse_range(header: &str, size: u64) -> RangeRequest {
    let Some(spec) = header.strip_prefix("bytes=") else { return RangeRequest::Ignore };
    if spec.contains(',') {
        return RangeRequest::Ignore;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return RangeRequest::Ignore };
    let (first, last) = (first.trim(), last.trim());
    let parsed = if first.is_empty() {
        match last.parse::<u64>() {
            Ok(0) | Err(_) => return RangeRequest::Unsatisfiable,
            Ok(n) => (size.saturating_sub(n), size.saturating_sub(1)),
        }
    } else {
        let Ok(start) = first.parse::<u64>() else { return RangeRequest::Ignore };
        let end = if last.is_empty() {
            size.saturating_sub(1)
        } else {
            match last.parse::<u64>() {
                Ok(end) => end.min(size.saturating_sub(1)),
                Err(_) => return RangeRequest::Ignore,
            }
        };
        (start, end)
    };
    if size == 0 || parsed.0 >= size || parsed.0 > parsed.1 {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Bytes(parsed.0, parsed.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeRequest::Bytes(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), RangeRequest::Bytes(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeRequest::Bytes(90, 99));
        assert_eq!(parse_range("bytes=50-1000", 100), RangeRequest::Bytes(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeRequest::Ignore);
    }

    #[test]
    fn serves_files_with_ranges_and_mime() {
        let dir = std::env::temp_dir().join(format!("xtask-serve-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).expect("temp dir");
        std::fs::write(dir.join("sub/a b.wasm"), b"0123456789").expect("write");
        let server = Server::start(0, vec![Mount::new("/", dir.clone())]).expect("server");
        let get = |request: &str| {
            let mut s = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
            s.write_all(request.as_bytes()).expect("send");
            let mut text = String::new();
            s.read_to_string(&mut text).expect("read");
            text
        };
        let full = get("GET /sub/a%20b.wasm HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(full.starts_with("HTTP/1.1 200 OK"), "{full}");
        assert!(full.contains("Content-Type: application/wasm"));
        assert!(full.ends_with("\r\n\r\n0123456789"));
        let part = get("GET /sub/a%20b.wasm?x=1 HTTP/1.1\r\nRange: bytes=2-4\r\n\r\n");
        assert!(part.starts_with("HTTP/1.1 206"), "{part}");
        assert!(part.contains("Content-Range: bytes 2-4/10"));
        assert!(part.ends_with("\r\n\r\n234"));
        assert!(get("GET /../etc/passwd HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get("GET /sub/a%20b.wasm HTTP/1.1\r\nRange: bytes=10-\r\n\r\n").starts_with("HTTP/1.1 416"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
