//! CPU reference of `embedding` (f64 trigonometry on the f32 argument `t·f`,
//! the product rounded to f32 as PyTorch and the shader do).

/// `[cos(t·f), sin(t·f)]` per sample, or its derivative in `t` when `derivative`.
pub fn sinusoid(t: &[f32], freqs: &[f32], derivative: bool) -> Vec<f32> {
    let k = freqs.len();
    let mut y = vec![0.0; t.len() * 2 * k];
    for (b, &tv) in t.iter().enumerate() {
        for (j, &f) in freqs.iter().enumerate() {
            let a = (tv * f) as f64;
            let (s, c) = a.sin_cos();
            let (u, v) = if derivative {
                (-(f as f64) * s, f as f64 * c)
            } else {
                (c, s)
            };
            y[b * 2 * k + j] = u as f32;
            y[b * 2 * k + k + j] = v as f32;
        }
    }
    y
}
