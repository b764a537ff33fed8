//! prior's models: importing the authors' PyTorch checkpoints as data
//! ([`import`], [`blob`]) and running the published architectures on the GPU
//! ([`conv_chain`], ...), behind the [`Denoiser`] interface; [`registry`]
//! builds the model a blob's [`Arch`] and [`Hparams`] describe; [`tiling`]
//! runs them on images of any size.
pub mod arch;
pub mod bf_unet;
pub mod blob;
pub mod conv_chain;
pub mod denoiser;
pub mod energy;
pub mod error;
pub mod format;
pub mod hparams;
pub mod import;
pub mod layers;
pub mod multiscale;
pub mod rcnn;
pub mod registry;
pub mod tiling;
pub mod unet_small;

pub use arch::Arch;
pub use denoiser::{Conditioning, Denoiser, ModelError, Noise, F16_MODELS};
pub use hparams::Hparams;
pub use registry::{load, load_path};
