//! CPU reference of `linear` (f64 accumulation): `W` is `(out, in)` row-major.

/// `W·x + bias` per sample (`x` is `[n, inp]`, the result `[n, out]`).
pub fn linear(
    x: &[f32],
    n: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    out: usize,
    inp: usize,
) -> Vec<f32> {
    let mut y = vec![0.0; n * out];
    for b in 0..n {
        for o in 0..out {
            let mut acc = bias.map_or(0.0, |b| b[o] as f64);
            for i in 0..inp {
                acc += w[o * inp + i] as f64 * x[b * inp + i] as f64;
            }
            y[b * out + o] = acc as f32;
        }
    }
    y
}

/// `Wᵀ·u` per sample (`u` is `[n, out]`, the result `[n, in]`).
pub fn linear_t(u: &[f32], n: usize, w: &[f32], out: usize, inp: usize) -> Vec<f32> {
    let mut y = vec![0.0; n * inp];
    for b in 0..n {
        for i in 0..inp {
            let mut acc = 0.0f64;
            for o in 0..out {
                acc += w[o * inp + i] as f64 * u[b * out + o] as f64;
            }
            y[b * inp + i] = acc as f32;
        }
    }
    y
}
