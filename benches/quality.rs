//! Quality benchmark (issue 2 item 10): the BSD400_gray BF-CNN
//! (universal_inverse_problem) on all of `gray/Set12` at σ = 15, 25, 50, with
//! exactly the noise of `tests/golden/set12_psnr.json` (our counter-based
//! generator, seed 0, stream σ·1000 + k, k = index in sorted file names,
//! `noisy = clean + f32(σ/255)·z`, not clamped), the output clamped to [0,1]
//! and PSNR = 10·log10(1/MSE) in f64. Prints, per σ, the mean PSNR of the
//! noisy inputs, ours, PyTorch's (the golden, computed on the same noisy
//! inputs) and the difference, plus the largest per-image difference.
//!
//! `cargo bench --bench quality` (a few minutes on lavapipe).

use std::time::Instant;

use prior_cli::cmd::denoise::add_noise;
use prior_cli::{io, metrics};
use prior_gpu::Gpu;
use prior_models::tiling::{apply_image, Apply, Planar};
use prior_testkit::paths::{golden, shared};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let gpu = pollster::block_on(Gpu::from_env()).map_err(|e| e.to_string())?;
    let model_path = shared().join("checkpoints/universal_inverse_problem/BSD400_gray/model.pt");
    let model = prior_models::load_path(&gpu, &model_path).map_err(|e| e.to_string())?;
    let gold_path = golden().join("set12_psnr.json");
    let gold: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&gold_path)
            .map_err(|e| format!("{}: {e}", gold_path.display()))?,
    )
    .map_err(|e| format!("{}: {e}", gold_path.display()))?;

    let dir = shared().join("images/gray/Set12");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    files.sort();
    let clean: Vec<io::Image> = files
        .iter()
        .map(io::read_input)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;

    println!("adapter: {} ({})", gpu.adapter.name, gpu.adapter.backend);
    println!("model: {}", model.describe());
    println!(
        "Set12 ({} images), output clamped to [0,1], PSNR in dB (f64)",
        files.len()
    );
    let mut rows = Vec::new();
    for sigma in [15u32, 25, 50] {
        let g = &gold["sigmas"][sigma.to_string()];
        let per = g["per_image"].as_array().ok_or("golden lacks per_image")?;
        if per.len() != files.len() {
            return Err(format!(
                "golden has {} images at σ={sigma}, Set12 has {}",
                per.len(),
                files.len()
            ));
        }
        let (mut sum_noisy, mut sum_ours, mut max_diff) = (0.0f64, 0.0f64, 0.0f64);
        let t0 = Instant::now();
        for (k, (img, path)) in clean.iter().zip(&files).enumerate() {
            let name = path.file_name().unwrap().to_string_lossy();
            if per[k]["image"].as_str() != Some(&*name) {
                return Err(format!(
                    "golden image {k} is {:?}, expected {name}",
                    per[k]["image"]
                ));
            }
            let mut noisy = img.clone();
            add_noise(&mut noisy, sigma as f64, 0, k);
            let out = pollster::block_on(apply_image(
                &gpu,
                &*model,
                Planar {
                    c: noisy.c,
                    h: noisy.h,
                    w: noisy.w,
                    data: &noisy.data,
                },
                Apply::Denoise,
                None,
            ))
            .map_err(|e| format!("{name}: {e}"))?;
            let out: Vec<f32> = out.iter().map(|v| v.clamp(0.0, 1.0)).collect();
            let p_noisy = metrics::psnr(&noisy.data, &img.data, 1.0);
            let p_ours = metrics::psnr(&out, &img.data, 1.0);
            let p_torch = per[k]["psnr_denoised"]
                .as_f64()
                .ok_or("bad golden psnr_denoised")?;
            sum_noisy += p_noisy;
            sum_ours += p_ours;
            max_diff = max_diff.max((p_ours - p_torch).abs());
        }
        let n = files.len() as f64;
        let torch = g["mean_psnr_denoised"]
            .as_f64()
            .ok_or("bad golden mean_psnr_denoised")?;
        let row = (
            sigma,
            sum_noisy / n,
            sum_ours / n,
            torch,
            max_diff,
            t0.elapsed().as_secs_f64(),
        );
        eprintln!(
            "σ = {sigma}: ours {:.3} dB, PyTorch {torch:.3} dB ({:.1} s)",
            row.2, row.5
        );
        rows.push(row);
    }
    println!();
    println!("| σ | noisy | ours | PyTorch | ours − PyTorch | max per-image |diff| | time (s) |");
    println!("|---|---|---|---|---|---|---|");
    for (sigma, noisy, ours, torch, max_diff, secs) in rows {
        println!(
            "| {sigma} | {noisy:.3} | {ours:.3} | {torch:.3} | {:+.1e} | {max_diff:.1e} | {secs:.1} |",
            ours - torch
        );
    }
    Ok(())
}
