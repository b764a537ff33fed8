//! The FMA ceiling microkernel of `prior bench` (`shaders/fma_peak.wgsl`):
//! `invocations` threads each run `iters` rounds of 16 independent vec4
//! fused multiply-adds `x ← x·a + b` on registers, then write the sum of
//! their 64 lanes. [`FLOPS_PER_ROUND`] × iters × invocations flops, no
//! memory traffic inside the loop: the best an adapter's shader cores do on
//! f32 FMAs through WGSL, the yardstick the conv kernels' GFLOP/s are
//! compared with. CPU reference: [`crate::reference::peak::fma_peak`].

use bytemuck::{Pod, Zeroable};
use prior_gpu::{Access, Gpu, GpuError, Kernel, Result, Shape, Tensor};

use crate::shaders::FMA_PEAK as SOURCE;

/// `fma_peak`: the ceiling loop, one output per invocation.
pub const FMA_PEAK: Kernel = Kernel {
    file: "fma_peak.wgsl",
    source: SOURCE,
    entry: "fma_peak",
    bindings: &[Access::ReadWrite],
};

/// Flops of one round of one invocation: 16 vec4 FMAs, 2 flops per lane.
pub const FLOPS_PER_ROUND: u64 = 16 * 4 * 2;

/// The multiplier and addend of every FMA: the iteration contracts
/// (|a| < 1) towards b/(1 − a) = 0.1, so values stay finite for any count.
pub const A: f32 = 0.999;
/// See [`A`].
pub const B: f32 = 1e-4;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    iters: u32,
    invocations: u32,
    a: f32,
    b: f32,
}
prior_gpu::uniform!(Params {
    iters,
    invocations,
    a,
    b
});

/// Runs the ceiling loop: `invocations` threads × `iters` rounds; returns
/// their outputs (`[invocations, 1, 1, 1]`) without reading them back.
pub fn fma_peak(gpu: &Gpu, invocations: u32, iters: u32) -> Result<Tensor> {
    if invocations == 0 || iters == 0 {
        return Err(GpuError::Shape {
            op: "fma_peak",
            detail: format!("{invocations} invocations × {iters} rounds: both must be positive"),
        });
    }
    let out = gpu.empty(Shape::new(invocations as usize, 1, 1, 1));
    let p = Params {
        iters,
        invocations,
        a: A,
        b: B,
    };
    gpu.launch(
        &FMA_PEAK,
        &[],
        &p,
        &[&out],
        crate::groups_flat(invocations as usize),
    );
    Ok(out)
}
