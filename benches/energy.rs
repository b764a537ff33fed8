//! Benchmark: the dual-score-matching energy model (the width-16 MNIST
//! checkpoint in ../shared/checkpoints/dual_score_matching/mnist32_gray_tiny)
//! against PyTorch in the same run (CPU, or CUDA with `PRIOR_TORCH_DEVICE=cuda`):
//!  * log p of a batch of 64 held-out digits (U(x, 0), one forward pass);
//!  * one score evaluation of one digit at t = 0.01: U, ∇_yU (reverse pass)
//!    and ∂U/∂t (forward-mode pass in t; PyTorch: one autograd backward for
//!    both);
//!  * the full 1024×1024 Jacobian of the denoiser x̂ = y − t·∇_yU at one
//!    noisy digit (t = 0.01): 1024 Hessian-vector products in batches of
//!    128 (prior: forward over reverse; PyTorch: batched double backward).
//!
//! The PyTorch side builds the model from tests/golden/make_golden.py's
//! definition and loads the same checkpoint; it uses every CPU thread.
//! `cargo bench --bench energy [-- --batch=N]`.

use std::time::Instant;

use prior_algos::jacobian::{self, At};
use prior_gpu::{Gpu, Shape};
use prior_models::blob::WeightBlob;
use prior_models::energy::EnergyUNet;
use prior_models::tiling::Planar;
use prior_testkit::bench::{python_timing, torch_device};
use prior_testkit::paths;

fn time<F: FnMut()>(mut f: F, reps: usize) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() / reps as f64
}

fn main() {
    let gpu = pollster::block_on(Gpu::from_env()).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let args: Vec<String> = std::env::args().collect();
    let batch: usize = args
        .iter()
        .find_map(|a| a.strip_prefix("--batch=").and_then(|v| v.parse().ok()))
        .unwrap_or(64);
    println!("adapter: {} ({})", gpu.adapter.name, gpu.adapter.backend);
    let ck =
        paths::shared().join("checkpoints/dual_score_matching/mnist32_gray_tiny/model.pth.tar");
    let blob = WeightBlob::load(&ck).expect("the energy checkpoint");
    let model = EnergyUNet::from_blob(&gpu, &blob).expect("model");
    let mnist = paths::shared().join("images/mnist/t10k-images-idx3-ubyte.gz");
    let digits =
        prior_cli::cmd::logp::read_idx_images(&mnist, Some(9000..9000 + batch), 8).expect("mnist");
    let flat: Vec<f32> = digits.iter().flat_map(|d| d.data.clone()).collect();
    let x = gpu.upload(Shape::new(batch, 32, 32, 1), &flat);
    let t0 = gpu.zeros(Shape::new(batch, 1, 1, 1));
    let logp = time(
        || drop(pollster::block_on(model.energies(&gpu, &x, &t0)).unwrap()),
        3,
    );
    let one = gpu.upload(Shape::new(1, 32, 32, 1), &flat[..1024]);
    let score = time(
        || {
            let e = model
                .evaluate(
                    &gpu,
                    &one,
                    &gpu.upload(Shape::new(1, 1, 1, 1), &[0.01]),
                    true,
                    true,
                )
                .unwrap();
            pollster::block_on(gpu.read(e.grad.as_ref().unwrap())).unwrap();
            pollster::block_on(gpu.read(e.dudt.as_ref().unwrap())).unwrap();
        },
        3,
    );
    // Full Jacobian of the denoiser at the golden noisy digit (t = 0.01).
    let noisy = prior_cli::io::read_npy(paths::golden().join("jac_energy_trained/input.npy"))
        .expect("golden input")
        .data;
    let at = At::new(
        &gpu,
        &model,
        Planar {
            c: 1,
            h: 32,
            w: 32,
            data: &noisy,
        },
        128,
        Some(0.01),
    )
    .expect("At");
    let started = Instant::now();
    let j = pollster::block_on(jacobian::jacobian(&gpu, &at)).expect("jacobian");
    let full = started.elapsed().as_secs_f64();
    let trace: f64 = (0..1024).map(|i| j[i * 1024 + i] as f64).sum();
    let golden = paths::golden();
    let code = format!(
        r#"
import os, sys, time, math, gzip, numpy as np, torch
sys.path.insert(0, {golden:?})
import make_golden as mg
torch.set_num_threads(os.cpu_count())
dev = os.environ.get("PRIOR_TORCH_DEVICE", "cpu")
sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
sd, _ = mg.load_checkpoint("dual_score_matching/mnist32_gray_tiny/model.pth.tar")
m = mg.energy_model_from(sd).eval().to(dev)
d = mg.mnist()[9000:9000 + {batch}].astype(np.float32) / np.float32(255)
x = torch.from_numpy(np.pad(d, ((0, 0), (2, 2), (2, 2)))[:, None].copy()).to(dev)
def logp():
    with torch.no_grad():
        return 0.5 * (x * m(x, torch.zeros({batch}, device=dev))).sum(dim=(1, 2, 3))
def score():
    return mg.energy_eval(m, x[:1], torch.full((1,), 0.01, device=dev))
def tm(f, reps=3):
    f(); sync(); t = time.perf_counter()
    for _ in range(reps): f()
    sync(); return (time.perf_counter() - t) / reps
print(tm(logp), tm(score))
"#
    );
    let code_jac = format!(
        r#"
import os, sys, time, numpy as np, torch
sys.path.insert(0, {golden:?})
import make_golden as mg
torch.set_num_threads(os.cpu_count())
dev = os.environ.get("PRIOR_TORCH_DEVICE", "cpu")
sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
sd, _ = mg.load_checkpoint("dual_score_matching/mnist32_gray_tiny/model.pth.tar")
m = mg.energy_model_from(sd).eval().to(dev)
y = torch.from_numpy(np.load(os.path.join({golden:?}, "jac_energy_trained", "input.npy")))[None].to(dev)
t = 0.01
def full():
    rows = []
    for s in range(0, 1024, 128):
        yb = y.repeat(128, 1, 1, 1).requires_grad_(True)
        U = 0.5 * (yb * m(yb, torch.full((128,), t, device=dev))).sum()
        (g,) = torch.autograd.grad(U, yb, create_graph=True)
        e = torch.zeros(128, 1024, device=dev)
        e[torch.arange(128), torch.arange(s, s + 128)] = 1
        (h,) = torch.autograd.grad(g, yb, e.reshape(yb.shape))
        rows.append(e - t * h.reshape(128, 1024).detach())
    return torch.cat(rows)
if dev != "cpu": full(); sync()
t0 = time.perf_counter(); J = full(); sync(); el = time.perf_counter() - t0
print(el, float(torch.trace(J.double())))
"#
    );
    println!(
        "energy UNet width {} on 32x32 MNIST digits",
        model.base_width()
    );
    println!(
        "  {:<44} {:>10} {:>12}",
        "",
        "prior",
        format!("pytorch {}", torch_device())
    );
    match python_timing(&code) {
        Ok((tl, ts)) => {
            println!(
                "  {:<44} {:>8.1} ms {:>10.1} ms   ({:.2}x)",
                format!("log p of {batch} digits (U(x,0))"),
                logp * 1e3,
                tl * 1e3,
                tl / logp
            );
            println!(
                "  {:<44} {:>8.1} ms {:>10.1} ms   ({:.2}x)",
                "score of 1 digit (U, grad_y U, dU/dt)",
                score * 1e3,
                ts * 1e3,
                ts / score
            );
        }
        Err(e) => {
            println!(
                "  log p of {batch} digits: {:.1} ms; score of 1 digit: {:.1} ms",
                logp * 1e3,
                score * 1e3
            );
            println!("  pytorch: skipped ({e})");
        }
    }
    let label = "denoiser Jacobian 1024x1024 (1024 H v)";
    match python_timing(&code_jac) {
        Ok((tj, tr)) => {
            println!(
                "  {label:<44} {:>9.2} s {:>11.2} s   ({:.2}x)",
                full,
                tj,
                tj / full
            );
            println!("  trace of J: prior {trace:.4}, pytorch {tr:.4}");
        }
        Err(e) => println!("  {label}: {full:.2} s (trace {trace:.4}); pytorch: skipped ({e})"),
    }
}
