//! Benchmark (a): the 64→64 3×3 convolution on a 256×256 image, our tiled
//! kernel against the one-output-per-invocation baseline and PyTorch CPU in
//! the same run (PyTorch is skipped with a note when python3/torch are
//! missing). Prints GFLOP/s and ratios. `cargo bench --bench conv`.

use std::time::Instant;

use prior_gpu::{Gpu, Shape};
use prior_ops::conv2d::{Conv2d, ConvConfig, ConvVariant, Epilogue};
use prior_testkit::bench::{pytorch_conv_gflops, report_line, torch_device};

fn main() {
    let gpu = pollster::block_on(Gpu::from_env()).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let args: Vec<String> = std::env::args().collect();
    let size: usize = args
        .iter()
        .find_map(|a| a.strip_prefix("--size=").and_then(|v| v.parse().ok()))
        .unwrap_or(256);
    let (c, k) = (64, 3);
    println!("adapter: {} ({})", gpu.adapter.name, gpu.adapter.backend);
    let s = Shape::new(1, size, size, c);
    let x = gpu.upload(s, &vec![0.5; s.numel()]);
    let w: Vec<f32> = (0..c * c * k * k)
        .map(|i| ((i % 17) as f32 - 8.0) * 0.01)
        .collect();
    let conv = Conv2d::new(&gpu, &w, ConvConfig::same(c, c, k, 1));
    let flops = 2.0 * conv.macs(1, size, size) as f64;
    let mut results = Vec::new();
    let auto_name = if gpu.subgroups_at_least(8) {
        "prior tiled + subgroups"
    } else {
        "prior tiled"
    };
    for (name, variant) in [
        (auto_name, ConvVariant::Auto),
        ("prior tiled, no subgroups", ConvVariant::Plain),
        ("naive 1 output/invocation", ConvVariant::Naive),
    ] {
        let run = || {
            let y = conv
                .forward(
                    &gpu,
                    &x,
                    Epilogue {
                        variant,
                        ..Default::default()
                    },
                )
                .unwrap();
            pollster::block_on(gpu.read(&y.reshape(y.shape()))).unwrap();
        };
        run();
        let reps = 3;
        let t = Instant::now();
        for _ in 0..reps {
            run();
        }
        let secs = t.elapsed().as_secs_f64() / reps as f64;
        results.push((name, flops / secs / 1e9, secs));
    }
    let torch = pytorch_conv_gflops(size, c, k);
    println!(
        "conv {c}->{c} {k}x{k} on {size}x{size}: {:.2} GFLOP per call",
        flops / 1e9
    );
    for (name, gf, secs) in &results {
        report_line(name, *gf, *secs, results[0].1);
    }
    match torch {
        Ok((gf, secs)) => report_line(
            &format!("pytorch {}", torch_device()),
            gf,
            secs,
            results[0].1,
        ),
        Err(e) => println!("pytorch {}: skipped ({e})", torch_device()),
    }
    println!(
        "ratio prior/naive: {:.1}x (no subgroups: {:.1}x)",
        results[0].1 / results[2].1,
        results[1].1 / results[2].1
    );
}
