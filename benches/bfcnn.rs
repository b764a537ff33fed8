//! Benchmark (b): the whole 20-layer BF-CNN (universal_inverse_problem
//! BSD400_gray checkpoint) on a 256×256 gray image, ours against PyTorch CPU
//! (or CUDA with PRIOR_TORCH_DEVICE=cuda) in the same run, loading the same
//! checkpoint. Prints GFLOP/s, milliseconds and the ratio.
//! `cargo bench --bench bfcnn [-- --size=N]`.

use prior_models::Noise;
use std::time::Instant;

use prior_gpu::{Gpu, Shape};
use prior_models::conv_chain::ConvChain;
use prior_models::{blob::WeightBlob, Denoiser};
use prior_testkit::bench::{python_timing, report_line};
use prior_testkit::paths;

fn main() {
    let gpu = pollster::block_on(Gpu::from_env()).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let size: usize = std::env::args()
        .find_map(|a| a.strip_prefix("--size=").and_then(|v| v.parse().ok()))
        .unwrap_or(256);
    let ckpt = paths::shared().join("checkpoints/universal_inverse_problem/BSD400_gray/model.pt");
    let blob = WeightBlob::load(&ckpt).expect("checkpoint");
    let model = ConvChain::from_blob(&gpu, &blob).expect("model");
    let macs: u64 = model.net.layers.iter().map(|l| l.macs(1, size, size)).sum();
    let flops = 2.0 * macs as f64;
    println!("adapter: {} ({})", gpu.adapter.name, gpu.adapter.backend);
    println!(
        "BF-CNN 20 layers on {size}x{size} gray: {:.2} GFLOP per call",
        flops / 1e9
    );
    let x = gpu.upload(Shape::new(1, size, size, 1), &vec![0.5; size * size]);
    let run = || {
        let y = model.denoise(&gpu, &x, Noise::Blind).unwrap();
        pollster::block_on(gpu.read(&y)).unwrap();
    };
    run();
    let reps = 3;
    let t = Instant::now();
    for _ in 0..reps {
        run();
    }
    let secs = t.elapsed().as_secs_f64() / reps as f64;
    let ours = flops / secs / 1e9;
    report_line("prior (one submission)", ours, secs, ours);
    let golden = paths::golden().join("make_golden.py");
    let code = format!(
        r#"
import os, sys, time, importlib.util, torch
dev = os.environ.get("PRIOR_TORCH_DEVICE", "cpu")
spec = importlib.util.spec_from_file_location("mg", {golden:?}); mg = importlib.util.module_from_spec(spec); spec.loader.exec_module(mg)
sd = torch.load({ckpt:?}, map_location="cpu", weights_only=True)
net = mg.bfcnn_uip(sd).to(dev).eval()
x = torch.full((1, 1, {size}, {size}), 0.5, device=dev)
def sync():
    if dev == "cuda": torch.cuda.synchronize()
with torch.no_grad():
    for _ in range(2): net(x)
    sync(); reps = 5; t = time.perf_counter()
    for _ in range(reps): net(x)
    sync(); s = (time.perf_counter() - t) / reps
print({flops} / s / 1e9, s)
"#
    );
    match python_timing(&code) {
        Ok((gf, s)) => report_line("pytorch", gf, s, ours),
        Err(e) => println!("  pytorch: skipped ({e})"),
    }
}
