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
    /// The noise level of the iterate the model sees at the next call: σ₀
    /// at first, then σ_t ([`Schedule::Measured`](super::Schedule)) or
    /// (1 − βh_t)·σ_t ([`Schedule::Recursion`](super::Schedule)).
    pub const SIGMA_NEXT: usize = 6;
    /// The measured level ‖d_t‖/√N of the last computed iteration.
    pub const MEASURED: usize = 7;
}

/// How σ_t, the noise level of each iterate, is obtained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Schedule {
    /// σ_t = ‖d_t‖/√N, measured from the denoiser's residual (Kadkhodaie &
    /// Simoncelli's sampler; right for blind denoisers, whose residual is a
    /// calibrated noise estimate).
    #[default]
    Measured,
    /// σ₁ = σ₀ and σ_{t+1} = (1 − βh_t)·σ_t: the level the update itself
    /// implies (the shrinkage (1 − h_t)σ_t plus the injected γ_t, in
    /// quadrature). For noise-conditioned models, whose residual need not be
    /// a calibrated estimate; ‖d_t‖/√N is still measured and reported
    /// ([`field::MEASURED`]), and divergence is judged on it.
    Recursion,
    /// σ_t = the blind estimate of the iterate's own noise level
    /// ([`crate::noise_estimate`], Donoho's MAD on the finest diagonal Haar
    /// details), computed on the GPU before each call; the model is given
    /// σ_t², so its conditioning tracks the noise actually present.
    Estimated,
}

/// Sample status codes in the state.
pub const RUNNING: f32 = 0.0;
/// Status code of a sample that reached σ_L.
pub const CONVERGED: f32 = 1.0;
/// Status code of a sample whose level exceeded σ_max or is not finite.
pub const DIVERGED: f32 = 2.0;

// The file's bindings: 1 a, 2 b, 3 m, 4 e (read), 5 out (read_write).
// Each entry point declares the ones it uses.
const R: Access = Access::Read;
const W: Access = Access::ReadWrite;
const U: Access = Access::Unused;
const fn kernel(entry: &'static str, bindings: &'static [Access]) -> Kernel {
    Kernel {
        file: "sampler.wgsl",
        source: SAMPLER,
        entry,
        bindings,
    }
}
/// `direction`: d = f + m ⊙ (y − f) − b (masking operators), d = f + M Mᵀ(y − f) − b, or d = f
/// (synthesis).
pub const DIRECTION: Kernel = kernel("direction", &[R, R, R, R, W]);
/// `sq_partial`: per-sample partial sums of d².
pub const SQ_PARTIAL: Kernel = kernel("sq_partial", &[R, U, U, U, W]);
/// `coeffs`: per sample σ_t, γ_t, the status and the step coefficients of the update.
pub const COEFFS: Kernel = kernel("coeffs", &[R, R, U, U, W]);
/// `update`: y ← y − h_eff·d + γ_eff·z.
pub const UPDATE: Kernel = kernel("update", &[R, R, U, U, W]);
/// `variance`: the noise variance σ_next² given to the model at its next call.
pub const VARIANCE: Kernel = kernel("variance", &[R, U, U, U, W]);

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
    _p: [u32; 3],
}
prior_gpu::uniform!(Params {
    len,
    per_sample,
    n,
    groups,
    h,
    w,
    c,
    key,
    m_len,
    b_len,
    mode,
    t,
    h_t,
    beta,
    sigma_final,
    sigma_max,
    offset,
    _p
});

/// The scalars of iteration `t` (1-based).
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// Iteration number, 1-based.
    pub t: u32,
    /// h_t = h₀ t / (1 + h₀ (t − 1)) (or a fixed step).
    pub h: f32,
    /// β in (0, 1]: the noise level shrinks by the factor (1 − β·h_t) per
    /// step (β = 1 injects no noise).
    pub beta: f32,
    /// σ_L: a sample whose σ_t ≤ σ_L converges (after this update).
    pub sigma_final: f32,
    /// A sample whose σ_t or measured level exceeds this (or is not
    /// finite) diverges.
    pub sigma_max: f32,
    /// Where σ_t comes from.
    pub schedule: Schedule,
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
    if t.numel() == 0
        || !shape.numel().is_multiple_of(t.numel())
        || !t.numel().is_multiple_of(per.max(1))
    {
        return Err(GpuError::Shape {
            op,
            detail: format!("{what} {t:?} does not broadcast to {shape}"),
        });
    }
    Ok(())
}

/// `d = f + m ⊙ (y − f) − b` for masking operators (M Mᵀ v = m ⊙ v); `m`
/// and `b = M x_c` hold one sample or the whole batch.
pub fn direction_mask(
    gpu: &Gpu,
    f: &Tensor,
    y: &Tensor,
    mask: &Tensor,
    b: &Tensor,
) -> Result<Tensor> {
    let shape = f.shape();
    if y.shape() != shape {
        return Err(GpuError::Shape {
            op: "sampler direction",
            detail: format!("f {f:?} vs y {y:?}"),
        });
    }
    check_broadcast("sampler direction", "mask", mask, shape)?;
    check_broadcast("sampler direction", "M x_c", b, shape)?;
    let p = Params {
        mode: 1,
        m_len: mask.numel() as u32,
        b_len: b.numel() as u32,
        ..base(shape)
    };
    let d = gpu.empty(shape);
    gpu.launch(
        &DIRECTION,
        &[],
        &p,
        &[f, y, mask, b, &d],
        crate::groups_flat(shape.numel()),
    );
    Ok(d)
}

/// `d = f + pu − b` with `pu = M Mᵀ (y − f)` computed by the operator.
pub fn direction_general(gpu: &Gpu, f: &Tensor, pu: &Tensor, b: &Tensor) -> Result<Tensor> {
    let shape = f.shape();
    if pu.shape() != shape {
        return Err(GpuError::Shape {
            op: "sampler direction",
            detail: format!("f {f:?} vs M Mᵀ(y − f) {pu:?}"),
        });
    }
    check_broadcast("sampler direction", "M x_c", b, shape)?;
    let p = Params {
        mode: 2,
        b_len: b.numel() as u32,
        ..base(shape)
    };
    let d = gpu.empty(shape);
    let s = spare(gpu);
    gpu.launch(
        &DIRECTION,
        &[],
        &p,
        &[f, pu, &s, b, &d],
        crate::groups_flat(shape.numel()),
    );
    Ok(d)
}

/// A fresh state for `n` samples (all running; the model's first call sees
/// noise level `sigma0`).
pub fn new_state(gpu: &Gpu, n: usize, sigma0: f32) -> Tensor {
    let mut st = vec![0.0f32; n * STATE];
    for s in 0..n {
        st[s * STATE + field::SIGMA_NEXT] = sigma0;
    }
    gpu.upload(Shape::vector(n * STATE), &st)
}

/// The noise variance σ_next² of each sample's next iterate, `[n, 1, 1, 1]`
/// (what a noise-conditioned model is given).
pub fn variance(gpu: &Gpu, state: &Tensor) -> Result<Tensor> {
    if state.numel() == 0 || !state.numel().is_multiple_of(STATE) {
        return Err(GpuError::Shape {
            op: "sampler variance",
            detail: format!("state {state:?}"),
        });
    }
    let n = state.numel() / STATE;
    let out = gpu.empty(Shape::new(n, 1, 1, 1));
    let p = Params {
        n: n as u32,
        ..Default::default()
    };
    gpu.launch(
        &VARIANCE,
        &[],
        &p,
        &[state, &out],
        prior_gpu::Dispatch::flat(n as u32, 64),
    );
    Ok(out)
}

/// Partial sums per sample: workgroups per sample for `per_sample` values.
fn groups_per_sample(per_sample: usize) -> u32 {
    per_sample.div_ceil(256 * 8).clamp(1, 256) as u32
}

/// Reduces `Σ d²` per sample and updates `state` for iteration `step`:
/// σ_t (per `step.schedule`), the measured level, status, the update
/// coefficients (h_t, γ_t), or (0, 0) for a sample that has stopped or
/// diverges now, and the level of the next call.
pub fn coefficients(gpu: &Gpu, d: &Tensor, state: &Tensor, step: &Step) -> Result<()> {
    coefficients_with(gpu, d, state, step, None)
}

/// [`coefficients`], with the per-sample noise variances `estimated`
/// (`[n, 1, 1, 1]`) that [`Schedule::Estimated`] takes σ_t from.
pub fn coefficients_with(
    gpu: &Gpu,
    d: &Tensor,
    state: &Tensor,
    step: &Step,
    estimated: Option<&Tensor>,
) -> Result<()> {
    let shape = d.shape();
    if state.numel() != shape.n * STATE {
        return Err(GpuError::Shape {
            op: "sampler coefficients",
            detail: format!("state {state:?} for {} samples", shape.n),
        });
    }
    let per = shape.h * shape.w * shape.c;
    let groups = groups_per_sample(per);
    let partials = gpu.empty(Shape::vector(shape.n * groups as usize));
    let p = Params {
        groups,
        t: step.t,
        h_t: step.h,
        beta: step.beta,
        sigma_final: step.sigma_final,
        sigma_max: step.sigma_max,
        mode: match step.schedule {
            Schedule::Measured => 0,
            Schedule::Recursion => 1,
            Schedule::Estimated => 2,
        },
        ..base(shape)
    };
    gpu.launch(
        &SQ_PARTIAL,
        &[],
        &p,
        &[d, &partials],
        prior_gpu::Dispatch::groups([groups, shape.n as u32, 1], [256, 1, 1]),
    );
    // Read by the estimated schedule only (a small spare otherwise).
    let s = spare(gpu);
    let est = match (step.schedule, estimated) {
        (Schedule::Estimated, Some(t)) if t.numel() == shape.n => t,
        (Schedule::Estimated, _) => {
            return Err(GpuError::Shape {
                op: "sampler coefficients",
                detail: format!("the estimated schedule needs {} noise variances", shape.n),
            })
        }
        _ => &s,
    };
    gpu.launch(
        &COEFFS,
        &[],
        &p,
        &[&partials, est, state],
        prior_gpu::Dispatch::groups([shape.n as u32, 1, 1], [256, 1, 1]),
    );
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
pub fn update_from(
    gpu: &Gpu,
    y: &Tensor,
    d: &Tensor,
    state: &Tensor,
    key: u32,
    offset: u32,
) -> Result<()> {
    let shape = y.shape();
    if d.shape() != shape || state.numel() != shape.n * STATE {
        return Err(GpuError::Shape {
            op: "sampler update",
            detail: format!("y {y:?}, d {d:?}, state {state:?}"),
        });
    }
    if shape.numel() as u64 + offset as u64 >= u32::MAX as u64 {
        return Err(GpuError::Shape {
            op: "sampler update",
            detail: format!("{shape}: over 2^32 noise counters"),
        });
    }
    let p = Params {
        key,
        offset,
        ..base(shape)
    };
    gpu.launch(
        &UPDATE,
        &[],
        &p,
        &[d, state, y],
        crate::groups_flat(shape.numel()),
    );
    Ok(())
}
