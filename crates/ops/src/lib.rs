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

/// Every kernel the launchers of this crate use: `tests/reflect.rs` checks
/// each declaration against its WGSL without launching it, and that every
/// entry point of every shader in [`shaders::ALL`] and
/// [`shaders::SPECIALISED`] is declared here.
pub const KERNELS: &[prior_gpu::Kernel] = &[
    activations::GELU,
    activations::GELU_JVP,
    activations::GELU_VJP_JVP,
    activations::SILU,
    activations::SILU_JVP,
    batch_norm::BN_BF_SD,
    batch_norm::BN_BF_VAR,
    batch_norm::BN_STANDARD,
    channels::COPY_CHANNELS,
    conv2d::CONV_F16,
    conv2d::CONV_F16_VEC4,
    conv2d::CONV_NAIVE,
    conv2d::CONV_SCALAR,
    conv2d::CONV_TILED_128X64,
    conv2d::CONV_TILED_F16_128X64,
    conv2d::CONV_TILED_F16_32X32,
    conv2d::CONV_TILED_F16_64X32,
    conv2d::CONV_TILED_F16_64X64,
    conv2d::CONV_TILED_32X32,
    conv2d::CONV_TILED_64X32,
    conv2d::CONV_TILED_64X64,
    conv2d::CONV_VEC4,
    conv2d::CONV_VEC4_SUBGROUP,
    conv_transpose2d::CONVT_F16,
    conv_transpose2d::CONVT_SCALAR,
    conv_transpose2d::CONVT_VEC4,
    conv_transpose2d::CONVT_VEC4_SUBGROUP,
    elementwise::AFFINE_C,
    elementwise::AXPBY,
    elementwise::RELU,
    elementwise::RELU_MASK,
    embedding::SINUSOID,
    group_norm::APPLY_FWD,
    group_norm::APPLY_JVP,
    group_norm::APPLY_VJP,
    group_norm::APPLY_VJP_JVP,
    group_norm::CHUNK_FWD,
    group_norm::CHUNK_TAN,
    group_norm::CHUNK_VJP_JVP,
    group_norm::FINALIZE_FWD,
    group_norm::FINALIZE_JVP,
    group_norm::FINALIZE_VJP,
    group_norm::FINALIZE_VJP_JVP,
    group_norm::GAINS,
    group_norm::MERGE_FWD,
    group_norm::MERGE_SUM8,
    group_norm::MERGE_TAN,
    haar::ANALYSIS,
    haar::SYNTHESIS,
    linear::LINEAR,
    linear::LINEAR_T,
    linear::SAMPLE_AXPY,
    mala::ACCEPT,
    mala::MH_PARTIAL,
    mala::PROPOSE,
    mala::SELECT,
    mala::SET_ENERGY,
    measure::BLOCK_DOWN,
    measure::BLOCK_UP,
    measure::DFT,
    measure::MASK_MUL,
    measure::MATVEC,
    measure::MATVEC_T,
    noise_estimate::MAD_SELECT,
    peak::FMA_PEAK,
    pool::AVG_POOL2,
    pool::AVG_POOL2_F16,
    pool::UPSAMPLE2,
    reduce::DOT_PARTIAL,
    reduce::DOT_PER_SAMPLE,
    reduce::SQ_DIFF_PARTIAL,
    reduce::SUM_FINAL,
    rng::AXPY_NORMAL,
    rng::NORMAL_FILL,
    sampler::COEFFS,
    sampler::DIRECTION,
    sampler::SQ_PARTIAL,
    sampler::UPDATE,
    sampler::VARIANCE,
];
pub use prior_gpu::{Gpu, GpuError, Result, Shape, Tensor};

/// Workgroup counts for `n` invocations of a 64-wide kernel that folds its
/// index as `gid.x + gid.y · 64 · num_workgroups.x`.
pub(crate) fn groups_flat(n: usize) -> prior_gpu::Dispatch {
    prior_gpu::Dispatch::flat(n as u32, 64)
}
