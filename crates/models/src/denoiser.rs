//! The model interface. A leaf: it imports no model (the models and
//! [`crate::registry`], which builds them, import it).

use prior_gpu::{Gpu, GpuError, Tensor};

use crate::error::WeightError;

/// Errors of building or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading the weights failed.
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// A GPU error.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// The weights do not make a valid model (missing or inconsistent
    /// tensors, bad hyper-parameters).
    #[error("{origin}: {reason}")]
    Invalid {
        /// Where the weights came from (a file path or `<memory>`).
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// The input does not suit the model (channels, size, noise argument);
    /// the message says how.
    #[error("{0}")]
    Input(String),
    /// The model lacks this operation (e.g. JVP or VJP).
    #[error("not supported yet: {0}")]
    Unsupported(String),
}

/// Result with [`ModelError`] as the default error.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// The noise level of one denoiser call: an argument of every call, never
/// model state.
#[derive(Clone, Copy, Debug)]
pub enum Noise<'a> {
    /// Unknown. Blind denoisers need nothing; a noise-conditioned model
    /// estimates the level of each sample on the GPU
    /// ([`prior_ops::noise_estimate`]) without reading anything back.
    Blind,
    /// The noise variance t of each sample (pixels in [0, 1]) on the GPU:
    /// `[n, 1, 1, 1]` for a batch of n, or `[1, 1, 1, 1]` for all of them.
    /// Blind denoisers ignore it.
    Variance(&'a Tensor),
}

impl<'a> Noise<'a> {
    /// The per-sample variances for a batch of `n`, if given; an error when
    /// the tensor holds neither 1 nor `n` values.
    pub fn variance(&self, n: usize) -> Result<Option<&'a Tensor>> {
        match *self {
            Noise::Blind => Ok(None),
            Noise::Variance(t) if t.numel() == n || t.numel() == 1 => Ok(Some(t)),
            Noise::Variance(t) => Err(ModelError::Input(format!(
                "{} noise variances for a batch of {n}",
                t.numel()
            ))),
        }
    }
}

/// How a model uses the [`Noise`] argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conditioning {
    /// Trained at all noise levels without being told the level: ignores it.
    Blind,
    /// Takes the noise variance as an input (the energy model): given one,
    /// it conditions on it; called blind, it estimates it per sample.
    NoiseVariance,
}

/// The models with an f16 path ([`Denoiser::set_precision`], `--precision
/// f16`), for messages.
pub const F16_MODELS: &str =
    "BF-CNN, DnCNN, RCNN, the small UNet, the BF-UNet and the multi-scale models";

/// A denoiser x̂(y) on the GPU. Tensors are channels-last `[n, h, w, c]`.
///
/// Every model exposes both the denoised image and the residual
/// f(y) = y − x̂(y) (≈ −σ²∇log p(y)), whichever its network predicts. The
/// noise level of each call is an argument ([`Noise`]); running a model
/// mutates nothing, and nothing here reads the GPU back.
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
    /// Whether the model uses the noise level it is given.
    fn conditioning(&self) -> Conditioning {
        Conditioning::Blind
    }
    /// x̂(y) for a batch `[n, h, w, c]` at noise level `noise`.
    fn denoise(&self, gpu: &Gpu, y: &Tensor, noise: Noise<'_>) -> Result<Tensor>;
    /// f(y) = y − x̂(y).
    fn residual(&self, gpu: &Gpu, y: &Tensor, noise: Noise<'_>) -> Result<Tensor> {
        let d = self.denoise(gpu, y, noise)?;
        Ok(prior_ops::elementwise::sub(gpu, y, &d)?)
    }
    /// Forward mode: J·v where J = ∂x̂/∂y at `y` (`[1, h, w, c]`), for a
    /// batch of tangents `v` (`[k, h, w, c]`); returns `[k, h, w, c]`. The
    /// noise level (`[1, 1, 1, 1]` if given) is held fixed.
    fn jvp(&self, _gpu: &Gpu, _y: &Tensor, _v: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        Err(ModelError::Unsupported(format!(
            "JVP of {}",
            self.describe()
        )))
    }
    /// Reverse mode: Jᵀ·u for a batch of cotangents `u` (`[k, h, w, c]`).
    fn vjp(&self, _gpu: &Gpu, _y: &Tensor, _u: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        Err(ModelError::Unsupported(format!(
            "VJP of {}",
            self.describe()
        )))
    }
    /// Sets the storage precision of [`Denoiser::denoise`] (f16: weights
    /// and activations in f16, f32 accumulation; Jacobian products stay
    /// f32). The models of [`F16_MODELS`] have an f16 path; the others
    /// (the energy model) answer f16 with [`ModelError::Unsupported`]. The caller
    /// checks the adapter first ([`prior_ops::precision::Precision::on`]).
    fn set_precision(
        &mut self,
        _gpu: &Gpu,
        precision: prior_ops::precision::Precision,
    ) -> Result<()> {
        match precision {
            prior_ops::precision::Precision::F32 => Ok(()),
            prior_ops::precision::Precision::F16 => Err(ModelError::Unsupported(format!(
                "f16 storage (--precision f16) for {} (f16 kernels exist for {F16_MODELS})",
                self.describe()
            ))),
        }
    }
}
