//! Smooth activations (`shaders/activations.wgsl`): exact-erf GELU and SiLU,
//! with their derivatives. Both are element-wise, so the JVP (tangent) and
//! the VJP (cotangent) are the same product `t·φ'(x)`.
//!
//! GELU uses Φ(x) = ½·erfc(−x/√2) with a relative-error-1.2e-7 erfc (see the
//! shader): GELU is then accurate to ~2e-7 relative for every x, far inside
//! the 1e-4 relative parity target of the models built on it.

use bytemuck::{Pod, Zeroable};
use prior_gpu::{Access, Gpu, GpuError, Kernel, Result, Tensor};

use crate::shaders::ACTIVATIONS;

/// x, y (binding 2, the tangent, unused).
const UNARY: &[Access] = &[Access::Read, Access::Unused, Access::ReadWrite];
/// x, t, y.
const DERIVATIVE: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite];
const fn kernel(entry: &'static str, bindings: &'static [Access]) -> Kernel {
    Kernel {
        file: "activations.wgsl",
        source: ACTIVATIONS,
        entry,
        bindings,
    }
}
/// `gelu`: y = x·Φ(x) (exact-erf GELU).
pub const GELU: Kernel = kernel("gelu", UNARY);
/// `gelu_jvp`: y = t·GELU'(x) (the JVP and the VJP).
pub const GELU_JVP: Kernel = kernel("gelu_jvp", DERIVATIVE);
/// `gelu_vjp_jvp`: the tangent of the VJP ū·GELU'(x) as x moves along x' and ū along u̇ (forward
/// over reverse, for Hessian-vector products).
pub const GELU_VJP_JVP: Kernel = Kernel {
    file: "activations.wgsl",
    source: ACTIVATIONS,
    entry: "gelu_vjp_jvp",
    bindings: &[
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::Read,
        Access::Read,
    ],
};
/// `silu`: y = x·σ(x).
pub const SILU: Kernel = kernel("silu", UNARY);
/// `silu_jvp`: y = t·SiLU'(x) (the JVP and the VJP).
pub const SILU_JVP: Kernel = kernel("silu_jvp", DERIVATIVE);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    len: u32,
    _p: [u32; 3],
}
prior_gpu::uniform!(Params { len, _p });

fn unary(gpu: &Gpu, k: &Kernel, x: &Tensor) -> Tensor {
    let y = gpu.empty(x.shape());
    let p = Params {
        len: x.numel() as u32,
        _p: [0; 3],
    };
    gpu.launch(k, &[], &p, &[x, &y], crate::groups_flat(x.numel()));
    y
}

fn derivative(gpu: &Gpu, k: &Kernel, op: &'static str, x: &Tensor, t: &Tensor) -> Result<Tensor> {
    if x.shape() != t.shape() {
        return Err(GpuError::Shape {
            op,
            detail: format!("primal {x:?} vs tangent {t:?}"),
        });
    }
    let y = gpu.empty(x.shape());
    let p = Params {
        len: x.numel() as u32,
        _p: [0; 3],
    };
    gpu.launch(k, &[], &p, &[x, t, &y], crate::groups_flat(x.numel()));
    Ok(y)
}

/// GELU, exact form `x·Φ(x)` (PyTorch `nn.GELU()`, `approximate='none'`).
pub fn gelu(gpu: &Gpu, x: &Tensor) -> Tensor {
    unary(gpu, &GELU, x)
}

/// `t·GELU'(x)` with `GELU'(x) = Φ(x) + x·ϕ(x)`: the JVP of GELU at `x` for
/// tangent `t`, and equally its VJP for cotangent `t`.
pub fn gelu_jvp(gpu: &Gpu, x: &Tensor, t: &Tensor) -> Result<Tensor> {
    derivative(gpu, &GELU_JVP, "gelu_jvp", x, t)
}

/// Forward over reverse: the tangent of the VJP `ū·GELU'(x)` when the
/// primal `x` moves along `xt` and the cotangent `ū` along `ut`:
/// `xt·ū·GELU''(x) + ut·GELU'(x)`, `GELU''(x) = ϕ(x)·(2 − x²)`. This is what
/// a Hessian-vector product needs at every GELU of a network.
pub fn gelu_vjp_jvp(
    gpu: &Gpu,
    x: &Tensor,
    xt: &Tensor,
    ub: &Tensor,
    ut: &Tensor,
) -> Result<Tensor> {
    for t in [xt, ub, ut] {
        if x.shape() != t.shape() {
            return Err(GpuError::Shape {
                op: "gelu_vjp_jvp",
                detail: format!("primal {x:?} vs {t:?}"),
            });
        }
    }
    let y = gpu.empty(x.shape());
    let p = Params {
        len: x.numel() as u32,
        _p: [0; 3],
    };
    gpu.launch(
        &GELU_VJP_JVP,
        &[],
        &p,
        &[x, xt, &y, ub, ut],
        crate::groups_flat(x.numel()),
    );
    Ok(y)
}

/// SiLU `x·σ(x)` (PyTorch `nn.SiLU`).
pub fn silu(gpu: &Gpu, x: &Tensor) -> Tensor {
    unary(gpu, &SILU, x)
}

/// `t·SiLU'(x)` with `SiLU'(x) = σ(x)·(1 + x·(1 − σ(x)))` (JVP and VJP).
pub fn silu_jvp(gpu: &Gpu, x: &Tensor, t: &Tensor) -> Result<Tensor> {
    derivative(gpu, &SILU_JVP, "silu_jvp", x, t)
}
