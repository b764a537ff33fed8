//! 2×2 average pooling with stride 2 (`shaders/pool.wgsl`), PyTorch's
//! `avg_pool2d(x, 2, 2)`, and its adjoint.
//!
//! Pooling is linear: its JVP is [`avg_pool2`] itself and its VJP is
//! [`avg_pool2_vjp`] (each pooled value's cotangent spread over its 2×2 block
//! times ¼; an odd last row/column, which pooling drops, gets 0).

use bytemuck::{Pod, Zeroable};
use prior_gpu::{Access, Gpu, GpuError, Kernel, Result, Shape, Tensor};

use crate::precision::HalfTensor;
use crate::shaders::POOL;

const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite];
/// `avg_pool2`: 2×2 average pooling, stride 2 (an odd last row/column is dropped).
pub const AVG_POOL2: Kernel = Kernel {
    file: "pool.wgsl",
    source: POOL,
    entry: "avg_pool2",
    bindings: BINDINGS,
};
/// `avg_pool2_f16`: [`AVG_POOL2`] on f16 pairs (`--precision f16`).
pub const AVG_POOL2_F16: Kernel = Kernel {
    file: "pool.wgsl",
    source: POOL,
    entry: "avg_pool2_f16",
    bindings: BINDINGS,
};
/// `upsample2`: y = scale · x of the coarse pixel (nearest 2× upsampling; scale ¼: the VJP of
/// `avg_pool2`).
pub const UPSAMPLE2: Kernel = Kernel {
    file: "pool.wgsl",
    source: POOL,
    entry: "upsample2",
    bindings: BINDINGS,
};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    h: u32,
    w: u32,
    c: u32,
    ho: u32,
    wo: u32,
    scale: f32,
    _pad: u32,
}
prior_gpu::uniform!(Params {
    n,
    h,
    w,
    c,
    ho,
    wo,
    scale,
    _pad
});

/// 2×2 average pooling, stride 2: `[n, h, w, c]` → `[n, ⌊h/2⌋, ⌊w/2⌋, c]`.
pub fn avg_pool2(gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
    pool(gpu, &AVG_POOL2, x)
}

/// [`avg_pool2`] on f16 storage (an even channel count): each average in
/// f32, rounded to f16 once.
pub fn avg_pool2_f16(gpu: &Gpu, x: &HalfTensor) -> Result<HalfTensor> {
    let view = x.pair_view().ok_or_else(|| GpuError::Shape {
        op: "avg_pool2 f16",
        detail: format!(
            "input {}: f16 pooling needs an even channel count",
            x.shape()
        ),
    })?;
    Ok(HalfTensor::from_pairs(&pool(gpu, &AVG_POOL2_F16, &view)?))
}

fn pool(gpu: &Gpu, kernel: &Kernel, x: &Tensor) -> Result<Tensor> {
    let s = x.shape();
    if s.h < 2 || s.w < 2 {
        return Err(GpuError::Shape {
            op: "avg_pool2",
            detail: format!("input {s} is smaller than 2×2"),
        });
    }
    let os = Shape::new(s.n, s.h / 2, s.w / 2, s.c);
    let y = gpu.empty(os);
    let p = Params {
        n: s.n as u32,
        h: s.h as u32,
        w: s.w as u32,
        c: s.c as u32,
        ho: os.h as u32,
        wo: os.w as u32,
        scale: 1.0,
        _pad: 0,
    };
    gpu.launch(kernel, &[], &p, &[x, &y], crate::groups_flat(os.numel()));
    Ok(y)
}

/// Nearest-neighbour 2× up-sampling times `scale` into an `out_h × out_w`
/// output (`2h` or `2h + 1` rows, likewise columns; an extra odd row/column
/// is 0).
pub fn upsample2(gpu: &Gpu, x: &Tensor, out_hw: (usize, usize), scale: f32) -> Result<Tensor> {
    let s = x.shape();
    let (ho, wo) = out_hw;
    if ho / 2 != s.h || wo / 2 != s.w {
        return Err(GpuError::Shape {
            op: "upsample2",
            detail: format!("{ho}×{wo} output for input {s}: must be 2h or 2h+1 by 2w or 2w+1"),
        });
    }
    let os = Shape::new(s.n, ho, wo, s.c);
    gpu.check_fits("upsample2 output", os)?;
    let y = gpu.empty(os);
    let p = Params {
        n: s.n as u32,
        h: s.h as u32,
        w: s.w as u32,
        c: s.c as u32,
        ho: ho as u32,
        wo: wo as u32,
        scale,
        _pad: 0,
    };
    gpu.launch(
        &UPSAMPLE2,
        &[],
        &p,
        &[x, &y],
        crate::groups_flat(os.numel()),
    );
    Ok(y)
}

/// VJP of [`avg_pool2`] on an input of size `in_hw`: `u` (`[k, ⌊h/2⌋, ⌊w/2⌋, c]`)
/// up-sampled and divided by 4.
pub fn avg_pool2_vjp(gpu: &Gpu, u: &Tensor, in_hw: (usize, usize)) -> Result<Tensor> {
    upsample2(gpu, u, in_hw, 0.25)
}
