//! Forward-mode (JVP) and reverse-mode (VJP) derivatives of the ops, for
//! Jacobian analysis of the bias-free denoisers (x̂(y) = A_y·y).
//!
//! Everything here is built from the existing kernels: the tangent of a
//! convolution layer is the same convolution with its scale but not its
//! shift, and the conv epilogue's mask applies the ReLU derivative in the
//! same launch; the cotangent goes through the layer's
//! [`Conv2d::input_gradient_layer`] (flipped, in/out-swapped kernel with the
//! scale folded in). Tangent batches are the point: a tangent tensor holds
//! `k` samples for ONE primal sample, and masks broadcast (tangent sample `b`
//! uses primal sample `b % mask_n`). CPU references: [`crate::reference::autodiff`].

use prior_gpu::{Gpu, Result, Shape, Tensor};

use crate::batch_norm::BatchNorm;
use crate::conv2d::{Conv2d, Epilogue};
use crate::elementwise;

/// JVP of `x ↦ relu?(conv(x)·scale + shift)` on tangents `t`: `conv(t)·scale`,
/// kept where `mask` (the primal post-ReLU output, `[mask_n, ho, wo, cout]`)
/// is > 0. Pass `mask = None` for a layer without ReLU.
pub fn conv2d_jvp(gpu: &Gpu, conv: &Conv2d, t: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    conv.forward(
        gpu,
        t,
        Epilogue {
            no_shift: true,
            mask,
            ..Default::default()
        },
    )
}

/// A convolution layer with its VJP layer (built once, reused for every
/// cotangent batch).
pub struct ConvVjp {
    pub grad: Conv2d,
}

impl ConvVjp {
    /// Builds the input-gradient layer of `conv` (stride 1 only; see
    /// [`Conv2d::input_gradient_layer`]).
    pub fn new(gpu: &Gpu, conv: &Conv2d) -> Result<ConvVjp> {
        Ok(ConvVjp {
            grad: conv.input_gradient_layer(gpu)?,
        })
    }

    /// VJP of `x ↦ relu?(conv(x)·scale + shift)`: cotangents `u` of the
    /// layer's output → cotangents of its input. `out_mask` = the layer's
    /// primal post-ReLU output: the ReLU VJP, applied to `u` BEFORE the
    /// transposed convolution (`None`: no ReLU). `in_mask` optionally fuses
    /// the VJP of a ReLU that produced the layer's INPUT (the primal input
    /// itself) into the epilogue, saving a launch per layer in chains.
    pub fn apply(
        &self,
        gpu: &Gpu,
        u: &Tensor,
        out_mask: Option<&Tensor>,
        in_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let masked;
        let u = match out_mask {
            Some(m) => {
                masked = elementwise::relu_mask(gpu, u, m)?;
                &masked
            }
            None => u,
        };
        self.grad.forward(
            gpu,
            u,
            Epilogue {
                mask: in_mask,
                ..Default::default()
            },
        )
    }
}

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
