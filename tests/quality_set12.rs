//! Denoising quality against PyTorch on a full Set12 image: the BSD400_gray
//! BF-CNN on `gray/Set12/01.png` (k = 0) at σ = 25 with the noise of
//! `tests/golden/set12_psnr.json` (seed 0, stream 25·1000 + 0), output
//! clamped to [0,1]. Our PSNR must match PyTorch's per-image golden within
//! 0.01 dB (the f32 kernels agree with PyTorch to ~1e-5 per pixel, worth
//! ~1e-4 dB; 0.01 dB is the quality figure one would report). The noisy
//! PSNR, which depends only on the generator, must agree to 1e-4 dB (numpy's
//! f32 log/cos may differ from Rust's by an ulp). The whole benchmark over
//! Set12 × 3 noise levels is `cargo bench --bench quality`.

use prior_cli::cmd::denoise::add_noise;
use prior_cli::{io, metrics};
use prior_gpu::Gpu;
use prior_models::tiling::{apply_image, Apply, Planar};
use prior_testkit::paths::{golden, shared};

#[test]
fn set12_image0_sigma25_matches_pytorch_psnr() {
    let gold: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden().join("set12_psnr.json")).unwrap())
            .unwrap();
    let g = &gold["sigmas"]["25"]["per_image"][0];
    assert_eq!(g["image"], "01.png");
    let (g_noisy, g_den) = (
        g["psnr_noisy"].as_f64().unwrap(),
        g["psnr_denoised"].as_f64().unwrap(),
    );

    let clean = io::read_input(shared().join("images/gray/Set12/01.png")).unwrap();
    let mut noisy = clean.clone();
    add_noise(&mut noisy, 25.0, 0, 0);
    let first8: Vec<f64> = gold["noisy_sigma25_image0_first8"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (i, want) in first8.iter().enumerate() {
        assert!(
            (noisy.data[i] as f64 - want).abs() < 1e-6,
            "noisy[{i}] = {} vs golden {want}",
            noisy.data[i]
        );
    }

    let gpu = pollster::block_on(Gpu::from_env()).unwrap();
    let model_path = shared().join("checkpoints/universal_inverse_problem/BSD400_gray/model.pt");
    let model = prior_models::load_path(&gpu, &model_path).unwrap();
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
    .unwrap();
    let out: Vec<f32> = out.iter().map(|v| v.clamp(0.0, 1.0)).collect();

    let p_noisy = metrics::psnr(&noisy.data, &clean.data, 1.0);
    let p_den = metrics::psnr(&out, &clean.data, 1.0);
    println!(
        "PSNR noisy {p_noisy:.6} (golden {g_noisy:.6}), denoised {p_den:.6} (golden {g_den:.6})"
    );
    assert!(
        (p_noisy - g_noisy).abs() < 1e-4,
        "noisy PSNR {p_noisy} vs golden {g_noisy}"
    );
    assert!(
        (p_den - g_den).abs() < 0.01,
        "denoised PSNR {p_den} vs PyTorch {g_den}"
    );
}
