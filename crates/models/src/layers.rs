//! Helpers shared by the models: reading weights from a blob, shape checks,
//! and the one differentiable convolution layer ([`prior_ops::layer::ConvLayer`]).
//! Models import these from here, never from a sibling model.

use prior_gpu::Tensor;

pub use prior_ops::layer::{Affine, ConvLayer, ConvLayerConfig};

use crate::blob::WeightBlob;
use crate::denoiser::{ModelError, Result};

/// `(h, w)` of a tensor.
pub(crate) fn hw(t: &Tensor) -> (usize, usize) {
    (t.shape().h, t.shape().w)
}

/// Invalid-weights error naming the blob.
pub(crate) fn invalid(blob: &WeightBlob, reason: String) -> ModelError {
    ModelError::Invalid {
        origin: blob.origin.display().to_string(),
        reason,
    }
}

/// A weight tensor that must have rank 4; returns its data and shape.
pub(crate) fn weight4<'a>(blob: &'a WeightBlob, name: &str) -> Result<(&'a [f32], [usize; 4])> {
    let t = blob.tensor(name)?;
    match t.shape[..] {
        [a, b, c, d] => Ok((&t.data, [a, b, c, d])),
        _ => Err(invalid(
            blob,
            format!("{name} has shape {:?}, expected a 4-D conv weight", t.shape),
        )),
    }
}

/// An optional bias of `n` values.
pub(crate) fn bias<'a>(blob: &'a WeightBlob, name: &str, n: usize) -> Result<Option<&'a [f32]>> {
    if !blob.has(name) {
        return Ok(None);
    }
    let t = blob.tensor(name)?;
    if t.numel() != n {
        return Err(invalid(
            blob,
            format!("{name} has {} values, expected {n}", t.numel()),
        ));
    }
    Ok(Some(&t.data))
}

/// Tangents/cotangents must have the primal's pixel grid and channels, and
/// the primal must be one sample.
pub(crate) fn check_tangent(y: &Tensor, v: &Tensor) -> Result<()> {
    let (s, t) = (y.shape(), v.shape());
    if s.n != 1 {
        return Err(ModelError::Input(format!(
            "JVP/VJP take one primal image, got a batch of {}",
            s.n
        )));
    }
    if (t.h, t.w, t.c) != (s.h, s.w, s.c) || t.n == 0 {
        return Err(ModelError::Input(format!(
            "tangent {t} does not match the input {s}"
        )));
    }
    Ok(())
}
