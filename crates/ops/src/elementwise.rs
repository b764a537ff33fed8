//! Element-wise kernels (`shaders/elementwise.wgsl`): ReLU, the ReLU mask of
//! tangent passes, `alpha·a + beta·b` (residual subtraction), per-channel affine.

use bytemuck::{Pod, Zeroable};
use prior_gpu::{Access, Gpu, GpuError, Kernel, Result, Tensor};

use crate::shaders::ELEMENTWISE;

/// a, b, y.
const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite];
const fn kernel(entry: &'static str) -> Kernel {
    Kernel {
        file: "elementwise.wgsl",
        source: ELEMENTWISE,
        entry,
        bindings: BINDINGS,
    }
}
/// `relu`: y = max(x, 0) (x at binding 1, y at 3; binding 2 unused).
pub const RELU: Kernel = Kernel {
    bindings: &[Access::Read, Access::Unused, Access::ReadWrite],
    ..kernel("relu")
};
/// `relu_mask`: y = t where the primal ReLU output m > 0, else 0 (JVP and VJP of ReLU).
pub const RELU_MASK: Kernel = kernel("relu_mask");
/// `axpby`: y = alpha·a + beta·b.
pub const AXPBY: Kernel = kernel("axpby");
/// `affine_c`: `y = x·scale[c] + shift[c]` per channel c.
pub const AFFINE_C: Kernel = kernel("affine_c");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    len: u32,
    channels: u32,
    mask_len: u32,
    _pad: u32,
    alpha: f32,
    beta: f32,
}
prior_gpu::uniform!(Params {
    len,
    channels,
    mask_len,
    _pad,
    alpha,
    beta
});

fn run(gpu: &Gpu, k: &Kernel, p: Params, a: &Tensor, b: &Tensor, y: &Tensor) {
    gpu.launch(k, &[], &p, &[a, b, y], crate::groups_flat(p.len as usize));
}

/// `max(x, 0)`.
pub fn relu(gpu: &Gpu, x: &Tensor) -> Tensor {
    let y = gpu.empty(x.shape());
    let p = Params {
        len: x.numel() as u32,
        ..Default::default()
    };
    gpu.launch(&RELU, &[], &p, &[x, &y], crate::groups_flat(x.numel()));
    y
}

/// `t` where `primal > 0`, else 0. `t` may hold several samples per primal
/// sample (batched tangents): element i uses `primal[i % primal.numel()]`.
pub fn relu_mask(gpu: &Gpu, t: &Tensor, primal: &Tensor) -> Result<Tensor> {
    if !t.numel().is_multiple_of(primal.numel().max(1)) {
        return Err(GpuError::Shape {
            op: "relu_mask",
            detail: format!("{t:?} vs {primal:?}"),
        });
    }
    let y = gpu.empty(t.shape());
    let p = Params {
        len: t.numel() as u32,
        mask_len: primal.numel() as u32,
        ..Default::default()
    };
    run(gpu, &RELU_MASK, p, t, primal, &y);
    Ok(y)
}

/// `alpha·a + beta·b` (same shape).
pub fn axpby(gpu: &Gpu, alpha: f32, a: &Tensor, beta: f32, b: &Tensor) -> Result<Tensor> {
    if a.shape() != b.shape() {
        return Err(GpuError::Shape {
            op: "axpby",
            detail: format!("{:?} vs {:?}", a, b),
        });
    }
    let y = gpu.empty(a.shape());
    run(
        gpu,
        &AXPBY,
        Params {
            len: a.numel() as u32,
            alpha,
            beta,
            ..Default::default()
        },
        a,
        b,
        &y,
    );
    Ok(y)
}

/// Residual subtraction `a − b` (denoised = noisy − predicted noise).
pub fn sub(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    axpby(gpu, 1.0, a, -1.0, b)
}

/// `x·scale[c] + shift[c]`; `scale_shift` holds `[scale(C), shift(C)]`.
pub fn affine_c(gpu: &Gpu, x: &Tensor, scale_shift: &Tensor) -> Result<Tensor> {
    let c = x.shape().c;
    if scale_shift.numel() != 2 * c {
        return Err(GpuError::Shape {
            op: "affine_c",
            detail: format!("{} channels, {} parameters", c, scale_shift.numel()),
        });
    }
    let y = gpu.empty(x.shape());
    run(
        gpu,
        &AFFINE_C,
        Params {
            len: x.numel() as u32,
            channels: c as u32,
            ..Default::default()
        },
        x,
        scale_shift,
        &y,
    );
    Ok(y)
}
