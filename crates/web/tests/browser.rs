//! The browser test: builds the wasm bundle exactly like `cargo xtask web`,
//! serves the page on 127.0.0.1, opens `?test=1` in headless Chromium with
//! WebGPU on SwiftShader (Chromium's CPU Vulkan), and checks the numbers the
//! page posts back: the BSD400_gray BF-CNN on `tests/golden/uip_bsd400_gray`
//! must match PyTorch's output to 1e-4 (the bound of every native parity
//! test; measured: 6.0e-7, the same as on lavapipe, while PyTorch's own f32
//! output is 4.4e-7 from its f64 result, `meta.json`'s `f64_discrepancy`).
//!
//! Needs `chromium` (`apt-get install -y chromium`, or `$PRIOR_CHROMIUM`)
//! and the wasm-bindgen CLI of Cargo.lock's version; without them the test
//! fails saying what to install, unless `PRIOR_SKIP_BROWSER=1`.
#![cfg(not(target_arch = "wasm32"))]

#[allow(dead_code)]
#[path = "../../../xtask/src/web.rs"]
mod web;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Flags that give headless Chromium (156) a WebGPU adapter on SwiftShader
/// without a GPU, a display or a sandbox-capable kernel, and keep it quiet.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--enable-unsafe-webgpu",
    "--enable-features=Vulkan",
    "--use-vulkan=swiftshader",
    "--use-webgpu-adapter=swiftshader",
    "--disable-gpu-sandbox",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--mute-audio",
];

const TIMEOUT: Duration = Duration::from_secs(300);
const TOLERANCE: f64 = 1e-4;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn chromium() -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> =
        match std::env::var_os("PRIOR_CHROMIUM").filter(|s| !s.is_empty()) {
            Some(p) => vec![PathBuf::from(p)],
            None => ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
                .iter()
                .map(PathBuf::from)
                .collect(),
        };
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        "headless Chromium is not installed: apt-get install -y chromium (or set PRIOR_CHROMIUM to its path)".to_string()
    })
}

/// Kills Chromium's whole process group (it was started as a group leader).
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let pid = self.0.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn golden_denoise_in_headless_chromium() {
    if std::env::var("PRIOR_SKIP_BROWSER").is_ok_and(|v| v == "1") {
        eprintln!("skipped: PRIOR_SKIP_BROWSER=1 (the browser test needs chromium and the wasm-bindgen CLI)");
        return;
    }
    let root = workspace();
    let chromium =
        chromium().unwrap_or_else(|e| panic!("{e}\n(PRIOR_SKIP_BROWSER=1 skips this test)"));
    let shared = web::shared_dir(&root);
    assert!(
        shared.join("checkpoints").is_dir(),
        "{} is missing: the test loads the BSD400_gray checkpoint from ../shared",
        shared.display()
    );

    let t = Instant::now();
    let www =
        web::build(&root).unwrap_or_else(|e| panic!("{e}\n(PRIOR_SKIP_BROWSER=1 skips this test)"));
    eprintln!("bundle built in {:.1} s", t.elapsed().as_secs_f64());

    let server =
        web::Server::start(www, root.join("tests/golden"), shared, 0).expect("local HTTP server");
    let url = format!("http://127.0.0.1:{}/?test=1", server.port);
    let profile = std::env::temp_dir().join(format!(
        "prior-web-chromium-{}-{}",
        std::process::id(),
        server.port
    ));
    let _ = std::fs::remove_dir_all(&profile);
    let t = Instant::now();
    let mut cmd = Command::new(&chromium);
    cmd.args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let browser = Browser(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display())),
    );
    eprintln!("opened {url} in {}", chromium.display());

    let posted = server.posted.recv_timeout(TIMEOUT);
    drop(browser);
    let _ = std::fs::remove_dir_all(&profile);
    let json = match posted {
        Ok(web::Posted::Result(json)) => json,
        Err(_) => panic!(
            "no result from the page within {} s (see the [page] lines above)",
            TIMEOUT.as_secs()
        ),
    };
    eprintln!(
        "page result after {:.1} s: {json}",
        t.elapsed().as_secs_f64()
    );
    let r: serde_json::Value = serde_json::from_str(&json).expect("the page posts JSON");
    assert_eq!(r["ok"], true, "the page failed: {}", r["error"]);
    let diff = r["max_abs_diff"].as_f64().expect("max_abs_diff");
    assert!(
        diff < TOLERANCE,
        "max |browser - PyTorch| = {diff:e} >= {TOLERANCE:e}"
    );
    assert_eq!(
        r["repeat_max_abs_diff"].as_f64(),
        Some(0.0),
        "two runs of the same input differ"
    );
    // Bad inputs are JS exceptions with the library's message, and the model
    // still works afterwards (no panic, no trap).
    for key in ["bad_checkpoint_error", "bad_channels_error"] {
        let msg = r[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key}: no exception was thrown"));
        assert!(
            !msg.is_empty() && !msg.contains("unreachable") && !msg.contains("panicked"),
            "{key}: {msg}"
        );
    }
    assert_eq!(
        r["still_works"], true,
        "the model gave a different output after the errors"
    );
    eprintln!(
        "browser vs PyTorch: max abs diff {diff:e}; denoise {:.3} s (first, with pipeline creation), {:.3} s (second); adapter {}",
        r["seconds"].as_f64().unwrap_or(f64::NAN),
        r["seconds_warm"].as_f64().unwrap_or(f64::NAN),
        r["adapter"]
    );
}
