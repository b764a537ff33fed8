//! The model interface. A leaf: it imports no model (the models and
//! [`crate::registry`], which builds them, import it).

use prior_gpu::{Gpu, GpuError, Tensor};

use crate::error::WeightError;

/// Errors of building or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("{origin}: {reason}")]
    Invalid { origin: String, reason: String },
    #[error("{0}")]
    Input(String),
    #[error("not supported yet: {0}")]
    Unsupported(String),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// A blind denoiser x̂(y) on the GPU. Tensors are channels-last `[n, h, w, c]`.
///
/// Every model exposes both the denoised image and the residual
/// f(y) = y − x̂(y) (≈ −σ²∇log p(y)), whichever its network predicts.
pub trait Denoiser {
    /// Short description: architecture, variant, source.
    fn describe(&self) -> String;
    /// Image channels in and out (1 or 3).
    fn channels(&self) -> usize;
    /// Radius of the receptive field in pixels: an output pixel depends on
    /// inputs at most this far away (tiles overlap by at least this much).
    fn receptive_radius(&self) -> usize;
    /// Height and width must be multiples of this (2^J for Haar pyramids).
    fn size_multiple(&self) -> usize {
        1
    }
    /// Tile origins and halos must be multiples of this for a tiled pass to
    /// equal an untiled one (strided layers see the same input phase).
    fn tile_alignment(&self) -> usize {
        self.size_multiple()
    }
    /// The largest number of f32 values any intermediate tensor holds per
    /// input pixel (to choose tile sizes under the adapter's limits).
    fn values_per_pixel(&self) -> usize;
    /// Parameter count.
    fn parameters(&self) -> usize;
    /// Models conditioned on the noise level (the energy model) take the
    /// noise variance t of their inputs here (pixels in [0, 1]; `None`:
    /// estimate it from each input). Blind denoisers ignore it.
    fn set_noise_variance(&mut self, _t: Option<f32>) {}
    /// x̂(y) for a batch `[n, h, w, c]`.
    fn denoise(&self, gpu: &Gpu, y: &Tensor) -> Result<Tensor>;
    /// f(y) = y − x̂(y).
    fn residual(&self, gpu: &Gpu, y: &Tensor) -> Result<Tensor> {
        let d = self.denoise(gpu, y)?;
        Ok(prior_ops::elementwise::sub(gpu, y, &d)?)
    }
    /// Forward mode: J·v where J = ∂x̂/∂y at `y` (`[1, h, w, c]`), for a
    /// batch of tangents `v` (`[k, h, w, c]`); returns `[k, h, w, c]`.
    fn jvp(&self, _gpu: &Gpu, _y: &Tensor, _v: &Tensor) -> Result<Tensor> {
        Err(ModelError::Unsupported(format!("JVP of {}", self.describe())))
    }
    /// Reverse mode: Jᵀ·u for a batch of cotangents `u` (`[k, h, w, c]`).
    fn vjp(&self, _gpu: &Gpu, _y: &Tensor, _u: &Tensor) -> Result<Tensor> {
        Err(ModelError::Unsupported(format!("VJP of {}", self.describe())))
    }
}
