//! CPU references of the reductions (f64 accumulation).

pub fn sum_sq_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum()
}

pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

pub fn psnr(a: &[f32], b: &[f32]) -> f64 {
    10.0 * (a.len() as f64 / sum_sq_diff(a, b)).log10()
}
