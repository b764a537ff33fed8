//! 2-D convolution (`shaders/conv2d.wgsl`): any kernel size, stride,
//! dilation, zero padding, optional bias, and a fused epilogue (per-channel
//! scale and shift, ReLU, and a ReLU-derivative mask for JVP/VJP passes).
//!
//! Kernel variants ([`ConvVariant`]): the lavapipe-shaped kernels of
//! `conv2d.wgsl` / `conv2d_subgroup.wgsl` (4 pixels × 8 channels per
//! invocation, weights from storage, shared across lanes with
//! `subgroupBroadcast` where the adapter has subgroups) are the fixed
//! default; the GPU-shaped implicit GEMM of `conv2d_tiled.wgsl` (output
//! tiles staged through workgroup memory, 4 × 8 register tiles, vec4 loads,
//! no subgroups) comes in four tile shapes ([`Tile`]). [`ConvVariant::Auto`]
//! runs what [`crate::tune`] chose for the layer shape on this adapter, or
//! the fixed default when nothing was tuned.

use bytemuck::{Pod, Zeroable};
use prior_gpu::{Access, Gpu, GpuError, Kernel, Result, Shape, Tensor};

use crate::shaders::CONV2D;

const BINDINGS: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
];
/// The tiled kernel (4 input channels per load); `cin` a multiple of 4.
pub const CONV_VEC4: Kernel = Kernel {
    file: "conv2d.wgsl",
    source: CONV2D,
    entry: "conv_vec4",
    bindings: BINDINGS,
};
/// The tiled kernel for any `cin`.
pub const CONV_SCALAR: Kernel = Kernel {
    file: "conv2d.wgsl",
    source: CONV2D,
    entry: "conv_scalar",
    bindings: BINDINGS,
};
/// [`CONV_VEC4`] with subgroup operations (adapters with ≥ 8 lanes).
pub const CONV_VEC4_SUBGROUP: Kernel = Kernel {
    file: "conv2d_subgroup.wgsl",
    source: crate::shaders::CONV2D_SUBGROUP,
    entry: "conv_vec4_subgroup",
    bindings: BINDINGS,
};
/// The tiled implicit GEMM of `conv2d_tiled.wgsl`, 64 × 64 output tiles
/// (convolution and, with flag 16, transposed convolution).
pub const CONV_TILED_64X64: Kernel = Kernel {
    file: "conv2d_tiled.wgsl",
    source: crate::shaders::CONV2D_TILED_64X64,
    entry: "conv_tiled",
    bindings: BINDINGS,
};
/// [`CONV_TILED_64X64`] with 128-pixel × 64-channel tiles.
pub const CONV_TILED_128X64: Kernel = Kernel {
    file: "conv2d_tiled.wgsl (128x64)",
    source: crate::shaders::CONV2D_TILED_128X64,
    entry: "conv_tiled",
    bindings: BINDINGS,
};
/// [`CONV_TILED_64X64`] with 64-pixel × 32-channel tiles.
pub const CONV_TILED_64X32: Kernel = Kernel {
    file: "conv2d_tiled.wgsl (64x32)",
    source: crate::shaders::CONV2D_TILED_64X32,
    entry: "conv_tiled",
    bindings: BINDINGS,
};
/// [`CONV_TILED_64X64`] with 32 × 32 output tiles.
pub const CONV_TILED_32X32: Kernel = Kernel {
    file: "conv2d_tiled.wgsl (32x32)",
    source: crate::shaders::CONV2D_TILED_32X32,
    entry: "conv_tiled",
    bindings: BINDINGS,
};
/// [`CONV_TILED_64X64`] with f16 storage (`conv2d_tiled_f16.wgsl`):
/// `--precision f16` where the tuner runs a tiled kernel.
pub const CONV_TILED_F16_64X64: Kernel = Kernel {
    file: "conv2d_tiled_f16.wgsl",
    source: crate::shaders::CONV2D_TILED_F16_64X64,
    entry: "conv_tiled",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
};
/// [`CONV_TILED_F16_64X64`] with 128 × 64 tiles.
pub const CONV_TILED_F16_128X64: Kernel = Kernel {
    file: "conv2d_tiled_f16.wgsl (128x64)",
    source: crate::shaders::CONV2D_TILED_F16_128X64,
    ..CONV_TILED_F16_64X64
};
/// [`CONV_TILED_F16_64X64`] with 64 × 32 tiles.
pub const CONV_TILED_F16_64X32: Kernel = Kernel {
    file: "conv2d_tiled_f16.wgsl (64x32)",
    source: crate::shaders::CONV2D_TILED_F16_64X32,
    ..CONV_TILED_F16_64X64
};
/// [`CONV_TILED_F16_64X64`] with 32 × 32 tiles.
pub const CONV_TILED_F16_32X32: Kernel = Kernel {
    file: "conv2d_tiled_f16.wgsl (32x32)",
    source: crate::shaders::CONV2D_TILED_F16_32X32,
    ..CONV_TILED_F16_64X64
};
/// f16 weights and activations, f32 accumulation ([`Conv2d::forward_f16`]).
pub const CONV_F16: Kernel = Kernel {
    file: "conv2d_f16.wgsl",
    source: crate::shaders::CONV2D_F16,
    entry: "conv_f16",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
};
/// [`CONV_F16`] taking four input channels per step (`cin` a multiple of 4).
pub const CONV_F16_VEC4: Kernel = Kernel {
    entry: "conv_f16_vec4",
    ..CONV_F16
};
/// One output per invocation: the baseline of [`ConvVariant::Naive`].
pub const CONV_NAIVE: Kernel = Kernel {
    file: "conv2d.wgsl",
    source: CONV2D,
    entry: "conv_naive",
    bindings: BINDINGS,
};

const FLAG_SCALE: u32 = 1;
const FLAG_SHIFT: u32 = 2;
const FLAG_RELU: u32 = 4;
const FLAG_MASK: u32 = 8;
/// `conv2d_tiled.wgsl`: the launch is a transposed convolution.
pub(crate) const FLAG_TRANSPOSED: u32 = 16;
/// `conv2d_f16.wgsl`: the input is f32 (the chain's first layer).
const FLAG_IN_F32: u32 = 32;
/// `conv2d_f16.wgsl`: the output is f32 (the chain's last layer).
const FLAG_OUT_F32: u32 = 64;

/// The uniform block of every convolution kernel (`shaders/conv_common.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct ConvParams {
    pub n: u32,
    pub h: u32,
    pub w: u32,
    pub cin: u32,
    pub ho: u32,
    pub wo: u32,
    pub cout: u32,
    pub kh: u32,
    pub kw: u32,
    pub stride: u32,
    pub pad: u32,
    pub dil: u32,
    pub flags: u32,
    pub mask_n: u32,
    pub tiles_w: u32,
    pub cout_p: u32,
    /// Transposed-conv subgroup variant only: output rows per stride phase.
    pub hh: u32,
    /// Transposed-conv subgroup variant only: workgroups per phase.
    pub phase_groups: u32,
    pub _p0: u32,
    pub _p1: u32,
}
prior_gpu::uniform!(ConvParams {
    n,
    h,
    w,
    cin,
    ho,
    wo,
    cout,
    kh,
    kw,
    stride,
    pad,
    dil,
    flags,
    mask_n,
    tiles_w,
    cout_p,
    hh,
    phase_groups,
    _p0,
    _p1
});

/// The epilogue flags, the mask sample count and the tensor bound as the
/// mask (the caller's mask, or a small placeholder) of a convolution of an
/// `n_in`-sample input with output `out`, checking the mask's shape.
pub(crate) fn epilogue_setup(
    gpu: &Gpu,
    op: &'static str,
    (has_scale, has_shift): (bool, bool),
    epi: &Epilogue,
    n_in: usize,
    out: Shape,
) -> Result<(u32, u32, Tensor)> {
    let mut flags = 0;
    if has_scale {
        flags |= FLAG_SCALE;
    }
    if has_shift && !epi.no_shift {
        flags |= FLAG_SHIFT;
    }
    if epi.relu {
        flags |= FLAG_RELU;
    }
    match epi.mask {
        Some(m) => {
            let ms = m.shape();
            if ms.h != out.h
                || ms.w != out.w
                || ms.c != out.c
                || ms.n == 0
                || !n_in.is_multiple_of(ms.n)
            {
                return Err(GpuError::Shape {
                    op,
                    detail: format!("mask {ms} does not match output {out}"),
                });
            }
            Ok((flags | FLAG_MASK, ms.n as u32, m.clone()))
        }
        None => Ok((flags, 1, gpu.empty(Shape::vector(4)))),
    }
}

/// The flags and the output of an f16-storage launch (`conv2d_f16.wgsl`)
/// with epilogue `(scale, shift, relu)` on input `x`, writing `out_shape`
/// in precision `out` (f32 input and output set their FLAG_*_F32).
pub(crate) fn f16_io(
    gpu: &Gpu,
    (scale, shift, relu): (bool, bool, bool),
    x: &crate::precision::Activation,
    out: crate::precision::Precision,
    out_shape: Shape,
) -> (u32, crate::precision::Activation) {
    use crate::precision::{Activation, HalfTensor, Precision};
    let mut flags = 0;
    if scale {
        flags |= FLAG_SCALE;
    }
    if shift {
        flags |= FLAG_SHIFT;
    }
    if relu {
        flags |= FLAG_RELU;
    }
    if matches!(x, Activation::F32(_)) {
        flags |= FLAG_IN_F32;
    }
    let y = match out {
        Precision::F32 => {
            flags |= FLAG_OUT_F32;
            Activation::F32(gpu.empty(out_shape))
        }
        Precision::F16 => Activation::F16(HalfTensor::empty(gpu, out_shape)),
    };
    (flags, y)
}

/// The checks of an f16-storage launch shared by [`Conv2d::forward_f16`]
/// and the transposed convolution's: the layer has f16 weights, `x` has
/// `cin` channels, and an f16 output has an even channel count `cout`.
/// Returns the f16 weights.
pub(crate) fn f16_checks<'a>(
    op: &'static str,
    weight: Option<&'a Tensor>,
    x: &crate::precision::Activation,
    (cin, cout): (usize, usize),
    out: crate::precision::Precision,
) -> Result<&'a Tensor> {
    let err = |detail: String| GpuError::Shape { op, detail };
    let weight = weight.ok_or_else(|| err("the layer has no f16 weights (enable_f16)".into()))?;
    let c = x.shape().c;
    if c != cin {
        return Err(err(format!(
            "input has {c} channels, the layer expects {cin}"
        )));
    }
    if out == crate::precision::Precision::F16 && !cout.is_multiple_of(2) {
        return Err(err(format!(
            "an f16 output needs an even channel count, the layer has {cout}"
        )));
    }
    Ok(weight)
}

/// Which kernel runs a convolution. `Auto` runs the tuner's choice for the
/// layer shape ([`crate::tune`]) or, when nothing was tuned, `Fixed`: the
/// lavapipe-shaped kernel that fits the input channel count, with subgroups
/// where the adapter has them. `Naive` is the one-output-per-invocation
/// baseline (a transposed convolution runs `Plain` for it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ConvVariant {
    /// The tuned choice, else [`ConvVariant::Fixed`].
    #[default]
    Auto,
    /// The fixed default (what `PRIOR_TUNE=off` runs): `conv2d.wgsl`'s
    /// 4-pixel × 8-channel kernel, its subgroup form on adapters with ≥ 8 lanes.
    Fixed,
    /// The fixed kernel without subgroup operations (what browsers get).
    Plain,
    /// One output per invocation (a baseline for benchmarks and tests).
    Naive,
    /// The workgroup-memory tiled implicit GEMM of `conv2d_tiled.wgsl`.
    Tiled(Tile),
}

/// The output tile of one workgroup of `conv2d_tiled.wgsl` (each invocation
/// computes 4 pixels × 8 channels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tile {
    /// 128 pixels × 64 channels, 256 invocations.
    T128x64,
    /// 64 pixels × 64 channels, 128 invocations.
    T64x64,
    /// 64 pixels × 32 channels, 64 invocations.
    T64x32,
    /// 32 pixels × 32 channels, 32 invocations.
    T32x32,
}

impl Tile {
    /// Every tile shape.
    pub const ALL: [Tile; 4] = [Tile::T128x64, Tile::T64x64, Tile::T64x32, Tile::T32x32];

    /// `(pixels, channels)` of the tile.
    pub fn size(self) -> (usize, usize) {
        match self {
            Tile::T128x64 => (128, 64),
            Tile::T64x64 => (64, 64),
            Tile::T64x32 => (64, 32),
            Tile::T32x32 => (32, 32),
        }
    }

    /// The kernel of this tile shape with f32 storage or, with `f16`, f16
    /// storage (`conv2d_tiled_f16.wgsl`).
    pub(crate) fn kernel(self, f16: bool) -> &'static Kernel {
        match (self, f16) {
            (Tile::T128x64, false) => &CONV_TILED_128X64,
            (Tile::T64x64, false) => &CONV_TILED_64X64,
            (Tile::T64x32, false) => &CONV_TILED_64X32,
            (Tile::T32x32, false) => &CONV_TILED_32X32,
            (Tile::T128x64, true) => &CONV_TILED_F16_128X64,
            (Tile::T64x64, true) => &CONV_TILED_F16_64X64,
            (Tile::T64x32, true) => &CONV_TILED_F16_64X32,
            (Tile::T32x32, true) => &CONV_TILED_F16_32X32,
        }
    }
}

impl ConvVariant {
    /// A short stable name (`fixed`, `plain`, `naive`, `tiled64x64`, ...),
    /// as the tuner's cache and `prior bench` write it.
    pub fn name(self) -> &'static str {
        match self {
            ConvVariant::Auto => "auto",
            ConvVariant::Fixed => "fixed",
            ConvVariant::Plain => "plain",
            ConvVariant::Naive => "naive",
            ConvVariant::Tiled(Tile::T128x64) => "tiled128x64",
            ConvVariant::Tiled(Tile::T64x64) => "tiled64x64",
            ConvVariant::Tiled(Tile::T64x32) => "tiled64x32",
            ConvVariant::Tiled(Tile::T32x32) => "tiled32x32",
        }
    }

    /// The variant of [`ConvVariant::name`].
    pub fn from_name(s: &str) -> Option<ConvVariant> {
        [
            ConvVariant::Auto,
            ConvVariant::Fixed,
            ConvVariant::Plain,
            ConvVariant::Naive,
            ConvVariant::Tiled(Tile::T128x64),
            ConvVariant::Tiled(Tile::T64x64),
            ConvVariant::Tiled(Tile::T64x32),
            ConvVariant::Tiled(Tile::T32x32),
        ]
        .into_iter()
        .find(|v| v.name() == s)
    }
}

/// Launches `conv2d_tiled.wgsl` with tile `tile` over `m` output pixels (per
/// phase) and `layers` dispatch layers (the stride phases of a transposed
/// conv, else 1); false (nothing launched) when the grid exceeds the
/// adapter's workgroup limit, so the caller falls back to the fixed kernel.
pub(crate) fn launch_tiled(
    gpu: &Gpu,
    kernel: &Kernel,
    tile: Tile,
    params: &ConvParams,
    bufs: &[&Tensor],
    (m, layers): (usize, usize),
) -> bool {
    let (bm, bn) = tile.size();
    let groups = [
        m.div_ceil(bm) as u32,
        (params.cout as usize).div_ceil(bn) as u32,
        layers as u32,
    ];
    let max = gpu.limits.max_compute_workgroups_per_dimension;
    if m.div_ceil(bm) > max as usize || groups[2] > max {
        return false;
    }
    // Each invocation computes 4 pixels × 8 channels of the tile.
    let lanes = (bm / 4 * (bn / 8)) as u32;
    let dispatch = prior_gpu::Dispatch::groups(groups, [lanes, 1, 1]);
    gpu.launch(kernel, &[], params, bufs, dispatch);
    true
}

/// A convolution layer with its weights on the GPU, in the kernel's layout
/// `[kh, kw, cin_p, cout_p]` (cin_p = cin rounded up to 4, cout_p = cout
/// rounded up to 8, zero padded).
pub struct Conv2d {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
    /// Dilation.
    pub dilation: usize,
    weight: Tensor,
    /// `[scale(cout_p), shift(cout_p)]`
    scale_shift: Tensor,
    has_scale: bool,
    has_shift: bool,
    /// The weights as given (PyTorch `(cout, cin, kh, kw)`), for VJP layers.
    pub oihw: Vec<f32>,
    /// The epilogue scale as given to [`Conv2d::set_affine`] (for VJP layers).
    pub scale: Option<Vec<f32>>,
    /// The weights in f16 (`[kh, kw, cin_p, cout_p]`, two to a word), once
    /// [`Conv2d::enable_f16`] has made them.
    weight_f16: Option<Tensor>,
}

/// Fused output stage of a convolution.
#[derive(Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// A ReLU after scale and shift.
    pub relu: bool,
    /// Keep outputs only where this tensor (same `h, w, c` as the output,
    /// any sample count dividing the batch) is > 0.
    pub mask: Option<&'a Tensor>,
    /// Skip scale/shift (linear tangent passes apply the scale, never the shift).
    pub no_shift: bool,
    /// Which kernel runs the convolution.
    pub variant: ConvVariant,
}

impl Epilogue<'_> {
    /// Just a ReLU.
    pub fn relu() -> Self {
        Epilogue {
            relu: true,
            ..Default::default()
        }
    }
}

/// `n` rounded up to a multiple of `m`.
pub fn round_up(n: usize, m: usize) -> usize {
    n.div_ceil(m) * m
}

/// The geometry of a convolution or transposed convolution (in the style of
/// candle's `Conv2dConfig`): channel counts, kernel size, stride, padding and
/// dilation. For a [`Conv2d`] `pad` is the zero padding on every side; for a
/// [`crate::conv_transpose2d::ConvTranspose2d`] it is PyTorch's `padding`
/// (the rows/columns cropped from each side of the full output).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvConfig {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Padding (both axes; see the type's doc).
    pub pad: usize,
    /// Dilation (both axes).
    pub dilation: usize,
}

impl ConvConfig {
    /// A `cin → cout` layer with a `kh × kw` kernel, stride 1, no padding,
    /// dilation 1.
    pub fn new(cin: usize, cout: usize, kh: usize, kw: usize) -> ConvConfig {
        ConvConfig {
            cin,
            cout,
            kh,
            kw,
            stride: 1,
            pad: 0,
            dilation: 1,
        }
    }

    /// A stride-1 `k × k` convolution with 'same' padding
    /// (`pad = dilation·(k−1)/2`, `k` odd).
    pub fn same(cin: usize, cout: usize, k: usize, dilation: usize) -> ConvConfig {
        ConvConfig {
            pad: dilation * (k - 1) / 2,
            dilation,
            ..ConvConfig::new(cin, cout, k, k)
        }
    }

    /// This geometry with stride `stride`.
    pub fn stride(self, stride: usize) -> ConvConfig {
        ConvConfig { stride, ..self }
    }

    /// This geometry with padding `pad`.
    pub fn pad(self, pad: usize) -> ConvConfig {
        ConvConfig { pad, ..self }
    }

    /// This geometry with dilation `dilation`.
    pub fn dilation(self, dilation: usize) -> ConvConfig {
        ConvConfig { dilation, ..self }
    }

    /// The same kernel read the other way round: `cin` and `cout` swapped
    /// (stride, padding and dilation kept). The adjoint of a convolution is
    /// the transposed convolution of this geometry and vice versa.
    pub fn swapped(self) -> ConvConfig {
        ConvConfig {
            cin: self.cout,
            cout: self.cin,
            ..self
        }
    }

    /// Number of weights, `cin·cout·kh·kw`.
    pub fn weights(&self) -> usize {
        self.cin * self.cout * self.kh * self.kw
    }
}

impl Conv2d {
    /// Builds a layer of geometry `cfg` from PyTorch-layout weights
    /// `(cout, cin, kh, kw)`. Panics if `oihw` has the wrong length (callers
    /// validate shapes read from files).
    pub fn new(gpu: &Gpu, oihw: &[f32], cfg: ConvConfig) -> Conv2d {
        let ConvConfig {
            cin,
            cout,
            kh,
            kw,
            stride,
            pad,
            dilation,
        } = cfg;
        assert_eq!(oihw.len(), cfg.weights(), "conv weight size");
        let (cin_p, cout_p) = (round_up(cin, 4), round_up(cout, 8));
        let mut w = vec![0.0f32; kh * kw * cin_p * cout_p];
        for co in 0..cout {
            for ci in 0..cin {
                for ky in 0..kh {
                    for kx in 0..kw {
                        w[((ky * kw + kx) * cin_p + ci) * cout_p + co] =
                            oihw[((co * cin + ci) * kh + ky) * kw + kx];
                    }
                }
            }
        }
        let weight = gpu.upload(Shape::vector(w.len()), &w);
        let scale_shift = gpu.zeros(Shape::vector(2 * cout_p));
        Conv2d {
            cin,
            cout,
            kh,
            kw,
            stride,
            pad,
            dilation,
            weight,
            scale_shift,
            has_scale: false,
            has_shift: false,
            oihw: oihw.to_vec(),
            scale: None,
            weight_f16: None,
        }
    }

    /// Uploads the f16 copy of the weights that [`Conv2d::forward_f16`]
    /// reads (the f32 weights stay, for the f32 and Jacobian paths).
    pub fn enable_f16(&mut self, gpu: &Gpu) {
        let (cin_p, cout_p) = (round_up(self.cin, 4), round_up(self.cout, 8));
        let (kh, kw, cin, cout) = (self.kh, self.kw, self.cin, self.cout);
        let mut w = vec![0.0f32; kh * kw * cin_p * cout_p];
        for co in 0..cout {
            for ci in 0..cin {
                for ky in 0..kh {
                    for kx in 0..kw {
                        w[((ky * kw + kx) * cin_p + ci) * cout_p + co] =
                            self.oihw[((co * cin + ci) * kh + ky) * kw + kx];
                    }
                }
            }
        }
        let words = crate::precision::pack_halves(&w);
        self.weight_f16 = Some(gpu.upload(Shape::vector(words.len()), &words));
    }

    /// The convolution with f16 weights (see [`Conv2d::enable_f16`]), the
    /// epilogue's scale and shift, and a ReLU when `relu`, on an f32 or f16
    /// input, returning an f32 or f16 output as `out` says; every product
    /// and sum in f32, the output rounded once (`shaders/conv2d_f16.wgsl`).
    /// Forward only (no mask: Jacobian passes run f32). An f16 output needs
    /// an even channel count. The kernel is the tuner's choice for the
    /// layer's shape, as for the f32 forward: a tiled choice runs that tile
    /// with f16 storage (`conv2d_tiled_f16.wgsl`), any other the fixed f16
    /// kernel ([`Conv2d::forward_f16_with`] names the variant).
    pub fn forward_f16(
        &self,
        gpu: &Gpu,
        x: &crate::precision::Activation,
        out: crate::precision::Precision,
        relu: bool,
    ) -> Result<crate::precision::Activation> {
        self.forward_f16_with(gpu, x, out, relu, ConvVariant::Auto)
    }

    /// [`Conv2d::forward_f16`] with the kernel named: `Tiled(tile)` the
    /// tiled f16 kernel, `Auto` the tuner's choice, any other the fixed
    /// f16 kernel.
    pub fn forward_f16_with(
        &self,
        gpu: &Gpu,
        x: &crate::precision::Activation,
        out: crate::precision::Precision,
        relu: bool,
        variant: ConvVariant,
    ) -> Result<crate::precision::Activation> {
        let weight = f16_checks(
            "conv2d f16",
            self.weight_f16.as_ref(),
            x,
            (self.cin, self.cout),
            out,
        )?;
        let s = x.shape();
        let err = |detail: String| GpuError::Shape {
            op: "conv2d f16",
            detail,
        };
        let eff_h = self.dilation * (self.kh - 1) + 1;
        let eff_w = self.dilation * (self.kw - 1) + 1;
        if s.h + 2 * self.pad < eff_h || s.w + 2 * self.pad < eff_w {
            return Err(err(format!("input {s} smaller than the kernel")));
        }
        let (ho, wo) = self.out_size(s.h, s.w);
        let out_shape = Shape::new(s.n, ho, wo, self.cout);
        gpu.check_fits("conv2d output", out_shape)?;
        let (flags, y) = f16_io(
            gpu,
            (self.has_scale, self.has_shift, relu),
            x,
            out,
            out_shape,
        );
        let (xw, yw) = (x.words(), y.words());
        let params = self.params(s, (ho, wo), flags, 1);
        let bufs = [xw, weight, &self.scale_shift, yw];
        let variant = match variant {
            ConvVariant::Auto => {
                crate::tune::choice(gpu, &crate::tune::ConvKey::conv(self.config(), s))
            }
            v => v,
        };
        if let ConvVariant::Tiled(tile) = variant {
            if launch_tiled(
                gpu,
                tile.kernel(true),
                tile,
                &params,
                &bufs,
                (s.n * ho * wo, 1),
            ) {
                return Ok(y);
            }
        }
        let groups = self.fixed_groups(s, (ho, wo));
        if groups[0] > gpu.limits.max_compute_workgroups_per_dimension {
            return Err(GpuError::TooLarge {
                what: format!("conv2d f16 on {s}"),
                bytes: out_shape.numel() as u64 * 2,
                limit: gpu.max_buffer_bytes,
                adapter: gpu.adapter.name.clone(),
            });
        }
        let dispatch = prior_gpu::Dispatch::groups(groups, [64, 1, 1]);
        let kernel = if self.cin.is_multiple_of(4) {
            &CONV_F16_VEC4
        } else {
            &CONV_F16
        };
        gpu.launch(kernel, &[], &params, &bufs, dispatch);
        Ok(y)
    }

    /// The uniform block of a launch on input `s` with output `(ho, wo)`
    /// (4-pixel tiles for the fixed and f16 kernels).
    fn params(&self, s: Shape, (ho, wo): (usize, usize), flags: u32, mask_n: u32) -> ConvParams {
        ConvParams {
            n: s.n as u32,
            h: s.h as u32,
            w: s.w as u32,
            cin: self.cin as u32,
            ho: ho as u32,
            wo: wo as u32,
            cout: self.cout as u32,
            kh: self.kh as u32,
            kw: self.kw as u32,
            stride: self.stride as u32,
            pad: self.pad as u32,
            dil: self.dilation as u32,
            flags,
            mask_n,
            tiles_w: wo.div_ceil(4) as u32,
            cout_p: round_up(self.cout, 8) as u32,
            ..ConvParams::zeroed()
        }
    }

    /// The grid of the fixed (and f16) kernels: 64 tiles of 4 pixels per
    /// workgroup along x, 8 output channels per invocation along y.
    fn fixed_groups(&self, s: Shape, (ho, wo): (usize, usize)) -> [u32; 3] {
        let tiles = s.n * ho * wo.div_ceil(4);
        [
            tiles.div_ceil(64) as u32,
            (round_up(self.cout, 8) / 8) as u32,
            1,
        ]
    }

    /// The layer's geometry.
    pub fn config(&self) -> ConvConfig {
        ConvConfig {
            cin: self.cin,
            cout: self.cout,
            kh: self.kh,
            kw: self.kw,
            stride: self.stride,
            pad: self.pad,
            dilation: self.dilation,
        }
    }

    /// Sets the per-output-channel epilogue `v · scale + shift` (either optional).
    pub fn set_affine(&mut self, gpu: &Gpu, scale: Option<&[f32]>, shift: Option<&[f32]>) {
        let cout_p = round_up(self.cout, 8);
        let mut sb = vec![0.0f32; 2 * cout_p];
        if let Some(s) = scale {
            assert_eq!(s.len(), self.cout);
            sb[..self.cout].copy_from_slice(s);
        }
        if let Some(b) = shift {
            assert_eq!(b.len(), self.cout);
            sb[cout_p..cout_p + self.cout].copy_from_slice(b);
        }
        self.has_scale = scale.is_some();
        self.scale = scale.map(|s| s.to_vec());
        self.has_shift = shift.is_some();
        self.scale_shift = gpu.upload(Shape::vector(sb.len()), &sb);
    }

    /// The layer that maps a cotangent of this layer's output (before its
    /// ReLU) to the cotangent of its input: the vector-Jacobian product of
    /// `x ↦ conv(x)·scale`. For stride 1 that is a convolution with the
    /// spatially flipped kernel, input and output channels swapped, the
    /// scale folded into the weights (`scale[co]·w[co, ci, kh−1−y, kw−1−x]`),
    /// padding `dilation·(k−1) − pad`, and no shift. Strided layers need a
    /// transposed convolution (`conv_transpose2d`), not this.
    pub fn input_gradient_layer(&self, gpu: &Gpu) -> Result<Conv2d> {
        let (eh, ew) = (self.dilation * (self.kh - 1), self.dilation * (self.kw - 1));
        if self.stride != 1 || eh != ew || self.pad > eh {
            return Err(GpuError::Shape {
                op: "conv2d vjp",
                detail: format!(
                    "only stride-1 layers with square kernels and padding ≤ dilation·(k−1) (got stride {}, {}×{} kernel, pad {}); strided layers use conv_transpose2d",
                    self.stride, self.kh, self.kw, self.pad
                ),
            });
        }
        let (kh, kw, cin, cout) = (self.kh, self.kw, self.cin, self.cout);
        let mut t = vec![0.0f32; self.oihw.len()];
        for co in 0..cout {
            let s = self.scale.as_ref().map_or(1.0, |s| s[co]);
            for ci in 0..cin {
                for y in 0..kh {
                    for x in 0..kw {
                        t[((ci * cout + co) * kh + y) * kw + x] = s * self.oihw
                            [((co * cin + ci) * kh + (kh - 1 - y)) * kw + (kw - 1 - x)];
                    }
                }
            }
        }
        Ok(Conv2d::new(
            gpu,
            &t,
            self.config().swapped().pad(eh - self.pad),
        ))
    }

    /// Output size `(ho, wo)` for an `h × w` input.
    pub fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        let eff_h = self.dilation * (self.kh - 1) + 1;
        let eff_w = self.dilation * (self.kw - 1) + 1;
        (
            (h + 2 * self.pad - eff_h) / self.stride + 1,
            (w + 2 * self.pad - eff_w) / self.stride + 1,
        )
    }

    /// Multiply-adds of one call on an `h × w` input with `n` samples.
    pub fn macs(&self, n: usize, h: usize, w: usize) -> u64 {
        let (ho, wo) = self.out_size(h, w);
        (n * ho * wo * self.cout * self.cin * self.kh * self.kw) as u64
    }

    /// Records the convolution of `x` (`[n, h, w, cin]`); returns `[n, ho, wo, cout]`.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, epi: Epilogue) -> Result<Tensor> {
        let s = x.shape();
        if s.c != self.cin {
            return Err(GpuError::Shape {
                op: "conv2d",
                detail: format!("input has {} channels, the layer expects {}", s.c, self.cin),
            });
        }
        let eff_h = self.dilation * (self.kh - 1) + 1;
        let eff_w = self.dilation * (self.kw - 1) + 1;
        if s.h + 2 * self.pad < eff_h || s.w + 2 * self.pad < eff_w {
            return Err(GpuError::Shape {
                op: "conv2d",
                detail: format!("input {s} smaller than the kernel"),
            });
        }
        let (ho, wo) = self.out_size(s.h, s.w);
        let out_shape = Shape::new(s.n, ho, wo, self.cout);
        gpu.check_fits("conv2d output", out_shape)?;
        let y = gpu.empty(out_shape);
        let (flags, mask_n, mask) = epilogue_setup(
            gpu,
            "conv2d",
            (self.has_scale, self.has_shift),
            &epi,
            s.n,
            out_shape,
        )?;
        let params = self.params(s, (ho, wo), flags, mask_n);
        let bufs = [x, &self.weight, &self.scale_shift, &mask, &y];
        let variant = match epi.variant {
            ConvVariant::Auto => {
                crate::tune::choice(gpu, &crate::tune::ConvKey::conv(self.config(), s))
            }
            v => v,
        };
        match variant {
            ConvVariant::Naive => {
                let groups = crate::groups_flat(out_shape.numel());
                gpu.launch(&CONV_NAIVE, &[], &params, &bufs, groups);
            }
            ConvVariant::Tiled(tile)
                if launch_tiled(
                    gpu,
                    tile.kernel(false),
                    tile,
                    &params,
                    &bufs,
                    (s.n * ho * wo, 1),
                ) => {}
            _ => {
                let kernel = if !self.cin.is_multiple_of(4) {
                    &CONV_SCALAR
                } else if gpu.subgroups_at_least(8) && variant != ConvVariant::Plain {
                    &CONV_VEC4_SUBGROUP
                } else {
                    &CONV_VEC4
                };
                let groups = self.fixed_groups(s, (ho, wo));
                if groups[0] > gpu.limits.max_compute_workgroups_per_dimension {
                    return Err(GpuError::TooLarge {
                        what: format!("conv2d on {s}"),
                        bytes: out_shape.numel() as u64 * 4,
                        limit: gpu.max_buffer_bytes,
                        adapter: gpu.adapter.name.clone(),
                    });
                }
                let dispatch = prior_gpu::Dispatch::groups(groups, [64, 1, 1]);
                gpu.launch(kernel, &[], &params, &bufs, dispatch);
            }
        }
        Ok(y)
    }
}
