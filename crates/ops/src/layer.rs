//! [`ConvLayer`]: the one differentiable convolution layer of every model — a
//! convolution or a transposed convolution (`shaders/conv2d.wgsl`,
//! `shaders/conv_transpose2d.wgsl`) with its folded epilogue (per-channel
//! scale, bias) and optional ReLU, its JVP and its VJP. The adjoint operator
//! is built once, on the first VJP, and reused for every cotangent batch:
//! - stride-1 conv with a square kernel that fits its padding: the flipped,
//!   in/out-swapped conv of [`Conv2d::input_gradient_layer`];
//! - strided (or over-padded) conv: the transposed conv of the same weights;
//! - transposed conv: the strided conv of the same weights.
//!
//! A VJP can fuse the ReLU derivative of the layer that produced its input
//! ([`VjpAt::in_mask`]) into the adjoint's launch, so a chain of ReLU layers
//! takes one launch per layer backwards. The layer is linear before its
//! ReLU, so second-order (forward-over-reverse) passes need nothing more:
//! the tangent of [`ConvLayer::adjoint`]`(u)` along `u'` is
//! [`ConvLayer::adjoint`]`(u')`.
//!
//! Tangent batches follow `crate::autodiff`: `k` tangents for ONE primal
//! sample, masks broadcast over them. CPU references:
//! `reference::conv2d`, `reference::conv_transpose2d`.

use std::sync::OnceLock;

use prior_gpu::{Gpu, GpuError, Result, Tensor};

use crate::conv2d::{Conv2d, ConvConfig, Epilogue};
use crate::conv_transpose2d::ConvTranspose2d;
use crate::elementwise;

/// The configuration of a [`ConvLayer`]: its geometry, whether it is a
/// transposed convolution, and whether a ReLU follows. (The bias and a
/// folded scale are the layer's [`Affine`].)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvLayerConfig {
    /// Channels, kernel, stride, padding (a transposed conv's cropping) and
    /// dilation (1 for a transposed layer).
    pub conv: ConvConfig,
    /// A transposed convolution (weights `(cin, cout, kh, kw)`), else a
    /// convolution (weights `(cout, cin, kh, kw)`).
    pub transposed: bool,
    /// A ReLU after the epilogue.
    pub relu: bool,
}

impl ConvLayerConfig {
    /// A stride-1 `k × k` convolution with 'same' padding (`k` odd).
    pub fn same(cin: usize, cout: usize, k: usize, dilation: usize) -> ConvLayerConfig {
        ConvLayerConfig {
            conv: ConvConfig::same(cin, cout, k, dilation),
            transposed: false,
            relu: false,
        }
    }

    /// From PyTorch weight dimensions `[a, b, kh, kw]`: `(cout, cin)` for a
    /// conv, `(cin, cout)` for a transposed conv; stride 1, no padding, no ReLU.
    pub fn from_weight_shape(shape: [usize; 4], transposed: bool) -> ConvLayerConfig {
        let [a, b, kh, kw] = shape;
        let (cin, cout) = if transposed { (a, b) } else { (b, a) };
        ConvLayerConfig {
            conv: ConvConfig::new(cin, cout, kh, kw),
            transposed,
            relu: false,
        }
    }

    /// This configuration with stride `stride`.
    pub fn stride(self, stride: usize) -> Self {
        ConvLayerConfig {
            conv: self.conv.stride(stride),
            ..self
        }
    }

    /// This configuration with padding (cropping, if transposed) `pad`.
    pub fn pad(self, pad: usize) -> Self {
        ConvLayerConfig {
            conv: self.conv.pad(pad),
            ..self
        }
    }

    /// This configuration with dilation `dilation`.
    pub fn dilation(self, dilation: usize) -> Self {
        ConvLayerConfig {
            conv: self.conv.dilation(dilation),
            ..self
        }
    }

    /// This configuration with (or without) a ReLU.
    pub fn relu(self, relu: bool) -> Self {
        ConvLayerConfig { relu, ..self }
    }
}

/// The per-output-channel epilogue folded into a [`ConvLayer`]:
/// `y = conv(x) · scale + shift`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Affine<'a> {
    /// A folded normalisation's scale (conv layers only).
    pub scale: Option<&'a [f32]>,
    /// The bias.
    pub shift: Option<&'a [f32]>,
}

/// The forward operator of a [`ConvLayer`].
pub enum Op {
    /// A convolution.
    Conv(Conv2d),
    /// A transposed convolution.
    Transposed(ConvTranspose2d),
}

/// What a VJP reads besides the cotangent ([`ConvLayer::vjp_at`]).
#[derive(Clone, Copy, Debug)]
pub struct VjpAt<'a> {
    /// The layer's primal output (post-ReLU), whose positivity is the ReLU
    /// derivative applied to the cotangent first. Ignored by a layer without
    /// ReLU; `None` when the cotangent has had it applied already (a chain
    /// fuses it into the next layer's VJP as that layer's `in_mask`).
    pub out: Option<&'a Tensor>,
    /// The layer's input size `(h, w)` (a strided conv's floor division
    /// loses it).
    pub in_hw: (usize, usize),
    /// The primal input, when a ReLU produced it: its positivity (the VJP of
    /// that ReLU) masks the result in the adjoint's own launch.
    pub in_mask: Option<&'a Tensor>,
}

/// The adjoint operator of a [`ConvLayer`] (its VJP without the ReLU mask).
enum Back {
    /// Stride-1 conv: the flipped-kernel conv.
    Stride1(Conv2d),
    /// Strided conv: a transposed conv.
    Transposed(ConvTranspose2d),
    /// Transposed conv: a strided conv.
    Conv(Conv2d),
}

/// One (transposed) convolution with its epilogue, optional ReLU, and its
/// adjoint (built once, on the first VJP).
pub struct ConvLayer {
    /// The forward operator (with the epilogue's scale and shift).
    pub op: Op,
    /// Whether a ReLU follows the epilogue.
    pub relu: bool,
    back: OnceLock<Back>,
}

impl ConvLayer {
    /// A layer from PyTorch weights (`(cout, cin, kh, kw)` for a conv,
    /// `(cin, cout, kh, kw)` for a transposed conv) of configuration `cfg`.
    pub fn new(
        gpu: &Gpu,
        weights: &[f32],
        cfg: ConvLayerConfig,
        affine: Affine,
    ) -> Result<ConvLayer> {
        let ConvLayerConfig {
            conv: geo,
            transposed,
            relu,
        } = cfg;
        let ConvConfig {
            cin,
            cout,
            kh,
            kw,
            stride,
            dilation,
            ..
        } = geo;
        let err = |detail: String| GpuError::Shape {
            op: "conv_layer",
            detail,
        };
        if weights.len() != geo.weights() {
            return Err(err(format!(
                "{} weights for a {cin}→{cout} {kh}×{kw} layer",
                weights.len()
            )));
        }
        if stride == 0 || dilation == 0 || kh == 0 || kw == 0 {
            return Err(err(format!(
                "zero stride, dilation or kernel size in {geo:?}"
            )));
        }
        for (what, v) in [("scale", affine.scale), ("shift", affine.shift)] {
            if let Some(v) = v {
                if v.len() != cout {
                    return Err(err(format!(
                        "{} {what} values for {cout} channels",
                        v.len()
                    )));
                }
            }
        }
        let op = if transposed {
            if dilation != 1 || affine.scale.is_some() {
                return Err(err(
                    "a transposed layer takes no dilation and no scale".into()
                ));
            }
            let mut t = ConvTranspose2d::new(gpu, weights, geo);
            if affine.shift.is_some() {
                t.set_affine(gpu, None, affine.shift);
            }
            Op::Transposed(t)
        } else {
            let mut conv = Conv2d::new(gpu, weights, geo);
            if affine.scale.is_some() || affine.shift.is_some() {
                conv.set_affine(gpu, affine.scale, affine.shift);
            }
            Op::Conv(conv)
        };
        Ok(ConvLayer {
            op,
            relu,
            back: OnceLock::new(),
        })
    }

    /// A per-channel identity (transposed) conv with a `(1 + ph) × (1 + pw)`
    /// kernel whose only non-zero tap is (0, 0): as a transposed conv it
    /// zero-pads `ph` rows at the bottom and `pw` columns on the right; as a
    /// conv it crops them.
    pub fn pad_or_crop(
        gpu: &Gpu,
        channels: usize,
        ph: usize,
        pw: usize,
        pad: bool,
    ) -> Result<ConvLayer> {
        let (kh, kw) = (1 + ph, 1 + pw);
        let mut w = vec![0.0f32; channels * channels * kh * kw];
        for c in 0..channels {
            w[(c * channels + c) * kh * kw] = 1.0;
        }
        let cfg = ConvLayerConfig::from_weight_shape([channels, channels, kh, kw], pad);
        ConvLayer::new(gpu, &w, cfg, Affine::default())
    }

    /// The layer's geometry.
    pub fn config(&self) -> ConvConfig {
        match &self.op {
            Op::Conv(c) => c.config(),
            Op::Transposed(t) => t.config(),
        }
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.config().cin
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.config().cout
    }

    /// Number of weights (biases and folded scales not included).
    pub fn weights(&self) -> usize {
        self.config().weights()
    }

    /// How far (in input pixels) an output pixel reaches: `dilation·(k−1)/2`
    /// for a conv, `k` for a transposed conv (a bound).
    pub fn reach(&self) -> usize {
        match &self.op {
            Op::Conv(c) => c.dilation * (c.kh - 1) / 2,
            Op::Transposed(t) => t.kh,
        }
    }

    /// Multiply-adds of one forward call on an `h × w` input with `n` samples.
    pub fn macs(&self, n: usize, h: usize, w: usize) -> u64 {
        match &self.op {
            Op::Conv(c) => c.macs(n, h, w),
            Op::Transposed(t) => t.macs(n, h, w),
        }
    }

    fn run(&self, gpu: &Gpu, x: &Tensor, epi: Epilogue) -> Result<Tensor> {
        match &self.op {
            Op::Conv(c) => c.forward(gpu, x, epi),
            Op::Transposed(t) => t.forward(gpu, x, epi),
        }
    }

    /// The layer with its bias/scale and ReLU.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        let epi = Epilogue {
            relu: self.relu,
            ..Default::default()
        };
        self.run(gpu, x, epi)
    }

    /// Gives the layer f16 weights for [`ConvLayer::forward_f16`].
    pub fn enable_f16(&mut self, gpu: &Gpu) -> Result<()> {
        match &mut self.op {
            Op::Conv(c) => c.enable_f16(gpu),
            Op::Transposed(t) => t.enable_f16(gpu),
        }
        Ok(())
    }

    /// The layer with its bias/scale and ReLU, f16 weights (after
    /// [`ConvLayer::enable_f16`]), f32 or f16 input and output
    /// ([`Conv2d::forward_f16`], [`ConvTranspose2d::forward_f16`]).
    pub fn forward_f16(
        &self,
        gpu: &Gpu,
        x: &crate::precision::Activation,
        out: crate::precision::Precision,
    ) -> Result<crate::precision::Activation> {
        match &self.op {
            Op::Conv(c) => c.forward_f16(gpu, x, out, self.relu),
            Op::Transposed(t) => t.forward_f16(gpu, x, out, self.relu),
        }
    }

    /// The linear part `t ↦ conv(t)·scale` (no shift, no ReLU) on tangents
    /// `t` (`[k, ..]`): the JVP of the layer before its ReLU.
    pub fn linear(&self, gpu: &Gpu, t: &Tensor) -> Result<Tensor> {
        let epi = Epilogue {
            no_shift: true,
            ..Default::default()
        };
        self.run(gpu, t, epi)
    }

    /// J·t for tangents `t` (`[k, ..]`) at the primal whose output (after
    /// ReLU) was `out` (`[1, ..]`): the linear part, masked by `out > 0` in
    /// the same launch when the layer has a ReLU.
    pub fn jvp(&self, gpu: &Gpu, t: &Tensor, out: &Tensor) -> Result<Tensor> {
        let epi = Epilogue {
            mask: self.relu.then_some(out),
            no_shift: true,
            ..Default::default()
        };
        self.run(gpu, t, epi)
    }

    /// The adjoint of the linear part (built on first use), mapping output
    /// cotangents to input cotangents.
    fn back(&self, gpu: &Gpu) -> &Back {
        self.back.get_or_init(|| match &self.op {
            Op::Transposed(t) => Back::Conv(t.adjoint(gpu)),
            Op::Conv(c) => {
                let square = c.kh == c.kw;
                if c.stride == 1 && square && c.pad <= c.dilation * (c.kh - 1) {
                    Back::Stride1(
                        c.input_gradient_layer(gpu)
                            .expect("stride-1, square, padding ≤ dilation·(k−1)"),
                    )
                } else {
                    Back::Transposed(ConvTranspose2d::adjoint_of(gpu, c))
                }
            }
        })
    }

    /// Jᵀ·u of the linear part `x ↦ conv(x)·scale` for cotangents `u`
    /// (`[k, ..]`) of its output; `in_hw` the layer's input size. No mask.
    pub fn adjoint(&self, gpu: &Gpu, u: &Tensor, in_hw: (usize, usize)) -> Result<Tensor> {
        self.vjp_at(
            gpu,
            u,
            VjpAt {
                out: None,
                in_hw,
                in_mask: None,
            },
        )
    }

    /// Jᵀ·u for cotangents `u` of the output (`[k, ..]`), `out` as in
    /// [`ConvLayer::jvp`], `in_hw` the layer's input size.
    pub fn vjp(
        &self,
        gpu: &Gpu,
        u: &Tensor,
        out: &Tensor,
        in_hw: (usize, usize),
    ) -> Result<Tensor> {
        self.vjp_at(
            gpu,
            u,
            VjpAt {
                out: Some(out),
                in_hw,
                in_mask: None,
            },
        )
    }

    /// Jᵀ·u for cotangents `u` of the output (`[k, ..]`) with the ReLU
    /// derivative of the output (`at.out`, layers with a ReLU) applied
    /// first, when given, and the ReLU derivative of the input
    /// (`at.in_mask`) fused into the adjoint's launch, when given.
    pub fn vjp_at(&self, gpu: &Gpu, u: &Tensor, at: VjpAt) -> Result<Tensor> {
        let masked;
        let u = match at.out {
            Some(out) if self.relu => {
                masked = elementwise::relu_mask(gpu, u, out)?;
                &masked
            }
            _ => u,
        };
        let epi = Epilogue {
            mask: at.in_mask,
            ..Default::default()
        };
        match self.back(gpu) {
            Back::Stride1(g) => g.forward(gpu, u, epi),
            Back::Transposed(t) => t.forward_sized(gpu, u, at.in_hw, epi),
            Back::Conv(c) => {
                let r = c.forward(gpu, u, epi)?;
                let (h, w) = (r.shape().h, r.shape().w);
                if (h, w) != at.in_hw {
                    return Err(GpuError::Shape {
                        op: "conv_layer_vjp",
                        detail: format!(
                            "transposed-conv VJP gives {h}×{w}, the input was {}×{}",
                            at.in_hw.0, at.in_hw.1
                        ),
                    });
                }
                Ok(r)
            }
        }
    }
}
