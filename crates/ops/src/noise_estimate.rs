//! Blind noise-variance estimate per image (`shaders/noise_estimate.wgsl`):
//! Donoho's robust estimator on the finest diagonal Haar details,
//! σ̂ = median(|d|)/0.6745 with d = (a − b − c + e)/2 over 2×2 blocks
//! (orthonormal, so white noise of variance t gives details of variance t),
//! t̂ = σ̂². The median is exact (a radix select on the float bits, four
//! passes, one workgroup per image), so the GPU estimate equals the CPU
//! reference ([`crate::reference::noise_estimate`]) bit for bit. Images are
//! mostly smooth at that scale, so edges bias the estimate up slightly.
//!
//! The result stays on the GPU: a noise-conditioned model that is called
//! blind conditions on it without a readback.

use bytemuck::{Pod, Zeroable};
use prior_gpu::{Access, Gpu, GpuError, Kernel, Result, Shape, Tensor};

use crate::shaders::NOISE_ESTIMATE;

/// `mad_select`: one 8-bit pass of the radix select of median(|d|) per image (four passes; the last
/// writes t̂).
pub const MAD_SELECT: Kernel = Kernel {
    file: "noise_estimate.wgsl",
    source: NOISE_ESTIMATE,
    entry: "mad_select",
    bindings: &[Access::Read, Access::ReadWrite, Access::ReadWrite],
};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    h: u32,
    w: u32,
    c: u32,
    pass_index: u32,
    _p: [u32; 3],
}
prior_gpu::uniform!(Params {
    n,
    h,
    w,
    c,
    pass_index,
    _p
});

/// The estimated noise variance t̂ of each image of `y` (`[n, h, w, c]`), as
/// an `[n, 1, 1, 1]` tensor; odd trailing rows/columns are ignored, and an
/// image smaller than 2×2 gets 0. Nothing is read back.
pub fn noise_variance(gpu: &Gpu, y: &Tensor) -> Result<Tensor> {
    let s = y.shape();
    if s.n > 65535 {
        return Err(GpuError::Shape {
            op: "noise_variance",
            detail: format!("{s}: more than 65535 images in one call"),
        });
    }
    let out = gpu.zeros(Shape::new(s.n, 1, 1, 1));
    if s.n == 0 {
        return Ok(out);
    }
    let state = gpu.empty(Shape::vector(2 * s.n));
    for pass_index in 0..4 {
        let p = Params {
            n: s.n as u32,
            h: s.h as u32,
            w: s.w as u32,
            c: s.c as u32,
            pass_index,
            _p: [0; 3],
        };
        gpu.launch(
            &MAD_SELECT,
            &[],
            &p,
            &[y, &state, &out],
            prior_gpu::Dispatch::groups([s.n as u32, 1, 1], [256, 1, 1]),
        );
    }
    Ok(out)
}
