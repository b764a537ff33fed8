//! prior's kernels: one WGSL file per op family in `shaders/`, a Rust
//! launcher per op here (same name as the shader), and a plain-Rust CPU
//! reference of each in [`reference`](mod@reference) (same name again), used by the op
//! tests in `crates/ops/tests/<op>.rs`.
//!
//! All tensors are channels-last f32 ([`prior_gpu::Tensor`]). Launchers only
//! append to the GPU stream; nothing is read back unless a function says so.

pub mod activations;
pub mod autodiff;
pub mod batch_norm;
pub mod channels;
pub mod conv2d;
pub mod conv_transpose2d;
pub mod elementwise;
pub mod embedding;
pub mod group_norm;
pub mod haar;
pub mod layer;
pub mod layout;
pub mod linear;
pub mod mala;
pub mod measure;
pub mod noise_estimate;
pub mod peak;
pub mod pool;
pub mod precision;
pub mod reduce;
pub mod reference;
pub mod rng;
pub mod sampler;
pub mod shaders;
pub mod tune;

pub use conv2d::{Conv2d, ConvVariant, Epilogue};
pub use prior_gpu::{Gpu, GpuError, Result, Shape, Tensor};

/// Workgroup counts for `n` invocations of a 64-wide kernel that folds its
/// index as `gid.x + gid.y · 64 · num_workgroups.x`.
pub(crate) fn groups_flat(n: usize) -> prior_gpu::Dispatch {
    prior_gpu::Dispatch::flat(n as u32, 64)
}
