//! Kernels of the stochastic coarse-to-fine sampler (`shaders/sampler.wgsl`):
//! the direction `d_t`, per-sample `σ_t = ‖d_t‖/√N` and `γ_t` computed on the
//! GPU, and the noisy update `y ← y − h_t d_t + γ_t z`, in place. The loop
//! that drives them is `prior_algos::sampler`; nothing here reads back.
//!
//! Per-sample state lives in a GPU tensor of [`STATE`] floats per sample
//! (layout in [`field`]); the host reads it back to test for convergence.

use bytemuck::{Pod, Zeroable};
use prior_gpu::{Access, Gpu, GpuError, Kernel, Result, Shape, Tensor};

use crate::shaders::SAMPLER;

/// Floats of state per sample.
pub const STATE: usize = 8;

/// Offsets of the state fields of one sample.
pub mod field {
    /// σ of the sample's last computed iteration.
    pub const SIGMA: usize = 0;
    /// 0 running, 1 converged (σ ≤ σ_L), 2 diverged.
    pub const STATUS: usize = 1;
    /// Updates applied so far (the iteration of the last applied update).
    pub const ITERATIONS: usize = 2;
    /// Step size h_t used by this iteration's update (0: frozen).
    pub const H: usize = 3;
    /// Noise amplitude γ_t used by this iteration's update (0: frozen).
    pub const GAMMA: usize = 4;
    /// σ of the last iteration whose update was applied.
    pub const SIGMA_GOOD: usize = 5;
}

/// Sample status codes in the state.
pub const RUNNING: f32 = 0.0;
pub const CONVERGED: f32 = 1.0;
pub const DIVERGED: f32 = 2.0;

const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite];
const fn kernel(entry: &'static str) -> Kernel {
    Kernel { file: "sampler.wgsl", source: SAMPLER, entry, bindings: BINDINGS }
}
pub const DIRECTION: Kernel = kernel("direction");
pub const SQ_PARTIAL: Kernel = kernel("sq_partial");
pub const COEFFS: Kernel = kernel("coeffs");
pub const UPDATE: Kernel = kernel("update");

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    len: u32,
    per_sample: u32,
    n: u32,
    groups: u32,
    h: u32,
    w: u32,
    c: u32,
    key: u32,
    m_len: u32,
    b_len: u32,
    mode: u32,
    t: u32,
    h_t: f32,
    beta: f32,
    sigma_final: f32,
    sigma_max: f32,
    offset: u32,
    pad: [u32; 3],
}

/// The scalars of iteration `t` (1-based).
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub t: u32,
    /// h_t = h₀ t / (1 + h₀ (t − 1)) (or a fixed step).
    pub h: f32,
    pub beta: f32,
    /// σ_L: a sample whose σ_t ≤ σ_L converges (after this update).
    pub sigma_final: f32,
    /// A sample whose σ_t exceeds this (or is not finite) diverges.
    pub sigma_max: f32,
}

fn base(shape: Shape) -> Params {
    Params {
        len: shape.numel() as u32,
        per_sample: (shape.h * shape.w * shape.c) as u32,
        n: shape.n as u32,
        h: shape.h as u32,
        w: shape.w as u32,
        c: shape.c as u32,
        m_len: 1,
        b_len: 1,
        ..Default::default()
    }
}

fn spare(gpu: &Gpu) -> Tensor {
    gpu.empty(Shape::vector(1))
}

fn check_broadcast(op: &'static str, what: &str, t: &Tensor, shape: Shape) -> Result<()> {
    let per = shape.h * shape.w * shape.c;
    if t.numel() == 0 || !shape.numel().is_multiple_of(t.numel()) || !t.numel().is_multiple_of(per.max(1)) {
        return Err(GpuError::Shape { op, detail: format!("{what} {t:?} does not broadcast to {shape}") });
    }
    Ok(())
}

/// `d = f + m ⊙ (y − f) − b` for masking operators (M Mᵀ v = m ⊙ v); `m`
/// and `b = M x_c` hold one sample or the whole batch.
pub fn direction_mask(gpu: &Gpu, f: &Tensor, y: &Tensor, mask: &Tensor, b: &Tensor) -> Result<Tensor> {
    let shape = f.shape();
    if y.shape() != shape {
        return Err(GpuError::Shape { op: "sampler direction", detail: format!("f {f:?} vs y {y:?}") });
    }
    check_broadcast("sampler direction", "mask", mask, shape)?;
    check_broadcast("sampler direction", "M x_c", b, shape)?;
    let p = Params { mode: 1, m_len: mask.numel() as u32, b_len: b.numel() as u32, ..base(shape) };
    let d = gpu.empty(shape);
    gpu.launch(&DIRECTION, &[], bytemuck::bytes_of(&p), &[f, y, mask, b, &d], crate::groups_flat(shape.numel()));
    Ok(d)
}

/// `d = f + pu − b` with `pu = M Mᵀ (y − f)` computed by the operator.
pub fn direction_general(gpu: &Gpu, f: &Tensor, pu: &Tensor, b: &Tensor) -> Result<Tensor> {
    let shape = f.shape();
    if pu.shape() != shape {
        return Err(GpuError::Shape { op: "sampler direction", detail: format!("f {f:?} vs M Mᵀ(y − f) {pu:?}") });
    }
    check_broadcast("sampler direction", "M x_c", b, shape)?;
    let p = Params { mode: 2, b_len: b.numel() as u32, ..base(shape) };
    let d = gpu.empty(shape);
    let s = spare(gpu);
    gpu.launch(&DIRECTION, &[], bytemuck::bytes_of(&p), &[f, pu, &s, b, &d], crate::groups_flat(shape.numel()));
    Ok(d)
}

/// A fresh state for `n` samples (all running).
pub fn new_state(gpu: &Gpu, n: usize) -> Tensor {
    gpu.zeros(Shape::vector(n * STATE))
}

/// Partial sums per sample: workgroups per sample for `per_sample` values.
fn groups_per_sample(per_sample: usize) -> u32 {
    per_sample.div_ceil(256 * 8).clamp(1, 256) as u32
}

/// Reduces `Σ d²` per sample and updates `state` for iteration `step`:
/// σ_t, status, and the update coefficients (h_t, γ_t), or (0, 0) for a
/// sample that has stopped or diverges now.
pub fn coefficients(gpu: &Gpu, d: &Tensor, state: &Tensor, step: &Step) -> Result<()> {
    let shape = d.shape();
    if state.numel() != shape.n * STATE {
        return Err(GpuError::Shape { op: "sampler coefficients", detail: format!("state {state:?} for {} samples", shape.n) });
    }
    let per = shape.h * shape.w * shape.c;
    let groups = groups_per_sample(per);
    let partials = gpu.empty(Shape::vector(shape.n * groups as usize));
    let s = spare(gpu);
    let p = Params {
        groups,
        t: step.t,
        h_t: step.h,
        beta: step.beta,
        sigma_final: step.sigma_final,
        sigma_max: step.sigma_max,
        ..base(shape)
    };
    gpu.launch(&SQ_PARTIAL, &[], bytemuck::bytes_of(&p), &[d, &s, &s, &s, &partials], [groups, shape.n as u32, 1]);
    gpu.launch(&COEFFS, &[], bytemuck::bytes_of(&p), &[&partials, &s, &s, &s, state], [shape.n as u32, 1, 1]);
    Ok(())
}

/// `y ← y − h·d + γ·z` in place with each sample's (h, γ) from `state`;
/// `z` element (s, h, w, c) = `normal(key, s·N + c·H·W + h·W + w)` with
/// `key = reference::rng::key(seed, stream)`.
pub fn update(gpu: &Gpu, y: &Tensor, d: &Tensor, state: &Tensor, key: u32) -> Result<()> {
    update_from(gpu, y, d, state, key, 0)
}

/// [`update`] for a batch whose noise counters start at `offset` (the
/// batch's samples are samples `offset / N …` of a bigger run, N = C·H·W).
pub fn update_from(gpu: &Gpu, y: &Tensor, d: &Tensor, state: &Tensor, key: u32, offset: u32) -> Result<()> {
    let shape = y.shape();
    if d.shape() != shape || state.numel() != shape.n * STATE {
        return Err(GpuError::Shape { op: "sampler update", detail: format!("y {y:?}, d {d:?}, state {state:?}") });
    }
    if shape.numel() as u64 + offset as u64 >= u32::MAX as u64 {
        return Err(GpuError::Shape { op: "sampler update", detail: format!("{shape}: over 2^32 noise counters") });
    }
    let s = spare(gpu);
    let p = Params { key, offset, ..base(shape) };
    gpu.launch(&UPDATE, &[], bytemuck::bytes_of(&p), &[d, state, &s, &s, y], crate::groups_flat(shape.numel()));
    Ok(())
}
