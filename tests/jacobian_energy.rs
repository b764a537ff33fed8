//! The Jacobian of the dual-score-matching energy model's denoiser,
//! x̂ = y − t·∇_yU(y, t) with t held fixed, so J = I − t·∇²_yU: a
//! Hessian-vector product, computed on the GPU by forward over reverse
//! (the forward pass, a forward-mode pass along v, and the reverse pass of
//! ∇_yU carrying its own tangent through every layer's VJP).
//!
//! Checked against central finite differences of the GPU's ∇_yU, the
//! symmetry ⟨Hv, u⟩ = ⟨v, Hu⟩ (a wrong second-order term breaks it), and
//! PyTorch double-backward goldens (tests/golden/jac_energy_trained, real
//! checkpoint `dual_score_matching/mnist32_gray_tiny/model.pth.tar`).
//! Tolerances are given at each check.

use prior_models::Noise;
use std::sync::OnceLock;

use prior_algos::jacobian::{self, At};
use prior_gpu::{Gpu, Shape, Tensor};
use prior_models::blob::WeightBlob;
use prior_models::energy::EnergyUNet;
use prior_models::tiling::Planar;
use prior_models::Denoiser;
use prior_testkit::golden::{max_abs_diff, Case};
use prior_testkit::paths;

fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        pollster::block_on(Gpu::from_env()).expect("a wgpu adapter (lavapipe in CI)")
    })
}

fn model() -> EnergyUNet {
    let path =
        paths::shared().join("checkpoints/dual_score_matching/mnist32_gray_tiny/model.pth.tar");
    EnergyUNet::from_blob(gpu(), &WeightBlob::load(path).unwrap()).unwrap()
}

/// Per-sample noise variances on the GPU, `[n, 1, 1, 1]`.
fn tv(t: &[f32]) -> Tensor {
    gpu().upload(Shape::new(t.len(), 1, 1, 1), t)
}

fn rd(t: &Tensor) -> Vec<f32> {
    pollster::block_on(gpu().read(t)).unwrap()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

fn norm(a: &[f32]) -> f64 {
    dot(a, a).sqrt()
}

/// Deterministic N(0,1)-ish values (sum of uniforms), seeded.
fn randn(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut u = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n)
        .map(|_| (0..4).map(|_| u()).sum::<f32>() * 3f32.sqrt() - 2.0 * 3f32.sqrt())
        .collect()
}

/// The first noisy digit of the energy golden (t = 0.01), `[1, 32, 32, 1]`.
fn digit() -> Vec<f32> {
    Case::open("energy_trained_t0.01").npy("input").data[..1024].to_vec()
}

/// H·v against central differences of ∇_yU along v (GPU, f32), at steps
/// 4e-3 and 2e-3 Richardson-extrapolated. Measured ‖FD − Hv‖/‖Hv‖ (‖Hv‖ ≈
/// 2.9e3, v ~ N(0,1)): steps 2e-2/1e-2: 8.8e-3 (truncation: GELU and the
/// normalisations curve fast), 8e-3/4e-3: 6.2e-4, 4e-3/2e-3: 5.0e-5,
/// 1e-3/5e-4: 8.1e-5 (f32 rounding of ∇U). We ask 5e-4 (a wrong term costs O(1)).
#[test]
fn hessian_vector_matches_finite_differences() {
    let g = gpu();
    let m = model();
    let y = digit();
    let v = randn(1024, 5);
    let s = Shape::new(1, 32, 32, 1);
    let t = tv(&[0.01]);
    let hv = rd(&m
        .hessian_vector(g, &g.upload(s, &y), &t, &g.upload(s, &v))
        .unwrap());
    let grad = |e: f32| -> Vec<f32> {
        let yy: Vec<f32> = y.iter().zip(&v).map(|(a, b)| a + e * b).collect();
        rd(m.evaluate(g, &g.upload(s, &yy), &t, true, false)
            .unwrap()
            .grad
            .as_ref()
            .unwrap())
    };
    let cd = |e: f32| -> Vec<f64> {
        let (p, q) = (grad(e), grad(-e));
        p.iter()
            .zip(&q)
            .map(|(a, b)| (*a as f64 - *b as f64) / (2.0 * e as f64))
            .collect()
    };
    let (d1, d2) = (cd(4e-3), cd(2e-3));
    let fd: Vec<f32> = d1
        .iter()
        .zip(&d2)
        .map(|(a, b)| ((4.0 * b - a) / 3.0) as f32)
        .collect();
    let diff: Vec<f32> = fd.iter().zip(&hv).map(|(a, b)| a - b).collect();
    let rel = norm(&diff) / norm(&hv);
    println!("‖Hv‖ = {:.3}, ‖FD − Hv‖/‖Hv‖ = {rel:.2e}", norm(&hv));
    assert!(
        rel < 5e-4,
        "finite differences differ from H·v by {rel:.2e} relative"
    );
}

/// ⟨Hv, u⟩ = ⟨v, Hu⟩ with both products from one batch of two (the primal
/// repeated): 1e-4 relative to ‖Hv‖‖u‖, f32 rounding of two different
/// chains of ~30 layers.
#[test]
fn hessian_is_symmetric_and_batches_agree() {
    let g = gpu();
    let m = model();
    let y = digit();
    let (v, u) = (randn(1024, 6), randn(1024, 7));
    let s1 = Shape::new(1, 32, 32, 1);
    let y1 = g.upload(s1, &y);
    let both = rd(&m
        .hessian_vector(
            g,
            &g.repeat_batch(&y1, 2),
            &tv(&[0.01, 0.01]),
            &g.upload(Shape::new(2, 32, 32, 1), &[v.clone(), u.clone()].concat()),
        )
        .unwrap());
    let (hv, hu) = both.split_at(1024);
    let (a, b) = (dot(hv, &u), dot(&v, hu));
    let rel = (a - b).abs() / (norm(hv) * norm(&u));
    println!("<Hv,u> = {a:.6}, <v,Hu> = {b:.6}, rel {rel:.2e}");
    assert!(rel < 1e-4, "<Hv,u> = {a}, <v,Hu> = {b}");
    // the same product alone equals its slot in the batch
    let alone = rd(&m
        .hessian_vector(g, &y1, &tv(&[0.01]), &g.upload(s1, &v))
        .unwrap());
    let e = alone
        .iter()
        .zip(hv)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(e <= 1e-5 * norm(hv) as f32, "batched vs single H·v: {e}");
    // the Denoiser interface: J v = v − t·H v
    let jv = rd(&m
        .jvp(g, &y1, &g.upload(s1, &v), Noise::Variance(&tv(&[0.01])))
        .unwrap());
    let e = jv
        .iter()
        .zip(&v)
        .zip(hv)
        .fold(0.0f32, |mx, ((j, v), h)| mx.max((j - (v - 0.01 * h)).abs()));
    assert!(e < 1e-5, "J v vs v − t·H v: {e}");
}

/// J·v and Jᵀ·u at the golden digit (t = 0.01) against PyTorch's double
/// backward: 1e-4 absolute on entries up to ~5 (PyTorch's own f32-vs-f64
/// discrepancy on these products is 4.1e-6, meta.json).
#[test]
fn jvp_vjp_vs_pytorch() {
    let g = gpu();
    let case = Case::open("jac_energy_trained");
    let m = model();
    let y = case.npy("input").data;
    let s1 = Shape::new(1, 32, 32, 1);
    let y1 = g.upload(s1, &y);
    let t = tv(&[0.01]);
    let den = rd(&m.denoise(g, &y1, Noise::Variance(&t)).unwrap());
    let (v, u) = (case.npy("v").data, case.npy("u").data);
    let s3 = Shape::new(3, 32, 32, 1);
    let jv = rd(&m
        .jvp(g, &y1, &g.upload(s3, &v), Noise::Variance(&t))
        .unwrap());
    let ju = rd(&m
        .vjp(g, &y1, &g.upload(s3, &u), Noise::Variance(&t))
        .unwrap());
    let e = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
    };
    let (e_out, e_jv, e_ju) = (
        e(&den, &case.npy("output").data),
        e(&jv, &case.npy("jvp").data),
        e(&ju, &case.npy("vjp").data),
    );
    println!("|ours − pytorch|: output {e_out:.2e}, jvp {e_jv:.2e}, vjp {e_ju:.2e}");
    assert!(
        e_out < 1e-5 && e_jv < 1e-4 && e_ju < 1e-4,
        "output {e_out}, jvp {e_jv}, vjp {e_ju}"
    );
}

/// The full 1024×1024 Jacobian through the analysis code (`jacobian::jacobian`,
/// 1024 batched JVPs), against PyTorch's: the stored rows (1e-4 absolute),
/// the trace, Σs² and the top 10 singular values (1e-4 relative; PyTorch's
/// f32 and f64 models agree to 1.2e-6 on the trace), symmetry (the dense
/// matrix is built column by column from JVPs, so its asymmetry measures
/// their f32 rounding: PyTorch's is 4.7e-7 max abs).
#[test]
fn full_jacobian_vs_pytorch() {
    let g = gpu();
    let case = Case::open("jac_energy_trained");
    let m = model();
    let input = case.npy("input");
    let at = At::new(
        g,
        &m,
        Planar {
            c: 1,
            h: 32,
            w: 32,
            data: &input.data,
        },
        128,
        Some(0.01),
    )
    .unwrap();
    let n = at.n();
    let t = std::time::Instant::now();
    let j = pollster::block_on(jacobian::jacobian(g, &at)).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let idx: Vec<usize> = case.meta["row_indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let sel: Vec<f32> = idx
        .iter()
        .flat_map(|&i| j[i * n..(i + 1) * n].to_vec())
        .collect();
    let e_rows = max_abs_diff(&sel, &case.npy("rows").data);
    let sp = jacobian::spectrum(&j, n, false, false).unwrap();
    let asym = (0..n)
        .flat_map(|a| (0..n).map(move |b| (a, b)))
        .fold(0.0f32, |mx, (a, b)| {
            mx.max((j[a * n + b] - j[b * n + a]).abs())
        });
    let meta = |k: &str| case.meta[k].as_f64().unwrap();
    println!(
        "energy 32x32 full Jacobian: {n} JVPs in {secs:.1} s; rows vs pytorch {e_rows:.2e}; trace {:.4} (torch {:.4}), Σs² {:.4} (torch {:.4}), s1..3 {:.4} {:.4} {:.4}, max |J − Jᵀ| {asym:.2e}",
        sp.trace,
        meta("trace"),
        sp.sum_sq,
        meta("sum_singular_values_sq"),
        sp.s[0],
        sp.s[1],
        sp.s[2]
    );
    assert!(e_rows < 1e-4, "rows differ by {e_rows}");
    assert!(
        (sp.trace - meta("trace")).abs() < 1e-4 * meta("trace"),
        "trace"
    );
    assert!(
        (sp.sum_sq - meta("sum_singular_values_sq")).abs() < 1e-4 * meta("sum_singular_values_sq"),
        "Σs²"
    );
    let top: Vec<f64> = case.meta["top10_singular_values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (k, (a, b)) in sp.s.iter().zip(&top).enumerate() {
        assert!((a - b).abs() < 1e-4 * b, "singular value {k}: {a} vs {b}");
    }
    assert!(asym < 1e-5, "max |J − Jᵀ| = {asym}");
}
