//! The β effect, with the energy model as the judge: Kadkhodaie & Simoncelli
//! (2021) report that injecting more noise (smaller β) in the coarse-to-fine
//! sampler gives more probable samples. This draws `--samples` digits
//! (default 16, 28×28, seed 0) from the `universal_inverse_problem/mnist_gray`
//! BF-CNN at each β of `--betas` (default 0.01,0.05,0.2,0.5,1), zero-pads
//! them to 32×32 (the fixture's convention: 2 pixels on every side), scores
//! them with the dual-score-matching energy fixture
//! (`dual_score_matching/mnist32_gray_tiny`, log Z = 3551.7 nats, its
//! README's PyTorch float64 calibration) and prints the mean ± sd of bits/dim
//! per β, next to held-out digits 9000..9000+N scored the same way. Writes
//! `target/beta_effect/{beta_effect.png,samples_beta_<β>.png,results.json}`.
//!
//!     cargo run --release -p prior-cli --example beta_effect -- [--betas 0.01,0.05,0.2,0.5,1] [--samples 16] [--seed 0] [--max-iters 3000]

use std::path::{Path, PathBuf};

use prior_algos::plot::{encode_png, image_grid, LinePlot, Scaling, Series, Tile, PALETTE};
use prior_algos::sampler::{self, SamplerParams};
use prior_gpu::{Gpu, Shape};
use prior_models::blob::WeightBlob;
use prior_models::energy::{EnergyUNet, Likelihood};
use prior_models::Noise;

/// log Z of the fixture at t = 10³ (its README: PyTorch float64, 1000 held-out digits).
const LOG_Z: f64 = 3551.7;

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// Bits/dim of 32×32 planar images (n of them, `[n·1024]`) under the energy model.
fn bits_per_dim(
    gpu: &Gpu,
    model: &EnergyUNet,
    x: &[f32],
    n: usize,
) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let y = gpu.upload(Shape::new(n, 32, 32, 1), x);
    let u = pollster::block_on(model.energies(gpu, &y, &gpu.zeros(Shape::new(n, 1, 1, 1))))?;
    Ok(u.iter()
        .map(|&e| Likelihood::new(e, LOG_Z, 1024).bits_per_dim)
        .collect())
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    (
        m,
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt(),
    )
}

fn pad28(x: &[f32], n: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n * 1024];
    for s in 0..n {
        for r in 0..28 {
            for c in 0..28 {
                out[s * 1024 + (r + 2) * 32 + c + 2] = x[s * 784 + r * 28 + c];
            }
        }
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut betas = vec![0.01f32, 0.05, 0.2, 0.5, 1.0];
    let mut n = 16usize;
    let mut seed = 0u64;
    let mut max_iters = 3000usize;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--betas" => {
                betas = val()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--samples" => n = val()?.parse()?,
            "--seed" => seed = val()?.parse()?,
            "--max-iters" => max_iters = val()?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/beta_effect");
    std::fs::create_dir_all(&out_dir)?;
    let gpu = pollster::block_on(Gpu::from_env())?;
    let cnn = prior_models::load_path(
        &gpu,
        &shared().join("checkpoints/universal_inverse_problem/mnist_gray/model.pt"),
    )?;
    let energy_blob = WeightBlob::load(
        shared().join("checkpoints/dual_score_matching/mnist32_gray_tiny/model.pth.tar"),
    )?;
    let energy = EnergyUNet::from_blob(&gpu, &energy_blob)?;

    let digits = prior_cli::cmd::logp::read_idx_images(
        &shared().join("images/mnist/t10k-images-idx3-ubyte.gz"),
        Some(9000..9000 + n),
        8,
    )?;
    let held: Vec<f32> = digits.iter().flat_map(|d| d.data.clone()).collect();
    let (held_m, held_sd) = mean_sd(&bits_per_dim(&gpu, &energy, &held, n)?);
    println!(
        "held-out digits 9000..{}: {held_m:.3} ± {held_sd:.3} bits/dim",
        9000 + n
    );

    let mut rows = Vec::new();
    for &beta in &betas {
        let params = SamplerParams {
            beta,
            seed,
            max_iters,
            ..Default::default()
        };
        let shape = Shape::new(n, 28, 28, 1);
        let run = pollster::block_on(sampler::run(
            &gpu,
            shape,
            None,
            &params,
            |g: &Gpu, y: &prior_gpu::Tensor, noise: Noise<'_>| cnn.residual(g, y, noise),
            |_| {},
        ))?;
        let x = pollster::block_on(gpu.read(&run.x))?; // channels-last = planar for one channel
        let bpd = bits_per_dim(&gpu, &energy, &pad28(&x, n), n)?;
        let (m, sd) = mean_sd(&bpd);
        let iters = run.iterations.iter().sum::<usize>() as f64 / n as f64;
        println!(
            "β = {beta}: {m:.3} ± {sd:.3} bits/dim ({iters:.0} iterations on average, {:.1} s)",
            run.seconds
        );
        let tiles: Vec<Tile> = (0..n)
            .map(|s| Tile {
                c: 1,
                h: 28,
                w: 28,
                data: x[s * 784..(s + 1) * 784].to_vec(),
                label: format!("{:.2}", bpd[s]),
            })
            .collect();
        std::fs::write(
            out_dir.join(format!("samples_beta_{beta}.png")),
            encode_png(&image_grid(&tiles, 8, 3, Scaling::Unit)),
        )?;
        rows.push(
            serde_json::json!({"beta": beta, "mean_bits_per_dim": m, "sd": sd, "bits_per_dim": bpd,
                                     "mean_iterations": iters, "seconds": run.seconds}),
        );
    }
    let points: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| {
            (
                r["beta"].as_f64().unwrap(),
                r["mean_bits_per_dim"].as_f64().unwrap(),
            )
        })
        .collect();
    let (lo, hi) = (
        betas.iter().copied().fold(f32::INFINITY, f32::min) as f64,
        betas.iter().copied().fold(0.0f32, f32::max) as f64,
    );
    let plot = LinePlot {
        title: format!("MNIST BF-CNN SAMPLES JUDGED BY THE ENERGY MODEL (N={n})"),
        x_label: "BETA".into(),
        y_label: "MEAN BITS/DIM".into(),
        log_x: true,
        log_y: false,
        series: vec![
            Series {
                label: "BF-CNN SAMPLES".into(),
                points,
                color: PALETTE[0],
                markers: true,
            },
            Series {
                label: "HELD-OUT DIGITS".into(),
                points: vec![(lo, held_m), (hi, held_m)],
                color: PALETTE[1],
                markers: false,
            },
        ],
    };
    std::fs::write(
        out_dir.join("beta_effect.png"),
        encode_png(&plot.render(640, 400)),
    )?;
    let report = serde_json::json!({"samples": n, "seed": seed, "log_z": LOG_Z, "held_out": {"mean": held_m, "sd": held_sd}, "betas": rows});
    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!("wrote {}", out_dir.display());
    Ok(())
}
