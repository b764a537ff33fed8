//! Plain-Rust CPU references of every kernel, written for clarity, with the
//! same channels-last layout and the same names as the launchers. Op tests
//! compare the GPU against these on random shapes.

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
pub mod linear;
pub mod mala;
pub mod measure;
pub mod noise_estimate;
pub mod peak;
pub mod pool;
pub mod reduce;
pub mod rng;
pub mod sampler;
