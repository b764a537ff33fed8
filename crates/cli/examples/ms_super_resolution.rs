//! Super-resolution of `../shared/images/faces/astronaut_face_320.png` from
//! its 40×40 Haar low-pass (k = J = 3, i.e. 8×8 block means; `--k 1` or `2`
//! start from the 160×160 or 80×80 low-pass) with the 320×320 multi-scale
//! conditional model: the detail levels k−1 … 0 are sampled conditionally
//! (`prior_algos::multiscale::super_resolve`), then the PSNR against the
//! original is printed next to the no-detail baseline (the low-pass
//! replicated over its 2^k × 2^k blocks). Writes
//! `target/ms_super_resolution/{low_replicated,super_resolved}.png`.
//!
//!     cargo run --release -p prior-cli --example ms_super_resolution -- [--k 3] [--h0 0.01] [--beta 0.01] [--seed 0] [--sigma-final 0.01] [--samples 1]

use std::path::PathBuf;

use prior_algos::multiscale::super_resolve;
use prior_algos::sampler::SamplerParams;
use prior_cli::io::{read_input, write_output, Image};
use prior_cli::metrics::psnr;
use prior_gpu::{Gpu, Shape};
use prior_models::multiscale::MultiScale;
use prior_ops::haar::{haar_pyramid, haar_reconstruct, HaarPyramid};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut params = SamplerParams::default();
    let mut samples = 1usize;
    let mut j = 3usize;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--h0" => params.h0 = val()?.parse()?,
            "--beta" => params.beta = val()?.parse()?,
            "--seed" => params.seed = val()?.parse()?,
            "--sigma-final" => params.sigma_final = val()?.parse()?,
            "--max-iters" => params.max_iters = val()?.parse()?,
            "--samples" => samples = val()?.parse()?,
            "--k" => j = val()?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let shared = std::env::var_os("PRIOR_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared"));
    let img = read_input(shared.join("images/faces/astronaut_face_320.png"))?;
    assert_eq!((img.c, img.h, img.w), (1, 320, 320));
    let gpu = pollster::block_on(Gpu::from_env())?;
    println!("adapter: {}", gpu.adapter.name);
    let model = MultiScale::from_dir(
        &gpu,
        &shared.join("checkpoints/local_probability_models/multi_scale_320"),
    )?;
    let x = gpu.upload(Shape::new(1, 320, 320, 1), &img.data);
    let pyr = haar_pyramid(&gpu, &x, j)?;
    // Baseline: the low-pass with zero details (8×8 block replication).
    let zeros: Vec<_> = pyr.details.iter().map(|d| gpu.zeros(d.shape())).collect();
    let base = haar_reconstruct(
        &gpu,
        &HaarPyramid {
            low: pyr.low.clone(),
            details: zeros,
        },
    )?;
    let base = pollster::block_on(gpu.read(&base))?;
    println!(
        "no-detail baseline ({m}x{m} block replication): PSNR {:.2} dB",
        psnr(&base, &img.data, 1.0),
        m = 1 << j
    );

    // Several samples in one batched run share the same low-pass.
    let low1 = pollster::block_on(gpu.read(&pyr.low))?;
    let low = gpu.upload(
        Shape::new(samples, 320 >> j, 320 >> j, 1),
        &low1.repeat(samples),
    );
    let mut last = std::time::Instant::now();
    let run = pollster::block_on(super_resolve(&gpu, &model, &low, j, &params, |p| {
        if p.progress.iteration % 25 == 0 {
            println!(
                "  level {:?} iteration {} σ_t {:.4} ({:.2} s/it)",
                p.level,
                p.progress.iteration,
                p.progress.sigmas[0],
                last.elapsed().as_secs_f64() / 25.0
            );
            last = std::time::Instant::now();
        }
    }))?;
    for l in &run.levels {
        println!(
            "level {:?} {}x{}: σ0 {:.4} σ_L {:.4}, iterations {:?}, converged {:?}, {:.1} s",
            l.level,
            l.size.0,
            l.size.1,
            l.sigma0,
            l.sigma_final,
            l.iterations,
            l.converged,
            l.seconds
        );
    }
    let out = pollster::block_on(gpu.read(&run.image))?;
    let dir = root.join("target/ms_super_resolution");
    std::fs::create_dir_all(&dir)?;
    write_output(
        dir.join("low_replicated.png"),
        &Image::new(1, 320, 320, base.clone()),
    )?;
    let mut psnrs = Vec::new();
    for s in 0..samples {
        let o = &out[s * 320 * 320..(s + 1) * 320 * 320];
        psnrs.push(psnr(o, &img.data, 1.0));
        let name = if s == 0 {
            "super_resolved.png".to_string()
        } else {
            format!("super_resolved_{s}.png")
        };
        write_output(dir.join(&name), &Image::new(1, 320, 320, o.to_vec()))?;
    }
    // The output's level-3 low-pass must be the given one.
    let back = haar_pyramid(
        &gpu,
        &run.image.reshape(Shape::new(samples, 320, 320, 1)),
        j,
    )?;
    let back = pollster::block_on(gpu.read(&back.low))?;
    let drift = back
        .iter()
        .zip(low1.repeat(samples))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!(
        "super-resolved: PSNR {psnrs:.2?} dB (low-pass consistency: max |Δ| {drift:.1e}); wrote {}",
        dir.display()
    );
    if samples > 1 {
        let mean: Vec<f32> = (0..320 * 320)
            .map(|i| (0..samples).map(|s| out[s * 320 * 320 + i]).sum::<f32>() / samples as f32)
            .collect();
        println!(
            "mean of {samples} samples: PSNR {:.2} dB",
            psnr(&mean, &img.data, 1.0)
        );
        write_output(
            dir.join("super_resolved_mean.png"),
            &Image::new(1, 320, 320, mean),
        )?;
    }
    Ok(())
}
