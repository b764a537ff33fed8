//! Algorithms on the prior implicit in a denoiser (x̂(y) = y + σ²∇log p(y)):
//! sampling and linear inverse problems, Jacobian analysis, log-probability.

pub mod control;
pub mod jacobian;
pub mod linalg;
pub mod mala;
pub mod measure;
pub mod metrics;
pub mod multiscale;
pub mod olm;
pub mod plot;
pub mod sampler;
