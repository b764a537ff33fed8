//! Plain-Rust CPU references of every kernel, written for clarity, with the
//! same channels-last layout and the same names as the launchers. Op tests
//! compare the GPU against these on random shapes.

/// CPU references of `crate::activations`.
pub mod activations;
/// CPU references of `crate::autodiff`.
pub mod autodiff;
/// CPU references of `crate::batch_norm`.
pub mod batch_norm;
/// CPU references of `crate::channels`.
pub mod channels;
/// CPU references of `crate::conv2d`.
pub mod conv2d;
/// CPU references of `crate::conv_transpose2d`.
pub mod conv_transpose2d;
/// CPU references of `crate::elementwise`.
pub mod elementwise;
/// CPU references of `crate::embedding`.
pub mod embedding;
/// CPU references of `crate::group_norm`.
pub mod group_norm;
/// CPU references of `crate::haar`.
pub mod haar;
/// CPU references of `crate::linear`.
pub mod linear;
/// CPU references of `crate::mala`.
pub mod mala;
/// CPU references of `crate::measure`.
pub mod measure;
/// CPU references of `crate::noise_estimate`.
pub mod noise_estimate;
/// CPU reference of `crate::peak`.
pub mod peak;
/// CPU references of `crate::pool`.
pub mod pool;
/// CPU references of `crate::reduce`.
pub mod reduce;
/// CPU references of `crate::rng`.
pub mod rng;
/// CPU references of `crate::sampler`.
pub mod sampler;
