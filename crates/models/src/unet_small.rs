//! The small UNet of bias_free_denoising (Mohan et al., ICLR 2020; the
//! authors' `models/unet.py`), bias and bias-free variants, built from
//! [`ConvLayer`]s (`prior_ops::layer`).
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
use prior_ops::channels::{concat_channels, concat_channels_vjp};
use prior_ops::elementwise;
use prior_ops::precision::{Activation, HalfTensor, Precision};

use crate::arch::Arch;
use crate::blob::WeightBlob;
use crate::denoiser::{Denoiser, ModelError, Noise, Result};
use crate::hparams::Hparams;
use crate::layers::{
    bias, check_tangent, enable_f16, f16_of, f32_of, hw, invalid, weight4, Affine, ConvLayer,
    ConvLayerConfig,
};

/// The small UNet (see the module docs).
pub struct UnetSmall {
    /// conv1 ..= conv9 (conv7 transposed).
    layers: Vec<ConvLayer>,
    channels: usize,
    residual_connection: bool,
    params: usize,
    desc: String,
    /// Storage of [`Denoiser::denoise`] (f16: conv1..conv9 with f16 weights
    /// and activations, the skip concat in f16; the input, its padding, the
    /// output and its crop f32).
    precision: Precision,
}

/// Primal activations of one forward pass (layer outputs after ReLU).
struct Trace {
    /// Input after padding.
    xp: Tensor,
    /// conv1..conv9 outputs (conv9 on the padded grid).
    acts: Vec<Tensor>,
}

impl UnetSmall {
    /// Builds the model from a blob with `prior.arch = unet_small`.
    pub fn from_blob(gpu: &Gpu, blob: &WeightBlob) -> Result<UnetSmall> {
        let Hparams::UnetSmall(hp) = blob.hparams()? else {
            return Err(invalid(blob, format!("not a {} blob", Arch::UnetSmall)));
        };
        let residual_connection = hp.residual_connection;
        // (stride, pad, dilation) of conv1..conv9 as in the authors' unet.py.
        let geom = [
            (1, 2, 1),
            (1, 1, 1),
            (2, 1, 1),
            (1, 1, 1),
            (1, 2, 2),
            (1, 4, 4),
            (2, 1, 1),
            (1, 1, 1),
            (1, 2, 1),
        ];
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
                    return Err(invalid(
                        blob,
                        format!("conv7 has shape {shape:?}, expected (in, out, 4, 4)"),
                    ));
                }
                let cfg = ConvLayerConfig::from_weight_shape(shape, true)
                    .stride(stride)
                    .pad(pad)
                    .relu(relu);
                ConvLayer::new(
                    gpu,
                    w,
                    cfg,
                    Affine {
                        scale: None,
                        shift: b,
                    },
                )?
            } else {
                let b = bias(blob, &format!("{name}.bias"), shape[0])?;
                params += b.map_or(0, |b| b.len());
                let k = if i == 0 || i == 8 { 5 } else { 3 };
                if shape[2] != k || shape[3] != k {
                    return Err(invalid(
                        blob,
                        format!("{name} has shape {shape:?}, expected {k}×{k} kernels"),
                    ));
                }
                let cfg = ConvLayerConfig::from_weight_shape(shape, false)
                    .stride(stride)
                    .pad(pad)
                    .dilation(dil)
                    .relu(relu);
                ConvLayer::new(
                    gpu,
                    w,
                    cfg,
                    Affine {
                        scale: None,
                        shift: b,
                    },
                )?
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
            return Err(invalid(
                blob,
                format!("unet_small channel counts (in, out) per conv do not chain: {chans:?}"),
            ));
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
        Ok(UnetSmall {
            layers,
            channels,
            residual_connection,
            params,
            desc,
            precision: Precision::F32,
        })
    }

    fn check_input(&self, y: &Tensor) -> Result<()> {
        let s = y.shape();
        if s.c != self.channels {
            return Err(ModelError::Input(format!(
                "the model takes {} channel(s), the input has {}",
                self.channels, s.c
            )));
        }
        if s.h < 2 || s.w < 2 {
            return Err(ModelError::Input(format!(
                "the small UNet needs at least 2×2 pixels, the input is {}×{}",
                s.h, s.w
            )));
        }
        Ok(())
    }

    fn pads(&self, gpu: &Gpu, y: &Tensor) -> Result<(Option<ConvLayer>, Option<ConvLayer>)> {
        let (ph, pw) = (y.shape().h % 2, y.shape().w % 2);
        if ph == 0 && pw == 0 {
            return Ok((None, None));
        }
        Ok((
            Some(ConvLayer::pad_or_crop(gpu, self.channels, ph, pw, true)?),
            Some(ConvLayer::pad_or_crop(gpu, self.channels, ph, pw, false)?),
        ))
    }

    fn trace(&self, gpu: &Gpu, y: &Tensor, pad: Option<&ConvLayer>) -> Result<Trace> {
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

impl UnetSmall {
    /// The padded input and conv9's output with f16 weights and activations
    /// (after `set_precision`): conv1 reads the f32 padded input, conv9
    /// writes f32, the skip concat is f16.
    fn network_f16(
        &self,
        gpu: &Gpu,
        y: &Tensor,
        pad: Option<&ConvLayer>,
    ) -> Result<(Tensor, Tensor)> {
        let xp = match pad {
            Some(p) => p.forward(gpu, y)?,
            None => y.clone(),
        };
        let l = &self.layers;
        let half = Precision::F16;
        let mut acts = Vec::with_capacity(8);
        acts.push(l[0].forward_f16(gpu, &Activation::F32(xp.clone()), half)?);
        for i in 1..7 {
            let a = l[i].forward_f16(gpu, &acts[i - 1], half)?;
            acts.push(a);
        }
        let cat = HalfTensor::concat_channels(gpu, &[f16_of(&acts[6]), f16_of(&acts[1])])?;
        let a7 = l[7].forward_f16(gpu, &Activation::F16(cat), half)?;
        let out = l[8].forward_f16(gpu, &a7, Precision::F32)?;
        Ok((xp, f32_of(out)))
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
    fn set_precision(&mut self, gpu: &Gpu, precision: Precision) -> Result<()> {
        if precision == Precision::F16 {
            enable_f16(gpu, &mut self.layers)?;
        }
        self.precision = precision;
        Ok(())
    }
    fn denoise(&self, gpu: &Gpu, y: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        self.check_input(y)?;
        let (pad, crop) = self.pads(gpu, y)?;
        let (xp, mut out) = if self.precision == Precision::F16 {
            self.network_f16(gpu, y, pad.as_ref())?
        } else {
            let t = self.trace(gpu, y, pad.as_ref())?;
            (t.xp, t.acts[8].clone())
        };
        if self.residual_connection {
            out = elementwise::sub(gpu, &xp, &out)?;
        }
        match crop {
            Some(c) => Ok(c.forward(gpu, &out)?),
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
            Some(c) => Ok(c.jvp(gpu, &out, &out)?),
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
            Some(p) => Ok(p.vjp(gpu, &gx, &gx, hw(y))?),
            None => Ok(gx),
        }
    }
}
