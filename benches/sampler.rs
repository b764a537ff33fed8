//! Benchmark of the coarse-to-fine sampler with the BSD300_color BF-CNN,
//! ours against a PyTorch implementation of the same loop (the authors'
//! `univ_inv_sol`, same checkpoint through tests/golden/make_golden.py's
//! BFStack) in the same run:
//!  (a) one inpainting iteration on the 60×60×3 demo crop (denoiser call,
//!      M Mᵀ, σ_t, γ_t and the noisy update; ours also reads σ_t back),
//!      from the difference of runs with 6 and 1 iterations;
//!  (b) a full 40×40×3 synthesis (β = 0.5, σ₀ = 1, σ_L = 0.01, h₀ = 0.01)
//!      to convergence: seconds and iterations.
//! PyTorch runs on the CPU (or CUDA with PRIOR_TORCH_DEVICE=cuda) with its
//! default thread count. `cargo bench --bench sampler`.
//!
//! Measured (lavapipe, 2 shared cores, vs PyTorch 2.15 CPU in the same run):
//! one 60×60×3 inpainting iteration 498 ms vs 25 ms; 40×40×3 synthesis
//! 5.65 s / 46 iterations (123 ms each) vs 0.54 s / 45 (12 ms each): the
//! software Vulkan driver's convolutions are the whole difference (the
//! sampler's own kernels are a few launches per iteration).

use prior_models::Noise;
use std::time::Instant;

use prior_algos::measure::{self, Task};
use prior_algos::sampler::{run, Problem, SamplerParams};
use prior_gpu::{Gpu, Shape, Tensor};
use prior_testkit::bench::python_timing;
use prior_testkit::paths;

fn main() {
    let gpu = pollster::block_on(Gpu::from_env()).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let ckpt = paths::shared().join("checkpoints/universal_inverse_problem/BSD300_color/model.pt");
    let model = prior_models::load_path(&gpu, &ckpt).expect("BSD300_color checkpoint");
    println!("adapter: {} ({})", gpu.adapter.name, gpu.adapter.backend);
    let f = |g: &Gpu, y: &Tensor, n: Noise<'_>| model.residual(g, y, n);

    // (a) one inpainting iteration, 60×60×3.
    let (h, w, c) = (60, 60, 3);
    let shape = Shape::new(1, h, w, c);
    let op = measure::build(
        &gpu,
        &Task::InpaintRect {
            top: 25,
            left: 15,
            height: 20,
            width: 20,
        },
        (h, w, c),
        0,
    )
    .unwrap();
    let x = gpu.upload(
        shape,
        &(0..h * w * c)
            .map(|i| (i % 17) as f32 / 17.0)
            .collect::<Vec<_>>(),
    );
    let x_c = op.mt(&gpu, &x).unwrap();
    let time_iters = |k: usize| {
        let p = SamplerParams {
            max_iters: k,
            ..Default::default()
        };
        let t = Instant::now();
        pollster::block_on(run(
            &gpu,
            shape,
            Some(Problem {
                op: op.as_ref(),
                x_c: &x_c,
            }),
            &p,
            f,
            |_| {},
        ))
        .unwrap();
        t.elapsed().as_secs_f64()
    };
    time_iters(2); // warm-up: pipelines, buffers
    let ours_iter = (time_iters(6) - time_iters(1)) / 5.0;

    // (b) full 40×40 synthesis.
    let p = SamplerParams {
        beta: 0.5,
        max_iters: 3000,
        ..Default::default()
    };
    let out = pollster::block_on(run(&gpu, Shape::new(1, 40, 40, 3), None, &p, f, |_| {})).unwrap();
    let (ours_synth, ours_synth_it) = (out.seconds, out.iterations[0]);

    let golden = paths::golden().join("make_golden.py");
    let prelude = format!(
        r#"
import os, time, importlib.util, numpy as np, torch
dev = os.environ.get("PRIOR_TORCH_DEVICE", "cpu")
spec = importlib.util.spec_from_file_location("mg", {golden:?}); mg = importlib.util.module_from_spec(spec); spec.loader.exec_module(mg)
net = mg.bfcnn_uip(torch.load({ckpt:?}, map_location="cpu", weights_only=True)).to(dev).eval()
def sync():
    if dev == "cuda": torch.cuda.synchronize()
def sampler(shape, mask, x_c, beta, max_iters, h0=0.01, sig0=1.0, sigL=0.01):
    # The authors' univ_inv_sol with M = M^T = mask (mask None: synthesis).
    torch.manual_seed(0)
    N = np.prod(shape)
    e = torch.ones(shape, device=dev)
    Mxc = mask * x_c if mask is not None else 0 * e
    P = (lambda v: mask * v) if mask is not None else (lambda v: 0 * v)
    y = torch.normal((e - P(e)) * .5 + Mxc, sig0).unsqueeze(0)
    t = 1
    with torch.no_grad():
        while t <= max_iters:
            h = h0 * t / (1 + h0 * (t - 1))
            f = net(y)
            d = f - P(f[0]) + P(y[0]) - Mxc
            sigma = torch.norm(d) / np.sqrt(N)
            gamma = sigma * np.sqrt((1 - beta * h) ** 2 - (1 - h) ** 2)
            y = y - h * d + gamma * torch.randn(shape, device=dev)
            s = sigma.item()
            t += 1
            if s <= sigL: break
        x = y - net(y)
    sync()
    return t - 1
"#
    );
    let code_iter = format!(
        r#"{prelude}
shape = (3, 60, 60)
mask = torch.ones(shape, device=dev); mask[:, 25:45, 15:35] = 0
x = (torch.arange(3 * 60 * 60, dtype=torch.float32) % 17 / 17).reshape(60, 60, 3).permute(2, 0, 1).to(dev)
sampler(shape, mask, mask * x, 0.01, 2)
t0 = time.perf_counter(); sampler(shape, mask, mask * x, 0.01, 1); t1 = time.perf_counter() - t0
t0 = time.perf_counter(); sampler(shape, mask, mask * x, 0.01, 6); t6 = time.perf_counter() - t0
print((t6 - t1) / 5, 0)
"#
    );
    let code_synth = format!(
        r#"{prelude}
t0 = time.perf_counter(); it = sampler((3, 40, 40), None, None, 0.5, 3000); s = time.perf_counter() - t0
print(s, it)
"#
    );
    println!("(a) one inpainting iteration, 60x60x3 (denoiser + M Mt + sigma/gamma + update):");
    println!("    prior    {:>9.2} ms", ours_iter * 1e3);
    match python_timing(&code_iter) {
        Ok((s, _)) => println!(
            "    pytorch  {:>9.2} ms   (prior / pytorch = {:.2}x the time)",
            s * 1e3,
            ours_iter / s
        ),
        Err(e) => println!("    pytorch: skipped ({e})"),
    }
    println!("(b) full 40x40x3 synthesis, beta 0.5:");
    println!(
        "    prior    {ours_synth:>9.2} s, {ours_synth_it} iterations ({:.1} ms/iteration)",
        ours_synth / ours_synth_it as f64 * 1e3
    );
    match python_timing(&code_synth) {
        Ok((s, it)) => println!(
            "    pytorch  {s:>9.2} s, {it} iterations ({:.1} ms/iteration)   (prior / pytorch = {:.2}x the time per iteration)",
            s / it * 1e3,
            (ours_synth / ours_synth_it as f64) / (s / it)
        ),
        Err(e) => println!("    pytorch: skipped ({e})"),
    }
}
