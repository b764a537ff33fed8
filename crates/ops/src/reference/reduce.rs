//! CPU references of the reductions (f64 accumulation).

/// Σ (a − b)².
pub fn sum_sq_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum()
}

/// Σ a·b.
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// PSNR in dB of `a` against `b` (peak 1).
pub fn psnr(a: &[f32], b: &[f32]) -> f64 {
    10.0 * (a.len() as f64 / sum_sq_diff(a, b)).log10()
}

/// Per-sample inner products: `a`, `b` hold `n` samples of equal length.
pub fn dot_per_sample(a: &[f32], b: &[f32], n: usize) -> Vec<f64> {
    let len = a.len() / n.max(1);
    (0..n)
        .map(|s| dot(&a[s * len..(s + 1) * len], &b[s * len..(s + 1) * len]))
        .collect()
}
