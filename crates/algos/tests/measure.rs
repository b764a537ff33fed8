//! Measurement operators on the GPU: for every task, M Mᵀ is an orthogonal
//! projection (idempotent, ‖Px‖² = ⟨x, Px⟩), MᵀM = I on the measurement
//! space, M is Mᵀ's adjoint there, and the layouts follow the authors'
//! conventions. f32 GPU sums of ≤ a few hundred terms: 1e-5 relative.

use std::sync::OnceLock;

use prior_algos::measure::{self, random_orthonormal, spectral_mask, Measurement, Task};
use prior_gpu::{Gpu, Shape, Tensor};

fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        pollster::block_on(Gpu::from_env()).expect("a wgpu adapter (lavapipe in CI)")
    })
}

fn read(t: &Tensor) -> Vec<f32> {
    pollster::block_on(gpu().read(t)).unwrap()
}

fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let k = prior_ops::reference::rng::key(seed, 77);
    (0..n as u32)
        .map(|i| prior_ops::reference::rng::normal(k, i))
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

fn max_rel(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6) as f64;
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max)
        / scale
}

/// The properties every operator must have.
fn check_operator(op: &dyn Measurement, tol: f64) {
    let g = gpu();
    let (h, w, c) = op.image_shape();
    let shape = Shape::new(2, h, w, c);
    let x = rand_vec(shape.numel(), 1);
    let x2 = rand_vec(shape.numel(), 2);
    let (tx, tx2) = (g.upload(shape, &x), g.upload(shape, &x2));
    let z = op.mt(g, &tx).unwrap();
    assert_eq!(z.shape(), op.measurement_shape(2), "{}", op.describe());
    // MᵀM = I on the measurement space.
    let zz = op.mt(g, &op.m(g, &z).unwrap()).unwrap();
    let (zv, zzv) = (read(&z), read(&zz));
    assert!(
        max_rel(&zzv, &zv) < tol,
        "{}: MᵀM z vs z {}",
        op.describe(),
        max_rel(&zzv, &zv)
    );
    // M Mᵀ idempotent and an orthogonal projection.
    let p = op.project(g, &tx).unwrap();
    let pp = op.project(g, &p).unwrap();
    let (pv, ppv) = (read(&p), read(&pp));
    assert!(
        max_rel(&ppv, &pv) < tol,
        "{}: P²x vs Px {}",
        op.describe(),
        max_rel(&ppv, &pv)
    );
    let (n2, ip) = (dot(&pv, &pv), dot(&x, &pv));
    assert!(
        (n2 - ip).abs() < tol * n2.max(1.0),
        "{}: ‖Px‖² {n2} vs ⟨x, Px⟩ {ip}",
        op.describe()
    );
    // Adjoint: ⟨Mᵀx, z'⟩ = ⟨x, M z'⟩ for z' = Mᵀx₂.
    let z2 = op.mt(g, &tx2).unwrap();
    let lhs = dot(&zv, &read(&z2));
    let rhs = dot(&x, &read(&op.m(g, &z2).unwrap()));
    assert!(
        (lhs - rhs).abs() < tol * lhs.abs().max(1.0),
        "{}: adjoint {lhs} vs {rhs}",
        op.describe()
    );
    // The projected energy fraction is about dimensions / N for white noise.
    let frac = n2 / dot(&x, &x);
    let want = op.dimensions() as f64 / (h * w * c) as f64;
    assert!(
        (frac - want).abs() < 0.15,
        "{}: projected fraction {frac} vs {want}",
        op.describe()
    );
}

#[test]
fn every_operator_is_an_orthogonal_projection() {
    let g = gpu();
    let dims = (12, 18, 3);
    let tasks = [
        Task::InpaintRect {
            top: 3,
            left: 5,
            height: 4,
            width: 7,
        },
        Task::InpaintMask {
            mask: (0..12 * 18).map(|i| (i % 3 != 0) as u8 as f32).collect(),
            channels: 1,
        },
        Task::Pixels { fraction: 0.2 },
        Task::SuperRes { factor: 3 },
        Task::RandomBasis { fraction: 0.2 },
        Task::Spectral { fraction: 0.2 },
    ];
    for task in &tasks {
        let op = measure::build(g, task, dims, 7).unwrap();
        check_operator(op.as_ref(), 1e-5);
    }
    // Odd sizes and gray images.
    for task in [
        Task::Spectral { fraction: 0.3 },
        Task::RandomBasis { fraction: 0.5 },
        Task::Pixels { fraction: 0.5 },
    ] {
        let op = measure::build(g, &task, (9, 13, 1), 3).unwrap();
        check_operator(op.as_ref(), 1e-5);
    }
    let op = measure::build(g, &Task::SuperRes { factor: 4 }, (16, 12, 1), 0).unwrap();
    check_operator(op.as_ref(), 1e-5);
    // A matrix from a file: 30 non-orthonormal rows on a 3-channel image,
    // orthonormalised on the way in.
    let (h, w, c) = (5, 7, 3);
    let n = h * w * c;
    let rows: Vec<f64> = (0..30 * n)
        .map(|i| ((i * 7919 % 104729) as f64 / 104729.0) - 0.3)
        .collect();
    let task = Task::Matrix {
        rows,
        count: 30,
        source: "test".into(),
    };
    let op = measure::build(g, &task, (h, w, c), 0).unwrap();
    assert_eq!(op.dimensions(), 30);
    check_operator(op.as_ref(), 1e-5);
}

#[test]
fn synthesis_is_zero() {
    let g = gpu();
    let op = measure::build(g, &Task::Synthesis, (5, 4, 3), 0).unwrap();
    let x = g.upload(Shape::new(1, 5, 4, 3), &rand_vec(60, 3));
    assert!(read(&op.project(g, &x).unwrap()).iter().all(|v| *v == 0.0));
}

#[test]
fn superres_is_scaled_block_mean() {
    // Mᵀ = s·block mean, M = value/s replicated: M Mᵀ x = block mean.
    let g = gpu();
    let op = measure::build(g, &Task::SuperRes { factor: 2 }, (4, 4, 1), 0).unwrap();
    let x: Vec<f32> = (0..16).map(|i| i as f32).collect();
    let tx = g.upload(Shape::new(1, 4, 4, 1), &x);
    let z = read(&op.mt(g, &tx).unwrap());
    assert_eq!(z, vec![2.0 * 2.5, 2.0 * 4.5, 2.0 * 10.5, 2.0 * 12.5]);
    let p = read(&op.project(g, &tx).unwrap());
    assert_eq!(&p[..4], &[2.5, 2.5, 4.5, 4.5]);
}

#[test]
fn inpainting_rectangle_and_mask_layout() {
    let g = gpu();
    // The demo's hole: crop rows 25–44, columns 15–34 of 60×60×3.
    let op = measure::build(
        g,
        &Task::InpaintRect {
            top: 25,
            left: 15,
            height: 20,
            width: 20,
        },
        (60, 60, 3),
        0,
    )
    .unwrap();
    assert_eq!(op.dimensions(), 3 * (3600 - 400));
    let m = read(op.mask().unwrap());
    let at = |y: usize, x: usize, c: usize| m[(y * 60 + x) * 3 + c];
    assert_eq!(
        (
            at(25, 15, 0),
            at(44, 34, 2),
            at(24, 15, 1),
            at(25, 35, 0),
            at(45, 20, 0)
        ),
        (0.0, 0.0, 1.0, 1.0, 1.0)
    );
}

#[test]
fn random_pixels_keep_exactly_the_fraction_per_value() {
    let dims = (20, 30, 3);
    let m = measure::random_pixel_mask(dims, 0.2, 11);
    assert_eq!(
        m.iter().filter(|v| **v == 1.0).count(),
        (0.2f64 * 1800.0).floor() as usize
    );
    // Channels are masked independently: some pixel has mixed channels.
    assert!(m.chunks(3).any(|p| p[0] != p[1] || p[1] != p[2]));
    assert_eq!(
        m,
        measure::random_pixel_mask(dims, 0.2, 11),
        "a seed reproduces the mask"
    );
    assert_ne!(m, measure::random_pixel_mask(dims, 0.2, 12));
}

#[test]
fn spectral_mask_follows_the_authors_layout() {
    // 60×60, p = 0.2: xf = int(round(60·√0.2)/2) = 13, yf = int(round(3600·0.2/13)/4) = 13;
    // the authors keep rows/cols {0..12} ∪ {47..59} (676 frequencies); closing
    // the set under k → −k adds the unpaired frequency 13: 727.
    let (m, xf, yf) = spectral_mask(60, 60, 0.2).unwrap();
    assert_eq!((xf, yf), (13, 13));
    assert_eq!(m.iter().filter(|v| **v == 1.0).count(), 727);
    for i in 0..60 {
        for j in 0..60 {
            let authors = !(13..47).contains(&i) && !(13..47).contains(&j);
            if authors {
                assert_eq!(m[i * 60 + j], 1.0);
            }
            assert_eq!(
                m[i * 60 + j],
                m[((60 - i) % 60) * 60 + (60 - j) % 60],
                "symmetric at ({i}, {j})"
            );
        }
    }
    assert_eq!(m[13 * 60 + 5], 1.0);
    assert_eq!(m[20 * 60], 0.0);
}

#[test]
fn random_orthonormal_columns() {
    let (n, m) = (300, 90);
    let q = random_orthonormal(n, m, 5);
    for i in 0..m {
        for j in 0..=i {
            let d: f64 = (0..n).map(|r| q[i * n + r] * q[j * n + r]).sum();
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((d - want).abs() < 1e-12, "QᵀQ[{i}][{j}] = {d}");
        }
    }
    assert_eq!(q, random_orthonormal(n, m, 5));
}

#[test]
fn bad_tasks_are_clear_errors() {
    let g = gpu();
    let err = |t: Task, dims| {
        measure::build(g, &t, dims, 0)
            .err()
            .expect("an error")
            .to_string()
    };
    assert!(err(Task::SuperRes { factor: 4 }, (10, 12, 1)).contains("not a multiple"));
    assert!(err(
        Task::InpaintRect {
            top: 5,
            left: 0,
            height: 10,
            width: 2
        },
        (10, 10, 1)
    )
    .contains("leaves"));
    assert!(err(Task::Pixels { fraction: 0.0 }, (4, 4, 1)).contains("fraction"));
    assert!(err(Task::RandomBasis { fraction: 1.5 }, (4, 4, 1)).contains("fraction"));
    assert!(err(Task::Spectral { fraction: 0.001 }, (8, 8, 1)).contains("keeps no"));
    assert!(err(
        Task::InpaintMask {
            mask: vec![1.0; 10],
            channels: 1
        },
        (4, 4, 3)
    )
    .contains("mask"));
    let op = measure::build(g, &Task::SuperRes { factor: 2 }, (4, 4, 1), 0).unwrap();
    let wrong = g.upload(Shape::new(1, 4, 6, 1), &[0.0; 24]);
    assert!(op.mt(g, &wrong).is_err());
}

/// `orthonormalize_rows`: orthonormal rows out (to f64 rounding), the same
/// span (every input row is its own projection onto the output rows), an
/// orthonormal input returned unchanged, and a dependent row refused by name.
#[test]
fn orthonormalize_rows_keeps_the_span() {
    use prior_algos::measure::{orthonormality_error, orthonormalize_rows, random_orthonormal};
    let (count, n) = (7, 40);
    let rows: Vec<f64> = (0..count * n)
        .map(|i| ((i * 7919 % 104729) as f64 / 104729.0 - 0.5) * (1.0 + (i / n) as f64))
        .collect();
    assert!(orthonormality_error(&rows, count, n) > 0.1);
    let q = orthonormalize_rows(&rows, count, n).unwrap();
    assert!(orthonormality_error(&q, count, n) < 1e-12);
    for r in rows.chunks(n) {
        let mut proj = vec![0.0f64; n];
        for qk in q.chunks(n) {
            let d: f64 = r.iter().zip(qk).map(|(a, b)| a * b).sum();
            for (p, b) in proj.iter_mut().zip(qk) {
                *p += d * b;
            }
        }
        let err = r
            .iter()
            .zip(&proj)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-12, "a row left the span: {err}");
    }
    // An orthonormal input (columns of the random basis) comes back as is.
    let o = random_orthonormal(n, count, 3);
    let back = orthonormalize_rows(&o, count, n).unwrap();
    let moved = o
        .iter()
        .zip(&back)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(moved < 1e-12, "orthonormal rows moved by {moved}");
    // Row 2 = row 0 + row 1.
    let mut dep = rows[..3 * n].to_vec();
    for i in 0..n {
        dep[2 * n + i] = dep[i] + dep[n + i];
    }
    let e = orthonormalize_rows(&dep, 3, n).unwrap_err();
    assert!(e.contains("row 2"), "{e}");
}
