//! Forward-mode (JVP) and reverse-mode (VJP) derivatives of the small ops
//! between layers (normalisations, ReLU, subtraction), for Jacobian
//! analysis of the bias-free denoisers (x̂(y) = A_y·y). The convolutions'
//! own JVP and VJP are [`crate::layer::ConvLayer`]'s.
//!
//! Everything here is built from the existing kernels. Tangent batches are
//! the point: a tangent tensor holds `k` samples for ONE primal sample, and
//! masks broadcast (tangent sample `b` uses primal sample `b % mask_n`).
//! CPU references: [`crate::reference::autodiff`].

use prior_gpu::{Gpu, Result, Shape, Tensor};

use crate::batch_norm::BatchNorm;
use crate::elementwise;

/// The per-channel scale of a normalisation as a `[scale, 0]` parameter tensor.
fn bn_linear(gpu: &Gpu, bn: &BatchNorm) -> Tensor {
    let (mut scale, _) = bn.scale_shift();
    let c = scale.len();
    scale.resize(2 * c, 0.0);
    gpu.upload(Shape::vector(2 * c), &scale)
}

/// JVP of a normalisation on tangents `t`: `t·scale` per channel, no shift.
pub fn batch_norm_jvp(gpu: &Gpu, bn: &BatchNorm, t: &Tensor) -> Result<Tensor> {
    if t.shape().c != bn.channels() {
        return Err(prior_gpu::GpuError::Shape {
            op: "batch_norm_jvp",
            detail: format!("tangent {} vs {} channels", t.shape(), bn.channels()),
        });
    }
    elementwise::affine_c(gpu, t, &bn_linear(gpu, bn))
}

/// VJP of a normalisation (a diagonal map: the same as the JVP).
pub fn batch_norm_vjp(gpu: &Gpu, bn: &BatchNorm, u: &Tensor) -> Result<Tensor> {
    batch_norm_jvp(gpu, bn, u)
}

/// JVP of ReLU at a primal whose output is `primal_out` (broadcast over tangent samples).
pub fn relu_jvp(gpu: &Gpu, t: &Tensor, primal_out: &Tensor) -> Result<Tensor> {
    elementwise::relu_mask(gpu, t, primal_out)
}

/// VJP of ReLU (ReLU's Jacobian is diagonal: the same mask).
pub fn relu_vjp(gpu: &Gpu, u: &Tensor, primal_out: &Tensor) -> Result<Tensor> {
    elementwise::relu_mask(gpu, u, primal_out)
}

/// JVP of `a − b`.
pub fn sub_jvp(gpu: &Gpu, ta: &Tensor, tb: &Tensor) -> Result<Tensor> {
    elementwise::sub(gpu, ta, tb)
}

/// VJP of `a − b`: `(u, −u)`.
pub fn sub_vjp(gpu: &Gpu, u: &Tensor) -> Result<(Tensor, Tensor)> {
    Ok((u.clone(), elementwise::axpby(gpu, -1.0, u, 0.0, u)?))
}
