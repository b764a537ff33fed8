//! Sinusoidal noise-level embedding and its t-derivative against the CPU
//! reference (f64 trigonometry of the same f32 argument), for t from 0 to
//! 10³ (the calibration level of log Z), plus a finite-difference check of
//! the derivative. The frequencies match float32 `torch.linspace`.
//! Tolerance: 2e-6·max(1, f) absolute. Both sides evaluate the same f32
//! argument t·f, so only the shader's argument reduction (exact for t ≤ 10⁵)
//! and the driver's f32 sin/cos on [−π, π] (a few ulp) differ.

mod common;
use common::*;
use prior_gpu::Shape;
use prior_ops::embedding::{dsm_frequencies, Sinusoid};
use prior_ops::reference::embedding as cpu;

#[test]
fn frequencies_match_torch_float32() {
    // torch.exp(-torch.linspace(math.log(1.0), math.log(100.0), 32)) in float32
    let f = dsm_frequencies(32);
    assert_eq!(f[0], 1.0);
    assert!((f[31] - 0.01).abs() < 1e-9);
    assert!((f[1] as f64 - (-(100f64.ln()) / 31.0).exp()).abs() < 1e-7);
}

#[test]
fn sinusoid_matches_reference() {
    let gpu = gpu();
    let freqs = dsm_frequencies(32);
    let emb = Sinusoid::new(gpu, &freqs);
    let t = vec![0.0f32, 1e-6, 0.01, 0.5, 3.7, 99.0, 1000.0];
    let tg = gpu.upload(Shape::new(t.len(), 1, 1, 1), &t);
    let y = pollster::block_on(gpu.read(&emb.forward(gpu, &tg).unwrap())).unwrap();
    let d = pollster::block_on(gpu.read(&emb.derivative(gpu, &tg).unwrap())).unwrap();
    let err = max_abs_diff(&y, &cpu::sinusoid(&t, &freqs, false));
    assert!(err < 2e-6, "embedding err {err}");
    let errd = max_abs_diff(&d, &cpu::sinusoid(&t, &freqs, true));
    assert!(errd < 2e-6, "derivative err {errd}");
    // finite differences in f64 on the reference
    for &tv in &[0.3f64, 7.0] {
        let h = 1e-6;
        for (j, &f) in freqs.iter().enumerate() {
            let f = f as f64;
            let num = (((tv + h) * f).cos() - ((tv - h) * f).cos()) / (2.0 * h);
            let ana = -f * (tv * f).sin();
            assert!((num - ana).abs() < 1e-6, "freq {j}");
        }
    }
}

#[test]
fn sinusoid_rejects_vectors() {
    let gpu = gpu();
    let emb = Sinusoid::new(gpu, &[1.0, 0.5]);
    assert!(emb
        .forward(gpu, &gpu.upload(Shape::new(1, 1, 1, 2), &[0.0; 2]))
        .is_err());
}
