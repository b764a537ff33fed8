//! Kernels of the Metropolis-adjusted Langevin sampler (`shaders/mala.wgsl`):
//! the Langevin proposal `y' = y − ε∇U(y) + √(2ε) z`, the per-sample
//! Metropolis–Hastings ratio from U and ∇U at both states, the uniform draw
//! and accept/reject, and the in-place select that keeps y, ∇U and U of the
//! accepted state. The loop that drives them is `prior_algos::mala`;
//! nothing here reads back.
//!
//! Per-sample state lives in a GPU tensor of [`STATE`] floats per sample
//! (layout in [`field`]).

use bytemuck::{Pod, Zeroable};
use prior_gpu::{Access, Gpu, GpuError, Kernel, Result, Shape, Tensor};

use crate::shaders::MALA;

/// Floats of state per sample.
pub const STATE: usize = 4;

/// Offsets of the state fields of one sample.
pub mod field {
    /// U(y, t) of the chain's current state.
    pub const ENERGY: usize = 0;
    /// Proposals accepted so far (over all levels).
    pub const ACCEPTED: usize = 1;
    /// 1 if the last proposal was accepted, else 0.
    pub const LAST: usize = 2;
    /// log α of the last proposal (before the min with 0).
    pub const LOG_ALPHA: usize = 3;
}

// The file's bindings: 1 a, 2 b, 3 e, 4 d (read), 5 out, 6 out2
// (read_write). Each entry point declares the ones it uses.
const R: Access = Access::Read;
const W: Access = Access::ReadWrite;
const U: Access = Access::Unused;
const fn kernel(entry: &'static str, bindings: &'static [Access]) -> Kernel {
    Kernel {
        file: "mala.wgsl",
        source: MALA,
        entry,
        bindings,
    }
}
/// `propose`: y' = y − ε·g + √(2ε)·z.
pub const PROPOSE: Kernel = kernel("propose", &[R, R, U, U, W]);
/// `mh_partial`: per-sample partial sums of the Metropolis–Hastings correction (y − y' + ε·g')² −
/// (y' − y + ε·g)².
pub const MH_PARTIAL: Kernel = kernel("mh_partial", &[R, R, R, R, W]);
/// `accept`: per sample, accepts y' with probability min(1, α) and updates the state.
pub const ACCEPT: Kernel = kernel("accept", &[R, R, U, U, W]);
/// `select`: y ← y', g ← g' where the sample accepted (in place).
pub const SELECT: Kernel = kernel("select", &[R, R, R, U, W, W]);
/// `set_energy`: the state's U ← U(y, t) (at the start of each level).
pub const SET_ENERGY: Kernel = kernel("set_energy", &[R, U, U, U, W]);

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
    eps: f32,
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
    eps,
    _p
});

fn base(shape: Shape) -> Params {
    Params {
        len: shape.numel() as u32,
        per_sample: (shape.h * shape.w * shape.c) as u32,
        n: shape.n as u32,
        h: shape.h as u32,
        w: shape.w as u32,
        c: shape.c as u32,
        ..Default::default()
    }
}

fn check_eps(op: &'static str, eps: f32) -> Result<()> {
    if !(eps > 0.0 && eps.is_finite()) {
        return Err(GpuError::Shape {
            op,
            detail: format!("step size {eps} must be positive and finite"),
        });
    }
    Ok(())
}

fn check_state(op: &'static str, state: &Tensor, n: usize) -> Result<()> {
    if state.numel() != n * STATE {
        return Err(GpuError::Shape {
            op,
            detail: format!("state {state:?} for {n} samples"),
        });
    }
    Ok(())
}

/// A fresh state for `n` chains (no energy yet: call [`set_energy`]).
pub fn new_state(gpu: &Gpu, n: usize) -> Tensor {
    gpu.zeros(Shape::vector(n * STATE))
}

/// The proposal `y' = y − ε·g + √(2ε)·z` with `z` element (s, h, w, c) =
/// `normal(key, s·N + c·H·W + h·W + w)`, `key = reference::rng::key(seed,
/// stream)` (the counters of `prior_ops::sampler::update`).
pub fn propose(gpu: &Gpu, y: &Tensor, g: &Tensor, eps: f32, key: u32) -> Result<Tensor> {
    let shape = y.shape();
    if g.shape() != shape {
        return Err(GpuError::Shape {
            op: "mala propose",
            detail: format!("y {y:?} vs ∇U {g:?}"),
        });
    }
    check_eps("mala propose", eps)?;
    if shape.numel() as u64 >= u32::MAX as u64 {
        return Err(GpuError::Shape {
            op: "mala propose",
            detail: format!("{shape}: over 2^32 noise counters"),
        });
    }
    let out = gpu.empty(shape);
    let p = Params {
        key,
        eps,
        ..base(shape)
    };
    gpu.launch(
        &PROPOSE,
        &[],
        &p,
        &[y, g, &out],
        crate::groups_flat(shape.numel()),
    );
    Ok(out)
}

/// Partial sums per sample: workgroups per sample for `per_sample` values.
fn groups_per_sample(per_sample: usize) -> u32 {
    per_sample.div_ceil(256 * 8).clamp(1, 256) as u32
}

/// The current and proposed states of one MALA step.
pub struct Pair<'a> {
    /// y, `[n, h, w, c]`.
    pub y: &'a Tensor,
    /// ∇U(y).
    pub g: &'a Tensor,
    /// y'.
    pub y_prop: &'a Tensor,
    /// ∇U(y').
    pub g_prop: &'a Tensor,
    /// U(y') per sample, `[n, 1, 1, 1]`.
    pub u_prop: &'a Tensor,
}

/// The Metropolis–Hastings test of each sample: `log α = U(y) − U(y') −
/// Σ[(y − y' + ε g')² − (y' − y + ε g)²]/(4ε)` (U(y) from `state`), accept
/// iff `ln u < log α` with `u` = uniform number `s` of key `key`
/// ([`crate::reference::mala::uniform`]). Updates `state` (energy of the
/// accepted state, acceptance count, last decision, log α).
pub fn accept(gpu: &Gpu, pair: &Pair<'_>, state: &Tensor, eps: f32, key: u32) -> Result<()> {
    let shape = pair.y.shape();
    if pair.g.shape() != shape || pair.y_prop.shape() != shape || pair.g_prop.shape() != shape {
        return Err(GpuError::Shape {
            op: "mala accept",
            detail: format!(
                "y {:?}, ∇U {:?}, y' {:?}, ∇U' {:?}",
                pair.y, pair.g, pair.y_prop, pair.g_prop
            ),
        });
    }
    if pair.u_prop.numel() != shape.n {
        return Err(GpuError::Shape {
            op: "mala accept",
            detail: format!("U(y') {:?} for {} samples", pair.u_prop, shape.n),
        });
    }
    check_state("mala accept", state, shape.n)?;
    check_eps("mala accept", eps)?;
    let groups = groups_per_sample(shape.h * shape.w * shape.c);
    let partials = gpu.empty(Shape::vector(shape.n * groups as usize));
    let p = Params {
        groups,
        key,
        eps,
        ..base(shape)
    };
    gpu.launch(
        &MH_PARTIAL,
        &[],
        &p,
        &[pair.y, pair.y_prop, pair.g, pair.g_prop, &partials],
        prior_gpu::Dispatch::groups([groups, shape.n as u32, 1], [256, 1, 1]),
    );
    gpu.launch(
        &ACCEPT,
        &[],
        &p,
        &[&partials, pair.u_prop, state],
        prior_gpu::Dispatch::groups([shape.n as u32, 1, 1], [256, 1, 1]),
    );
    Ok(())
}

/// `y ← y'` and `g ← g'` in place for the samples whose last proposal
/// `state` accepted.
pub fn select(
    gpu: &Gpu,
    state: &Tensor,
    y: &Tensor,
    g: &Tensor,
    y_prop: &Tensor,
    g_prop: &Tensor,
) -> Result<()> {
    let shape = y.shape();
    if g.shape() != shape || y_prop.shape() != shape || g_prop.shape() != shape {
        return Err(GpuError::Shape {
            op: "mala select",
            detail: format!("y {y:?}, ∇U {g:?}, y' {y_prop:?}, ∇U' {g_prop:?}"),
        });
    }
    check_state("mala select", state, shape.n)?;
    let p = base(shape);
    gpu.launch(
        &SELECT,
        &[],
        &p,
        &[state, y_prop, g_prop, y, g],
        crate::groups_flat(shape.numel()),
    );
    Ok(())
}

/// The state's energy ← `energy` (`[n, 1, 1, 1]`), e.g. U(y, t) at the
/// start of a level.
pub fn set_energy(gpu: &Gpu, state: &Tensor, energy: &Tensor) -> Result<()> {
    let n = energy.numel();
    if n == 0 {
        return Err(GpuError::Shape {
            op: "mala set_energy",
            detail: "no samples".into(),
        });
    }
    check_state("mala set_energy", state, n)?;
    let p = Params {
        n: n as u32,
        ..Default::default()
    };
    gpu.launch(
        &SET_ENERGY,
        &[],
        &p,
        &[energy, state],
        prior_gpu::Dispatch::flat(n as u32, 64),
    );
    Ok(())
}
