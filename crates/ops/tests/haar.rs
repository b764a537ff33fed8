//! Haar analysis/synthesis against the CPU reference (bit-exact: the scales
//! are powers of two and both sides use the same operation order) on 1, 3
//! and 5 channels and non-square sizes; perfect reconstruction; the energy
//! relation ‖x‖² = 4‖A x‖²; adjointness of the VJPs ⟨Av, u⟩ = ⟨v, Aᵀu⟩;
//! the PyTorch golden `tests/golden/haar_pyramid`; clear errors on bad sizes.

mod common;
use common::*;
use prior_gpu::Shape;
use prior_ops::haar::{self, HaarPyramid};
use prior_ops::reference;

fn read(t: &prior_gpu::Tensor) -> Vec<f32> {
    pollster::block_on(gpu().read(t)).unwrap()
}

#[test]
fn analysis_and_synthesis_match_reference_exactly() {
    let gpu = gpu();
    for (i, &(n, h, w, c)) in [
        (1, 4, 6, 1),
        (2, 6, 10, 3),
        (1, 14, 8, 5),
        (3, 2, 2, 1),
        (1, 40, 22, 3),
    ]
    .iter()
    .enumerate()
    {
        let s = Shape::new(n, h, w, c);
        let x = rand_vec(s.numel(), 100 + i as u64);
        let xt = gpu.upload(s, &x);
        let a = haar::haar_analysis(gpu, &xt).unwrap();
        let (cs, want) = reference::haar::haar_analysis(&x, s);
        assert_eq!(a.shape(), cs);
        assert_eq!(read(&a), want, "analysis {s}");

        let coefs = rand_vec(cs.numel(), 200 + i as u64);
        let ct = gpu.upload(cs, &coefs);
        let y = haar::haar_synthesis(gpu, &ct).unwrap();
        let (ys, want) = reference::haar::haar_synthesis(&coefs, cs);
        assert_eq!((y.shape(), read(&y)), (ys, want), "synthesis {cs}");

        let v = haar::haar_analysis_vjp(gpu, &ct).unwrap();
        assert_eq!(
            read(&v),
            reference::haar::haar_analysis_vjp(&coefs, cs).1,
            "analysis vjp {cs}"
        );
        let v = haar::haar_synthesis_vjp(gpu, &xt).unwrap();
        assert_eq!(
            read(&v),
            reference::haar::haar_synthesis_vjp(&x, s).1,
            "synthesis vjp {s}"
        );
    }
}

#[test]
fn perfect_reconstruction_and_energy() {
    let gpu = gpu();
    for (i, &(n, h, w, c)) in [(1, 8, 12, 1), (2, 16, 8, 3), (1, 24, 40, 5)]
        .iter()
        .enumerate()
    {
        let s = Shape::new(n, h, w, c);
        let x = rand_vec(s.numel(), 300 + i as u64);
        let xt = gpu.upload(s, &x);
        let a = haar::haar_analysis(gpu, &xt).unwrap();
        let back = read(&haar::haar_synthesis(gpu, &a).unwrap());
        assert!(max_abs_diff(&back, &x) < 1e-6, "{s}");
        let ex: f64 = x.iter().map(|v| (*v as f64).powi(2)).sum();
        let ea: f64 = read(&a).iter().map(|v| (*v as f64).powi(2)).sum();
        assert!((ex - 4.0 * ea).abs() < 1e-5 * ex, "{s}: {ex} vs 4·{ea}");

        let pyr = haar::haar_pyramid(gpu, &xt, 2).unwrap();
        assert_eq!(pyr.levels(), 2);
        assert_eq!(pyr.low.shape(), Shape::new(n, h / 4, w / 4, c));
        assert_eq!(pyr.details[1].shape(), Shape::new(n, h / 4, w / 4, 3 * c));
        let ((_, low), det) = reference::haar::haar_pyramid(&x, s, 2);
        assert_eq!(read(&pyr.low), low);
        assert_eq!(read(&pyr.details[0]), det[0].1);
        assert_eq!(read(&pyr.details[1]), det[1].1);
        let back = read(&haar::haar_reconstruct(gpu, &pyr).unwrap());
        assert!(max_abs_diff(&back, &x) < 1e-6, "pyramid {s}");
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

#[test]
fn vjps_are_adjoints_and_jvps_are_the_ops() {
    let gpu = gpu();
    // Batched tangents: k = 3 samples.
    let s = Shape::new(3, 6, 10, 3);
    let cs = Shape::new(3, 3, 5, 12);
    let v = rand_vec(s.numel(), 1);
    let u = rand_vec(cs.numel(), 2);
    let (vt, ut) = (gpu.upload(s, &v), gpu.upload(cs, &u));
    // ⟨A v, u⟩ = ⟨v, Aᵀ u⟩
    let av = read(&haar::haar_analysis_jvp(gpu, &vt).unwrap());
    let atu = read(&haar::haar_analysis_vjp(gpu, &ut).unwrap());
    let (l, r) = (dot(&av, &u), dot(&v, &atu));
    assert!(
        (l - r).abs() < 1e-5 * l.abs().max(1.0),
        "analysis: {l} vs {r}"
    );
    // ⟨S u, v⟩ = ⟨u, Sᵀ v⟩
    let su = read(&haar::haar_synthesis_jvp(gpu, &ut).unwrap());
    let stv = read(&haar::haar_synthesis_vjp(gpu, &vt).unwrap());
    let (l, r) = (dot(&su, &v), dot(&u, &stv));
    assert!(
        (l - r).abs() < 1e-5 * l.abs().max(1.0),
        "synthesis: {l} vs {r}"
    );
}

/// Minimal reader of the little-endian float32 C-order `.npy` goldens.
fn npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    let path = format!(
        "{}/../../tests/golden/haar_pyramid/{name}.npy",
        env!("CARGO_MANIFEST_DIR")
    );
    let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + hl]).unwrap();
    assert!(
        header.contains("'<f4'") && header.contains("False"),
        "{header}"
    );
    let shape_s = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_s
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| t.trim().parse().unwrap())
        .collect();
    let data: Vec<f32> = b[10 + hl..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(data.len(), shape.iter().product::<usize>());
    (shape, data)
}

/// (C, H, W) → channels-last [1, H, W, C].
fn chw_to_hwc(d: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut o = vec![0.0; d.len()];
    for ch in 0..c {
        for i in 0..h * w {
            o[i * c + ch] = d[ch * h * w + i];
        }
    }
    o
}

/// Golden level (C, 4, h, w) → our band-major channels-last [1, h, w, 4C].
fn golden_level(d: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut o = vec![0.0; d.len()];
    for ch in 0..c {
        for band in 0..4 {
            for i in 0..h * w {
                o[i * 4 * c + band * c + ch] = d[((ch * 4 + band) * h * w) + i];
            }
        }
    }
    o
}

#[test]
fn golden_haar_pyramid() {
    let gpu = gpu();
    let (is, input) = npy("input");
    let (c, h, w) = (is[0], is[1], is[2]);
    let s = Shape::new(1, h, w, c);
    let x = gpu.upload(s, &chw_to_hwc(&input, c, h, w));
    // PyTorch may sum the four values in another order: 1 ulp-level differences.
    let tol = 1e-6;
    let l0 = haar::haar_analysis(gpu, &x).unwrap();
    let (gs, g0) = npy("level0");
    let want0 = golden_level(&g0, c, gs[2], gs[3]);
    assert!(
        max_abs_diff(&read(&l0), &want0) < tol,
        "level0: {}",
        max_abs_diff(&read(&l0), &want0)
    );
    let low1 = prior_ops::channels::slice_channels(gpu, &l0, 0, c).unwrap();
    let l1 = haar::haar_analysis(gpu, &low1).unwrap();
    let (gs1, g1) = npy("level1");
    let want1 = golden_level(&g1, c, gs1[2], gs1[3]);
    assert!(max_abs_diff(&read(&l1), &want1) < tol, "level1");

    let pyr: HaarPyramid = haar::haar_pyramid(gpu, &x, 2).unwrap();
    let det1 =
        reference::channels::slice_channels(&want1, Shape::new(1, gs1[2], gs1[3], 4 * c), c, 3 * c);
    assert!(max_abs_diff(&read(&pyr.details[1]), &det1) < tol);
    let (_, rec) = npy("reconstruction");
    let back = read(&haar::haar_reconstruct(gpu, &pyr).unwrap());
    assert!(
        max_abs_diff(&back, &chw_to_hwc(&rec, c, h, w)) < 1e-6,
        "reconstruction"
    );
}

#[test]
fn bad_sizes_are_clear_errors() {
    let gpu = gpu();
    let x = gpu.upload(Shape::new(1, 12, 20, 1), &rand_vec(240, 9));
    let e = haar::haar_pyramid(gpu, &x, 3).unwrap_err().to_string();
    assert!(e.contains("multiples of 2^3 = 8"), "{e}");
    let odd = gpu.upload(Shape::new(1, 5, 4, 2), &rand_vec(40, 9));
    let e = haar::haar_analysis(gpu, &odd).unwrap_err().to_string();
    assert!(e.contains("even"), "{e}");
    let e = haar::haar_synthesis(gpu, &odd).unwrap_err().to_string();
    assert!(e.contains("4·C channels"), "{e}");
    // 12×20 does work with 2 levels.
    assert!(haar::haar_pyramid(gpu, &x, 2).is_ok());
}

/// Each shader source becomes one shader module, whatever number of its
/// entry points run: haar.wgsl's `analysis` and `synthesis` share one.
#[test]
fn entry_points_of_one_file_share_one_shader_module() {
    // A GPU of its own, so other tests' kernels do not change the count.
    let gpu = pollster::block_on(prior_gpu::Gpu::from_env()).unwrap();
    assert_eq!(gpu.shader_modules(), 0);
    let s = Shape::new(1, 4, 4, 1);
    let x = gpu.upload(s, &rand_vec(s.numel(), 7));
    let a = haar::haar_analysis(&gpu, &x).unwrap();
    let _ = haar::haar_synthesis(&gpu, &a).unwrap();
    pollster::block_on(gpu.read(&a)).unwrap();
    assert_eq!(gpu.shader_modules(), 1, "analysis + synthesis of haar.wgsl");
}
