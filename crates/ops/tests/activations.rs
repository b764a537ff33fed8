//! GELU / SiLU and their derivatives against the f64 CPU reference, on odd
//! lengths (not multiples of the 64-wide workgroup) and on a sweep over
//! [−12, 12] that covers the far negative tail where GELU is tiny.
//! Tolerance: 3e-7·max(1, |value|) absolute + 2e-6 relative — the shader's
//! erfc has < 1.2e-7 relative error, f32 exp/division add a few ulp.

mod common;
use common::*;
use prior_gpu::Shape;
use prior_ops::{activations, reference::activations as cpu};

fn close(got: &[f32], want: &[f32], what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = 3e-7 + 2e-6 * w.abs();
        assert!((g - w).abs() <= tol, "{what}[{i}]: got {g:e}, want {w:e}");
    }
}

#[test]
fn erf_reference_is_accurate() {
    // Tabulated values (Abramowitz & Stegun table 7.1 / high-precision erf).
    for (x, want) in [
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (2.0, 0.995_322_265_018_952_7),
        (3.0, 0.999_977_909_503_001_4),
    ] {
        assert!((cpu::erf(x) - want).abs() < 1e-14, "erf({x})");
    }
    // Φ(−5) = 2.866515718791939e-7
    assert!((cpu::normal_cdf(-5.0) / 2.866_515_718_791_939e-7 - 1.0).abs() < 1e-12);
}

#[test]
fn gelu_silu_match_reference() {
    let gpu = gpu();
    for (n, seed, scale) in [
        (1usize, 1u64, 3.0f32),
        (63, 2, 5.0),
        (1000, 3, 12.0),
        (4097, 4, 2.0),
    ] {
        let x: Vec<f32> = rand_vec(n, seed).iter().map(|v| v * scale).collect();
        let t = rand_vec(n, seed + 10);
        let s = Shape::new(1, 1, 1, n);
        let (xg, tg) = (gpu.upload(s, &x), gpu.upload(s, &t));
        let g = activations::gelu(gpu, &xg);
        let gj = activations::gelu_jvp(gpu, &xg, &tg).unwrap();
        let si = activations::silu(gpu, &xg);
        let sj = activations::silu_jvp(gpu, &xg, &tg).unwrap();
        let rd = |t| pollster::block_on(gpu.read(t)).unwrap();
        close(&rd(&g), &cpu::gelu(&x), "gelu");
        close(&rd(&gj), &cpu::gelu_jvp(&x, &t), "gelu_jvp");
        close(&rd(&si), &cpu::silu(&x), "silu");
        close(&rd(&sj), &cpu::silu_jvp(&x, &t), "silu_jvp");
    }
}

#[test]
fn gelu_negative_tail_is_relatively_accurate() {
    // x·Φ(x) for x in [−9, 0]: the relative error stays below 1e-5 where an
    // absolute-error erf would lose every digit (GELU(−9) ≈ −1e-18). The
    // erfc fit contributes 1.2e-7; the rest is the driver's f32 exp, whose
    // relative error grows with its argument (−x²/2 = −40 at x = −9: 7e-6 on
    // lavapipe).
    let gpu = gpu();
    let x: Vec<f32> = (0..181).map(|i| -9.0 + 0.05 * i as f32).collect();
    let y = pollster::block_on(gpu.read(&activations::gelu(
        gpu,
        &gpu.upload(Shape::vector(x.len()), &x),
    )))
    .unwrap();
    let want = cpu::gelu(&x);
    for i in 0..x.len() {
        if want[i] != 0.0 {
            let rel = ((y[i] - want[i]) / want[i]).abs();
            assert!(
                rel < 1e-5,
                "gelu({}) = {:e}, want {:e} (rel {rel:e})",
                x[i],
                y[i],
                want[i]
            );
        }
    }
}

/// The tangent of the GELU VJP against the f64 reference, and the
/// reference against central differences of `ū·GELU'(x)` along (x', ū').
#[test]
fn gelu_vjp_jvp_matches_reference_and_finite_differences() {
    let gpu = gpu();
    for (n, seed, scale) in [(1usize, 31u64, 3.0f32), (1000, 32, 8.0)] {
        let x: Vec<f32> = rand_vec(n, seed).iter().map(|v| v * scale).collect();
        let (xt, ub, ut) = (
            rand_vec(n, seed + 1),
            rand_vec(n, seed + 2),
            rand_vec(n, seed + 3),
        );
        let s = Shape::new(1, 1, 1, n);
        let up = |a: &[f32]| gpu.upload(s, a);
        let got =
            pollster::block_on(gpu.read(
                &activations::gelu_vjp_jvp(gpu, &up(&x), &up(&xt), &up(&ub), &up(&ut)).unwrap(),
            ))
            .unwrap();
        let want = cpu::gelu_vjp_jvp(&x, &xt, &ub, &ut);
        close(&got, &want, "gelu_vjp_jvp");
        let h = 1e-3f64;
        for i in 0..n {
            let g1 = |e: f64| {
                let v = x[i] as f64 + e * xt[i] as f64;
                let pdf = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
                (ub[i] as f64 + e * ut[i] as f64) * (cpu::normal_cdf(v) + v * pdf)
            };
            let num = (g1(h) - g1(-h)) / (2.0 * h);
            assert!(
                (num - want[i] as f64).abs() < 1e-5 * (1.0 + num.abs()),
                "[{i}] {num} vs {}",
                want[i]
            );
        }
    }
    let a = gpu.upload(Shape::vector(3), &[0.0; 3]);
    let b = gpu.upload(Shape::vector(4), &[0.0; 4]);
    assert!(activations::gelu_vjp_jvp(gpu, &a, &a, &b, &a).is_err());
}

#[test]
fn derivative_checks_shapes() {
    let gpu = gpu();
    let a = gpu.upload(Shape::vector(3), &[0.0; 3]);
    let b = gpu.upload(Shape::vector(4), &[0.0; 4]);
    assert!(activations::gelu_jvp(gpu, &a, &b).is_err());
}
