//! Reductions (`shaders/reduce.wgsl`): sum of squared differences (MSE,
//! PSNR, the sampler's σ_t) and inner products, in two passes on the GPU.

use bytemuck::{Pod, Zeroable};
use prior_gpu::{Access, Gpu, GpuError, Kernel, Result, Shape, Tensor};

use crate::shaders::REDUCE;

const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite];
/// `sq_diff_partial`: partial sums of (a − b)², one per workgroup of 256.
pub const SQ_DIFF_PARTIAL: Kernel = Kernel {
    file: "reduce.wgsl",
    source: REDUCE,
    entry: "sq_diff_partial",
    bindings: BINDINGS,
};
/// `dot_partial`: partial sums of a·b, one per workgroup of 256.
pub const DOT_PARTIAL: Kernel = Kernel {
    file: "reduce.wgsl",
    source: REDUCE,
    entry: "dot_partial",
    bindings: BINDINGS,
};
/// `sum_final`: adds the partial sums into `y[0]`.
pub const SUM_FINAL: Kernel = Kernel {
    file: "reduce.wgsl",
    source: REDUCE,
    entry: "sum_final",
    bindings: &[Access::Read, Access::Unused, Access::ReadWrite],
};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    len: u32,
    groups: u32,
    _p: [u32; 2],
}
prior_gpu::uniform!(Params { len, groups, _p });

fn two_pass(gpu: &Gpu, partial: &Kernel, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.numel() != b.numel() {
        return Err(GpuError::Shape {
            op: "reduce",
            detail: format!("{a:?} vs {b:?}"),
        });
    }
    let groups = a.numel().div_ceil(256 * 8).clamp(1, 1024) as u32;
    let partials = gpu.empty(Shape::vector(groups as usize));
    let p = Params {
        len: a.numel() as u32,
        groups,
        _p: [0; 2],
    };
    gpu.launch(
        partial,
        &[],
        &p,
        &[a, b, &partials],
        prior_gpu::Dispatch::groups([groups, 1, 1], [256, 1, 1]),
    );
    let out = gpu.empty(Shape::vector(1));
    let p = Params {
        len: groups,
        groups: 1,
        _p: [0; 2],
    };
    gpu.launch(
        &SUM_FINAL,
        &[],
        &p,
        &[&partials, &out],
        prior_gpu::Dispatch::groups([1, 1, 1], [256, 1, 1]),
    );
    Ok(out)
}

/// `Σ (a − b)²` as a one-element tensor (stays on the GPU).
pub fn sum_sq_diff(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    two_pass(gpu, &SQ_DIFF_PARTIAL, a, b)
}

/// `Σ a·b` as a one-element tensor.
pub fn dot(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    two_pass(gpu, &DOT_PARTIAL, a, b)
}

/// PSNR of `a` against `b` for a peak value of 1, read back.
pub async fn psnr(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Result<f64> {
    let s = sum_sq_diff(gpu, a, b)?;
    let sum = gpu.read(&s).await?[0] as f64;
    let mse = sum / a.numel() as f64;
    Ok(10.0 * (1.0 / mse).log10())
}

/// `dot_per_sample`: `y[s] = Σ_i a[s, i]·b[s, i]`, one workgroup per sample.
pub const DOT_PER_SAMPLE: Kernel = Kernel {
    file: "reduce.wgsl",
    source: REDUCE,
    entry: "dot_per_sample",
    bindings: BINDINGS,
};

/// Per-sample inner products `Σ a[s]·b[s]` over each sample's `h·w·c`
/// values, as an `[n, 1, 1, 1]` tensor (one workgroup per sample).
pub fn dot_per_sample(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape() != b.shape() {
        return Err(GpuError::Shape {
            op: "dot_per_sample",
            detail: format!("{a:?} vs {b:?}"),
        });
    }
    let s = a.shape();
    let out = gpu.empty(Shape::new(s.n, 1, 1, 1));
    let p = Params {
        len: (s.h * s.w * s.c) as u32,
        groups: s.n as u32,
        _p: [0; 2],
    };
    let g = s.n.max(1) as u32;
    let groups = if g <= 65535 {
        [g, 1, 1]
    } else {
        [65535, g.div_ceil(65535), 1]
    };
    gpu.launch(
        &DOT_PER_SAMPLE,
        &[],
        &p,
        &[a, b, &out],
        prior_gpu::Dispatch::groups(groups, [256, 1, 1]),
    );
    Ok(out)
}
