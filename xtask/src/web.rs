//! `cargo xtask web`: builds the browser bundle of `crates/web` and, with
//! `--serve`, serves the demo page. Only `std`: `crates/web/tests/browser.rs`
//! includes this file (`#[path]`) to build and serve exactly the same way.
//!
//! Layout of the output (`<web target>/www`, under `target/`, never committed):
//! `index.html`, `main.js` (copied from `crates/web/www`) and `pkg/` (the
//! wasm-bindgen bundle: `prior_web.js`, `prior_web_bg.wasm`).
//!
//! The server maps `/` to that folder, `/golden/...` to `tests/golden` and
//! `/shared/...` to the data folder beside the checkout (`../shared`, or
//! `$PRIOR_SHARED`); `POST /result` hands the page's JSON to the caller and
//! `POST /log` prints a progress line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

/// Where the web build lives: `$PRIOR_WEB_TARGET_DIR`, else `web/` inside
/// `$CARGO_TARGET_DIR` or the workspace's `target/` (a target directory of
/// its own, so a nested build never waits on the outer build's lock).
pub fn web_target_dir(workspace: &Path) -> PathBuf {
    if let Some(d) = std::env::var_os("PRIOR_WEB_TARGET_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("web"),
        None => workspace.join("target/web"),
    }
}

/// The data folder beside the checkout.
pub fn shared_dir(workspace: &Path) -> PathBuf {
    match std::env::var_os("PRIOR_SHARED").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => workspace.join("../shared"),
    }
}

/// The wasm-bindgen crate version in Cargo.lock (the CLI must match it exactly).
pub fn locked_wasm_bindgen_version(workspace: &Path) -> Result<String, String> {
    let lock_path = workspace.join("Cargo.lock");
    let lock = std::fs::read_to_string(&lock_path)
        .map_err(|e| format!("cannot read {}: {e}", lock_path.display()))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\"" {
            if let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
            {
                return Ok(v.trim_end_matches('"').to_string());
            }
        }
    }
    Err(format!(
        "no wasm-bindgen package in {}",
        lock_path.display()
    ))
}

/// The command that installs the matching CLI.
pub fn install_hint(version: &str) -> String {
    format!(
        "cargo install --locked wasm-bindgen-cli --version {version}\n(if --locked cannot resolve one of the CLI's dependencies in your registry, run it without --locked: only the CLI's own version must match)"
    )
}

/// Checks that `wasm-bindgen` is on PATH with exactly `version`.
pub fn check_wasm_bindgen_cli(version: &str) -> Result<(), String> {
    let out = Command::new("wasm-bindgen").arg("--version").output();
    let found = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => {
            return Err(format!(
                "the wasm-bindgen CLI is not installed (needed: version {version}, the wasm-bindgen crate in Cargo.lock); install it with:\n    {}",
                install_hint(version)
            ))
        }
    };
    // "wasm-bindgen 0.2.130"
    if found.split_whitespace().nth(1) != Some(version) {
        return Err(format!(
            "found '{found}' but Cargo.lock has wasm-bindgen {version}; the CLI must match the crate exactly. Install it with:\n    {}",
            install_hint(version)
        ));
    }
    Ok(())
}

/// Builds `prior-web` for wasm32 (release), runs wasm-bindgen and lays out
/// the page; returns the folder to serve.
pub fn build(workspace: &Path) -> Result<PathBuf, String> {
    let version = locked_wasm_bindgen_version(workspace)?;
    check_wasm_bindgen_cli(&version)?;
    let target = web_target_dir(workspace);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "web: cargo build --release --target wasm32-unknown-unknown -p prior-web (target dir {})",
        target.display()
    );
    let status = Command::new(&cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--locked",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "-p",
            "prior-web",
        ])
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "the wasm32 build of prior-web failed ({status}); is the target installed? rustup target add wasm32-unknown-unknown"
        ));
    }
    let wasm = target.join("wasm32-unknown-unknown/release/prior_web.wasm");
    let www = target.join("www");
    let pkg = www.join("pkg");
    std::fs::create_dir_all(&pkg).map_err(|e| format!("cannot create {}: {e}", pkg.display()))?;
    let status = Command::new("wasm-bindgen")
        .args(["--target", "web", "--no-typescript", "--out-dir"])
        .arg(&pkg)
        .arg(&wasm)
        .status()
        .map_err(|e| format!("cannot run wasm-bindgen: {e}"))?;
    if !status.success() {
        return Err(format!(
            "wasm-bindgen failed on {} ({status})",
            wasm.display()
        ));
    }
    let page = workspace.join("crates/web/www");
    let entries =
        std::fs::read_dir(&page).map_err(|e| format!("cannot list {}: {e}", page.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_file() {
            let dst = www.join(path.file_name().unwrap());
            std::fs::copy(&path, &dst)
                .map_err(|e| format!("cannot copy {} to {}: {e}", path.display(), dst.display()))?;
        }
    }
    let size = std::fs::metadata(pkg.join("prior_web_bg.wasm"))
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!(
        "web: page and bundle in {} (wasm {:.1} MiB)",
        www.display(),
        size as f64 / (1 << 20) as f64
    );
    Ok(www)
}

/// What a page sent with `POST`.
pub enum Posted {
    /// `POST /result`: the test mode's JSON.
    Result(String),
}

/// A tiny HTTP/1.1 server on 127.0.0.1 for the page (one thread per connection).
pub struct Server {
    pub port: u16,
    pub posted: mpsc::Receiver<Posted>,
}

impl Server {
    /// Serves `www` at `/`, `golden` at `/golden/` and `shared` at `/shared/`
    /// on 127.0.0.1:`port` (0: any free port).
    pub fn start(
        www: PathBuf,
        golden: PathBuf,
        shared: PathBuf,
        port: u16,
    ) -> Result<Server, String> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let (tx, rx) = mpsc::channel();
        let roots = std::sync::Arc::new(Roots {
            www,
            golden,
            shared,
        });
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (tx, roots) = (tx.clone(), roots.clone());
                std::thread::spawn(move || {
                    let _ = handle(stream, &roots, &tx);
                });
            }
        });
        Ok(Server { port, posted: rx })
    }
}

struct Roots {
    www: PathBuf,
    golden: PathBuf,
    shared: PathBuf,
}

fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "css" => "text/css",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "bmp" => "image/bmp",
        "svg" => "image/svg+xml",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Maps a URL path to a file, refusing anything that could leave its root.
fn resolve(roots: &Roots, url_path: &str) -> Option<PathBuf> {
    let (root, rest) = if let Some(r) = url_path.strip_prefix("/golden/") {
        (&roots.golden, r)
    } else if let Some(r) = url_path.strip_prefix("/shared/") {
        (&roots.shared, r)
    } else {
        (&roots.www, url_path.trim_start_matches('/'))
    };
    let rest = if rest.is_empty() { "index.html" } else { rest };
    let mut path = root.clone();
    for part in rest.split('/') {
        if part.is_empty()
            || part == "."
            || part == ".."
            || part.contains('\\')
            || part.contains('%')
        {
            return None;
        }
        path.push(part);
    }
    path.is_file().then_some(path)
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    head: bool,
) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if !head {
        stream.write_all(body)?;
    }
    stream.flush()
}

fn handle(mut stream: TcpStream, roots: &Roots, tx: &mpsc::Sender<Posted>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    match method {
        "GET" | "HEAD" => match resolve(roots, path) {
            Some(file) => {
                let body = std::fs::read(&file)?;
                respond(&mut stream, "200 OK", mime(&file), &body, method == "HEAD")
            }
            None => respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                format!("not found: {path}\n").as_bytes(),
                false,
            ),
        },
        "POST" if path == "/result" || path == "/log" => {
            let mut body = vec![0u8; content_length.min(1 << 20)];
            reader.read_exact(&mut body)?;
            let text = String::from_utf8_lossy(&body).into_owned();
            respond(&mut stream, "200 OK", "text/plain", b"ok\n", false)?;
            if path == "/log" {
                eprintln!("[page] {text}");
            } else {
                let _ = tx.send(Posted::Result(text));
            }
            Ok(())
        }
        _ => respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"GET, HEAD, or POST /result or /log\n",
            false,
        ),
    }
}
