//! Learned measurements (`prior_algos::olm`): the gradient of the unrolled
//! sampler's loss with respect to M against PyTorch autograd of the same
//! computation (`tests/golden/olm/`, `make_golden.py` group O: 16×16 MNIST
//! crops, 4 steps, 2 images × 2 repetitions, fixed counter-based noise), for
//! the real mnist BF-CNN and a random-weight one; orthonormality after
//! every Adam update; PCA on data with known components.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use prior_algos::olm::{self, Adam, Rows, Setup, Unroll};
use prior_gpu::Gpu;
use prior_models::Denoiser;

fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        pollster::block_on(Gpu::from_env()).expect("a wgpu adapter (lavapipe in CI)")
    })
}

/// `../shared` of the repository (`PRIOR_SHARED` overrides it).
fn shared() -> PathBuf {
    std::env::var_os("PRIOR_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn golden(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden/olm")
        .join(rel)
}

/// A little-endian float32 C-order `.npy` (what make_golden.py writes).
fn npy(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..6], b"\x93NUMPY", "{}", path.display());
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + hl]).unwrap();
    assert!(
        header.contains("'<f4'") && header.contains("False"),
        "{header}"
    );
    b[10 + hl..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn rel(a: &[f64], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - *y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

fn parity(case: &str, model: &dyn Denoiser, n: usize, seed: u64) {
    let d = 256;
    let x = npy(&golden(&format!("{case}/x.npy")));
    let images: Vec<Vec<f32>> = x.chunks(d).map(|c| c.to_vec()).collect();
    let mean: Vec<f64> = npy(&golden(&format!("{case}/mean.npy")))
        .iter()
        .map(|&v| v as f64)
        .collect();
    let m0 = npy(&golden(&format!("{case}/m.npy")));
    let m = Rows::new(n, d, m0.iter().map(|&v| v as f64).collect()).unwrap();
    let setup = Setup {
        model,
        dims: (1, 16, 16),
        mean: &mean,
    };
    let cfg = Unroll {
        steps: 4,
        average: 2,
        ..Unroll::default()
    };
    let p = pollster::block_on(olm::loss_and_grad(gpu(), &setup, &m, &images, &cfg, seed)).unwrap();
    let g = p.grad.unwrap();
    let want = npy(&golden(&format!("{case}/grad.npy")));
    let recon = npy(&golden(&format!("{case}/recon.npy")));
    let meta = std::fs::read_to_string(golden(&format!("{case}/meta.json"))).unwrap();
    let loss_ref: f64 = meta
        .split("\"loss\": ")
        .nth(1)
        .and_then(|s| s.split([',', '\n']).next())
        .and_then(|s| s.trim().parse().ok())
        .expect("loss in meta.json");
    let rg = rel(&g, &want);
    let rec: Vec<f64> = p.recon.concat().iter().map(|&v| v as f64).collect();
    let rr = rel(&rec, &recon);
    println!(
        "{case}: loss {:.6} (torch f64 {loss_ref:.6}), grad rel err (Frobenius) {rg:.2e}, recon rel err {rr:.2e}, |grad| {:.4e}",
        p.loss,
        g.iter().map(|v| v * v).sum::<f64>().sqrt()
    );
    // Our f32 GPU network against PyTorch's float64 run of the same
    // computation: the f32 rounding of 4 steps of a 20-layer network moves
    // the reconstruction by ~1e-6 relative (PyTorch's own f32 run is 2e-6 off
    // its f64 one, meta.json grad_rel_f32_f64); 1e-3 is the bound.
    assert!(rg <= 1e-3, "{case}: gradient relative error {rg:.3e}");
    assert!(rr <= 1e-4, "{case}: reconstruction relative error {rr:.3e}");
    assert!(
        (p.loss - loss_ref).abs() <= 1e-4 * loss_ref,
        "{case}: loss {} vs {loss_ref}",
        p.loss
    );
}

#[test]
fn gradient_matches_pytorch_autograd_mnist_bfcnn() {
    let path = shared().join("checkpoints/universal_inverse_problem/mnist_gray/model.pt");
    let model =
        prior_models::load_path(gpu(), &path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parity("grad_mnist", model.as_ref(), 8, 5);
}

#[test]
fn gradient_matches_pytorch_autograd_random_bfcnn() {
    let model = prior_models::load_path(gpu(), &golden("grad_random/weights.safetensors")).unwrap();
    parity("grad_random", model.as_ref(), 6, 7);
}

#[test]
fn adam_keeps_rows_orthonormal_after_every_update() {
    let (n, d) = (16, 784);
    let mut m = Rows::random(n, d, 3).unwrap();
    assert!(m.orthonormality_error() <= 1e-12);
    let mut adam = Adam::new(5e-3, n * d);
    for k in 0..20u32 {
        // A gradient with a component along the rows and one off them.
        let g: Vec<f64> = prior_ops::reference::rng::normals(9, k, n * d)
            .iter()
            .zip(&m.data)
            .map(|(z, r)| *z as f64 + 3.0 * r)
            .collect();
        let before = m.clone();
        adam.step(&mut m, &g).unwrap();
        let e = m.orthonormality_error();
        // And after rounding to f32, what the .npy holds.
        let m32 = Rows {
            data: m.to_f32().iter().map(|&v| v as f64).collect(),
            ..m.clone()
        };
        assert!(e <= 1e-5, "update {k}: |MMᵀ − I| = {e:.2e}");
        assert!(
            m32.orthonormality_error() <= 1e-5,
            "update {k}, f32: {:.2e}",
            m32.orthonormality_error()
        );
        let moved: f64 = m
            .data
            .iter()
            .zip(&before.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(moved > 1e-4, "update {k} did not move M ({moved:.2e})");
    }
}

#[test]
fn tangent_gradient_is_orthogonal_to_the_row_rotations() {
    // g − sym(gMᵀ)M satisfies Δ Mᵀ + M Δᵀ = 0.
    let (n, d) = (5, 40);
    let m = Rows::random(n, d, 1).unwrap();
    let g: Vec<f64> = prior_ops::reference::rng::normals(2, 0, n * d)
        .iter()
        .map(|&v| v as f64)
        .collect();
    let t = olm::tangent(&m, &g);
    for i in 0..n {
        for j in 0..n {
            let a: f64 = t[i * d..(i + 1) * d]
                .iter()
                .zip(m.row(j))
                .map(|(x, y)| x * y)
                .sum();
            let b: f64 = t[j * d..(j + 1) * d]
                .iter()
                .zip(m.row(i))
                .map(|(x, y)| x * y)
                .sum();
            assert!((a + b).abs() < 1e-12, "({i},{j}): {a} + {b}");
        }
    }
}

#[test]
fn pca_finds_the_planted_components() {
    // Images = 0.5 + 3 a e_3 + 1 b e_7 + 0.01 noise: the top two components
    // are ±e_3 and ±e_7 (signs fixed: largest entry positive).
    let d = 20;
    let z = prior_ops::reference::rng::normals(4, 0, 200 * (d + 2));
    let images: Vec<Vec<f32>> = (0..200)
        .map(|k| {
            let s = &z[k * (d + 2)..(k + 1) * (d + 2)];
            (0..d)
                .map(|i| {
                    0.5 + 0.01 * s[2 + i]
                        + if i == 3 { 3.0 * s[0] } else { 0.0 }
                        + if i == 7 { s[1] } else { 0.0 }
                })
                .collect()
        })
        .collect();
    let p = olm::pca(&images, 2).unwrap();
    assert!(p.row(0)[3] > 0.999, "{:?}", p.row(0));
    assert!(p.row(1)[7] > 0.999, "{:?}", p.row(1));
    assert!(p.orthonormality_error() < 1e-12);
}

#[test]
fn committed_learned_matrices_are_orthonormal_784_column_rows() {
    // tests/golden/olm/mnist_n{16,32}.npy: the README table's learned M.
    for n in [16usize, 32] {
        let m = npy(&golden(&format!("mnist_n{n}.npy")));
        assert_eq!(m.len(), n * 784, "mnist_n{n}.npy");
        let rows = Rows {
            n,
            dim: 784,
            data: m.iter().map(|&v| v as f64).collect(),
        };
        let e = rows.orthonormality_error();
        assert!(e <= 1e-5, "mnist_n{n}.npy: |MMᵀ − I| = {e:.2e}");
    }
}
