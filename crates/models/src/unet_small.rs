//! The small UNet of bias_free_denoising (Mohan et al., ICLR 2020; the
//! authors' `models/unet.py`), bias and bias-free variants, and [`Layer`]:
//! one convolution or transposed convolution with its JVP and VJP, shared by
//! the UNets and the RCNN.
//!
//! Eval forward (the authors' code): zero-pad the bottom row / right column
//! when H / W is odd; conv1 1→32 5×5 + ReLU; conv2 32→32 3×3 + ReLU (kept as
//! the skip); conv3 32→64 3×3 stride 2 pad 1 + ReLU; conv4 64→64 + ReLU;
//! conv5 dilation 2 + ReLU; conv6 dilation 4 + ReLU; conv7 ConvTranspose
//! 64→64 k4 s2 p1 + ReLU; concat [conv7, skip]; conv8 96→32 + ReLU; conv9
//! 32→1 5×5 (never a bias); with `--residual` training, `x_padded − conv9`;
//! cropped back to H × W. The output is the denoised image.
//!
//! Padding and cropping are done with per-channel identity (transposed)
//! convolutions whose kernel is `(1 + pad_h) × (1 + pad_w)`, so their JVP and
//! VJP come with the same machinery as every other layer.

use prior_gpu::{Gpu, Tensor};
use prior_ops::autodiff::ConvVjp;
use prior_ops::channels::{concat_channels, concat_channels_vjp};
use prior_ops::conv2d::{Conv2d, Epilogue};
use prior_ops::conv_transpose2d::ConvTranspose2d;
use prior_ops::elementwise;

use crate::arch::Arch;
use crate::blob::WeightBlob;
use crate::denoiser::{Denoiser, ModelError, Noise, Result};
use crate::hparams::Hparams;

/// The forward operator of a [`Layer`].
pub enum Op {
    Conv(Conv2d),
    Transposed(ConvTranspose2d),
}

/// The adjoint operator of a [`Layer`] (its VJP without the ReLU mask).
enum Back {
    /// Stride-1 conv: the flipped-kernel conv of `prior_ops::autodiff`.
    Stride1(ConvVjp),
    /// Strided conv: a transposed conv.
    Transposed(ConvTranspose2d),
    /// Transposed conv: a strided conv.
    Conv(Conv2d),
}

/// One (transposed) convolution with its folded epilogue (bias, normalisation
/// scale), an optional ReLU, and its adjoint built once for VJPs.
pub struct Layer {
    pub op: Op,
    pub relu: bool,
    back: Back,
}

impl Layer {
    /// A convolution from PyTorch `(cout, cin, kh, kw)` weights with an
    /// optional per-channel `scale` (folded normalisation) and `shift` (bias).
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        gpu: &Gpu,
        oihw: &[f32],
        shape: [usize; 4],
        stride: usize,
        pad: usize,
        dilation: usize,
        scale: Option<&[f32]>,
        shift: Option<&[f32]>,
        relu: bool,
    ) -> Result<Layer> {
        let [cout, cin, kh, kw] = shape;
        let mut conv = Conv2d::new(gpu, oihw, cout, cin, kh, kw, stride, pad, dilation);
        if scale.is_some() || shift.is_some() {
            conv.set_affine(gpu, scale, shift);
        }
        let back = if stride == 1 && kh == kw && pad <= dilation * (kh - 1) {
            Back::Stride1(ConvVjp::new(gpu, &conv)?)
        } else {
            Back::Transposed(ConvTranspose2d::adjoint_of(gpu, &conv))
        };
        Ok(Layer { op: Op::Conv(conv), relu, back })
    }

    /// A transposed convolution from PyTorch `(cin, cout, kh, kw)` weights
    /// with an optional bias.
    pub fn transposed(
        gpu: &Gpu,
        iohw: &[f32],
        shape: [usize; 4],
        stride: usize,
        pad: usize,
        shift: Option<&[f32]>,
        relu: bool,
    ) -> Layer {
        let [cin, cout, kh, kw] = shape;
        let mut t = ConvTranspose2d::new(gpu, iohw, cin, cout, kh, kw, stride, pad);
        if shift.is_some() {
            t.set_affine(gpu, None, shift);
        }
        let back = Back::Conv(t.adjoint(gpu));
        Layer { op: Op::Transposed(t), relu, back }
    }

    /// A per-channel identity (transposed) conv with a `(1 + ph) × (1 + pw)`
    /// kernel whose only non-zero tap is (0, 0): as a transposed conv it
    /// zero-pads `ph` rows at the bottom and `pw` columns on the right; as a
    /// conv it crops them.
    pub fn pad_or_crop(gpu: &Gpu, channels: usize, ph: usize, pw: usize, pad: bool) -> Result<Layer> {
        let (kh, kw) = (1 + ph, 1 + pw);
        let mut w = vec![0.0f32; channels * channels * kh * kw];
        for c in 0..channels {
            w[(c * channels + c) * kh * kw] = 1.0;
        }
        if pad {
            Ok(Layer::transposed(gpu, &w, [channels, channels, kh, kw], 1, 0, None, false))
        } else {
            let conv = Conv2d::new(gpu, &w, channels, channels, kh, kw, 1, 0, 1);
            let back = Back::Transposed(ConvTranspose2d::adjoint_of(gpu, &conv));
            Ok(Layer { op: Op::Conv(conv), relu: false, back })
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

    /// The layer with its bias/scale and ReLU.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        let epi = Epilogue { relu: self.relu, ..Default::default() };
        Ok(match &self.op {
            Op::Conv(c) => c.forward(gpu, x, epi)?,
            Op::Transposed(t) => t.forward(gpu, x, epi)?,
        })
    }

    /// J·t for tangents `t` (`[k, ..]`) at the primal whose output (after
    /// ReLU) was `out` (`[1, ..]`): the linear part (scale, no shift), masked
    /// by `out > 0` when the layer has a ReLU.
    pub fn jvp(&self, gpu: &Gpu, t: &Tensor, out: &Tensor) -> Result<Tensor> {
        let epi = Epilogue { mask: self.relu.then_some(out), no_shift: true, ..Default::default() };
        Ok(match &self.op {
            Op::Conv(c) => c.forward(gpu, t, epi)?,
            Op::Transposed(t_) => t_.forward(gpu, t, epi)?,
        })
    }

    /// Jᵀ·u for cotangents `u` of the output (`[k, ..]`), `out` as in
    /// [`Layer::jvp`], `in_hw` the layer's input size.
    pub fn vjp(&self, gpu: &Gpu, u: &Tensor, out: &Tensor, in_hw: (usize, usize)) -> Result<Tensor> {
        Ok(match &self.back {
            Back::Stride1(v) => v.apply(gpu, u, self.relu.then_some(out), None)?,
            Back::Transposed(t) => {
                let masked;
                let u = if self.relu {
                    masked = elementwise::relu_mask(gpu, u, out)?;
                    &masked
                } else {
                    u
                };
                t.forward_sized(gpu, u, in_hw, Epilogue::default())?
            }
            Back::Conv(c) => {
                let masked;
                let u = if self.relu {
                    masked = elementwise::relu_mask(gpu, u, out)?;
                    &masked
                } else {
                    u
                };
                let r = c.forward(gpu, u, Epilogue::default())?;
                if (r.shape().h, r.shape().w) != in_hw {
                    return Err(ModelError::Input(format!(
                        "transposed-conv VJP gives {}×{}, the input was {}×{}",
                        r.shape().h,
                        r.shape().w,
                        in_hw.0,
                        in_hw.1
                    )));
                }
                r
            }
        })
    }
}

/// `(h, w)` of a tensor.
pub(crate) fn hw(t: &Tensor) -> (usize, usize) {
    (t.shape().h, t.shape().w)
}

/// Invalid-weights error naming the blob.
pub(crate) fn invalid(blob: &WeightBlob, reason: String) -> ModelError {
    ModelError::Invalid { origin: blob.origin.display().to_string(), reason }
}

/// A weight tensor that must have rank 4; returns its data and shape.
pub(crate) fn weight4<'a>(blob: &'a WeightBlob, name: &str) -> Result<(&'a [f32], [usize; 4])> {
    let t = blob.tensor(name)?;
    match t.shape[..] {
        [a, b, c, d] => Ok((&t.data, [a, b, c, d])),
        _ => Err(invalid(blob, format!("{name} has shape {:?}, expected a 4-D conv weight", t.shape))),
    }
}

/// An optional bias of `n` values.
pub(crate) fn bias<'a>(blob: &'a WeightBlob, name: &str, n: usize) -> Result<Option<&'a [f32]>> {
    if !blob.has(name) {
        return Ok(None);
    }
    let t = blob.tensor(name)?;
    if t.numel() != n {
        return Err(invalid(blob, format!("{name} has {} values, expected {n}", t.numel())));
    }
    Ok(Some(&t.data))
}

/// The small UNet (see the module docs).
pub struct UnetSmall {
    /// conv1 ..= conv9 (conv7 transposed).
    layers: Vec<Layer>,
    channels: usize,
    residual_connection: bool,
    params: usize,
    desc: String,
}

/// Primal activations of one forward pass (layer outputs after ReLU).
struct Trace {
    /// Input after padding.
    xp: Tensor,
    /// conv1..conv9 outputs (conv9 on the padded grid).
    acts: Vec<Tensor>,
}

impl UnetSmall {
    pub fn from_blob(gpu: &Gpu, blob: &WeightBlob) -> Result<UnetSmall> {
        let Hparams::UnetSmall(hp) = blob.hparams()? else {
            return Err(invalid(blob, format!("not a {} blob", Arch::UnetSmall)));
        };
        let residual_connection = hp.residual_connection;
        // (stride, pad, dilation) of conv1..conv9 as in the authors' unet.py.
        let geom = [(1, 2, 1), (1, 1, 1), (2, 1, 1), (1, 1, 1), (1, 2, 2), (1, 4, 4), (2, 1, 1), (1, 1, 1), (1, 2, 1)];
        let mut layers = Vec::with_capacity(9);
        let mut params = 0;
        for (i, &(stride, pad, dil)) in geom.iter().enumerate() {
            let name = format!("conv{}", i + 1);
            let (w, shape) = weight4(blob, &format!("{name}.weight"))?;
            params += w.len();
            let relu = i < 8;
            let layer = if i == 6 {
                let b = bias(blob, &format!("{name}.bias"), shape[1])?;
                params += b.map_or(0, |b| b.len());
                if shape[2] != 4 || shape[3] != 4 {
                    return Err(invalid(blob, format!("conv7 has shape {shape:?}, expected (in, out, 4, 4)")));
                }
                Layer::transposed(gpu, w, shape, stride, pad, b, relu)
            } else {
                let b = bias(blob, &format!("{name}.bias"), shape[0])?;
                params += b.map_or(0, |b| b.len());
                let k = if i == 0 || i == 8 { 5 } else { 3 };
                if shape[2] != k || shape[3] != k {
                    return Err(invalid(blob, format!("{name} has shape {shape:?}, expected {k}×{k} kernels")));
                }
                Layer::conv(gpu, w, shape, stride, pad, dil, None, b, relu)?
            };
            layers.push(layer);
        }
        // Channel bookkeeping: conv8 takes [conv7, conv2].
        let c = |i: usize| (layers[i].in_channels(), layers[i].out_channels());
        let ok = c(1).0 == c(0).1
            && c(2).0 == c(1).1
            && c(3).0 == c(2).1
            && c(4).0 == c(3).1
            && c(5).0 == c(4).1
            && c(6).0 == c(5).1
            && c(7).0 == c(6).1 + c(1).1
            && c(8).0 == c(7).1
            && c(8).1 == c(0).0;
        if !ok {
            let chans: Vec<_> = (0..9).map(c).collect();
            return Err(invalid(blob, format!("unet_small channel counts (in, out) per conv do not chain: {chans:?}")));
        }
        let channels = c(0).0;
        let variant = blob.variant().unwrap_or("-").to_string();
        let desc = format!(
            "unet_small ({variant}) widths {}/{}, {channels} channel(s), output denoised{}, from {}",
            c(0).1,
            c(2).1,
            if residual_connection { " (residual connection)" } else { "" },
            blob.meta("prior.source").unwrap_or("?")
        );
        Ok(UnetSmall { layers, channels, residual_connection, params, desc })
    }

    fn check_input(&self, y: &Tensor) -> Result<()> {
        let s = y.shape();
        if s.c != self.channels {
            return Err(ModelError::Input(format!("the model takes {} channel(s), the input has {}", self.channels, s.c)));
        }
        if s.h < 2 || s.w < 2 {
            return Err(ModelError::Input(format!("the small UNet needs at least 2×2 pixels, the input is {}×{}", s.h, s.w)));
        }
        Ok(())
    }

    fn pads(&self, gpu: &Gpu, y: &Tensor) -> Result<(Option<Layer>, Option<Layer>)> {
        let (ph, pw) = (y.shape().h % 2, y.shape().w % 2);
        if ph == 0 && pw == 0 {
            return Ok((None, None));
        }
        Ok((
            Some(Layer::pad_or_crop(gpu, self.channels, ph, pw, true)?),
            Some(Layer::pad_or_crop(gpu, self.channels, ph, pw, false)?),
        ))
    }

    fn trace(&self, gpu: &Gpu, y: &Tensor, pad: Option<&Layer>) -> Result<Trace> {
        let xp = match pad {
            Some(p) => p.forward(gpu, y)?,
            None => y.clone(),
        };
        let l = &self.layers;
        let mut acts: Vec<Tensor> = Vec::with_capacity(9);
        acts.push(l[0].forward(gpu, &xp)?);
        for i in 1..7 {
            let a = l[i].forward(gpu, &acts[i - 1])?;
            acts.push(a);
        }
        let cat = concat_channels(gpu, &[&acts[6], &acts[1]])?;
        acts.push(l[7].forward(gpu, &cat)?);
        acts.push(l[8].forward(gpu, &acts[7])?);
        Ok(Trace { xp, acts })
    }
}

impl Denoiser for UnetSmall {
    /// Odd sizes are accepted (padded), but its stride-2 conv needs tiles
    /// that start on even rows and columns.
    fn tile_alignment(&self) -> usize {
        2
    }
    fn describe(&self) -> String {
        self.desc.clone()
    }
    fn channels(&self) -> usize {
        self.channels
    }
    fn receptive_radius(&self) -> usize {
        // Input pixel p reaches conv3 outputs j with |2j − p| ≤ 1 (after conv1
        // 2 + conv2 1 at full resolution), conv4–6 add 1 + 2 + 4 half-res
        // pixels, conv7 (k4 s2 p1) maps j' to outputs 2j' − 1 ..= 2j' + 2, then
        // conv8 1 + conv9 2: 3 + 1 + 14 + 2 + 3 = 23 (measured in
        // tests/parity_unets.rs).
        23
    }
    fn values_per_pixel(&self) -> usize {
        // The concat at full resolution (conv7 + skip channels).
        self.layers[7].in_channels()
    }
    fn parameters(&self) -> usize {
        self.params
    }
    fn denoise(&self, gpu: &Gpu, y: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        self.check_input(y)?;
        let (pad, crop) = self.pads(gpu, y)?;
        let t = self.trace(gpu, y, pad.as_ref())?;
        let mut out = t.acts[8].clone();
        if self.residual_connection {
            out = elementwise::sub(gpu, &t.xp, &out)?;
        }
        match crop {
            Some(c) => c.forward(gpu, &out),
            None => Ok(out),
        }
    }
    fn jvp(&self, gpu: &Gpu, y: &Tensor, v: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        self.check_input(y)?;
        check_tangent(y, v)?;
        let (pad, crop) = self.pads(gpu, y)?;
        let t = self.trace(gpu, y, pad.as_ref())?;
        let l = &self.layers;
        let vp = match &pad {
            Some(p) => p.jvp(gpu, v, &t.xp)?,
            None => v.clone(),
        };
        let mut d = Vec::with_capacity(9);
        d.push(l[0].jvp(gpu, &vp, &t.acts[0])?);
        for i in 1..7 {
            let x = l[i].jvp(gpu, &d[i - 1], &t.acts[i])?;
            d.push(x);
        }
        let cat = concat_channels(gpu, &[&d[6], &d[1]])?;
        d.push(l[7].jvp(gpu, &cat, &t.acts[7])?);
        let mut out = l[8].jvp(gpu, &d[7], &t.acts[8])?;
        if self.residual_connection {
            out = elementwise::sub(gpu, &vp, &out)?;
        }
        match &crop {
            Some(c) => c.jvp(gpu, &out, &out),
            None => Ok(out),
        }
    }
    fn vjp(&self, gpu: &Gpu, y: &Tensor, u: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        self.check_input(y)?;
        check_tangent(y, u)?;
        let (pad, crop) = self.pads(gpu, y)?;
        let t = self.trace(gpu, y, pad.as_ref())?;
        let l = &self.layers;
        let full = hw(&t.xp);
        // Cotangent of the (uncropped) output.
        let up = match &crop {
            Some(c) => c.vjp(gpu, u, u, full)?,
            None => u.clone(),
        };
        let mut g = l[8].vjp(gpu, &up, &t.acts[8], full)?;
        g = l[7].vjp(gpu, &g, &t.acts[7], full)?;
        let parts = concat_channels_vjp(gpu, &g, &[l[6].out_channels(), l[1].out_channels()])?;
        let (mut g, g_skip) = (parts[0].clone(), parts[1].clone());
        for i in (2..7).rev() {
            g = l[i].vjp(gpu, &g, &t.acts[i], hw(&t.acts[i - 1]))?;
        }
        // conv2's output feeds conv3 and the skip.
        let g2 = elementwise::axpby(gpu, 1.0, &g, 1.0, &g_skip)?;
        let g1 = l[1].vjp(gpu, &g2, &t.acts[1], full)?;
        let mut gx = l[0].vjp(gpu, &g1, &t.acts[0], full)?;
        if self.residual_connection {
            gx = elementwise::sub(gpu, &up, &gx)?;
        }
        match &pad {
            Some(p) => p.vjp(gpu, &gx, &gx, hw(y)),
            None => Ok(gx),
        }
    }
}

/// Tangents/cotangents must have the primal's pixel grid and channels, and
/// the primal must be one sample.
pub(crate) fn check_tangent(y: &Tensor, v: &Tensor) -> Result<()> {
    let (s, t) = (y.shape(), v.shape());
    if s.n != 1 {
        return Err(ModelError::Input(format!("JVP/VJP take one primal image, got a batch of {}", s.n)));
    }
    if (t.h, t.w, t.c) != (s.h, s.w, s.c) || t.n == 0 {
        return Err(ModelError::Input(format!("tangent {t} does not match the input {s}")));
    }
    Ok(())
}
