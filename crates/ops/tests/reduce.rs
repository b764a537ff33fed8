//! Reductions against f64 CPU references: sums of squared differences, dot
//! products and PSNR, on lengths around the 256-wide workgroup and the
//! partial-sum fan-out. f32 tree sums of n terms: relative error ≲ 1e-6·log2 n.

mod common;
use common::*;
use prior_gpu::Shape;
use prior_ops::{reduce, reference};

#[test]
fn sums_dots_and_psnr_match_reference() {
    let gpu = gpu();
    for n in [1, 255, 256, 257, 4099, 100_003, 1_000_001] {
        let a = rand_vec(n, n as u64);
        let b = rand_vec(n, n as u64 + 1);
        let (at, bt) = (
            gpu.upload(Shape::vector(n), &a),
            gpu.upload(Shape::vector(n), &b),
        );
        let sq = pollster::block_on(gpu.read(&reduce::sum_sq_diff(gpu, &at, &bt).unwrap())).unwrap()
            [0] as f64;
        let want = reference::reduce::sum_sq_diff(&a, &b);
        assert!(
            (sq - want).abs() <= 1e-5 * want.abs().max(1.0),
            "n {n}: {sq} vs {want}"
        );
        let d =
            pollster::block_on(gpu.read(&reduce::dot(gpu, &at, &bt).unwrap())).unwrap()[0] as f64;
        let want = reference::reduce::dot(&a, &b);
        let scale = reference::reduce::dot(&a, &a).sqrt() * reference::reduce::dot(&b, &b).sqrt();
        assert!(
            (d - want).abs() <= 1e-5 * scale.max(1.0),
            "n {n}: {d} vs {want}"
        );
        let p = pollster::block_on(reduce::psnr(gpu, &at, &bt)).unwrap();
        assert!((p - reference::reduce::psnr(&a, &b)).abs() < 1e-4, "n {n}");
    }
}

#[test]
fn length_mismatch_is_an_error() {
    let gpu = gpu();
    let a = gpu.upload(Shape::vector(3), &[0.0; 3]);
    let b = gpu.upload(Shape::vector(4), &[0.0; 4]);
    assert!(reduce::sum_sq_diff(gpu, &a, &b).is_err());
}
