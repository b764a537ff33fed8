//! The WGSL sources, embedded from `shaders/` at the repository root.

/// Every shader file, by name, as compiled (validated by naga in
/// `tests/shaders.rs`): `rng.wgsl`, `sampler.wgsl` and `mala.wgsl` come with
/// `rng_core.wgsl` prepended, the four conv shaders with
/// `conv_common.wgsl`.
pub const ALL: &[(&str, &str)] = &[
    ("activations.wgsl", ACTIVATIONS),
    ("batch_norm.wgsl", BATCH_NORM),
    ("channels.wgsl", CHANNELS),
    ("conv2d.wgsl", CONV2D),
    ("conv_common.wgsl", CONV_COMMON),
    ("conv2d_subgroup.wgsl", CONV2D_SUBGROUP),
    ("conv_transpose2d.wgsl", CONV_TRANSPOSE2D),
    ("conv_transpose2d_subgroup.wgsl", CONV_TRANSPOSE2D_SUBGROUP),
    ("elementwise.wgsl", ELEMENTWISE),
    ("embedding.wgsl", EMBEDDING),
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

pub const ACTIVATIONS: &str = include_str!("../../../shaders/activations.wgsl");
pub const EMBEDDING: &str = include_str!("../../../shaders/embedding.wgsl");
pub const GROUP_NORM: &str = include_str!("../../../shaders/group_norm.wgsl");
pub const LINEAR: &str = include_str!("../../../shaders/linear.wgsl");
pub const BATCH_NORM: &str = include_str!("../../../shaders/batch_norm.wgsl");
pub const CHANNELS: &str = include_str!("../../../shaders/channels.wgsl");
/// Parameter block, bindings and epilogue shared by every convolution kernel.
pub const CONV_COMMON: &str = include_str!("../../../shaders/conv_common.wgsl");
pub const CONV2D: &str = concat!(
    include_str!("../../../shaders/conv_common.wgsl"),
    include_str!("../../../shaders/conv2d.wgsl")
);
pub const CONV2D_SUBGROUP: &str = concat!(
    include_str!("../../../shaders/conv_common.wgsl"),
    include_str!("../../../shaders/conv2d_subgroup.wgsl")
);
pub const CONV_TRANSPOSE2D: &str = concat!(
    include_str!("../../../shaders/conv_common.wgsl"),
    include_str!("../../../shaders/conv_transpose2d.wgsl")
);
pub const CONV_TRANSPOSE2D_SUBGROUP: &str = concat!(
    include_str!("../../../shaders/conv_common.wgsl"),
    include_str!("../../../shaders/conv_transpose2d_subgroup.wgsl")
);
pub const ELEMENTWISE: &str = include_str!("../../../shaders/elementwise.wgsl");
pub const HAAR: &str = include_str!("../../../shaders/haar.wgsl");
pub const MEASURE: &str = include_str!("../../../shaders/measure.wgsl");
pub const NOISE_ESTIMATE: &str = include_str!("../../../shaders/noise_estimate.wgsl");
pub const POOL: &str = include_str!("../../../shaders/pool.wgsl");
pub const REDUCE: &str = include_str!("../../../shaders/reduce.wgsl");
/// The generator's functions, prepended to every shader that draws noise.
pub const RNG_CORE: &str = include_str!("../../../shaders/rng_core.wgsl");
pub const RNG: &str = concat!(
    include_str!("../../../shaders/rng_core.wgsl"),
    include_str!("../../../shaders/rng.wgsl")
);
pub const SAMPLER: &str = concat!(
    include_str!("../../../shaders/rng_core.wgsl"),
    include_str!("../../../shaders/sampler.wgsl")
);
pub const MALA: &str = concat!(
    include_str!("../../../shaders/rng_core.wgsl"),
    include_str!("../../../shaders/mala.wgsl")
);
