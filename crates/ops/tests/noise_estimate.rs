//! The GPU noise-variance estimate equals the CPU reference exactly (the
//! median is selected on the float bits, no rounding): odd sizes, 1 and 3
//! channels, batches, ties (a constant image), an image without a 2×2
//! block; and it estimates the variance of white noise.

mod common;
use common::*;
use prior_gpu::Shape;
use prior_ops::{noise_estimate, reference};

fn read(t: &prior_gpu::Tensor) -> Vec<f32> {
    pollster::block_on(gpu().read(t)).unwrap()
}

#[test]
fn matches_reference_exactly() {
    let gpu = gpu();
    for (i, &(n, h, w, c)) in [
        (1, 32, 32, 1),
        (3, 17, 23, 3),
        (2, 2, 2, 1),
        (1, 1, 9, 1),
        (4, 64, 40, 1),
        (1, 101, 77, 3),
    ]
    .iter()
    .enumerate()
    {
        let s = Shape::new(n, h, w, c);
        // Mixed scales per image so the medians differ across the batch.
        let x: Vec<f32> = rand_vec(s.numel(), 7 + i as u64)
            .iter()
            .enumerate()
            .map(|(j, v)| v * (1.0 + (j / (h * w * c)) as f32))
            .collect();
        let t = noise_estimate::noise_variance(gpu, &gpu.upload(s, &x)).unwrap();
        assert_eq!(t.shape(), Shape::new(n, 1, 1, 1));
        assert_eq!(
            read(&t),
            reference::noise_estimate::noise_variance(&x, s),
            "{s}"
        );
    }
    // Ties everywhere: a constant image has all details 0.
    let s = Shape::new(1, 8, 8, 1);
    let t = noise_estimate::noise_variance(gpu, &gpu.upload(s, &[0.3; 64])).unwrap();
    assert_eq!(read(&t), vec![0.0]);
}

#[test]
fn estimates_white_noise_variance() {
    // Gaussian noise of variance 0.04 from prior's generator: the estimate
    // is within 5 % (the median of 16384 |N(0, t)| has ~1 % relative error).
    let gpu = gpu();
    let s = Shape::new(1, 256, 256, 1);
    let zero = gpu.zeros(s);
    let y = prior_ops::rng::axpy_normal(gpu, &zero, s, 0.2, 5, 0, 0).unwrap();
    let t = read(&noise_estimate::noise_variance(gpu, &y).unwrap())[0];
    assert!(
        (t / 0.04 - 1.0).abs() < 0.05,
        "estimate {t} for variance 0.04"
    );
}
