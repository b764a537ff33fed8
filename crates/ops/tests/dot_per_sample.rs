//! Per-sample inner products (`reduce::dot_per_sample`) against the f64 CPU
//! reference on odd sample sizes. Tolerance: 1e-5 relative to Σ|a·b|.

mod common;
use common::*;
use prior_gpu::Shape;
use prior_ops::{reduce, reference};

#[test]
fn dot_per_sample_matches_reference() {
    let gpu = gpu();
    for (s, seed) in [
        (Shape::new(1, 1, 1, 1), 1u64),
        (Shape::new(3, 7, 9, 1), 2),
        (Shape::new(5, 32, 32, 3), 3),
        (Shape::new(2, 1, 1, 257), 4),
    ] {
        let a = rand_vec(s.numel(), seed);
        let b = rand_vec(s.numel(), seed + 1);
        let got = pollster::block_on(
            gpu.read(&reduce::dot_per_sample(gpu, &gpu.upload(s, &a), &gpu.upload(s, &b)).unwrap()),
        )
        .unwrap();
        let want = reference::reduce::dot_per_sample(&a, &b, s.n);
        let len = s.numel() / s.n;
        for k in 0..s.n {
            let mag: f64 = (0..len)
                .map(|i| (a[k * len + i] as f64 * b[k * len + i] as f64).abs())
                .sum();
            assert!(
                (got[k] as f64 - want[k]).abs() <= 1e-5 * mag.max(1e-6),
                "sample {k} of {s}: {} vs {}",
                got[k],
                want[k]
            );
        }
    }
}
