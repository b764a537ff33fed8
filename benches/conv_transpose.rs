//! Benchmark: the transposed convolutions of the UNets on lavapipe (or any
//! adapter) against PyTorch CPU in the same run, and against the strided /
//! same-size conv2d of equal arithmetic for scale:
//! * small UNet conv7: ConvTranspose 64→64, 4×4, stride 2, padding 1, on a
//!   128×128 input (256×256 output);
//! * UNet up-sampling: ConvTranspose 128→64, 2×2, stride 2, on 128×128.
//!
//! FLOPs count every tap of the full transposed output (2·h·w·cin·cout·k²),
//! as PyTorch computes them. `cargo bench --bench conv_transpose [-- --size=N]`.

use std::time::Instant;

use prior_gpu::{Gpu, Shape};
use prior_ops::conv2d::{Conv2d, ConvConfig, Epilogue};
use prior_ops::conv_transpose2d::ConvTranspose2d;
use prior_testkit::bench::{python_timing, report_line, torch_device};

fn time(mut f: impl FnMut()) -> f64 {
    f();
    let reps = 3;
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() / reps as f64
}

fn torch(
    size: usize,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> Result<(f64, f64), String> {
    python_timing(&format!(
        r#"
import os, time, torch
torch.set_num_threads(int(os.environ.get("PRIOR_TORCH_THREADS", "2")))
dev = os.environ.get("PRIOR_TORCH_DEVICE", "cpu")
sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
x = torch.randn(1, {cin}, {size}, {size}, device=dev)
m = torch.nn.ConvTranspose2d({cin}, {cout}, {k}, stride={stride}, padding={pad}, bias=False).to(dev)
with torch.no_grad():
    for _ in range(2): m(x)
    sync(); reps = 10; t = time.perf_counter()
    for _ in range(reps): m(x)
    sync(); s = (time.perf_counter() - t) / reps
print(2 * {cin} * {cout} * {k} * {k} * {size} * {size} / s / 1e9, s)
"#
    ))
}

fn main() {
    let gpu = pollster::block_on(Gpu::from_env()).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let args: Vec<String> = std::env::args().collect();
    let size: usize = args
        .iter()
        .find_map(|a| a.strip_prefix("--size=").and_then(|v| v.parse().ok()))
        .unwrap_or(128);
    println!("adapter: {} ({})", gpu.adapter.name, gpu.adapter.backend);
    for (cin, cout, k, stride, pad) in [
        (64usize, 64usize, 4usize, 2usize, 1usize),
        (128, 64, 2, 2, 0),
    ] {
        let s = Shape::new(1, size, size, cin);
        let x = gpu.upload(s, &vec![0.5; s.numel()]);
        let w: Vec<f32> = (0..cin * cout * k * k)
            .map(|i| ((i % 17) as f32 - 8.0) * 0.01)
            .collect();
        let cfg = ConvConfig::new(cin, cout, k, k).stride(stride).pad(pad);
        let t = ConvTranspose2d::new(&gpu, &w, cfg);
        let flops = 2.0 * t.macs(1, size, size) as f64;
        let secs = time(|| {
            let y = t.forward(&gpu, &x, Epilogue::default()).unwrap();
            pollster::block_on(gpu.read(&y)).unwrap();
        });
        // The stride-1 conv with the same multiply-adds per call, for scale.
        let eq = Conv2d::new(
            &gpu,
            &vec![0.01; cout * cin * 9],
            ConvConfig::same(cin, cout, 3, 1),
        );
        let side = ((flops / 2.0 / (cin * cout * 9) as f64).sqrt()) as usize;
        let xe = gpu.upload(
            Shape::new(1, side, side, cin),
            &vec![0.5; side * side * cin],
        );
        let eflops = 2.0 * eq.macs(1, side, side) as f64;
        let esecs = time(|| {
            let y = eq.forward(&gpu, &xe, Epilogue::default()).unwrap();
            pollster::block_on(gpu.read(&y)).unwrap();
        });
        println!("conv_transpose {cin}->{cout} {k}x{k} stride {stride} pad {pad} on {size}x{size}: {:.2} GFLOP per call", flops / 1e9);
        let ours = flops / secs / 1e9;
        report_line("prior conv_transpose2d", ours, secs, ours);
        report_line(
            &format!("prior conv2d 3x3 on {side}x{side}"),
            eflops / esecs / 1e9,
            esecs,
            ours,
        );
        match torch(size, cin, cout, k, stride, pad) {
            Ok((gf, s)) => report_line(&format!("pytorch {}", torch_device()), gf, s, ours),
            Err(e) => println!("  pytorch {}: skipped ({e})", torch_device()),
        }
    }
}
