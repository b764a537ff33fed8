//! Multi-scale synthesis and super-resolution (`prior_algos::multiscale`)
//! with the 160×160 two-level model on small sizes (fast on lavapipe):
//! shapes, the super-resolved image keeps the given low-pass exactly,
//! determinism per seed, finite in-range samples, clear errors.
//! The full-size astronaut figure is `cargo run --release -p prior-cli --example ms_super_resolution`.

use std::sync::OnceLock;

use prior_algos::multiscale::{super_resolve, synthesize};
use prior_algos::sampler::SamplerParams;
use prior_gpu::{Gpu, Shape};
use prior_models::multiscale::MultiScale;
use prior_ops::haar::{haar_pyramid, haar_reconstruct, HaarPyramid};

fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        pollster::block_on(Gpu::from_env()).expect("a wgpu adapter (lavapipe in CI)")
    })
}

fn model() -> MultiScale {
    let dir = prior_testkit::paths::shared()
        .join("checkpoints/local_probability_models/multi_scale_160_rf9");
    MultiScale::from_dir(gpu(), &dir).unwrap()
}

fn read(t: &prior_gpu::Tensor) -> Vec<f32> {
    pollster::block_on(gpu().read(t)).unwrap()
}

fn psnr(a: &[f32], b: &[f32]) -> f64 {
    let mse: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (1.0 / mse).log10()
}

/// A 32×32 crop of astronaut_face_160 (eyes and nose), super-resolved 4× from its 8×8 low-pass.
#[test]
fn super_resolution_keeps_the_low_pass() {
    let img = prior_cli::io::read_input(
        prior_testkit::paths::shared().join("images/faces/astronaut_face_160.png"),
    )
    .unwrap();
    let (top, left, n) = (56, 64, 32);
    let crop: Vec<f32> = (0..n)
        .flat_map(|i| img.data[(top + i) * 160 + left..(top + i) * 160 + left + n].to_vec())
        .collect();
    let x = gpu().upload(Shape::new(1, n, n, 1), &crop);
    let pyr = haar_pyramid(gpu(), &x, 2).unwrap();
    let zeros = pyr.details.iter().map(|d| gpu().zeros(d.shape())).collect();
    let base = read(
        &haar_reconstruct(
            gpu(),
            &HaarPyramid {
                low: pyr.low.clone(),
                details: zeros,
            },
        )
        .unwrap(),
    );

    let m = model();
    let params = SamplerParams {
        h0: 0.05,
        beta: 0.5,
        max_iters: 60,
        seed: 3,
        ..Default::default()
    };
    let run = pollster::block_on(super_resolve(gpu(), &m, &pyr.low, 2, &params, |_| {})).unwrap();
    assert_eq!(run.image.shape(), Shape::new(1, n, n, 1));
    assert_eq!(run.levels.len(), 2);
    assert_eq!(run.levels[0].level, Some(1));
    assert_eq!(
        (run.levels[1].sigma0, run.levels[1].sigma_final),
        (0.5, 0.005)
    );
    let out = read(&run.image);
    assert!(out.iter().all(|v| v.is_finite()));
    // Only details were added: the level-2 low-pass is the given one.
    let back = read(&haar_pyramid(gpu(), &run.image, 2).unwrap().low);
    let low = read(&pyr.low);
    let drift = back
        .iter()
        .zip(&low)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(drift < 1e-5, "low-pass changed by {drift}");
    let (p_sr, p_base) = (psnr(&out, &crop), psnr(&base, &crop));
    println!(
        "32x32 crop, 4x: PSNR {p_sr:.2} dB vs {p_base:.2} dB without details; iterations {:?}",
        run.levels
            .iter()
            .map(|l| l.iterations[0])
            .collect::<Vec<_>>()
    );
    // A sample is not the MMSE estimate, but it should not be worse than flat blocks by much.
    assert!(p_sr > p_base - 1.0, "{p_sr} vs {p_base}");

    // Same seed, same result; another seed, another sample.
    let again = read(
        &pollster::block_on(super_resolve(gpu(), &m, &pyr.low, 2, &params, |_| {}))
            .unwrap()
            .image,
    );
    assert_eq!(again, out);
    let p2 = SamplerParams {
        seed: 4,
        ..params.clone()
    };
    let other = read(
        &pollster::block_on(super_resolve(gpu(), &m, &pyr.low, 1, &p2, |_| {}))
            .unwrap()
            .image,
    );
    assert_eq!(other.len(), 16 * 16);
}

#[test]
fn synthesis_of_small_images() {
    let m = model();
    let params = SamplerParams {
        h0: 0.05,
        beta: 0.5,
        max_iters: 40,
        seed: 1,
        ..Default::default()
    };
    let mut levels_seen = Vec::new();
    let run = pollster::block_on(synthesize(gpu(), &m, 2, 16, 24, &params, |p| {
        if levels_seen.last() != Some(&p.level) {
            levels_seen.push(p.level);
        }
    }))
    .unwrap();
    assert_eq!(levels_seen, vec![None, Some(1), Some(0)]);
    assert_eq!(run.image.shape(), Shape::new(2, 16, 24, 1));
    assert_eq!(run.levels[0].size, (4, 6));
    let out = read(&run.image);
    assert!(
        out.iter().all(|v| v.is_finite() && *v > -0.5 && *v < 1.5),
        "samples out of range"
    );
    // Two samples of a batch differ.
    assert_ne!(out[..384], out[384..]);
}

#[test]
fn clear_errors() {
    let m = model();
    let p = SamplerParams::default();
    let e = pollster::block_on(synthesize(gpu(), &m, 1, 18, 16, &p, |_| {}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("multiple of 2^2 = 4"), "{e}");
    let low = gpu().upload(Shape::new(1, 4, 4, 1), &[0.5; 16]);
    let e = pollster::block_on(super_resolve(gpu(), &m, &low, 3, &p, |_| {}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("between 1 and the model's 2 levels"), "{e}");
    let low3 = gpu().upload(Shape::new(1, 4, 4, 3), &[0.5; 48]);
    let e = pollster::block_on(super_resolve(gpu(), &m, &low3, 1, &p, |_| {}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("3 channel(s)"), "{e}");
}
