//! The one place that maps an [`Arch`] to its constructor: loading any
//! supported model from a weight blob, a file or a folder.

use std::path::Path;

use prior_gpu::Gpu;

use crate::arch::Arch;
use crate::blob::WeightBlob;
use crate::denoiser::{Denoiser, Result};

/// Loads any supported model from a weight blob. Its hyper-parameters are
/// checked first: a missing or unknown `prior.hparams` key is refused with
/// an error naming the file and the key.
pub fn load(gpu: &Gpu, blob: &WeightBlob) -> Result<Box<dyn Denoiser>> {
    blob.hparams()?;
    Ok(match blob.arch()? {
        Arch::Bfcnn | Arch::Dncnn => Box::new(crate::conv_chain::ConvChain::from_blob(gpu, blob)?),
        Arch::Multiscale => Box::new(crate::multiscale::MultiScale::from_blob(gpu, blob)?),
        Arch::Rcnn => Box::new(crate::rcnn::Rcnn::from_blob(gpu, blob)?),
        Arch::UnetSmall => Box::new(crate::unet_small::UnetSmall::from_blob(gpu, blob)?),
        Arch::BfUnet => Box::new(crate::bf_unet::BfUnet::from_blob(gpu, blob)?),
        Arch::EnergyUnet => Box::new(crate::energy::EnergyUNet::from_blob(gpu, blob)?),
    })
}

/// Loads a model from a `.safetensors` blob, a PyTorch checkpoint, or a
/// folder of multi-scale parts (`low*.pt` + `rf*_scale_j.pt`).
pub fn load_path(gpu: &Gpu, path: &Path) -> Result<Box<dyn Denoiser>> {
    if path.is_dir() {
        return Ok(Box::new(crate::multiscale::MultiScale::from_dir(
            gpu, path,
        )?));
    }
    let blob = WeightBlob::load(path)?;
    load(gpu, &blob)
}
