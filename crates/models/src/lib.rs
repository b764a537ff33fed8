//! prior's models: importing the authors' PyTorch checkpoints as data
//! ([`import`], [`blob`]) and running the published architectures on the GPU
//! ([`conv_chain`], ...), behind the [`Denoiser`] interface; [`tiling`] runs
//! them on images of any size.
pub mod bf_unet;
pub mod blob;
pub mod conv_chain;
pub mod denoiser;
pub mod energy;
pub mod error;
pub mod format;
pub mod import;
pub mod multiscale;
pub mod rcnn;
pub mod tiling;
pub mod unet_small;

pub use denoiser::{load, load_path, Denoiser, ModelError};
