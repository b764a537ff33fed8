//! Plain convolution chains: BF-CNN (universal_inverse_problem,
//! optimal_measurement `conv3_ln`, local_probability `low_40x40` and
//! `BF_CNN_RF`) and DnCNN (bias and bias-free), as described in
//! `../shared/README.md`. The network is a [`LayerChain`] (normalisations
//! and biases folded into each convolution's epilogue, so a layer is one
//! kernel launch); this model adds what it returns (the denoised image
//! from a residual or denoising network) and its Jacobian.

use prior_gpu::{Gpu, Tensor};

use crate::denoiser::{Denoiser, ModelError, Noise, Result};
use crate::layers::{ChainLinearized, LayerChain};

pub use crate::hparams::Output;

/// A BF-CNN or DnCNN denoiser.
pub struct ConvChain {
    /// The network f: its layers, channels and output kind.
    pub net: LayerChain,
}

impl ConvChain {
    /// Builds the model from a blob with `prior.arch` `bfcnn` or `dncnn`.
    pub fn from_blob(gpu: &Gpu, blob: &crate::blob::WeightBlob) -> Result<ConvChain> {
        Ok(ConvChain {
            net: LayerChain::from_blob(gpu, blob)?,
        })
    }

    /// The raw network output f(y) (residual or denoised, per [`Output`]).
    pub fn network(&self, gpu: &Gpu, y: &Tensor) -> Result<Tensor> {
        self.net.network(gpu, y)
    }

    /// `[low, H, V, D]` in, residual of `[H, V, D]` out: one scale of a
    /// multi-scale model, not an image denoiser.
    pub fn conditional_details(&self) -> bool {
        self.net.conditional_details
    }

    fn refuse_conditional(&self, what: &str) -> Result<()> {
        if self.net.conditional_details {
            return Err(ModelError::Input(format!(
                "the {what} of a denoised image is not defined for one scale of a multi-scale model: use ConvChain::linearize(..).network_jvp / network_vjp"
            )));
        }
        Ok(())
    }

    /// Runs the primal pass at `y` (`[1, h, w, c]`) keeping every layer's
    /// output, for [`Linearized::jvp`] / [`Linearized::vjp`] and the raw
    /// network's [`Linearized::network_jvp`] / [`Linearized::network_vjp`].
    pub fn linearize(&self, gpu: &Gpu, y: &Tensor) -> Result<Linearized<'_>> {
        Ok(Linearized {
            chain: self,
            net: self.net.linearize(gpu, y)?,
        })
    }
}

impl Denoiser for ConvChain {
    fn describe(&self) -> String {
        self.net.describe()
    }
    fn channels(&self) -> usize {
        self.net.in_channels
    }
    fn receptive_radius(&self) -> usize {
        self.net.receptive_radius()
    }
    fn values_per_pixel(&self) -> usize {
        self.net.values_per_pixel()
    }
    fn parameters(&self) -> usize {
        self.net.parameters()
    }
    fn set_precision(
        &mut self,
        gpu: &Gpu,
        precision: prior_ops::precision::Precision,
    ) -> Result<()> {
        self.net.set_precision(gpu, precision)
    }
    fn denoise(&self, gpu: &Gpu, y: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        self.net.check_input(y)?;
        if self.net.conditional_details {
            return Err(ModelError::Input(
                "this is one scale of a multi-scale model: it denoises wavelet details, not images"
                    .into(),
            ));
        }
        let f = self.net.network(gpu, y)?;
        match self.net.output {
            Output::Residual => Ok(prior_ops::elementwise::sub(gpu, y, &f)?),
            Output::Denoised => Ok(f),
        }
    }
    /// J·v with J = ∂x̂/∂y (see [`ConvChain::linearize`]).
    fn jvp(&self, gpu: &Gpu, y: &Tensor, v: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        self.refuse_conditional("JVP")?;
        self.linearize(gpu, y)?.jvp(gpu, v)
    }
    /// Jᵀ·u with J = ∂x̂/∂y (see [`ConvChain::linearize`]).
    fn vjp(&self, gpu: &Gpu, y: &Tensor, u: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        self.refuse_conditional("VJP")?;
        self.linearize(gpu, y)?.vjp(gpu, u)
    }
    fn residual(&self, gpu: &Gpu, y: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        self.net.check_input(y)?;
        let f = self.net.network(gpu, y)?;
        match self.net.output {
            Output::Residual => Ok(f),
            Output::Denoised => Ok(prior_ops::elementwise::sub(gpu, y, &f)?),
        }
    }
}

/// A conv chain linearised at one input y (see [`ChainLinearized`]): the
/// Jacobian of the raw network and of the denoised output.
pub struct Linearized<'a> {
    chain: &'a ConvChain,
    net: ChainLinearized<'a>,
}

impl Linearized<'_> {
    /// f(y), the raw network output of the primal pass.
    pub fn network_output(&self) -> &Tensor {
        self.net.network_output()
    }

    /// J_f·v for the raw network f (`[k, h, w, c_in]` → `[k, h, w, c_out]`).
    pub fn network_jvp(&self, gpu: &Gpu, v: &Tensor) -> Result<Tensor> {
        self.net.network_jvp(gpu, v)
    }

    /// J_fᵀ·u for the raw network f (`[k, h, w, c_out]` → `[k, h, w, c_in]`).
    pub fn network_vjp(&self, gpu: &Gpu, u: &Tensor) -> Result<Tensor> {
        self.net.network_vjp(gpu, u)
    }

    /// J·v with J = ∂x̂/∂y of the denoised output: J_f (denoising network)
    /// or I − J_f (residual network).
    pub fn jvp(&self, gpu: &Gpu, v: &Tensor) -> Result<Tensor> {
        self.chain.refuse_conditional("JVP")?;
        let jf = self.network_jvp(gpu, v)?;
        match self.chain.net.output {
            Output::Denoised => Ok(jf),
            Output::Residual => Ok(prior_ops::autodiff::sub_jvp(gpu, v, &jf)?),
        }
    }

    /// Jᵀ·u with J = ∂x̂/∂y (`[k, h, w, c]`).
    pub fn vjp(&self, gpu: &Gpu, u: &Tensor) -> Result<Tensor> {
        self.chain.refuse_conditional("VJP")?;
        let jf = self.network_vjp(gpu, u)?;
        match self.chain.net.output {
            Output::Denoised => Ok(jf),
            Output::Residual => Ok(prior_ops::autodiff::sub_jvp(gpu, u, &jf)?),
        }
    }
}
