//! Linear layers (forward with bias, JVP, VJP) against the CPU reference on
//! odd sizes, plus the adjoint identity ⟨Wᵀu, v⟩ = ⟨u, Wv⟩.
//! Tolerance: sums of ≤ 257 products of values in [−1, 1] → 1e-5 absolute.

mod common;
use common::*;
use prior_gpu::Shape;
use prior_ops::linear::Linear;
use prior_ops::reference::linear as cpu;

#[test]
fn linear_matches_reference() {
    let gpu = gpu();
    for (n, inp, out, seed) in [
        (1, 1, 1, 1u64),
        (3, 64, 256, 2),
        (5, 257, 7, 3),
        (2, 13, 65, 4),
    ] {
        let w = rand_vec(out * inp, seed);
        let b = rand_vec(out, seed + 1);
        let x = rand_vec(n * inp, seed + 2);
        let u = rand_vec(n * out, seed + 3);
        let lin = Linear::new(gpu, &w, Some(&b), out, inp).unwrap();
        let xg = gpu.upload(Shape::new(n, 1, 1, inp), &x);
        let ug = gpu.upload(Shape::new(n, 1, 1, out), &u);
        let y = pollster::block_on(gpu.read(&lin.forward(gpu, &xg).unwrap())).unwrap();
        let yj = pollster::block_on(gpu.read(&lin.jvp(gpu, &xg).unwrap())).unwrap();
        let yv = pollster::block_on(gpu.read(&lin.vjp(gpu, &ug).unwrap())).unwrap();
        assert!(max_abs_diff(&y, &cpu::linear(&x, n, &w, Some(&b), out, inp)) < 1e-5);
        assert!(max_abs_diff(&yj, &cpu::linear(&x, n, &w, None, out, inp)) < 1e-5);
        assert!(max_abs_diff(&yv, &cpu::linear_t(&u, n, &w, out, inp)) < 1e-5);
        let lhs: f64 = yv.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
        let rhs: f64 = u.iter().zip(&yj).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!(
            (lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()),
            "adjoint {lhs} vs {rhs}"
        );
    }
}

#[test]
fn linear_rejects_bad_sizes() {
    let gpu = gpu();
    assert!(Linear::new(gpu, &[0.0; 6], None, 2, 4).is_err());
    let lin = Linear::new(gpu, &[0.0; 8], None, 2, 4).unwrap();
    assert!(lin
        .forward(gpu, &gpu.upload(Shape::new(1, 1, 1, 3), &[0.0; 3]))
        .is_err());
}
