//! CPU reference of the Haar steps (same layout and operation order as
//! `shaders/haar.wgsl`, so results agree exactly). Channels-last data,
//! coefficients in band-major `[L(C), H(C), V(C), D(C)]` blocks.

use prior_gpu::Shape;

/// Analysis of `x` (shape `s`, even h and w) scaled by `scale`
/// (1: the transform; 4: the VJP of synthesis). Returns `[n, h/2, w/2, 4C]`.
pub fn analysis_scaled(x: &[f32], s: Shape, scale: f32) -> (Shape, Vec<f32>) {
    assert!(s.h.is_multiple_of(2) && s.w.is_multiple_of(2));
    let (h2, w2, c) = (s.h / 2, s.w / 2, s.c);
    let os = Shape::new(s.n, h2, w2, 4 * c);
    let mut y = vec![0.0; os.numel()];
    let q = 0.25 * scale;
    let at = |b: usize, yy: usize, xx: usize, ch: usize| x[((b * s.h + yy) * s.w + xx) * c + ch];
    for b in 0..s.n {
        for i in 0..h2 {
            for j in 0..w2 {
                for ch in 0..c {
                    let a = at(b, 2 * i, 2 * j, ch);
                    let bb = at(b, 2 * i, 2 * j + 1, ch);
                    let cc = at(b, 2 * i + 1, 2 * j, ch);
                    let d = at(b, 2 * i + 1, 2 * j + 1, ch);
                    let (s0, s1, d0, d1) = (a + bb, cc + d, a - bb, cc - d);
                    let o = ((b * h2 + i) * w2 + j) * 4 * c + ch;
                    y[o] = (s0 + s1) * q;
                    y[o + c] = (s0 - s1) * q;
                    y[o + 2 * c] = (d0 + d1) * q;
                    y[o + 3 * c] = (d0 - d1) * q;
                }
            }
        }
    }
    (os, y)
}

/// Synthesis of coefficients (shape `s`, 4C channels) scaled by `scale`
/// (1: the inverse; 0.25: the VJP of analysis). Returns `[n, 2h, 2w, C]`.
pub fn synthesis_scaled(coefs: &[f32], s: Shape, scale: f32) -> (Shape, Vec<f32>) {
    assert!(s.c.is_multiple_of(4));
    let c = s.c / 4;
    let os = Shape::new(s.n, 2 * s.h, 2 * s.w, c);
    let mut y = vec![0.0; os.numel()];
    for b in 0..s.n {
        for i in 0..s.h {
            for j in 0..s.w {
                for ch in 0..c {
                    let o = ((b * s.h + i) * s.w + j) * 4 * c + ch;
                    let (l, h, v, d) = (coefs[o], coefs[o + c], coefs[o + 2 * c], coefs[o + 3 * c]);
                    let (lp, lm, vp, vm) = (l + h, l - h, v + d, v - d);
                    let f = |yy: usize, xx: usize| ((b * os.h + yy) * os.w + xx) * c + ch;
                    y[f(2 * i, 2 * j)] = (lp + vp) * scale;
                    y[f(2 * i, 2 * j + 1)] = (lp - vp) * scale;
                    y[f(2 * i + 1, 2 * j)] = (lm + vm) * scale;
                    y[f(2 * i + 1, 2 * j + 1)] = (lm - vm) * scale;
                }
            }
        }
    }
    (os, y)
}

/// One level of the Haar analysis of `x`.
pub fn haar_analysis(x: &[f32], s: Shape) -> (Shape, Vec<f32>) {
    analysis_scaled(x, s, 1.0)
}

/// One level of the Haar synthesis (the inverse of the analysis).
pub fn haar_synthesis(coefs: &[f32], s: Shape) -> (Shape, Vec<f32>) {
    synthesis_scaled(coefs, s, 1.0)
}

/// The VJP of the analysis.
pub fn haar_analysis_vjp(u: &[f32], s: Shape) -> (Shape, Vec<f32>) {
    synthesis_scaled(u, s, 0.25)
}

/// The VJP of the synthesis.
pub fn haar_synthesis_vjp(u: &[f32], s: Shape) -> (Shape, Vec<f32>) {
    analysis_scaled(u, s, 4.0)
}

/// An array with its shape.
pub type Array = (Shape, Vec<f32>);

/// `levels`-level pyramid: (coarsest low-pass, details finest first), each with its shape.
pub fn haar_pyramid(x: &[f32], s: Shape, levels: usize) -> (Array, Vec<Array>) {
    let c = s.c;
    let mut low = (s, x.to_vec());
    let mut details = Vec::new();
    for _ in 0..levels {
        let (cs, coefs) = haar_analysis(&low.1, low.0);
        details.push((
            cs.with_c(3 * c),
            super::channels::slice_channels(&coefs, cs, c, 3 * c),
        ));
        low = (
            cs.with_c(c),
            super::channels::slice_channels(&coefs, cs, 0, c),
        );
    }
    (low, details)
}
