//! Noise-conditioned group normalisation: forward, JVP (input and gain
//! tangents) and VJP on the GPU against the f64 CPU reference, on odd
//! shapes and group sizes 1, 2, 3; the reference derivatives against
//! central finite differences of the reference forward (f64); the adjoint
//! identity ⟨x̄, x'⟩ = ⟨z̄, z'⟩ on the GPU.
//! Tolerance: 2e-5·max|value| — f32 statistics over ≤ 3·37·41 values.

mod common;
use common::*;
use prior_gpu::Shape;
use prior_ops::group_norm::{gains, Dual, GroupNorm};
use prior_ops::reference::group_norm as cpu;

fn dual<'a>(value: &'a [f32], tangent: &'a [f32]) -> Dual<'a, [f32]> {
    Dual { value, tangent }
}

const EPS: f32 = 1e-5;

fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
    max_abs_diff(got, want) / scale
}

fn case(s: Shape, gs: usize, seed: u64) {
    let gpu = gpu();
    let rd = |t: &prior_gpu::Tensor| pollster::block_on(gpu.read(t)).unwrap();
    // input with a per-channel offset and scale (statistics matter)
    let x: Vec<f32> = rand_vec(s.numel(), seed)
        .iter()
        .enumerate()
        .map(|(i, v)| v * (1.0 + (i % s.c) as f32) + 0.3 * (i % s.c) as f32)
        .collect();
    // gains embedded in a larger [n, L] tensor at offset 3
    let (off, l) = (3usize, s.c + 5);
    let w: Vec<f32> = rand_vec(l, seed + 1);
    let lin: Vec<f32> = rand_vec(s.n * l, seed + 2);
    let dlin: Vec<f32> = rand_vec(s.n * l, seed + 3);
    let gain_all: Vec<f32> = (0..s.n * l).map(|i| w[i % l] * (1.0 + lin[i])).collect();
    let dgain_all: Vec<f32> = (0..s.n * l).map(|i| w[i % l] * dlin[i]).collect();
    let slice = |a: &[f32]| -> Vec<f32> {
        (0..s.n)
            .flat_map(|b| a[b * l + off..b * l + off + s.c].to_vec())
            .collect()
    };
    let (gain, dgain) = (slice(&gain_all), slice(&dgain_all));
    let xt = rand_vec(s.numel(), seed + 4);
    let zb = rand_vec(s.numel(), seed + 5);

    let wg = gpu.upload(Shape::vector(l), &w);
    let g_gpu = gains(gpu, &wg, &gpu.upload(Shape::new(s.n, 1, 1, l), &lin), false).unwrap();
    let dg_gpu = gains(gpu, &wg, &gpu.upload(Shape::new(s.n, 1, 1, l), &dlin), true).unwrap();
    assert!(max_abs_diff(&rd(&g_gpu), &gain_all) < 1e-6);
    assert!(max_abs_diff(&rd(&dg_gpu), &dgain_all) < 1e-6);

    let norm = GroupNorm::new(s.c, gs, EPS, off).unwrap();
    let xg = gpu.upload(s, &x);
    let (z, st) = norm.forward(gpu, &xg, &g_gpu).unwrap();
    let e = rel_err(&rd(&z), &cpu::forward(&x, s, gs, EPS, &gain));
    assert!(e < 2e-5, "forward {s} gs{gs}: {e}");

    let xtg = gpu.upload(s, &xt);
    let zt = norm
        .jvp(gpu, Some(&xtg), &xg, &st, &g_gpu, Some(&dg_gpu))
        .unwrap();
    let zt = rd(&zt);
    let e = rel_err(&zt, &cpu::jvp(&x, &xt, s, gs, EPS, &gain, &dgain));
    assert!(e < 2e-5, "jvp {s} gs{gs}: {e}");
    let zt0 = rd(&norm
        .jvp(gpu, None, &xg, &st, &g_gpu, Some(&dg_gpu))
        .unwrap());
    let e = rel_err(
        &zt0,
        &cpu::jvp(&x, &vec![0.0; s.numel()], s, gs, EPS, &gain, &dgain),
    );
    assert!(e < 2e-5, "jvp (gain tangent only) {s} gs{gs}: {e}");
    let zt1 = rd(&norm.jvp(gpu, Some(&xtg), &xg, &st, &g_gpu, None).unwrap());
    let e = rel_err(
        &zt1,
        &cpu::jvp(&x, &xt, s, gs, EPS, &gain, &vec![0.0; gain.len()]),
    );
    assert!(e < 2e-5, "jvp (input tangent only) {s} gs{gs}: {e}");

    let xb = rd(&norm
        .vjp(gpu, &gpu.upload(s, &zb), &xg, &st, &g_gpu)
        .unwrap());
    let e = rel_err(&xb, &cpu::vjp(&x, &zb, s, gs, EPS, &gain));
    assert!(e < 2e-5, "vjp {s} gs{gs}: {e}");

    // adjoint identity on the GPU results: ⟨x̄, x'⟩ = ⟨z̄, z'(x', gain' = 0)⟩
    let lhs: f64 = xb.iter().zip(&xt).map(|(a, b)| *a as f64 * *b as f64).sum();
    let rhs: f64 = zb
        .iter()
        .zip(&zt1)
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum();
    assert!(
        (lhs - rhs).abs() < 1e-4 * (lhs.abs() + rhs.abs() + 1.0),
        "adjoint {lhs} vs {rhs}"
    );
}

#[test]
fn group_norm_matches_reference_on_odd_shapes() {
    case(Shape::new(1, 1, 1, 3), 1, 1);
    case(Shape::new(2, 5, 7, 6), 1, 2);
    case(Shape::new(3, 9, 11, 6), 2, 3);
    case(Shape::new(2, 37, 41, 9), 3, 4);
    case(Shape::new(1, 17, 19, 16), 1, 5);
}

#[test]
fn reference_derivatives_match_finite_differences() {
    let s = Shape::new(2, 3, 4, 6);
    for gs in [1, 2] {
        let x: Vec<f32> = rand_vec(s.numel(), 7)
            .iter()
            .enumerate()
            .map(|(i, v)| v + 0.2 * (i % 6) as f32)
            .collect();
        let gain: Vec<f32> = rand_vec(s.n * s.c, 8);
        let dgain: Vec<f32> = rand_vec(s.n * s.c, 9);
        let xt = rand_vec(s.numel(), 10);
        let zb = rand_vec(s.numel(), 11);
        let f = |xs: &[f64], g: &[f64]| cpu::forward_f64(xs, s, gs, EPS as f64, g);
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let g64: Vec<f64> = gain.iter().map(|&v| v as f64).collect();
        let h = 1e-6;
        let shift = |a: &[f64], d: &[f32], e: f64| -> Vec<f64> {
            a.iter().zip(d).map(|(a, d)| a + e * *d as f64).collect()
        };
        let zp = f(&shift(&x64, &xt, h), &shift(&g64, &dgain, h));
        let zm = f(&shift(&x64, &xt, -h), &shift(&g64, &dgain, -h));
        let num: Vec<f32> = zp
            .iter()
            .zip(&zm)
            .map(|(p, m)| ((p - m) / (2.0 * h)) as f32)
            .collect();
        let ana = cpu::jvp(&x, &xt, s, gs, EPS, &gain, &dgain);
        assert!(
            rel_err(&ana, &num) < 1e-5,
            "reference JVP vs finite differences (gs {gs})"
        );
        // VJP: the gradient of ⟨z̄, z(x)⟩ along xt equals ⟨x̄, xt⟩
        let phi = |xs: &[f64]| -> f64 {
            f(xs, &g64)
                .iter()
                .zip(&zb)
                .map(|(a, b)| a * *b as f64)
                .sum()
        };
        let dnum = (phi(&shift(&x64, &xt, h)) - phi(&shift(&x64, &xt, -h))) / (2.0 * h);
        let xb = cpu::vjp(&x, &zb, s, gs, EPS, &gain);
        let dana: f64 = xb.iter().zip(&xt).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!(
            (dnum - dana).abs() < 1e-5 * (1.0 + dnum.abs()),
            "reference VJP {dana} vs finite differences {dnum} (gs {gs})"
        );
    }
}

#[test]
fn group_norm_rejects_bad_shapes() {
    let gpu = gpu();
    assert!(GroupNorm::new(6, 4, EPS, 0).is_err());
    let norm = GroupNorm::new(4, 1, EPS, 2).unwrap();
    let x = gpu.upload(Shape::new(1, 2, 2, 4), &[0.0; 16]);
    let g = gpu.upload(Shape::new(1, 1, 1, 5), &[1.0; 5]);
    assert!(
        norm.forward(gpu, &x, &g).is_err(),
        "gains too short for offset 2 + 4 channels"
    );
}

/// Forward over reverse: the GPU `vjp_jvp` against the f64 reference (odd
/// shapes, group sizes 1–3, gains at an offset of a longer gain vector),
/// and the reference against central differences of the f64 VJP along
/// (x', z̄') jointly. Tolerance as above (2e-5 relative to the largest value).
#[test]
fn vjp_jvp_matches_reference_and_finite_differences() {
    let gpu = gpu();
    let rd = |t: &prior_gpu::Tensor| pollster::block_on(gpu.read(t)).unwrap();
    for (s, gs, seed) in [
        (Shape::new(1, 1, 2, 3), 1, 21u64),
        (Shape::new(2, 5, 7, 6), 1, 22),
        (Shape::new(3, 9, 11, 6), 2, 23),
        (Shape::new(2, 37, 41, 9), 3, 24),
    ] {
        let x: Vec<f32> = rand_vec(s.numel(), seed)
            .iter()
            .enumerate()
            .map(|(i, v)| v * (1.0 + (i % s.c) as f32) + 0.3 * (i % s.c) as f32)
            .collect();
        let (off, l) = (2usize, s.c + 3);
        let gain_all: Vec<f32> = rand_vec(s.n * l, seed + 1)
            .iter()
            .map(|v| 1.0 + 0.5 * v)
            .collect();
        let gain: Vec<f32> = (0..s.n)
            .flat_map(|b| gain_all[b * l + off..b * l + off + s.c].to_vec())
            .collect();
        let (xt, zb, zbt) = (
            rand_vec(s.numel(), seed + 2),
            rand_vec(s.numel(), seed + 3),
            rand_vec(s.numel(), seed + 4),
        );

        let norm = GroupNorm::new(s.c, gs, EPS, off).unwrap();
        let g = gpu.upload(Shape::new(s.n, 1, 1, l), &gain_all);
        let xg = gpu.upload(s, &x);
        let (_, st) = norm.forward(gpu, &xg, &g).unwrap();
        let got = rd(&norm
            .vjp_jvp(
                gpu,
                Dual {
                    value: &gpu.upload(s, &zb),
                    tangent: &gpu.upload(s, &zbt),
                },
                Dual {
                    value: &xg,
                    tangent: &gpu.upload(s, &xt),
                },
                &st,
                &g,
            )
            .unwrap());
        let want = cpu::vjp_jvp(dual(&x, &xt), dual(&zb, &zbt), s, gs, EPS, &gain);
        let e = rel_err(&got, &want);
        assert!(e < 2e-5, "vjp_jvp {s} gs{gs}: {e}");
        // with x' = 0 it is the VJP of z̄'
        let zero = vec![0.0f32; s.numel()];
        let e = rel_err(
            &cpu::vjp_jvp(dual(&x, &zero), dual(&zb, &zbt), s, gs, EPS, &gain),
            &cpu::vjp(&x, &zbt, s, gs, EPS, &gain),
        );
        assert!(e < 1e-12, "vjp_jvp(x' = 0) = vjp(z̄'): {e}");

        if s.numel() > 500 {
            continue;
        }
        let f64v = |a: &[f32]| -> Vec<f64> { a.iter().map(|&v| v as f64).collect() };
        let (x64, zb64, g64) = (f64v(&x), f64v(&zb), f64v(&gain));
        let shift = |a: &[f64], d: &[f32], e: f64| -> Vec<f64> {
            a.iter().zip(d).map(|(a, d)| a + e * *d as f64).collect()
        };
        let h = 1e-6;
        let p = cpu::vjp_f64(
            &shift(&x64, &xt, h),
            &shift(&zb64, &zbt, h),
            s,
            gs,
            EPS as f64,
            &g64,
        );
        let m = cpu::vjp_f64(
            &shift(&x64, &xt, -h),
            &shift(&zb64, &zbt, -h),
            s,
            gs,
            EPS as f64,
            &g64,
        );
        let num: Vec<f32> = p
            .iter()
            .zip(&m)
            .map(|(p, m)| ((p - m) / (2.0 * h)) as f32)
            .collect();
        let e = rel_err(&want, &num);
        assert!(
            e < 1e-5,
            "reference vjp_jvp vs finite differences {s} gs{gs}: {e}"
        );
    }
}
