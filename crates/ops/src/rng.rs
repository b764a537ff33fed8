//! Standard normal noise on the GPU (`shaders/rng.wgsl`) from prior's
//! counter-based generator ([`crate::reference::rng`] is the CPU version).
//!
//! Noise for a `[n, h, w, c]` tensor uses counter
//! `offset + s·C·H·W + (flat (C, H, W) index)` for element `(s, h, w, c)`,
//! so the numbers equal `reference::rng::normals(seed, stream, ..)` in
//! `(N, C, H, W)` order whatever the storage layout or the adapter.

use bytemuck::{Pod, Zeroable};
use prior_gpu::{Access, Gpu, GpuError, Kernel, Result, Shape, Tensor};

use crate::reference::rng::key;
use crate::shaders::RNG;

const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite];
/// `normal_fill`: y = z, standard normal values of the counter-based generator.
pub const NORMAL_FILL: Kernel = Kernel {
    file: "rng.wgsl",
    source: RNG,
    entry: "normal_fill",
    // Writes y alone (binding 1, the mean, unused).
    bindings: &[Access::Unused, Access::ReadWrite],
};
/// `axpy_normal`: y = a + scale·z.
pub const AXPY_NORMAL: Kernel = Kernel {
    file: "rng.wgsl",
    source: RNG,
    entry: "axpy_normal",
    bindings: BINDINGS,
};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    len: u32,
    key: u32,
    offset: u32,
    h: u32,
    w: u32,
    c: u32,
    a_len: u32,
    scale: f32,
}
prior_gpu::uniform!(Params {
    len,
    key,
    offset,
    h,
    w,
    c,
    a_len,
    scale
});

fn params(
    shape: Shape,
    seed: u64,
    stream: u32,
    offset: u32,
    a_len: u32,
    scale: f32,
) -> Result<Params> {
    let total = offset as u64 + shape.numel() as u64;
    if total > u32::MAX as u64 {
        return Err(GpuError::Shape {
            op: "rng",
            detail: format!("{shape} from counter {offset}: over 2^32 numbers in one stream"),
        });
    }
    Ok(Params {
        len: shape.numel() as u32,
        key: key(seed, stream),
        offset,
        h: shape.h.max(1) as u32,
        w: shape.w.max(1) as u32,
        c: shape.c.max(1) as u32,
        a_len: a_len.max(1),
        scale,
    })
}

/// A tensor of standard normals: element `(s, h, w, c)` is
/// `normal(key(seed, stream), offset + s·C·H·W + c·H·W + h·W + w)`.
pub fn normal(gpu: &Gpu, shape: Shape, seed: u64, stream: u32, offset: u32) -> Result<Tensor> {
    let p = params(shape, seed, stream, offset, 1, 1.0)?;
    let y = gpu.empty(shape);
    gpu.launch(
        &NORMAL_FILL,
        &[],
        &p,
        &[&y],
        crate::groups_flat(shape.numel()),
    );
    Ok(y)
}

/// `a + scale·z` with `z` as in [`normal`]; `a` may hold one sample that is
/// broadcast over the batch (its size must divide the tensor's).
pub fn axpy_normal(
    gpu: &Gpu,
    a: &Tensor,
    shape: Shape,
    scale: f32,
    seed: u64,
    stream: u32,
    offset: u32,
) -> Result<Tensor> {
    if a.numel() == 0 || !shape.numel().is_multiple_of(a.numel()) || a.shape().c != shape.c {
        return Err(GpuError::Shape {
            op: "axpy_normal",
            detail: format!("{a:?} does not broadcast to {shape}"),
        });
    }
    let p = params(shape, seed, stream, offset, a.numel() as u32, scale)?;
    let y = gpu.empty(shape);
    gpu.launch(
        &AXPY_NORMAL,
        &[],
        &p,
        &[a, &y],
        crate::groups_flat(shape.numel()),
    );
    Ok(y)
}
