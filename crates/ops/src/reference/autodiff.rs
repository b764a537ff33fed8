//! CPU references of the forward- and reverse-mode derivatives of the ops
//! (`crate::autodiff`). Tangents and cotangents are channels-last batches;
//! several tangent samples may share one primal sample (sample `b` uses
//! primal/mask sample `b % mask_n`).
//!
//! The convolution VJP here is the literal transpose (a scatter-add of each
//! output's cotangent into the inputs it was computed from), written
//! independently of the flipped-kernel convolution the GPU uses, so the op
//! tests check that construction.

use prior_gpu::Shape;

use crate::batch_norm::BatchNorm;
use crate::conv2d::ConvConfig;

/// A convolution layer `x ↦ relu?(conv(x)·scale + shift)` as the
/// derivative references see it: weights `(cout, cin, kh, kw)`, geometry,
/// and the per-channel scale (the shift has no derivative).
#[derive(Clone, Copy, Debug)]
pub struct ConvRef<'a> {
    /// PyTorch-layout weights `(cout, cin, kh, kw)`.
    pub w: &'a [f32],
    /// Channels, kernel, stride, padding, dilation.
    pub cfg: ConvConfig,
    /// The folded normalisation's scale, if any.
    pub scale: Option<&'a [f32]>,
}

/// `mask?(conv(t)·scale)`: the JVP of the layer at a primal whose post-ReLU
/// output is `mask` (`[mask_n, ho, wo, cout]`); the shift (and bias) drop
/// out of the tangent.
pub fn conv2d_jvp(t: &[f32], s: Shape, layer: ConvRef, mask: Option<&[f32]>) -> (Shape, Vec<f32>) {
    let ConvRef { w, cfg, scale } = layer;
    let cout = cfg.cout;
    let (os, y) = super::conv2d::conv2d(t, s, w, None, cfg);
    let mut y = match scale {
        Some(sc) => y
            .iter()
            .enumerate()
            .map(|(i, v)| v * sc[i % cout])
            .collect(),
        None => y,
    };
    if let Some(m) = mask {
        y = super::elementwise::relu_mask(&y, m);
    }
    (os, y)
}

/// The VJP of the layer: `u` (`[n, ho, wo, cout]`) is the cotangent of its
/// output; `out_mask` is the primal post-ReLU output (ReLU VJP, applied to
/// `u` first) and `in_shape` the input's shape. Returns the cotangent of
/// the input.
pub fn conv2d_vjp(
    u: &[f32],
    in_shape: Shape,
    layer: ConvRef,
    out_mask: Option<&[f32]>,
) -> Vec<f32> {
    let ConvRef { w, cfg, scale } = layer;
    let ConvConfig {
        cout,
        kh,
        kw,
        stride,
        pad,
        dilation: dil,
        ..
    } = cfg;
    let s = in_shape;
    let ho = (s.h + 2 * pad - dil * (kh - 1) - 1) / stride + 1;
    let wo = (s.w + 2 * pad - dil * (kw - 1) - 1) / stride + 1;
    assert_eq!(u.len(), s.n * ho * wo * cout, "cotangent size");
    let u: Vec<f32> = match out_mask {
        Some(m) => super::elementwise::relu_mask(u, m),
        None => u.to_vec(),
    };
    let mut x = vec![0.0f64; s.numel()];
    for b in 0..s.n {
        for oy in 0..ho {
            for ox in 0..wo {
                for co in 0..cout {
                    let g = u[((b * ho + oy) * wo + ox) * cout + co] as f64
                        * scale.map_or(1.0, |sc| sc[co] as f64);
                    if g == 0.0 {
                        continue;
                    }
                    for ky in 0..kh {
                        let iy = (oy * stride + ky * dil) as isize - pad as isize;
                        if iy < 0 || iy >= s.h as isize {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = (ox * stride + kx * dil) as isize - pad as isize;
                            if ix < 0 || ix >= s.w as isize {
                                continue;
                            }
                            for ci in 0..s.c {
                                x[((b * s.h + iy as usize) * s.w + ix as usize) * s.c + ci] +=
                                    g * w[((co * s.c + ci) * kh + ky) * kw + kx] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    x.into_iter().map(|v| v as f32).collect()
}

/// JVP of a normalisation: its linear part, `t·scale` per channel (no shift).
pub fn batch_norm_jvp(bn: &BatchNorm, t: &[f32]) -> Vec<f32> {
    let (scale, _) = bn.scale_shift();
    let c = scale.len();
    t.iter()
        .enumerate()
        .map(|(i, v)| v * scale[i % c])
        .collect()
}

/// VJP of a normalisation: the same diagonal map as the JVP.
pub fn batch_norm_vjp(bn: &BatchNorm, u: &[f32]) -> Vec<f32> {
    batch_norm_jvp(bn, u)
}

/// JVP (and VJP) of ReLU at a primal whose output is `primal_out`.
pub fn relu_jvp(t: &[f32], primal_out: &[f32]) -> Vec<f32> {
    super::elementwise::relu_mask(t, primal_out)
}

/// JVP of `a − b`.
pub fn sub_jvp(ta: &[f32], tb: &[f32]) -> Vec<f32> {
    ta.iter().zip(tb).map(|(a, b)| a - b).collect()
}

/// VJP of `a − b`: the cotangents of `a` and `b`.
pub fn sub_vjp(u: &[f32]) -> (Vec<f32>, Vec<f32>) {
    (u.to_vec(), u.iter().map(|v| -v).collect())
}
