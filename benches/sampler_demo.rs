//! Reproduces the universal_inverse_problem demo (Kadkhodaie & Simoncelli
//! 2021) with the BSD300_color BF-CNN on the 60×60 colour crop of
//! `color/Set14/flowers.png` (rows 210–269, columns 250–309), h₀ = 0.01,
//! σ₀ = 1, σ_L = 0.01, β = 0.01: inpainting of a 20×20 hole (crop rows
//! 25–44, columns 15–34), random pixels p = 0.2, 4× super-resolution,
//! random basis p = 0.2, spectral p = 0.2; plus 40×40 synthesis with β = 0.5.
//!
//! Each task runs as ONE batched sampler run of `--seeds=K` samples (noise
//! seeds 0..K−1 within the batch; the random operators are drawn with seed 0).
//! PSNR as the authors compute it (skimage, data range 1, results not
//! clipped): corrupted = M x_c (the naive reconstruction) against the clean
//! crop, reconstructed = y − f(y) against the clean crop.
//!
//! `cargo bench --bench sampler_demo [-- --seeds=3 --tasks=inpaint,pixels,superres,cs,spectral,synthesis]`
//!
//! Measured (lavapipe, 2 shared cores, 3 samples per batch; paper in brackets):
//!
//! | task | PSNR corrupted | PSNR reconstructed | iterations | s / iteration |
//! |---|---|---|---|---|
//! | inpaint 20×20 | 14.1 (14.0) | 23.77 ± 1.28 (26.0) | 415 ± 5 (420) | 2.01 |
//! | pixels p=0.2 | 7.1 (7.0) | 24.49 ± 0.04 (24.0) | 232 ± 4 (242) | 2.33 |
//! | superres 4× | 19.5 (20.0) | 21.90 ± 0.11 (22.0) | 215 ± 4 (215) | 2.29 |
//! | cs p=0.2 | 7.1 (7.0) | 25.59 ± 0.09 (26.0) | 236 ± 4 (238) | 4.28 |
//! | spectral p=0.2 | 25.3 (25.0) | 27.04 ± 0.11 (27.0) | 253 ± 4 (251) | 2.22 |
//! | synthesis 40×40, β=0.5 | – | – | 46 ± 1 (47) | 0.62 |
//!
//! (Inpainting fills the hole with a sample of the prior: its PSNR varies
//! from run to run; the paper reports one run.)

use prior_models::Noise;
use std::time::Instant;

use prior_algos::measure::{self, Task};
use prior_algos::sampler::{run, Problem, SamplerParams};
use prior_gpu::{Gpu, Shape, Tensor};
use prior_testkit::paths;

fn arg(name: &str) -> Option<String> {
    std::env::args().find_map(|a| a.strip_prefix(&format!("--{name}=")).map(str::to_string))
}

fn psnr(a: &[f32], b: &[f32]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (1.0 / mse).log10()
}

fn main() {
    let gpu = pollster::block_on(Gpu::from_env()).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let seeds: usize = arg("seeds").and_then(|v| v.parse().ok()).unwrap_or(3);
    let tasks =
        arg("tasks").unwrap_or_else(|| "inpaint,pixels,superres,cs,spectral,synthesis".into());
    let model_path =
        paths::shared().join("checkpoints/universal_inverse_problem/BSD300_color/model.pt");
    let model = prior_models::load_path(&gpu, &model_path).unwrap_or_else(|e| {
        eprintln!("{}: {e}", model_path.display());
        std::process::exit(1)
    });
    let img = prior_cli::io::read_input(paths::shared().join("images/color/Set14/flowers.png"))
        .expect("flowers.png");
    // Crop rows 210..270, columns 250..310, channels-last.
    let (h, w, c) = (60, 60, 3);
    let mut clean = vec![0.0f32; h * w * c];
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                clean[(y * w + x) * c + ch] = img.data[(ch * img.h + 210 + y) * img.w + 250 + x];
            }
        }
    }
    println!(
        "adapter: {} ({}); model: {}",
        gpu.adapter.name,
        gpu.adapter.backend,
        model.describe()
    );
    println!("{seeds} sample(s) per task in one batch\n");
    let paper = [
        ("inpaint", 14.0, 26.0, 420.0),
        ("pixels", 7.0, 24.0, 242.0),
        ("superres", 20.0, 22.0, 215.0),
        ("cs", 7.0, 26.0, 238.0),
        ("spectral", 25.0, 27.0, 251.0),
        ("synthesis", f64::NAN, f64::NAN, 47.0),
    ];
    let mut rows = Vec::new();
    for name in tasks.split(',') {
        let (task, dims, beta) = match name {
            "inpaint" => (
                Task::InpaintRect {
                    top: 25,
                    left: 15,
                    height: 20,
                    width: 20,
                },
                (h, w, c),
                0.01,
            ),
            "pixels" => (Task::Pixels { fraction: 0.2 }, (h, w, c), 0.01),
            "superres" => (Task::SuperRes { factor: 4 }, (h, w, c), 0.01),
            "cs" => (Task::RandomBasis { fraction: 0.2 }, (h, w, c), 0.01),
            "spectral" => (Task::Spectral { fraction: 0.2 }, (h, w, c), 0.01),
            "synthesis" => (Task::Synthesis, (40, 40, c), 0.5),
            other => {
                eprintln!("unknown task {other}");
                std::process::exit(2)
            }
        };
        let t_op = Instant::now();
        let op = measure::build(&gpu, &task, dims, 0).expect("operator");
        let op_secs = t_op.elapsed().as_secs_f64();
        let shape = Shape::new(seeds, dims.0, dims.1, dims.2);
        let one = Shape::new(1, dims.0, dims.1, dims.2);
        let xt = gpu.upload(one, &clean[..one.numel()]);
        let x_c = op.mt(&gpu, &xt).unwrap();
        let naive = pollster::block_on(gpu.read(&op.m(&gpu, &x_c).unwrap())).unwrap();
        let params = SamplerParams {
            beta,
            max_iters: 3000,
            seed: 0,
            ..Default::default()
        };
        let problem = if task == Task::Synthesis {
            None
        } else {
            Some(Problem {
                op: op.as_ref(),
                x_c: &x_c,
            })
        };
        let out = pollster::block_on(run(
            &gpu,
            shape,
            problem,
            &params,
            |g: &Gpu, y: &Tensor, n: Noise<'_>| model.residual(g, y, n),
            |_| {},
        ))
        .unwrap_or_else(|e| {
            eprintln!("{name}: {e}");
            std::process::exit(1)
        });
        let x = pollster::block_on(gpu.read(&out.x)).unwrap();
        let per = one.numel();
        // Synthesis has no reference: no PSNR.
        let psnrs: Vec<f64> = (0..seeds)
            .map(|s| {
                if task == Task::Synthesis {
                    f64::NAN
                } else {
                    psnr(&x[s * per..(s + 1) * per], &clean[..per])
                }
            })
            .collect();
        let its: Vec<f64> = out.iterations.iter().map(|v| *v as f64).collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let sd = |v: &[f64]| {
            (v.iter().map(|a| (a - mean(v)).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
        };
        let spi = out.seconds / out.loop_iterations as f64;
        let p_in = if task == Task::Synthesis {
            f64::NAN
        } else {
            psnr(&naive, &clean[..per])
        };
        let line = format!(
            "{{\"task\":\"{name}\",\"psnr_input\":{p_in:.3},\"psnr\":{:?},\"psnr_mean\":{:.3},\"iterations\":{:?},\"seconds\":{:.1},\"seconds_per_iteration\":{spi:.4},\"operator_seconds\":{op_secs:.2},\"converged\":{:?}}}",
            psnrs.iter().map(|v| (v * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
            mean(&psnrs),
            out.iterations,
            out.seconds,
            out.converged
        );
        println!("{line}");
        rows.push((
            name.to_string(),
            p_in,
            mean(&psnrs),
            sd(&psnrs),
            mean(&its),
            sd(&its),
            spi,
        ));
    }
    println!("\n| task | PSNR corrupted (paper) | PSNR reconstructed, mean ± sd over {seeds} (paper) | iterations (paper) | s / iteration (batch of {seeds}) |");
    println!("|---|---|---|---|---|");
    for (name, p_in, p, psd, it, itsd, spi) in rows {
        let pp = paper.iter().find(|r| r.0 == name).unwrap();
        println!("| {name} | {p_in:.1} ({:.1}) | {p:.2} ± {psd:.2} ({:.1}) | {it:.0} ± {itsd:.0} ({:.0}) | {spi:.3} |", pp.1, pp.2, pp.3);
    }
}
