//! Typed hyper-parameters: what `prior.hparams` holds for each [`Arch`]
//! (the JSON layouts are in `weights/README.md`).
//!
//! Every struct refuses unknown keys and requires every key that is not
//! marked optional, so a misspelt or missing key is an error naming the key,
//! never a silent default. The key names are those the importer has written
//! since format 1, so existing blobs keep loading.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::arch::Arch;

/// A normalisation folded into the convolution before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    /// `x / running_sd * gammas`, tensors `running_sd.{i}`/`gammas.{i}` or
    /// `BN_layers.{i}.running_sd`/`.gammas`.
    BfSd,
    /// `bf_sd` with stacked `(L, 1, C, 1, 1)` tensors (`conv3_ln`).
    BfSdStacked,
    /// `x / (sqrt(running_var) + 1e-5) * weight` (bias-free DnCNN).
    BfVar,
    /// `(x - mean) / sqrt(var + 1e-5) * weight + bias`.
    Bn,
}

/// What a model (or its last layer) predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// The noise: x̂ = y − f(y).
    Residual,
    /// The denoised image itself.
    Denoised,
}

/// `bfcnn` and `dncnn`: a chain of convolutions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvChainHparams {
    /// Channels of the input image.
    pub in_channels: usize,
    /// Channels of the output.
    pub out_channels: usize,
    /// Channels of the first conv's output.
    pub width: usize,
    /// Number of convolutions.
    pub layers: usize,
    /// Kernel size of each convolution (`layers` of them, square kernels).
    pub kernel_sizes: Vec<usize>,
    /// Whether the first conv is followed by a ReLU (not in local_probability's BF_CNN_RF).
    pub relu_first: bool,
    /// The normalisation after each hidden convolution.
    pub norm: Norm,
    /// Whether the convolutions have biases (false: bias-free).
    pub bias: bool,
    /// What the network predicts.
    pub output: Output,
    /// `[low, H, V, D]` in, residual of `[H, V, D]` out (multi-scale parts).
    pub conditional_details: bool,
}

/// `prior.hparams` of a BF-CNN.
pub type BfcnnHparams = ConvChainHparams;
/// `prior.hparams` of a DnCNN.
pub type DncnnHparams = ConvChainHparams;

/// `rcnn`: one shared stage applied `stages` times.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RcnnHparams {
    /// Channels of the input image.
    pub in_channels: usize,
    /// Channels of the output.
    pub out_channels: usize,
    /// Times the shared stage is applied (the checkpoint's `args.max_stage`, else 4).
    pub stages: usize,
    /// Channels of the stage's hidden convolutions.
    pub width: usize,
    /// Hidden convolutions of the stage.
    pub depth: usize,
    /// Kernel size of each convolution of the stage (`depth + 2` of them).
    pub kernel_sizes: Vec<usize>,
    /// Whether the stage's convolutions other than the last have biases.
    pub bias: bool,
    /// Whether the stage's last convolution has a bias (never, in the authors' RCNN).
    pub last_bias: bool,
    /// What the network predicts.
    pub output: Output,
}

/// `unet_small`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnetSmallHparams {
    /// Channels of the input image.
    pub in_channels: usize,
    /// Channels of the output.
    pub out_channels: usize,
    /// Channels at full and half resolution.
    pub widths: [usize; 2],
    /// Whether the convolutions have biases (false: bias-free).
    pub bias: bool,
    /// What the network predicts.
    pub output: Output,
    /// Trained with `--residual`: the output is `y − conv9(...)`.
    pub residual_connection: bool,
}

/// `bf_unet`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BfUnetHparams {
    /// Channels of the input image.
    pub in_channels: usize,
    /// Channels of the output.
    pub out_channels: usize,
    /// Channels of the first encoder block.
    pub base_width: usize,
    /// Encoder (and decoder) blocks, one per resolution.
    pub scales: usize,
    /// Channels of each encoder block, `base_width · 2^b`.
    pub widths: Vec<usize>,
    /// Channels of the middle block.
    pub mid_width: usize,
    /// The normalisation after each convolution.
    pub norm: Norm,
    /// Whether the convolutions have biases (false: bias-free).
    pub bias: bool,
    /// What the network predicts.
    pub output: Output,
}

/// `energy_unet`: the checkpoint's `network_kwargs` (the optional keys) plus
/// what the importer read from the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergyUnetHparams {
    /// `network_kwargs.num_layers_encoder_block`, when the checkpoint has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_layers_encoder_block: Option<usize>,
    /// `network_kwargs.num_layers_mid_block`, when the checkpoint has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_layers_mid_block: Option<usize>,
    /// `network_kwargs.num_layers_decoder_block`, when the checkpoint has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_layers_decoder_block: Option<usize>,
    /// Channels per group of the group norms (`network_kwargs`, else 1).
    pub group_size: usize,
    /// Channels of the input image.
    pub in_channels: usize,
    /// Channels of the output.
    pub out_channels: usize,
    /// Channels of the first encoder block (`widths[0]`).
    pub base_width: usize,
    /// Encoder (and decoder) blocks, one per resolution.
    pub num_scales: usize,
    /// Channels of each encoder block.
    pub widths: Vec<usize>,
    /// Channels of the middle block.
    pub mid_width: usize,
    /// Convolutions in each encoder block.
    pub encoder_layers: Vec<usize>,
    /// Convolutions in the middle block.
    pub mid_layers: usize,
    /// Convolutions in each decoder block.
    pub decoder_layers: Vec<usize>,
    /// Width of the noise-level embedding.
    pub embedding_dim: usize,
    /// Sinusoidal features of the noise level fed to the embedding (sines and cosines).
    pub fourier_features: usize,
    /// Whether the convolutions have biases (false in every published checkpoint).
    pub bias: bool,
    /// What the network predicts.
    pub output: Output,
    /// The checkpoint's `args.model` (`EnergyModel`, `DenoiserModel`), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The checkpoint's `args.reparam_kwargs`, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reparam_kwargs: Option<Json>,
}

impl EnergyUnetHparams {
    /// The `network_kwargs` keys the importer copies into the hparams; any
    /// other key is refused (it could change the network in ways the
    /// weights' shapes do not show).
    pub const NETWORK_KWARGS: [&'static str; 6] = [
        "num_scales",
        "base_width",
        "group_size",
        "num_layers_encoder_block",
        "num_layers_mid_block",
        "num_layers_decoder_block",
    ];
}

/// `multiscale`: a combined blob of BF-CNN parts (`low`, `scale0`, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiscaleHparams {
    /// J, the number of Haar levels.
    pub levels: usize,
    /// C, channels of the image (the low-pass part takes C, each detail part
    /// 4C: `[low, H, V, D]`).
    pub channels: usize,
    /// The parts by name (`low`, `scale0`, ...).
    pub parts: BTreeMap<String, MultiscalePart>,
}

/// One part of a multi-scale blob, as its own blob's metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiscalePart {
    /// The part's architecture.
    pub arch: Arch,
    /// The part's `prior.variant`.
    pub variant: String,
    /// The part's own `prior.hparams` (typed by `arch`, checked when the
    /// part is split off: [`Hparams::from_json`]).
    pub hparams: Json,
    /// The part's `prior.source`.
    pub source: String,
    /// The part's `prior.source_sha256`.
    pub source_sha256: String,
}

/// The hyper-parameters of any architecture.
#[derive(Clone, Debug, PartialEq)]
pub enum Hparams {
    /// Of a BF-CNN.
    Bfcnn(BfcnnHparams),
    /// Of a DnCNN.
    Dncnn(DncnnHparams),
    /// Of a multi-scale blob.
    Multiscale(MultiscaleHparams),
    /// Of an RCNN.
    Rcnn(RcnnHparams),
    /// Of the small UNet.
    UnetSmall(UnetSmallHparams),
    /// Of the bias-free UNet.
    BfUnet(BfUnetHparams),
    /// Of the energy (or denoiser) UNet.
    EnergyUnet(EnergyUnetHparams),
}

impl Hparams {
    /// The architecture these hyper-parameters describe.
    pub fn arch(&self) -> Arch {
        match self {
            Hparams::Bfcnn(_) => Arch::Bfcnn,
            Hparams::Dncnn(_) => Arch::Dncnn,
            Hparams::Multiscale(_) => Arch::Multiscale,
            Hparams::Rcnn(_) => Arch::Rcnn,
            Hparams::UnetSmall(_) => Arch::UnetSmall,
            Hparams::BfUnet(_) => Arch::BfUnet,
            Hparams::EnergyUnet(_) => Arch::EnergyUnet,
        }
    }

    /// Parses the `prior.hparams` JSON of an `arch` blob. The error is
    /// serde's, which names the missing or unknown key.
    pub fn from_json(arch: Arch, v: Json) -> Result<Hparams, serde_json::Error> {
        use serde_json::from_value as de;
        Ok(match arch {
            Arch::Bfcnn => Hparams::Bfcnn(de(v)?),
            Arch::Dncnn => Hparams::Dncnn(de(v)?),
            Arch::Multiscale => Hparams::Multiscale(de(v)?),
            Arch::Rcnn => Hparams::Rcnn(de(v)?),
            Arch::UnetSmall => Hparams::UnetSmall(de(v)?),
            Arch::BfUnet => Hparams::BfUnet(de(v)?),
            Arch::EnergyUnet => Hparams::EnergyUnet(de(v)?),
        })
    }

    /// The JSON object written to `prior.hparams`.
    pub fn to_json(&self) -> Json {
        let v = match self {
            Hparams::Bfcnn(h) | Hparams::Dncnn(h) => serde_json::to_value(h),
            Hparams::Multiscale(h) => serde_json::to_value(h),
            Hparams::Rcnn(h) => serde_json::to_value(h),
            Hparams::UnetSmall(h) => serde_json::to_value(h),
            Hparams::BfUnet(h) => serde_json::to_value(h),
            Hparams::EnergyUnet(h) => serde_json::to_value(h),
        };
        // Plain structs of numbers, strings, vectors and JSON values.
        v.unwrap_or_else(|e| unreachable!("hyper-parameters serialise to JSON: {e}"))
    }
}

/// The `prior.hparams` string (compact JSON).
impl fmt::Display for Hparams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}
