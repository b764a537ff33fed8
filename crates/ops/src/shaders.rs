//! The WGSL sources, embedded from `shaders/` at the repository root.

/// Every shader file, by name, as compiled (validated by naga in
/// `tests/shaders.rs`): `rng.wgsl`, `sampler.wgsl` and `mala.wgsl` come with
/// `rng_core.wgsl` prepended, the five conv shaders with
/// `conv_common.wgsl` (`conv2d_tiled.wgsl` as its 64 × 64 variant, the other
/// tile shapes in [`SPECIALISED`]; `conv2d_tiled_f16.wgsl` likewise, as the
/// f16 storage of `conv2d_tiled.wgsl`).
pub const ALL: &[(&str, &str)] = &[
    ("activations.wgsl", ACTIVATIONS),
    ("batch_norm.wgsl", BATCH_NORM),
    ("channels.wgsl", CHANNELS),
    ("conv2d.wgsl", CONV2D),
    ("conv_common.wgsl", CONV_COMMON),
    ("conv_f16_common.wgsl", CONV_F16_COMMON),
    ("conv2d_subgroup.wgsl", CONV2D_SUBGROUP),
    ("conv2d_f16.wgsl", CONV2D_F16),
    ("conv2d_tiled.wgsl", CONV2D_TILED_64X64),
    ("conv2d_tiled_f16.wgsl", CONV2D_TILED_F16_64X64),
    ("conv_transpose2d.wgsl", CONV_TRANSPOSE2D),
    ("conv_transpose2d_subgroup.wgsl", CONV_TRANSPOSE2D_SUBGROUP),
    ("elementwise.wgsl", ELEMENTWISE),
    ("embedding.wgsl", EMBEDDING),
    ("fma_peak.wgsl", FMA_PEAK),
    ("group_norm.wgsl", GROUP_NORM),
    ("haar.wgsl", HAAR),
    ("linear.wgsl", LINEAR),
    ("mala.wgsl", MALA),
    ("measure.wgsl", MEASURE),
    ("noise_estimate.wgsl", NOISE_ESTIMATE),
    ("pool.wgsl", POOL),
    ("reduce.wgsl", REDUCE),
    ("rng.wgsl", RNG),
    ("rng_core.wgsl", RNG_CORE),
    ("sampler.wgsl", SAMPLER),
];

/// `activations.wgsl`: GELU and SiLU with their derivatives.
pub const ACTIVATIONS: &str = include_str!("../../../shaders/activations.wgsl");
/// `fma_peak.wgsl`: the FMA ceiling microkernel of `prior bench`.
pub const FMA_PEAK: &str = include_str!("../../../shaders/fma_peak.wgsl");
/// `embedding.wgsl`: sinusoidal embedding of the noise variance.
pub const EMBEDDING: &str = include_str!("../../../shaders/embedding.wgsl");
/// `group_norm.wgsl`: noise-conditioned group normalisation of the energy UNet.
pub const GROUP_NORM: &str = include_str!("../../../shaders/group_norm.wgsl");
/// `linear.wgsl`: fully connected layers (and the per-sample axpy).
pub const LINEAR: &str = include_str!("../../../shaders/linear.wgsl");
/// `batch_norm.wgsl`: eval-mode batch normalisation, three conventions.
pub const BATCH_NORM: &str = include_str!("../../../shaders/batch_norm.wgsl");
/// `channels.wgsl`: channel slices and concatenations.
pub const CHANNELS: &str = include_str!("../../../shaders/channels.wgsl");
/// Parameter block, bindings and epilogue shared by every convolution kernel.
pub const CONV_COMMON: &str = include_str!("../../../shaders/conv_common.wgsl");
/// `conv2d.wgsl`: 2-D convolution, vec4, scalar and naive entries (with
/// `conv_common.wgsl`).
pub const CONV2D: &str = concat!(
    include_str!("../../../shaders/conv_common.wgsl"),
    include_str!("../../../shaders/conv2d.wgsl")
);
/// `conv2d_subgroup.wgsl`: the subgroup variant of the vectorised convolution (with
/// `conv_common.wgsl`); compiled only on adapters with subgroups.
pub const CONV2D_SUBGROUP: &str = concat!(
    include_str!("../../../shaders/conv_common.wgsl"),
    include_str!("../../../shaders/conv2d_subgroup.wgsl")
);
/// `conv2d_f16.wgsl`: the convolution with f16 weights and activations, f32
/// accumulation (`--precision f16`; core WGSL, no `enable f16;`).
pub const CONV2D_F16: &str = concat!(
    include_str!("../../../shaders/conv_f16_common.wgsl"),
    include_str!("../../../shaders/conv2d_f16.wgsl")
);
/// The parameter block, bindings and helpers of the f16-storage convolutions.
pub const CONV_F16_COMMON: &str = include_str!("../../../shaders/conv_f16_common.wgsl");
/// The tile-shape header of a `conv2d_tiled.wgsl` variant (WGSL has no
/// templates: each variant is its own module, the header prepended).
/// The storage part follows (`conv_common.wgsl` for f32,
/// `conv_f16_common.wgsl` and `conv2d_tiled_f16.wgsl` for f16), then the
/// body.
macro_rules! conv_tiled {
    ($wg_m:literal, $wg_n:literal) => {
        conv_tiled!($wg_m, $wg_n, "conv_common.wgsl")
    };
    ($wg_m:literal, $wg_n:literal, $($storage:literal),+) => {
        concat!(
            "// conv2d_tiled.wgsl variant: ",
            $wg_m,
            " x ",
            $wg_n,
            " invocations, 4 pixels x 8 channels each\nconst WG_M: u32 = ",
            $wg_m,
            "u;\nconst WG_N: u32 = ",
            $wg_n,
            "u;\n",
            $(include_str!(concat!("../../../shaders/", $storage)),)+
            include_str!("../../../shaders/conv2d_tiled.wgsl")
        )
    };
}
/// `conv2d_tiled.wgsl` with 64 × 64 output tiles (16 × 8 invocations):
/// the workgroup-memory, register-tiled convolution for GPUs.
pub const CONV2D_TILED_64X64: &str = conv_tiled!(16, 8);
/// `conv2d_tiled.wgsl` with 128 pixels × 64 channels (32 × 8 invocations).
pub const CONV2D_TILED_128X64: &str = conv_tiled!(32, 8);
/// `conv2d_tiled.wgsl` with 64 pixels × 32 channels (16 × 4 invocations).
pub const CONV2D_TILED_64X32: &str = conv_tiled!(16, 4);
/// `conv2d_tiled.wgsl` with 32 × 32 output tiles (8 × 4 invocations).
pub const CONV2D_TILED_32X32: &str = conv_tiled!(8, 4);
/// `conv2d_tiled.wgsl` with f16 storage (`conv2d_tiled_f16.wgsl`), 64 × 64
/// tiles; the other shapes below.
pub const CONV2D_TILED_F16_64X64: &str =
    conv_tiled!(16, 8, "conv_f16_common.wgsl", "conv2d_tiled_f16.wgsl");
/// f16 storage, 128 × 64 tiles.
pub const CONV2D_TILED_F16_128X64: &str =
    conv_tiled!(32, 8, "conv_f16_common.wgsl", "conv2d_tiled_f16.wgsl");
/// f16 storage, 64 × 32 tiles.
pub const CONV2D_TILED_F16_64X32: &str =
    conv_tiled!(16, 4, "conv_f16_common.wgsl", "conv2d_tiled_f16.wgsl");
/// f16 storage, 32 × 32 tiles.
pub const CONV2D_TILED_F16_32X32: &str =
    conv_tiled!(8, 4, "conv_f16_common.wgsl", "conv2d_tiled_f16.wgsl");
/// The specialisations prior compiles besides those of [`ALL`] (the other
/// tile shapes of `conv2d_tiled.wgsl`), by a name naming file and variant;
/// the naga and backend tests check them as they check [`ALL`].
pub const SPECIALISED: &[(&str, &str)] = &[
    ("conv2d_tiled.wgsl (128x64)", CONV2D_TILED_128X64),
    ("conv2d_tiled.wgsl (64x32)", CONV2D_TILED_64X32),
    ("conv2d_tiled.wgsl (32x32)", CONV2D_TILED_32X32),
    ("conv2d_tiled_f16.wgsl (128x64)", CONV2D_TILED_F16_128X64),
    ("conv2d_tiled_f16.wgsl (64x32)", CONV2D_TILED_F16_64X32),
    ("conv2d_tiled_f16.wgsl (32x32)", CONV2D_TILED_F16_32X32),
];
/// `conv_transpose2d.wgsl`: 2-D transposed convolution (with `conv_common.wgsl`).
pub const CONV_TRANSPOSE2D: &str = concat!(
    include_str!("../../../shaders/conv_common.wgsl"),
    include_str!("../../../shaders/conv_transpose2d.wgsl")
);
/// `conv_transpose2d_subgroup.wgsl`: the subgroup variant of the transposed convolution (with
/// `conv_common.wgsl`); compiled only on adapters with subgroups.
pub const CONV_TRANSPOSE2D_SUBGROUP: &str = concat!(
    include_str!("../../../shaders/conv_common.wgsl"),
    include_str!("../../../shaders/conv_transpose2d_subgroup.wgsl")
);
/// `elementwise.wgsl`: ReLU, its mask, axpby and the per-channel affine map.
pub const ELEMENTWISE: &str = include_str!("../../../shaders/elementwise.wgsl");
/// `haar.wgsl`: one level of the orthonormal Haar transform and its inverse.
pub const HAAR: &str = include_str!("../../../shaders/haar.wgsl");
/// `measure.wgsl`: the measurement operators M and Mᵀ of the inverse problems.
pub const MEASURE: &str = include_str!("../../../shaders/measure.wgsl");
/// `noise_estimate.wgsl`: blind noise-variance estimate (median of the finest diagonal Haar
/// details).
pub const NOISE_ESTIMATE: &str = include_str!("../../../shaders/noise_estimate.wgsl");
/// `pool.wgsl`: 2×2 average pooling and its adjoint.
pub const POOL: &str = include_str!("../../../shaders/pool.wgsl");
/// `reduce.wgsl`: sums, inner products and their per-sample forms.
pub const REDUCE: &str = include_str!("../../../shaders/reduce.wgsl");
/// The generator's functions, prepended to every shader that draws noise.
pub const RNG_CORE: &str = include_str!("../../../shaders/rng_core.wgsl");
/// `rng.wgsl`: Gaussian noise from the counter-based generator (with `rng_core.wgsl`).
pub const RNG: &str = concat!(
    include_str!("../../../shaders/rng_core.wgsl"),
    include_str!("../../../shaders/rng.wgsl")
);
/// `sampler.wgsl`: the coarse-to-fine sampler's iteration (with `rng_core.wgsl`).
pub const SAMPLER: &str = concat!(
    include_str!("../../../shaders/rng_core.wgsl"),
    include_str!("../../../shaders/sampler.wgsl")
);
/// `mala.wgsl`: the MALA step (with `rng_core.wgsl`).
pub const MALA: &str = concat!(
    include_str!("../../../shaders/rng_core.wgsl"),
    include_str!("../../../shaders/mala.wgsl")
);
