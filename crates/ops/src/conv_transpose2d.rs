//! 2-D transposed convolution (`shaders/conv_transpose2d.wgsl`, and
//! `conv_transpose2d_subgroup.wgsl` on adapters with subgroups of ≥ 8 lanes
//! when [`Epilogue::variant`] is [`ConvVariant::Auto`]), PyTorch's
//! `ConvTranspose2d` without groups: any kernel size, stride, padding and
//! dilation, optional bias, and the fused [`Epilogue`] of [`Conv2d`]
//! (per-channel scale/shift, ReLU, ReLU-derivative mask). The GPU-shaped
//! tiled variants ([`ConvVariant::Tiled`]) run `conv2d_tiled.wgsl` in its
//! transposed mode, one stride phase per dispatch layer; `Auto` runs the
//! tuner's choice ([`crate::tune`]) when there is one.
//!
//! Transposed and strided convolutions are each other's adjoints with the
//! same weight array:
//! * the VJP of a `ConvTranspose2d` is the `Conv2d` that reads its
//!   `(in, out, kH, kW)` weights as `(cout, cin, kH, kW)`
//!   ([`ConvTranspose2d::adjoint`]);
//! * the VJP of any `Conv2d` (strided or not) is the `ConvTranspose2d` built
//!   from its `(cout, cin, kH, kW)` weights read as `(in, out, kH, kW)`
//!   ([`ConvTranspose2d::adjoint_of`]), with the output size set to the
//!   conv's input size (PyTorch's `output_padding`,
//!   [`ConvTranspose2d::forward_sized`]).
//!
//! Being linear, both JVPs are the layers themselves without the shift.
//! [`crate::layer::ConvLayer`] puts these pieces together into the one
//! differentiable layer the models use.

use prior_gpu::{Access, Gpu, GpuError, Kernel, Result, Shape, Tensor};

use crate::conv2d::{
    epilogue_setup, launch_tiled, round_up, Conv2d, ConvConfig, ConvParams, ConvVariant, Epilogue,
    FLAG_TRANSPOSED,
};
use crate::shaders::{CONV_TRANSPOSE2D, CONV_TRANSPOSE2D_SUBGROUP};

/// `(cin, cout, kh, kw)` weights in the kernels' layout `[kh, kw, cin_p,
/// cout_p]` (cin_p = cin rounded up to 4, cout_p = cout to 8, zero padded).
fn kernel_layout(iohw: &[f32], cfg: ConvConfig) -> Vec<f32> {
    let ConvConfig {
        cin, cout, kh, kw, ..
    } = cfg;
    let (cin_p, cout_p) = (round_up(cin, 4), round_up(cout, 8));
    let mut w = vec![0.0f32; kh * kw * cin_p * cout_p];
    for ci in 0..cin {
        for co in 0..cout {
            for ky in 0..kh {
                for kx in 0..kw {
                    w[((ky * kw + kx) * cin_p + ci) * cout_p + co] =
                        iohw[((ci * cout + co) * kh + ky) * kw + kx];
                }
            }
        }
    }
    w
}

const BINDINGS: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
];
/// The tiled kernel (4 input channels per load); `cin` a multiple of 4.
pub const CONVT_VEC4: Kernel = Kernel {
    file: "conv_transpose2d.wgsl",
    source: CONV_TRANSPOSE2D,
    entry: "convt_vec4",
    bindings: BINDINGS,
};
/// The tiled kernel for any `cin`.
pub const CONVT_SCALAR: Kernel = Kernel {
    file: "conv_transpose2d.wgsl",
    source: CONV_TRANSPOSE2D,
    entry: "convt_scalar",
    bindings: BINDINGS,
};
/// [`CONVT_VEC4`] with subgroup operations, phase-major (≥ 8 lanes).
pub const CONVT_VEC4_SUBGROUP: Kernel = Kernel {
    file: "conv_transpose2d_subgroup.wgsl",
    source: CONV_TRANSPOSE2D_SUBGROUP,
    entry: "convt_vec4_subgroup",
    bindings: BINDINGS,
};

/// f16 weights and activations, f32 accumulation
/// ([`ConvTranspose2d::forward_f16`], `conv2d_f16.wgsl`).
pub const CONVT_F16: Kernel = Kernel {
    file: "conv2d_f16.wgsl",
    source: crate::shaders::CONV2D_F16,
    entry: "convt_f16",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
};

/// Output pixels per invocation (along a row, within one stride phase).
const TP: usize = 4;

/// A transposed convolution with its weights on the GPU, in the kernel's
/// layout `[kh, kw, cin_p, cout_p]` (zero padded to cin_p = cin rounded up
/// to 4, cout_p = cout rounded up to 8).
pub struct ConvTranspose2d {
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
    /// PyTorch's `padding`: rows/columns cropped from each side of the output.
    pub pad: usize,
    /// Dilation.
    pub dilation: usize,
    weight: Tensor,
    scale_shift: Tensor,
    has_scale: bool,
    has_shift: bool,
    /// The weights as given (PyTorch `(in, out, kh, kw)`).
    pub iohw: Vec<f32>,
    /// The weights in f16 (the kernel's layout, two to a word), once
    /// [`ConvTranspose2d::enable_f16`] has made them.
    weight_f16: Option<Tensor>,
}

impl ConvTranspose2d {
    /// Builds a layer of geometry `cfg` from PyTorch `ConvTranspose2d`
    /// weights `(cin, cout, kh, kw)`. `cfg.pad` is PyTorch's `padding` (it
    /// crops `pad` rows/columns from each side of the full transposed
    /// output). Panics if `iohw` has the wrong length or the stride,
    /// dilation or kernel is 0 (callers validate shapes read from files).
    pub fn new(gpu: &Gpu, iohw: &[f32], cfg: ConvConfig) -> ConvTranspose2d {
        let ConvConfig {
            cin,
            cout,
            kh,
            kw,
            stride,
            pad,
            dilation,
        } = cfg;
        assert_eq!(iohw.len(), cfg.weights(), "conv_transpose2d weight size");
        assert!(
            stride >= 1 && dilation >= 1 && kh >= 1 && kw >= 1,
            "conv_transpose2d: zero stride/dilation/kernel"
        );
        let cout_p = round_up(cout, 8);
        let w = kernel_layout(iohw, cfg);
        ConvTranspose2d {
            cin,
            cout,
            kh,
            kw,
            stride,
            pad,
            dilation,
            weight: gpu.upload(Shape::vector(w.len()), &w),
            scale_shift: gpu.zeros(Shape::vector(2 * cout_p)),
            has_scale: false,
            has_shift: false,
            iohw: iohw.to_vec(),
            weight_f16: None,
        }
    }

    /// Uploads the f16 copy of the weights that
    /// [`ConvTranspose2d::forward_f16`] reads (the f32 weights stay, for the
    /// f32 and Jacobian paths).
    pub fn enable_f16(&mut self, gpu: &Gpu) {
        let words = crate::precision::pack_halves(&kernel_layout(&self.iohw, self.config()));
        self.weight_f16 = Some(gpu.upload(Shape::vector(words.len()), &words));
    }

    /// The transposed convolution with f16 weights (after
    /// [`ConvTranspose2d::enable_f16`]), the scale and shift, and a ReLU
    /// when `relu`, on an f32 or f16 input, returning an f32 or f16 output
    /// as `out` says (PyTorch's output size, no `output_padding`); every
    /// product and sum in f32, the output rounded once
    /// (`shaders/conv2d_f16.wgsl`, `convt_f16`). Forward only. An f16
    /// output needs an even channel count. As for the f32 forward, a tiled
    /// tuner choice for the layer's shape runs that tile with f16 storage
    /// (`conv2d_tiled_f16.wgsl`, [`ConvTranspose2d::forward_f16_with`]).
    pub fn forward_f16(
        &self,
        gpu: &Gpu,
        x: &crate::precision::Activation,
        out: crate::precision::Precision,
        relu: bool,
    ) -> Result<crate::precision::Activation> {
        self.forward_f16_with(gpu, x, out, relu, ConvVariant::Auto)
    }

    /// [`ConvTranspose2d::forward_f16`] with the kernel named: `Tiled(tile)`
    /// the tiled f16 kernel, `Auto` the tuner's choice, any other
    /// `convt_f16`.
    pub fn forward_f16_with(
        &self,
        gpu: &Gpu,
        x: &crate::precision::Activation,
        out: crate::precision::Precision,
        relu: bool,
        variant: ConvVariant,
    ) -> Result<crate::precision::Activation> {
        let weight = crate::conv2d::f16_checks(
            "conv_transpose2d f16",
            self.weight_f16.as_ref(),
            x,
            (self.cin, self.cout),
            out,
        )?;
        let s = x.shape();
        let (ho, wo) = self.out_size(s.h, s.w).ok_or_else(|| GpuError::Shape {
            op: "conv_transpose2d f16",
            detail: format!(
                "input {s} gives an empty output (padding {} too large)",
                self.pad
            ),
        })?;
        let out_shape = Shape::new(s.n, ho, wo, self.cout);
        gpu.check_fits("conv_transpose2d output", out_shape)?;
        let (flags, y) = crate::conv2d::f16_io(
            gpu,
            (self.has_scale, self.has_shift, relu),
            x,
            out,
            out_shape,
        );
        let cout_p = round_up(self.cout, 8);
        let tiles_w = wo.div_ceil(self.stride).div_ceil(TP);
        let params = ConvParams {
            flags,
            mask_n: 1,
            ..self.params(s, (ho, wo))
        };
        let bufs = [x.words(), weight, &self.scale_shift, y.words()];
        let variant = match variant {
            ConvVariant::Auto => self.tuned(gpu, s, (ho, wo)),
            v => v,
        };
        if let ConvVariant::Tiled(tile) = variant {
            if self.launch_tiled(gpu, tile.kernel(true), tile, &params, &bufs) {
                return Ok(y);
            }
        }
        let tiles = s.n * ho * self.stride * tiles_w;
        let groups = [tiles.div_ceil(64) as u32, (cout_p / 8) as u32, 1];
        if groups[0] > gpu.limits.max_compute_workgroups_per_dimension {
            return Err(GpuError::TooLarge {
                what: format!("conv_transpose2d f16 on {s}"),
                bytes: out_shape.numel() as u64 * 2,
                limit: gpu.max_buffer_bytes,
                adapter: gpu.adapter.name.clone(),
            });
        }
        gpu.launch(
            &CONVT_F16,
            &[],
            &params,
            &bufs,
            prior_gpu::Dispatch::groups(groups, [64, 1, 1]),
        );
        Ok(y)
    }

    /// The tuner's choice for this layer on input `s` with output `(ho, wo)`.
    fn tuned(&self, gpu: &Gpu, s: Shape, out: (usize, usize)) -> ConvVariant {
        crate::tune::choice(
            gpu,
            &crate::tune::ConvKey::transposed(self.config(), s, out),
        )
    }

    /// Launches `kernel` (a tile shape of `conv2d_tiled.wgsl`, f32 or f16
    /// storage) in its transposed mode: one stride phase per dispatch
    /// layer, `hh × wh` pixels per phase (`p.hh`, `p.tiles_w` of the
    /// shader). `false` when the grid exceeds the adapter's limits.
    fn launch_tiled(
        &self,
        gpu: &Gpu,
        kernel: &Kernel,
        tile: crate::conv2d::Tile,
        params: &ConvParams,
        bufs: &[&Tensor],
    ) -> bool {
        let (ho, wo) = (params.ho as usize, params.wo as usize);
        let (hh, wh) = (ho.div_ceil(self.stride), wo.div_ceil(self.stride));
        let tiled = ConvParams {
            flags: params.flags | FLAG_TRANSPOSED,
            tiles_w: wh as u32,
            ..*params
        };
        let m = params.n as usize * hh * wh;
        launch_tiled(
            gpu,
            kernel,
            tile,
            &tiled,
            bufs,
            (m, self.stride * self.stride),
        )
    }

    /// The uniform block of a fixed-kernel launch on input `s` with output
    /// `(ho, wo)` (no flags; 4-pixel tiles within a stride phase).
    fn params(&self, s: Shape, (ho, wo): (usize, usize)) -> ConvParams {
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
            flags: 0,
            mask_n: 0,
            tiles_w: wo.div_ceil(self.stride).div_ceil(TP) as u32,
            cout_p: round_up(self.cout, 8) as u32,
            hh: ho.div_ceil(self.stride) as u32,
            phase_groups: 0,
            _p0: 0,
            _p1: 0,
        }
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

    /// The adjoint (VJP) of the layer `x ↦ conv(x)·scale` (its shift
    /// dropped): a transposed convolution with the same weights, stride,
    /// padding and dilation, `conv.scale` (if any) folded into the weights,
    /// mapping `conv.cout` channels back to `conv.cin`. Use
    /// [`ConvTranspose2d::forward_sized`] with the conv's input size.
    pub fn adjoint_of(gpu: &Gpu, conv: &Conv2d) -> ConvTranspose2d {
        let per = conv.cin * conv.kh * conv.kw;
        let w: Vec<f32> = match &conv.scale {
            Some(scale) => conv
                .oihw
                .iter()
                .enumerate()
                .map(|(i, v)| v * scale[i / per])
                .collect(),
            None => conv.oihw.clone(),
        };
        Self::new(gpu, &w, conv.config().swapped())
    }

    /// The adjoint (VJP) of this layer: the convolution with the same weights
    /// read as `(cout, cin, kh, kw)`, mapping `self.cout` channels to `self.cin`.
    pub fn adjoint(&self, gpu: &Gpu) -> Conv2d {
        Conv2d::new(gpu, &self.iohw, self.config().swapped())
    }

    /// Sets the per-output-channel epilogue `v · scale + shift` (a bias is a shift).
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
        self.has_shift = shift.is_some();
        self.scale_shift = gpu.upload(Shape::vector(sb.len()), &sb);
    }

    /// PyTorch's output size without `output_padding`:
    /// `(h − 1)·s − 2·pad + d·(k − 1) + 1`, or `None` when that is < 1.
    pub fn out_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let f = |n: usize, k: usize| {
            let v = (n as isize - 1) * self.stride as isize - 2 * self.pad as isize
                + (self.dilation * (k - 1)) as isize
                + 1;
            (v >= 1).then_some(v as usize)
        };
        Some((f(h, self.kh)?, f(w, self.kw)?))
    }

    /// Multiply-adds of one call on an `h × w` input with `n` samples (taps
    /// that land in the cropped border included).
    pub fn macs(&self, n: usize, h: usize, w: usize) -> u64 {
        (n * h * w * self.cin * self.cout * self.kh * self.kw) as u64
    }

    /// Records the transposed convolution of `x` (`[n, h, w, cin]`); returns
    /// `[n, ho, wo, cout]` with the size of [`ConvTranspose2d::out_size`].
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, epi: Epilogue) -> Result<Tensor> {
        let s = x.shape();
        let (ho, wo) = self.out_size(s.h, s.w).ok_or_else(|| GpuError::Shape {
            op: "conv_transpose2d",
            detail: format!(
                "input {s} gives an empty output (padding {} too large)",
                self.pad
            ),
        })?;
        self.forward_sized(gpu, x, (ho, wo), epi)
    }

    /// Like [`ConvTranspose2d::forward`] with an explicit output size, which
    /// may exceed the default by up to `stride − 1` per axis (PyTorch's
    /// `output_padding`: the extra rows/columns get only the taps that reach
    /// them). This is how the VJP of a strided conv recovers an input size
    /// that the conv's floor division lost.
    pub fn forward_sized(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        out: (usize, usize),
        epi: Epilogue,
    ) -> Result<Tensor> {
        let s = x.shape();
        let err = |detail: String| GpuError::Shape {
            op: "conv_transpose2d",
            detail,
        };
        if s.c != self.cin {
            return Err(err(format!(
                "input has {} channels, the layer expects {}",
                s.c, self.cin
            )));
        }
        let (ho, wo) = out;
        let (dh, dw) = self.out_size(s.h, s.w).ok_or_else(|| {
            err(format!(
                "input {s} gives an empty output (padding {} too large)",
                self.pad
            ))
        })?;
        if ho < dh || wo < dw || ho >= dh + self.stride || wo >= dw + self.stride {
            return Err(err(format!(
                "output size {ho}×{wo} for input {s}: must be {dh}×{dw} plus at most {} (stride − 1) per axis",
                self.stride - 1
            )));
        }
        let out_shape = Shape::new(s.n, ho, wo, self.cout);
        gpu.check_fits("conv_transpose2d output", out_shape)?;
        let y = gpu.empty(out_shape);
        let (flags, mask_n, mask) = epilogue_setup(
            gpu,
            "conv_transpose2d",
            (self.has_scale, self.has_shift),
            &epi,
            s.n,
            out_shape,
        )?;
        let cout_p = round_up(self.cout, 8);
        let tiles_w = wo.div_ceil(self.stride).div_ceil(TP);
        let mut params = ConvParams {
            flags,
            mask_n,
            ..self.params(s, (ho, wo))
        };
        let variant = match epi.variant {
            ConvVariant::Auto => self.tuned(gpu, s, (ho, wo)),
            v => v,
        };
        let bufs = [x, &self.weight, &self.scale_shift, &mask, &y];
        if let ConvVariant::Tiled(tile) = variant {
            if self.launch_tiled(gpu, tile.kernel(false), tile, &params, &bufs) {
                return Ok(y);
            }
        }
        let subgroup = self.cin.is_multiple_of(4)
            && gpu.subgroups_at_least(8)
            && matches!(variant, ConvVariant::Fixed | ConvVariant::Tiled(_));
        let (kernel, groups) = if subgroup {
            // Phase-major order: every workgroup lies within one output phase.
            let per_phase = s.n * ho.div_ceil(self.stride) * tiles_w;
            params.phase_groups = per_phase.div_ceil(64) as u32;
            let g = self.stride * self.stride * per_phase.div_ceil(64);
            (&CONVT_VEC4_SUBGROUP, [g as u32, (cout_p / 8) as u32, 1])
        } else {
            let tiles = s.n * ho * self.stride * tiles_w;
            let kernel = if self.cin.is_multiple_of(4) {
                &CONVT_VEC4
            } else {
                &CONVT_SCALAR
            };
            (kernel, [tiles.div_ceil(64) as u32, (cout_p / 8) as u32, 1])
        };
        if groups[0] > gpu.limits.max_compute_workgroups_per_dimension {
            return Err(GpuError::TooLarge {
                what: format!("conv_transpose2d on {s}"),
                bytes: out_shape.numel() as u64 * 4,
                limit: gpu.max_buffer_bytes,
                adapter: gpu.adapter.name.clone(),
            });
        }
        gpu.launch(
            kernel,
            &[],
            &params,
            &bufs,
            prior_gpu::Dispatch::groups(groups, [64, 1, 1]),
        );
        Ok(y)
    }
}
