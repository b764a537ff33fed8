//! Benchmark: one training step of learned measurements
//! (`prior_algos::olm::loss_and_grad`: the unrolled sampler forward and its
//! reverse pass, ∂L/∂M) on 28×28 MNIST digits with the mnist BF-CNN, ours
//! against PyTorch autograd of the same computation in the same run
//! (`benches/olm_torch.py`; CPU, or CUDA with `PRIOR_TORCH_DEVICE=cuda`).
//!
//! `cargo bench --bench olm [-- --batch=2 --average=1 --unroll=4 --count=16 --reps=2 --skip-torch]`
//! PRIOR_TORCH_THREADS sets torch's thread count (default: all cores).

use std::time::Instant;

use prior_algos::olm::{self, Rows, Setup, Unroll};
use prior_gpu::Gpu;
use prior_testkit::bench::python_timing;
use prior_testkit::paths;

fn arg(name: &str, default: usize) -> usize {
    std::env::args()
        .find_map(|a| a.strip_prefix(&format!("--{name}=")).map(str::to_string))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let gpu = pollster::block_on(Gpu::from_env()).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let (batch, average, unroll, count, reps) = (
        arg("batch", 2),
        arg("average", 1),
        arg("unroll", 4),
        arg("count", 16),
        arg("reps", 2).max(1),
    );
    let ckpt = paths::shared().join("checkpoints/universal_inverse_problem/mnist_gray/model.pt");
    let idx = paths::shared().join("images/mnist/t10k-images-idx3-ubyte.gz");
    let model = prior_models::load_path(&gpu, &ckpt).expect("mnist_gray checkpoint");
    let digits = prior_cli::cmd::logp::read_idx_images(&idx, Some(0..164), 1).expect("MNIST");
    let images: Vec<Vec<f32>> = digits[..batch].iter().map(|d| d.data.clone()).collect();
    let held: Vec<Vec<f32>> = digits[100..164].iter().map(|d| d.data.clone()).collect();
    let mean = olm::mean_image(&held).unwrap();
    let setup = Setup {
        model: model.as_ref(),
        dims: (1, 28, 28),
        mean: &mean,
    };
    let m = Rows::random(count, 784, 0).unwrap();
    let cfg = Unroll {
        steps: unroll,
        average,
        ..Unroll::default()
    };
    println!("adapter: {} ({})", gpu.adapter.name, gpu.adapter.backend);
    println!(
        "one training step: {batch} digits x {average} runs, {unroll} unrolled steps, n = {count} (28x28, mnist BF-CNN)"
    );
    let step =
        || pollster::block_on(olm::loss_and_grad(&gpu, &setup, &m, &images, &cfg, 0)).unwrap();
    step(); // warm-up: pipelines, buffers
    let t = Instant::now();
    for _ in 0..reps {
        step();
    }
    let ours = t.elapsed().as_secs_f64() / reps as f64;
    let runs = (batch * average) as f64;
    // Network passes: (unroll + 1) batched forwards, plus one VJP per run and
    // step (each a forward and a backward, ~3 forwards).
    let per_run_step = ours / (runs * (unroll + 1) as f64);
    println!(
        "    prior    {ours:>9.3} s/step   ({:.1} ms per run and unrolled step)",
        per_run_step * 1e3
    );
    if std::env::args().any(|a| a == "--skip-torch") {
        return;
    }
    let script = paths::repo().join("benches/olm_torch.py");
    let code = format!(
        "import runpy, sys; sys.argv = [{script:?}, '--ckpt', {ckpt:?}, '--mnist', {idx:?}, '--batch', '{batch}', '--average', '{average}', '--unroll', '{unroll}', '--count', '{count}', '--reps', '{reps}']; runpy.run_path({script:?}, run_name='__main__')",
        script = script.display().to_string(),
        ckpt = ckpt.display().to_string(),
        idx = idx.display().to_string(),
    );
    match python_timing(&code) {
        Ok((s, _)) => println!(
            "    pytorch  {s:>9.3} s/step   (prior / pytorch = {:.2}x the time; device {})",
            ours / s,
            prior_testkit::bench::torch_device()
        ),
        Err(e) => println!("    pytorch: skipped ({e})"),
    }
}
