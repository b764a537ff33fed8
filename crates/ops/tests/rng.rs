//! The CPU generator reproduces the PyTorch-side numpy implementation
//! (tests/golden/set12_psnr.json: key and first normals of Set12 image 0 at
//! σ = 25). numpy's f32 log/cos may differ from Rust's by an ulp: 1e-6.

use prior_ops::reference::rng;

#[test]
fn generator_matches_golden() {
    let k = rng::key(0, 25 * 1000);
    assert_eq!(k, 3132892952);
    let want = [
        0.37761190533638,
        -0.11500437557697296,
        -0.6377096176147461,
        0.7092419266700745,
        -0.5089250206947327,
        -0.07480030506849289,
        0.2960848808288574,
        -0.2598767876625061,
    ];
    let got = rng::normals(0, 25 * 1000, 8);
    for (g, w) in got.iter().zip(want) {
        assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
    }
}

#[test]
fn generator_is_standard_normal() {
    let z = rng::normals(7, 3, 200_000);
    let mean = z.iter().map(|v| *v as f64).sum::<f64>() / z.len() as f64;
    let var = z.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / z.len() as f64;
    assert!(mean.abs() < 0.01, "mean {mean}");
    assert!((var - 1.0).abs() < 0.01, "var {var}");
}
