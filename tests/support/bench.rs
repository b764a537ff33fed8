//! The PyTorch side of the benches: small Python programs run with
//! `python3` in the same process tree, timing the same work with torch.
//! When python3 or torch are missing the figure is skipped with a reason.

use std::process::Command;

/// The device PyTorch runs on in the benches (`PRIOR_TORCH_DEVICE`, default `cpu`).
pub fn torch_device() -> String {
    std::env::var("PRIOR_TORCH_DEVICE").unwrap_or_else(|_| "cpu".into())
}

/// Runs a Python snippet that prints one line `GFLOPS SECONDS`.
pub fn python_timing(code: &str) -> Result<(f64, f64), String> {
    let out = Command::new(std::env::var("PRIOR_PYTHON").unwrap_or_else(|_| "python3".into()))
        .arg("-c")
        .arg(code)
        .output()
        .map_err(|e| format!("python3 not runnable: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.lines().last().unwrap_or("python failed").to_string());
    }
    let s = String::from_utf8_lossy(&out.stdout);
    let mut it = s.split_whitespace().filter_map(|v| v.parse::<f64>().ok());
    match (it.next(), it.next()) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(format!("unexpected output from python: {s}")),
    }
}

/// PyTorch CPU (or CUDA when `PRIOR_TORCH_DEVICE=cuda`) timing of a c→c k×k conv.
pub fn pytorch_conv_gflops(size: usize, c: usize, k: usize) -> Result<(f64, f64), String> {
    let code = format!(
        r#"
import os, time, torch
dev = os.environ.get("PRIOR_TORCH_DEVICE", "cpu")
x = torch.randn(1, {c}, {size}, {size}, device=dev)
conv = torch.nn.Conv2d({c}, {c}, {k}, padding={k}//2, bias=False).to(dev)
def sync():
    if dev == "cuda": torch.cuda.synchronize()
with torch.no_grad():
    for _ in range(2): conv(x)
    sync(); reps = 10; t = time.perf_counter()
    for _ in range(reps): conv(x)
    sync(); s = (time.perf_counter() - t) / reps
print(2 * {c} * {c} * {k} * {k} * {size} * {size} / s / 1e9, s)
"#
    );
    python_timing(&code)
}

/// One aligned result line: name, GFLOP/s, ms, ratio to the first entry.
pub fn report_line(name: &str, gflops: f64, secs: f64, reference_gflops: f64) {
    println!(
        "  {name:<28} {gflops:>8.2} GFLOP/s {:>10.2} ms   ({:.2}x of prior)",
        secs * 1e3,
        gflops / reference_gflops
    );
}
