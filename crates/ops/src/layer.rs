//! [`ConvLayer`]: one differentiable convolution layer — a convolution or a
//! transposed convolution (`shaders/conv2d.wgsl`, `shaders/conv_transpose2d.wgsl`)
//! with its folded epilogue (per-channel scale, bias) and optional ReLU, its
//! JVP and its VJP. The adjoint operator is built once, at construction:
//! - stride-1 conv with a kernel that fits its padding: the flipped,
//!   in/out-swapped conv of [`Conv2d::input_gradient_layer`] (the ReLU masks
//!   of the output fused into one launch by [`ConvVjp`]);
//! - strided (or over-padded) conv: the transposed conv of the same weights;
//! - transposed conv: the strided conv of the same weights.
//!
//! Tangent batches follow `crate::autodiff`: `k` tangents for ONE primal
//! sample, masks broadcast over them. CPU references:
//! `reference::conv2d`, `reference::conv_transpose2d`.

use prior_gpu::{Gpu, GpuError, Result, Tensor};

use crate::autodiff::ConvVjp;
use crate::conv2d::{Conv2d, Epilogue};
use crate::conv_transpose2d::ConvTranspose2d;
use crate::elementwise;

/// The geometry of a [`ConvLayer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvLayerConfig {
    pub cin: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    /// Zero padding of a conv; the cropping of a transposed conv (PyTorch's `padding`).
    pub pad: usize,
    /// Conv only (transposed layers have dilation 1).
    pub dilation: usize,
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
            cin,
            cout,
            kh: k,
            kw: k,
            stride: 1,
            pad: dilation * (k / 2),
            dilation,
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
            cin,
            cout,
            kh,
            kw,
            stride: 1,
            pad: 0,
            dilation: 1,
            transposed,
            relu: false,
        }
    }

    pub fn stride(self, stride: usize) -> Self {
        ConvLayerConfig { stride, ..self }
    }
    pub fn pad(self, pad: usize) -> Self {
        ConvLayerConfig { pad, ..self }
    }
    pub fn dilation(self, dilation: usize) -> Self {
        ConvLayerConfig { dilation, ..self }
    }
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
    Conv(Conv2d),
    Transposed(ConvTranspose2d),
}

/// The adjoint operator of a [`ConvLayer`] (its VJP without the ReLU mask).
enum Back {
    /// Stride-1 conv: the flipped-kernel conv.
    Stride1(ConvVjp),
    /// Strided conv: a transposed conv.
    Transposed(ConvTranspose2d),
    /// Transposed conv: a strided conv.
    Conv(Conv2d),
}

/// One (transposed) convolution with its epilogue, optional ReLU, and its
/// adjoint built once for VJPs.
pub struct ConvLayer {
    pub op: Op,
    pub relu: bool,
    back: Back,
}

impl ConvLayer {
    /// A layer from PyTorch weights (`(cout, cin, kh, kw)` for a conv,
    /// `(cin, cout, kh, kw)` for a transposed conv) of geometry `cfg`.
    pub fn new(
        gpu: &Gpu,
        weights: &[f32],
        cfg: ConvLayerConfig,
        affine: Affine,
    ) -> Result<ConvLayer> {
        let ConvLayerConfig {
            cin,
            cout,
            kh,
            kw,
            stride,
            pad,
            dilation,
            transposed,
            relu,
        } = cfg;
        if weights.len() != cin * cout * kh * kw {
            return Err(GpuError::Shape {
                op: "conv_layer",
                detail: format!(
                    "{} weights for a {cin}→{cout} {kh}×{kw} layer",
                    weights.len()
                ),
            });
        }
        if transposed {
            if dilation != 1 || affine.scale.is_some() {
                return Err(GpuError::Shape {
                    op: "conv_layer",
                    detail: "a transposed layer takes no dilation and no scale".into(),
                });
            }
            let mut t = ConvTranspose2d::new(gpu, weights, cin, cout, kh, kw, stride, pad);
            if affine.shift.is_some() {
                t.set_affine(gpu, None, affine.shift);
            }
            let back = Back::Conv(t.adjoint(gpu));
            return Ok(ConvLayer {
                op: Op::Transposed(t),
                relu,
                back,
            });
        }
        let mut conv = Conv2d::new(gpu, weights, cout, cin, kh, kw, stride, pad, dilation);
        if affine.scale.is_some() || affine.shift.is_some() {
            conv.set_affine(gpu, affine.scale, affine.shift);
        }
        let back = if stride == 1 && kh == kw && pad <= dilation * (kh - 1) {
            Back::Stride1(ConvVjp::new(gpu, &conv)?)
        } else {
            Back::Transposed(ConvTranspose2d::adjoint_of(gpu, &conv))
        };
        Ok(ConvLayer {
            op: Op::Conv(conv),
            relu,
            back,
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
        if pad {
            let cfg = ConvLayerConfig::from_weight_shape([channels, channels, kh, kw], true);
            ConvLayer::new(gpu, &w, cfg, Affine::default())
        } else {
            // A crop: its adjoint is the zero-padding transposed conv (the
            // kernel is larger than its padding, so not the stride-1 path).
            let conv = Conv2d::new(gpu, &w, channels, channels, kh, kw, 1, 0, 1);
            let back = Back::Transposed(ConvTranspose2d::adjoint_of(gpu, &conv));
            Ok(ConvLayer {
                op: Op::Conv(conv),
                relu: false,
                back,
            })
        }
    }

    pub fn in_channels(&self) -> usize {
        match &self.op {
            Op::Conv(c) => c.cin,
            Op::Transposed(t) => t.cin,
        }
    }

    pub fn out_channels(&self) -> usize {
        match &self.op {
            Op::Conv(c) => c.cout,
            Op::Transposed(t) => t.cout,
        }
    }

    /// Number of weights (biases and folded scales not included).
    pub fn weights(&self) -> usize {
        match &self.op {
            Op::Conv(c) => c.oihw.len(),
            Op::Transposed(t) => t.iohw.len(),
        }
    }

    /// How far (in input pixels) an output pixel reaches: `dilation·(k−1)/2`
    /// for a conv, `k` for a transposed conv (a bound).
    pub fn reach(&self) -> usize {
        match &self.op {
            Op::Conv(c) => c.dilation * (c.kh - 1) / 2,
            Op::Transposed(t) => t.kh,
        }
    }

    /// The layer with its bias/scale and ReLU.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        let epi = Epilogue {
            relu: self.relu,
            ..Default::default()
        };
        match &self.op {
            Op::Conv(c) => c.forward(gpu, x, epi),
            Op::Transposed(t) => t.forward(gpu, x, epi),
        }
    }

    /// J·t for tangents `t` (`[k, ..]`) at the primal whose output (after
    /// ReLU) was `out` (`[1, ..]`): the linear part (scale, no shift), masked
    /// by `out > 0` when the layer has a ReLU.
    pub fn jvp(&self, gpu: &Gpu, t: &Tensor, out: &Tensor) -> Result<Tensor> {
        let epi = Epilogue {
            mask: self.relu.then_some(out),
            no_shift: true,
            ..Default::default()
        };
        match &self.op {
            Op::Conv(c) => c.forward(gpu, t, epi),
            Op::Transposed(t_) => t_.forward(gpu, t, epi),
        }
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
        let mask = |u: &Tensor| -> Result<Option<Tensor>> {
            if self.relu {
                elementwise::relu_mask(gpu, u, out).map(Some)
            } else {
                Ok(None)
            }
        };
        match &self.back {
            Back::Stride1(v) => v.apply(gpu, u, self.relu.then_some(out), None),
            Back::Transposed(t) => {
                let masked = mask(u)?;
                t.forward_sized(
                    gpu,
                    masked.as_ref().unwrap_or(u),
                    in_hw,
                    Epilogue::default(),
                )
            }
            Back::Conv(c) => {
                let masked = mask(u)?;
                let r = c.forward(gpu, masked.as_ref().unwrap_or(u), Epilogue::default())?;
                let (h, w) = (r.shape().h, r.shape().w);
                if (h, w) != in_hw {
                    return Err(GpuError::Shape {
                        op: "conv_layer_vjp",
                        detail: format!(
                            "transposed-conv VJP gives {h}×{w}, the input was {}×{}",
                            in_hw.0, in_hw.1
                        ),
                    });
                }
                Ok(r)
            }
        }
    }
}
