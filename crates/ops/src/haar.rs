//! The ½-scaled orthonormal Haar transform (`shaders/haar.wgsl`) of the
//! multi-scale conditional models (Kadkhodaie, Guth, Mallat, Simoncelli 2023).
//!
//! On each 2×2 block `a b / c d` (row-major) of each channel:
//! `L = (a+b+c+d)/4`, `H = (a+b−c−d)/4`, `V = (a−b+c−d)/4`, `D = (a−b−c+d)/4`;
//! the inverse is `a = L+H+V+D`, `b = L+H−V−D`, `c = L−H+V−D`, `d = L−H−V+D`.
//! The analysis matrix is ½ × an orthonormal one, so `‖x‖² = 4‖coefficients‖²`
//! and the low-pass stays in the image's range.
//!
//! **Layout.** An image `[n, h, w, C]` maps to coefficients
//! `[n, h/2, w/2, 4C]` in band-major blocks `[L(0..C), H(0..C), V(0..C), D(0..C)]`:
//! band `k` (0 = L, 1 = H, 2 = V, 3 = D) of input channel `ch` is channel
//! `k·C + ch`. For a grayscale image this is the models' `[low, H, V, D]`;
//! for any C the low-pass is the contiguous channels `0..C` and the details
//! `C..4C` (`slice_channels` takes either part).
//!
//! Both steps are linear, so their JVP is the op itself applied to the
//! tangent; the VJPs are `Aᵀ = S/4` (analysis) and `Sᵀ = 4A` (synthesis).
//! Tangent batches are just larger `n`.

use bytemuck::{Pod, Zeroable};
use prior_gpu::{Access, Gpu, GpuError, Kernel, Result, Shape, Tensor};

use crate::channels::slice_channels;
use crate::shaders::HAAR;

const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite];
/// `analysis`: one level of the ½-scaled Haar transform, image → `[L, H, V, D]` (scaled by
/// `p.scale`).
pub const ANALYSIS: Kernel = Kernel {
    file: "haar.wgsl",
    source: HAAR,
    entry: "analysis",
    bindings: BINDINGS,
};
/// `synthesis`: its inverse, `[L, H, V, D]` → image (scaled by `p.scale`).
pub const SYNTHESIS: Kernel = Kernel {
    file: "haar.wgsl",
    source: HAAR,
    entry: "synthesis",
    bindings: BINDINGS,
};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    len: u32,
    h2: u32,
    w2: u32,
    c: u32,
    scale: f32,
    _p: [u32; 3],
}
prior_gpu::uniform!(Params {
    len,
    h2,
    w2,
    c,
    scale,
    _p
});

fn analysis_scaled(gpu: &Gpu, op: &'static str, x: &Tensor, scale: f32) -> Result<Tensor> {
    let s = x.shape();
    if !s.h.is_multiple_of(2) || !s.w.is_multiple_of(2) || s.h == 0 || s.w == 0 {
        return Err(GpuError::Shape {
            op,
            detail: format!(
                "a Haar step needs an even, non-zero height and width; the input is {s}"
            ),
        });
    }
    let out = Shape::new(s.n, s.h / 2, s.w / 2, 4 * s.c);
    gpu.check_fits(op, out)?;
    let y = gpu.empty(out);
    let len = s.n * out.h * out.w * s.c;
    if len > 0 {
        let p = Params {
            len: len as u32,
            h2: out.h as u32,
            w2: out.w as u32,
            c: s.c as u32,
            scale,
            _p: [0; 3],
        };
        gpu.launch(&ANALYSIS, &[], &p, &[x, &y], crate::groups_flat(len));
    }
    Ok(y)
}

fn synthesis_scaled(gpu: &Gpu, op: &'static str, coefs: &Tensor, scale: f32) -> Result<Tensor> {
    let s = coefs.shape();
    if !s.c.is_multiple_of(4) || s.c == 0 {
        return Err(GpuError::Shape {
            op,
            detail: format!(
                "Haar coefficients have 4·C channels [L, H, V, D]; the input {s} has {} channels",
                s.c
            ),
        });
    }
    let c = s.c / 4;
    let out = Shape::new(s.n, 2 * s.h, 2 * s.w, c);
    gpu.check_fits(op, out)?;
    let y = gpu.empty(out);
    let len = s.n * s.h * s.w * c;
    if len > 0 {
        let p = Params {
            len: len as u32,
            h2: s.h as u32,
            w2: s.w as u32,
            c: c as u32,
            scale,
            _p: [0; 3],
        };
        gpu.launch(&SYNTHESIS, &[], &p, &[coefs, &y], crate::groups_flat(len));
    }
    Ok(y)
}

/// One analysis step: `[n, h, w, C]` → `[n, h/2, w/2, 4C]` (band-major
/// `[L, H, V, D]` blocks, see the module doc). `h` and `w` must be even.
pub fn haar_analysis(gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
    analysis_scaled(gpu, "haar_analysis", x, 1.0)
}

/// One synthesis step, the exact inverse of [`haar_analysis`]:
/// `[n, h, w, 4C]` → `[n, 2h, 2w, C]`.
pub fn haar_synthesis(gpu: &Gpu, coefs: &Tensor) -> Result<Tensor> {
    synthesis_scaled(gpu, "haar_synthesis", coefs, 1.0)
}

/// JVP of the (linear) analysis: the analysis of the tangents.
pub fn haar_analysis_jvp(gpu: &Gpu, v: &Tensor) -> Result<Tensor> {
    haar_analysis(gpu, v)
}

/// JVP of the (linear) synthesis: the synthesis of the tangents.
pub fn haar_synthesis_jvp(gpu: &Gpu, v: &Tensor) -> Result<Tensor> {
    haar_synthesis(gpu, v)
}

/// VJP of the analysis: `Aᵀu = S(u)/4` for cotangents `u` of coefficient
/// shape `[k, h/2, w/2, 4C]`; returns `[k, h, w, C]`.
pub fn haar_analysis_vjp(gpu: &Gpu, u: &Tensor) -> Result<Tensor> {
    synthesis_scaled(gpu, "haar_analysis_vjp", u, 0.25)
}

/// VJP of the synthesis: `Sᵀu = 4·A(u)` for cotangents `u` of image shape
/// `[k, 2h, 2w, C]`; returns `[k, h, w, 4C]`.
pub fn haar_synthesis_vjp(gpu: &Gpu, u: &Tensor) -> Result<Tensor> {
    analysis_scaled(gpu, "haar_synthesis_vjp", u, 4.0)
}

/// A J-level Haar pyramid of an image with C channels.
#[derive(Clone, Debug)]
pub struct HaarPyramid {
    /// The coarsest low-pass `[n, h/2^J, w/2^J, C]`.
    pub low: Tensor,
    /// `details[j]` = the `[H, V, D]` bands of level j, `[n, h/2^(j+1), w/2^(j+1), 3C]`
    /// (band-major, finest first).
    pub details: Vec<Tensor>,
}

impl HaarPyramid {
    /// Number of levels J (the length of `details`).
    pub fn levels(&self) -> usize {
        self.details.len()
    }
}

/// Checks that `shape` can be decomposed into `levels` Haar levels.
pub fn check_pyramid_shape(op: &'static str, s: Shape, levels: usize) -> Result<()> {
    let m = 1usize
        .checked_shl(levels as u32)
        .filter(|_| levels < 32)
        .ok_or_else(|| GpuError::Shape {
            op,
            detail: format!("{levels} Haar levels is too many"),
        })?;
    if s.h == 0 || s.w == 0 || !s.h.is_multiple_of(m) || !s.w.is_multiple_of(m) {
        return Err(GpuError::Shape {
            op,
            detail: format!(
                "height {} and width {} must be non-zero multiples of 2^{levels} = {m} for a {levels}-level Haar pyramid",
                s.h, s.w
            ),
        });
    }
    Ok(())
}

/// Decomposes `x` (`[n, h, w, C]`, h and w multiples of 2^levels) into `levels`
/// levels: level j analyses the low-pass of level j−1 (the image for j = 0).
pub fn haar_pyramid(gpu: &Gpu, x: &Tensor, levels: usize) -> Result<HaarPyramid> {
    check_pyramid_shape("haar_pyramid", x.shape(), levels)?;
    let c = x.shape().c;
    let mut low = x.clone();
    let mut details = Vec::with_capacity(levels);
    for _ in 0..levels {
        let coefs = haar_analysis(gpu, &low)?;
        details.push(slice_channels(gpu, &coefs, c, 3 * c)?);
        low = slice_channels(gpu, &coefs, 0, c)?;
    }
    Ok(HaarPyramid { low, details })
}

/// Rebuilds the image from a pyramid (exact inverse of [`haar_pyramid`]).
pub fn haar_reconstruct(gpu: &Gpu, pyr: &HaarPyramid) -> Result<Tensor> {
    let mut low = pyr.low.clone();
    for (j, det) in pyr.details.iter().enumerate().rev() {
        let (l, d) = (low.shape(), det.shape());
        if d.c != 3 * l.c || (d.n, d.h, d.w) != (l.n, l.h, l.w) {
            return Err(GpuError::Shape {
                op: "haar_reconstruct",
                detail: format!("level {j}: details {d} do not fit the low-pass {l} (need the same n, h, w and 3× the channels)"),
            });
        }
        let coefs = crate::channels::concat_channels(gpu, &[&low, det])?;
        low = haar_synthesis(gpu, &coefs)?;
    }
    Ok(low)
}
