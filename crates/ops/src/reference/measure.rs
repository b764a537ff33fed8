//! CPU references of the measurement kernels (`crate::measure`), channels-last.

use crate::measure::{Axis, DftPass};

/// `x ⊙ m` (m broadcast by modulo).
pub fn mask_mul(x: &[f32], m: &[f32]) -> Vec<f32> {
    x.iter()
        .enumerate()
        .map(|(j, v)| v * m[j % m.len()])
        .collect()
}

/// Block sums / s: `x` is `[n, h·s, w·s, c]`, result `[n, h, w, c]`.
pub fn block_down(x: &[f32], (n, h, w, c): (usize, usize, usize, usize), s: usize) -> Vec<f32> {
    let (ho, wo) = (h / s, w / s);
    let mut y = vec![0.0; n * ho * wo * c];
    for b in 0..n {
        for i in 0..ho {
            for j in 0..wo {
                for ch in 0..c {
                    let mut acc = 0.0f64;
                    for u in 0..s {
                        for v in 0..s {
                            acc += x[((b * h + i * s + u) * w + j * s + v) * c + ch] as f64;
                        }
                    }
                    y[((b * ho + i) * wo + j) * c + ch] = (acc / s as f64) as f32;
                }
            }
        }
    }
    y
}

/// Replicate value / s over s×s blocks: `x` is `[n, h, w, c]`, result `[n, h·s, w·s, c]`.
pub fn block_up(x: &[f32], (n, h, w, c): (usize, usize, usize, usize), s: usize) -> Vec<f32> {
    let (ho, wo) = (h * s, w * s);
    let mut y = vec![0.0; n * ho * wo * c];
    for b in 0..n {
        for i in 0..ho {
            for j in 0..wo {
                for ch in 0..c {
                    y[((b * ho + i) * wo + j) * c + ch] =
                        x[((b * h + i / s) * w + j / s) * c + ch] / s as f32;
                }
            }
        }
    }
    y
}

/// `A · x[s]` per sample (A rows × cols, row-major).
pub fn matvec(a: &[f32], rows: usize, cols: usize, x: &[f32]) -> Vec<f32> {
    x.chunks(cols)
        .flat_map(|xs| {
            (0..rows).map(move |r| {
                (0..cols)
                    .map(|k| a[r * cols + k] as f64 * xs[k] as f64)
                    .sum::<f64>() as f32
            })
        })
        .collect()
}

/// `Aᵀ · x[s]` per sample.
pub fn matvec_t(a: &[f32], rows: usize, cols: usize, x: &[f32]) -> Vec<f32> {
    x.chunks(rows)
        .flat_map(|xs| {
            (0..cols).map(move |k| {
                (0..rows)
                    .map(|r| a[r * cols + k] as f64 * xs[r] as f64)
                    .sum::<f64>() as f32
            })
        })
        .collect()
}

/// One orthonormal DFT pass (see `crate::measure::dft`), in f64.
/// `shape` = (n, h, w, C) logical channels; `x` real (C) or complex (2C).
pub fn dft(
    x: &[f32],
    (n, h, w, c): (usize, usize, usize, usize),
    pass: DftPass,
    mask: Option<&[f32]>,
) -> Vec<f32> {
    let DftPass {
        axis,
        complex_in,
        inverse,
        real_out,
    } = pass;
    let along_h = axis == Axis::H;
    let cin = if complex_in { 2 * c } else { c };
    let cout = if real_out { c } else { 2 * c };
    let len = if along_h { h } else { w };
    let sign = if inverse { 1.0 } else { -1.0 };
    let scale = 1.0 / (len as f64).sqrt();
    let mut y = vec![0.0; n * h * w * cout];
    let at = |b: usize, i: usize, j: usize, ch: usize, im: bool| -> f64 {
        if complex_in {
            x[((b * h + i) * w + j) * cin + 2 * ch + im as usize] as f64
        } else if im {
            0.0
        } else {
            x[((b * h + i) * w + j) * cin + ch] as f64
        }
    };
    for b in 0..n {
        for i in 0..h {
            for j in 0..w {
                for ch in 0..c {
                    let k = if along_h { i } else { j };
                    let (mut re, mut im) = (0.0f64, 0.0f64);
                    for t in 0..len {
                        let (ii, jj) = if along_h { (t, j) } else { (i, t) };
                        let a =
                            sign * 2.0 * std::f64::consts::PI * ((k * t) % len) as f64 / len as f64;
                        let (xr, xi) = (at(b, ii, jj, ch, false), at(b, ii, jj, ch, true));
                        re += xr * a.cos() - xi * a.sin();
                        im += xr * a.sin() + xi * a.cos();
                    }
                    let g = scale * mask.map_or(1.0, |m| m[i * w + j] as f64);
                    let o = ((b * h + i) * w + j) * cout;
                    if real_out {
                        y[o + ch] = (g * re) as f32;
                    } else {
                        y[o + 2 * ch] = (g * re) as f32;
                        y[o + 2 * ch + 1] = (g * im) as f32;
                    }
                }
            }
        }
    }
    y
}
