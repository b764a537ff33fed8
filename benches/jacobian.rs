//! Benchmark: the full 40×40 Jacobian (1600 JVPs, 1600×1600) of the
//! universal_inverse_problem BSD400_gray BF-CNN at a noisy Set12 crop, ours
//! (batched one-hot JVPs on the GPU) against PyTorch in the same run (CPU,
//! or CUDA with `PRIOR_TORCH_DEVICE=cuda`):
//! autograd row by row (the authors' way: one backward per output pixel with
//! a retained graph; timed on `--torch-rows=40` rows and extrapolated to
//! 1600, said so in the output), batched autograd VJPs (chunks of 64), and
//! `torch.func.jacfwd` (all 1600 tangents in one vmap).
//!
//! `cargo bench --bench jacobian [-- --size=40 --cols=N --batch=128 --torch-rows=40 --skip-jacfwd --skip-torch]`:
//! `--cols` times ours on the first N columns only and extrapolates;
//! `--batch` is the number of tangents per GPU batch.
//! PRIOR_TORCH_THREADS sets torch's thread count (default: all cores).

use std::time::Instant;

use prior_algos::jacobian::{self, At};
use prior_gpu::Gpu;
use prior_models::conv_chain::ConvChain;
use prior_models::tiling::Planar;
use prior_models::{blob::WeightBlob, Denoiser};
use prior_testkit::bench::{python_timing, torch_device};
use prior_testkit::paths;

fn arg(name: &str) -> Option<String> {
    std::env::args().find_map(|a| a.strip_prefix(&format!("--{name}=")).map(str::to_string))
}

fn main() {
    let gpu = pollster::block_on(Gpu::from_env()).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let size: usize = arg("size").and_then(|v| v.parse().ok()).unwrap_or(40);
    let n = size * size;
    let cols: usize = arg("cols")
        .and_then(|v| v.parse().ok())
        .unwrap_or(n)
        .clamp(1, n);
    let torch_rows: usize = arg("torch-rows")
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
        .clamp(1, n);
    let skip_jacfwd = std::env::args().any(|a| a == "--skip-jacfwd");
    let skip_torch = std::env::args().any(|a| a == "--skip-torch");
    let batch: usize = arg("batch").and_then(|v| v.parse().ok()).unwrap_or(128);
    let ckpt = paths::shared().join("checkpoints/universal_inverse_problem/BSD400_gray/model.pt");
    let blob = WeightBlob::load(&ckpt).expect("checkpoint");
    let model = ConvChain::from_blob(&gpu, &blob).expect("model");
    let flops_per_jvp = 2.0
        * model
            .net
            .layers
            .iter()
            .map(|l| l.macs(1, size, size))
            .sum::<u64>() as f64;

    // A noisy crop (σ = 25) of Set12/02, the same input on both sides (written to a temp .npy for Python).
    let clean = prior_cli::io::read_input(paths::shared().join("images/gray/Set12/02.png"))
        .expect("Set12/02");
    let mut crop = Vec::with_capacity(n);
    for y in 100..100 + size {
        crop.extend((120..120 + size).map(|x| clean.get(0, y, x)));
    }
    let noisy = jacobian::add_noise(&crop, 25.0, 0);
    let npy = std::env::temp_dir().join(format!("prior-bench-jacobian-{}.npy", std::process::id()));
    prior_cli::io::write_npy(&npy, &[1, 1, size, size], &noisy).expect("temp npy");

    println!("adapter: {} ({})", gpu.adapter.name, gpu.adapter.backend);
    println!(
        "BF-CNN BSD400_gray, {size}x{size} noisy crop: full Jacobian = {n} JVPs × {:.2} GFLOP = {:.0} GFLOP",
        flops_per_jvp / 1e9,
        n as f64 * flops_per_jvp / 1e9
    );
    let at = At::new(
        &gpu,
        &model as &dyn Denoiser,
        Planar {
            c: 1,
            h: size,
            w: size,
            data: &noisy,
        },
        batch,
        None,
    )
    .unwrap();
    // Warm-up: pipelines and buffers.
    let warm = At::new(
        &gpu,
        &model as &dyn Denoiser,
        Planar {
            c: 1,
            h: size,
            w: size,
            data: &noisy,
        },
        8,
        None,
    )
    .unwrap();
    pollster::block_on(warm.jvp(&gpu, &vec![0.0; 8 * n])).unwrap();

    let t = Instant::now();
    let ours_secs = if cols == n {
        let j = pollster::block_on(jacobian::jacobian(&gpu, &at)).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let tr: f64 = (0..n).map(|i| j[i * n + i] as f64).sum();
        println!(
            "  prior, batched one-hot JVPs ({} per batch): {secs:.1} s (trace {tr:.3})",
            at.max_batch
        );
        secs
    } else {
        let mut e = vec![0.0f32; cols * n];
        for b in 0..cols {
            e[b * n + b] = 1.0;
        }
        pollster::block_on(at.jvp(&gpu, &e)).unwrap();
        let secs = t.elapsed().as_secs_f64() * n as f64 / cols as f64;
        println!(
            "  prior, batched one-hot JVPs: {cols} columns in {:.1} s → {secs:.1} s for {n} (extrapolated)",
            t.elapsed().as_secs_f64()
        );
        secs
    };
    println!(
        "    {:.1} JVPs/s, {:.2} GFLOP/s",
        n as f64 / ours_secs,
        n as f64 * flops_per_jvp / ours_secs / 1e9
    );

    if skip_torch {
        let _ = std::fs::remove_file(&npy);
        return;
    }
    let golden = paths::golden().join("make_golden.py");
    let prelude = format!(
        r#"
import os, time, importlib.util, numpy as np, torch
spec = importlib.util.spec_from_file_location("mg", {golden:?}); mg = importlib.util.module_from_spec(spec); spec.loader.exec_module(mg)
torch.set_num_threads(int(os.environ.get("PRIOR_TORCH_THREADS", os.cpu_count() or 1)))
dev = os.environ.get("PRIOR_TORCH_DEVICE", "cpu")
sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
sd = torch.load({ckpt:?}, map_location="cpu", weights_only=True)
net = mg.bfcnn_uip(sd).eval().to(dev)
for p in net.parameters(): p.requires_grad_(False)
y0 = torch.from_numpy(np.load({npy:?})).to(dev)
n = y0.numel()
den = lambda z: z - net(z)
def full_jacobian(chunk):
    rows = []
    for s in range(0, n, chunk):
        k = min(chunk, n - s)
        yb = y0.repeat(k, 1, 1, 1).requires_grad_(True)
        out = den(yb)
        e = torch.zeros(k, n, device=dev)
        e[torch.arange(k), torch.arange(s, s + k)] = 1
        (g,) = torch.autograd.grad(out, yb, e.reshape(out.shape))
        rows.append(g.reshape(k, n))
    return torch.cat(rows)
"#
    );
    let report = |name: &str, r: Result<(f64, f64), String>, note: &str| match r {
        Ok((secs, measured)) => println!(
            "  {name:<44} {secs:>8.1} s  (prior takes {:.2}x this time){note}{}",
            ours_secs / secs,
            if measured != secs {
                format!(", measured {measured:.1} s")
            } else {
                String::new()
            }
        ),
        Err(e) => println!("  {name:<44} skipped ({e})"),
    };
    let row_by_row = format!(
        r#"{prelude}
y = y0.clone().requires_grad_(True)
out = den(y).reshape(-1)
R = {torch_rows}
torch.autograd.grad(out[0], y, retain_graph=True)
sync(); t = time.perf_counter()
for i in range(R):
    (g,) = torch.autograd.grad(out[i], y, retain_graph=True)
sync(); s = time.perf_counter() - t
print(s * n / R, s)
"#
    );
    report(
        &format!("pytorch {} autograd, row by row", torch_device()),
        python_timing(&row_by_row),
        &format!(" [{torch_rows} rows timed, extrapolated to {n}]"),
    );
    let batched = format!(
        r#"{prelude}
if dev != "cpu": full_jacobian(64); sync()  # CUDA: kernels and allocator warm
t = time.perf_counter()
J = full_jacobian(64)
sync(); s = time.perf_counter() - t
print(s, s)
"#
    );
    report(
        &format!(
            "pytorch {} autograd, batched VJPs (64 rows)",
            torch_device()
        ),
        python_timing(&batched),
        "",
    );
    if skip_jacfwd {
        println!("  pytorch torch.func.jacfwd                    skipped (--skip-jacfwd)");
    } else {
        let jacfwd = format!(
            r#"{prelude}
from torch.func import jacfwd
sync(); t = time.perf_counter()
J = jacfwd(den)(y0)
sync(); s = time.perf_counter() - t
print(s, s)
"#
        );
        report(
            &format!("pytorch {} torch.func.jacfwd (one vmap)", torch_device()),
            python_timing(&jacfwd),
            "",
        );
    }
    let _ = std::fs::remove_file(&npy);
}
