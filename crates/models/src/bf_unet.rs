//! The bias-free UNet of the memorization paper (Kadkhodaie, Guth,
//! Simoncelli, Mallat, ICLR 2024), as laid out in `../shared/README.md`.
//!
//! 3×3 zero-padded bias-free convs, bias-free batch norm
//! `x / running_sd · gammas` (folded into the conv as a per-channel scale),
//! ReLU. Encoder block b (width k = base·2^b): block 0 = conv C→k + ReLU,
//! conv k→k + BN + ReLU; blocks b ≥ 1 = 2 × [conv + BN + ReLU] (k/2→k→k);
//! each block's output is kept as a skip, then 2×2 average pooling. Middle:
//! 2 × [conv + BN + ReLU] to 2·k_top. Decoder b = top..0: ConvTranspose 2×2
//! stride 2 (2k→k, no bias, no activation); concat [up-sampled, skip_b];
//! blocks b ≥ 1 = 2 × [conv + BN + ReLU] (2k→k→k); block 0 = conv 2k→k + BN
//! and ReLU, conv k→C. The output is the noise residual, so x̂ = y − f(y).
//! H and W must be multiples of 2^scales.
//!
//! Widths come from the tensor shapes (the random-weight golden uses base 8).

use prior_gpu::{Gpu, Tensor};
use prior_ops::batch_norm::BatchNorm;
use prior_ops::channels::{concat_channels, concat_channels_vjp};
use prior_ops::elementwise;
use prior_ops::pool::{avg_pool2, avg_pool2_f16, avg_pool2_vjp};
use prior_ops::precision::{Activation, HalfTensor, Precision};

use crate::arch::Arch;
use crate::blob::WeightBlob;
use crate::denoiser::{Denoiser, ModelError, Noise, Result};
use crate::hparams::Hparams;
use crate::layers::{
    check_tangent, f16_of, f32_of, hw, invalid, weight4, Affine, ConvLayer, ConvLayerConfig,
};

/// The bias-free UNet denoiser on the GPU.
pub struct BfUnet {
    /// Encoder blocks (2 convs each).
    encoder: Vec<Vec<ConvLayer>>,
    middle: Vec<ConvLayer>,
    /// Up-sampling transposed convs, indexed by block b.
    upsample: Vec<ConvLayer>,
    /// Decoder blocks, indexed by block b (2 convs each; block 0's last conv is linear).
    decoder: Vec<Vec<ConvLayer>>,
    channels: usize,
    widths: Vec<usize>,
    params: usize,
    desc: String,
    /// Storage of [`BfUnet::network`] (f16: every layer, pooling and concat
    /// on f16 activations; only the input and the output are f32).
    precision: Precision,
}

/// Primal activations of one forward pass.
struct Trace {
    enc: Vec<Vec<Tensor>>,
    pooled: Vec<Tensor>,
    mid: Vec<Tensor>,
    up: Vec<Tensor>,
    dec: Vec<Vec<Tensor>>,
}

impl BfUnet {
    /// Builds the model from a blob with `prior.arch = bf_unet`.
    pub fn from_blob(gpu: &Gpu, blob: &WeightBlob) -> Result<BfUnet> {
        let Hparams::BfUnet(hp) = blob.hparams()? else {
            return Err(invalid(blob, format!("not a {} blob", Arch::BfUnet)));
        };
        let scales = (0..)
            .take_while(|b| blob.has(&format!("encoder.{b}.0.weight")))
            .count();
        if scales == 0 {
            return Err(invalid(
                blob,
                "no encoder blocks (encoder.0.0.weight)".into(),
            ));
        }
        if hp.scales != scales {
            return Err(invalid(
                blob,
                format!(
                    "hparams.scales is {} but the blob has {scales} encoder blocks",
                    hp.scales
                ),
            ));
        }
        let mut params = 0;
        let conv =
            |wname: &str, bn: Option<&str>, relu: bool, params: &mut usize| -> Result<ConvLayer> {
                let (w, shape) = weight4(blob, wname)?;
                if shape[2] != 3 || shape[3] != 3 {
                    return Err(invalid(
                        blob,
                        format!("{wname} has shape {shape:?}, expected 3×3 kernels"),
                    ));
                }
                *params += w.len();
                let scale = match bn {
                    Some(p) => {
                        let sd = blob.tensor(&format!("{p}.running_sd"))?;
                        let g = blob.tensor(&format!("{p}.gammas"))?;
                        if sd.numel() != shape[0] || g.numel() != shape[0] {
                            return Err(invalid(
                                blob,
                                format!(
                                    "{p} has {} / {} values, the conv before it {} channels",
                                    sd.numel(),
                                    g.numel(),
                                    shape[0]
                                ),
                            ));
                        }
                        *params += 2 * shape[0];
                        Some(
                            BatchNorm::BfSd {
                                sd: sd.data.clone(),
                                gamma: g.data.clone(),
                            }
                            .scale_shift()
                            .0,
                        )
                    }
                    None => None,
                };
                let cfg = ConvLayerConfig::from_weight_shape(shape, false)
                    .pad(1)
                    .relu(relu);
                Ok(ConvLayer::new(
                    gpu,
                    w,
                    cfg,
                    Affine {
                        scale: scale.as_deref(),
                        shift: None,
                    },
                )?)
            };
        let mut encoder = Vec::new();
        for b in 0..scales {
            let e = format!("encoder.{b}");
            encoder.push(if b == 0 {
                vec![
                    conv(&format!("{e}.0.weight"), None, true, &mut params)?,
                    conv(
                        &format!("{e}.2.weight"),
                        Some(&format!("{e}.3")),
                        true,
                        &mut params,
                    )?,
                ]
            } else {
                vec![
                    conv(
                        &format!("{e}.0.weight"),
                        Some(&format!("{e}.1")),
                        true,
                        &mut params,
                    )?,
                    conv(
                        &format!("{e}.3.weight"),
                        Some(&format!("{e}.4")),
                        true,
                        &mut params,
                    )?,
                ]
            });
        }
        let middle = vec![
            conv("mid_block.0.weight", Some("mid_block.1"), true, &mut params)?,
            conv("mid_block.3.weight", Some("mid_block.4"), true, &mut params)?,
        ];
        let mut upsample = Vec::new();
        let mut decoder = Vec::new();
        for b in 0..scales {
            let (w, shape) = weight4(blob, &format!("upsample.{b}.weight"))?;
            if shape[2] != 2 || shape[3] != 2 {
                return Err(invalid(
                    blob,
                    format!("upsample.{b}.weight has shape {shape:?}, expected (in, out, 2, 2)"),
                ));
            }
            params += w.len();
            let cfg = ConvLayerConfig::from_weight_shape(shape, true).stride(2);
            upsample.push(ConvLayer::new(gpu, w, cfg, Affine::default())?);
            let d = format!("decoder.{b}");
            decoder.push(if b == 0 {
                vec![
                    conv(
                        &format!("{d}.0.weight"),
                        Some(&format!("{d}.1")),
                        true,
                        &mut params,
                    )?,
                    conv(&format!("{d}.3.weight"), None, false, &mut params)?,
                ]
            } else {
                vec![
                    conv(
                        &format!("{d}.0.weight"),
                        Some(&format!("{d}.1")),
                        true,
                        &mut params,
                    )?,
                    conv(
                        &format!("{d}.3.weight"),
                        Some(&format!("{d}.4")),
                        true,
                        &mut params,
                    )?,
                ]
            });
        }
        // Channel bookkeeping.
        let widths: Vec<usize> = encoder.iter().map(|e| e[1].out_channels()).collect();
        let channels = encoder[0][0].in_channels();
        let mut errs = Vec::new();
        let mut expect = |what: String, got: usize, want: usize| {
            if got != want {
                errs.push(format!("{what} has {got} channels, expected {want}"));
            }
        };
        for b in 0..scales {
            let inp = if b == 0 { channels } else { widths[b - 1] };
            expect(
                format!("encoder.{b} input"),
                encoder[b][0].in_channels(),
                inp,
            );
            expect(
                format!("encoder.{b} second conv input"),
                encoder[b][1].in_channels(),
                encoder[b][0].out_channels(),
            );
            let below = if b + 1 == scales {
                middle[1].out_channels()
            } else {
                decoder[b + 1][1].out_channels()
            };
            expect(
                format!("upsample.{b} input"),
                upsample[b].in_channels(),
                below,
            );
            expect(
                format!("decoder.{b} input"),
                decoder[b][0].in_channels(),
                upsample[b].out_channels() + widths[b],
            );
            expect(
                format!("decoder.{b} second conv input"),
                decoder[b][1].in_channels(),
                decoder[b][0].out_channels(),
            );
        }
        expect(
            "mid_block input".into(),
            middle[0].in_channels(),
            widths[scales - 1],
        );
        expect(
            "mid_block second conv input".into(),
            middle[1].in_channels(),
            middle[0].out_channels(),
        );
        expect(
            "decoder.0 output".into(),
            decoder[0][1].out_channels(),
            channels,
        );
        if !errs.is_empty() {
            return Err(invalid(
                blob,
                format!("bf_unet layout: {}", errs.join("; ")),
            ));
        }
        let desc = format!(
            "bf_unet ({}) widths {:?} + middle {}, {channels} channel(s), output residual, from {}",
            blob.variant().unwrap_or("-"),
            widths,
            middle[1].out_channels(),
            blob.meta("prior.source").unwrap_or("?")
        );
        Ok(BfUnet {
            encoder,
            middle,
            upsample,
            decoder,
            channels,
            widths,
            params,
            desc,
            precision: Precision::F32,
        })
    }

    /// Number of encoder blocks (each halves the size).
    pub fn scales(&self) -> usize {
        self.encoder.len()
    }

    fn check_input(&self, y: &Tensor) -> Result<()> {
        let s = y.shape();
        if s.c != self.channels {
            return Err(ModelError::Input(format!(
                "the model takes {} channel(s), the input has {}",
                self.channels, s.c
            )));
        }
        let m = self.size_multiple();
        if !s.h.is_multiple_of(m) || !s.w.is_multiple_of(m) || s.h == 0 || s.w == 0 {
            return Err(ModelError::Input(format!(
                "this UNet needs height and width divisible by {m}; the input is {}×{}",
                s.h, s.w
            )));
        }
        Ok(())
    }

    fn trace(&self, gpu: &Gpu, y: &Tensor) -> Result<Trace> {
        let mut x = y.clone();
        let (mut enc, mut pooled) = (Vec::new(), Vec::new());
        for block in &self.encoder {
            let mut acts = Vec::new();
            for l in block {
                x = l.forward(gpu, &x)?;
                acts.push(x.clone());
            }
            x = avg_pool2(gpu, &x)?;
            pooled.push(x.clone());
            enc.push(acts);
        }
        let mut mid = Vec::new();
        for l in &self.middle {
            x = l.forward(gpu, &x)?;
            mid.push(x.clone());
        }
        let n = self.scales();
        let mut up: Vec<Option<Tensor>> = vec![None; n];
        let mut dec: Vec<Vec<Tensor>> = vec![Vec::new(); n];
        for b in (0..n).rev() {
            let u = self.upsample[b].forward(gpu, &x)?;
            x = concat_channels(gpu, &[&u, &enc[b][1]])?;
            up[b] = Some(u);
            for l in &self.decoder[b] {
                x = l.forward(gpu, &x)?;
                dec[b].push(x.clone());
            }
        }
        Ok(Trace {
            enc,
            pooled,
            mid,
            up: up.into_iter().map(|u| u.expect("every scale")).collect(),
            dec,
        })
    }

    /// The network output f(y) (the noise residual).
    pub fn network(&self, gpu: &Gpu, y: &Tensor) -> Result<Tensor> {
        self.check_input(y)?;
        if self.precision == Precision::F16 {
            return self.network_f16(gpu, y);
        }
        let t = self.trace(gpu, y)?;
        Ok(t.dec[0][1].clone())
    }

    /// [`BfUnet::network`] with f16 weights and activations (after
    /// `set_precision`): the first conv reads the f32 input, the last
    /// writes f32, the skips, pooling and concatenations stay f16.
    fn network_f16(&self, gpu: &Gpu, y: &Tensor) -> Result<Tensor> {
        let half = Precision::F16;
        let mut x = Activation::F32(y.clone());
        let mut skips = Vec::with_capacity(self.scales());
        for block in &self.encoder {
            for l in block {
                x = l.forward_f16(gpu, &x, half)?;
            }
            let skip = f16_of(&x).clone();
            x = Activation::F16(avg_pool2_f16(gpu, &skip)?);
            skips.push(skip);
        }
        for l in &self.middle {
            x = l.forward_f16(gpu, &x, half)?;
        }
        for b in (0..self.scales()).rev() {
            let u = self.upsample[b].forward_f16(gpu, &x, half)?;
            x = Activation::F16(HalfTensor::concat_channels(gpu, &[f16_of(&u), &skips[b]])?);
            let last = self.decoder[b].len() - 1;
            for (i, l) in self.decoder[b].iter().enumerate() {
                let out = if b == 0 && i == last {
                    Precision::F32
                } else {
                    half
                };
                x = l.forward_f16(gpu, &x, out)?;
            }
        }
        Ok(f32_of(x))
    }

    /// J_f·v (the network's Jacobian).
    fn net_jvp(&self, gpu: &Gpu, t: &Trace, v: &Tensor) -> Result<Tensor> {
        let n = self.scales();
        let mut d = v.clone();
        let mut skips = Vec::with_capacity(n);
        for (b, block) in self.encoder.iter().enumerate() {
            for (l, a) in block.iter().zip(&t.enc[b]) {
                d = l.jvp(gpu, &d, a)?;
            }
            skips.push(d.clone());
            d = avg_pool2(gpu, &d)?;
        }
        for (l, a) in self.middle.iter().zip(&t.mid) {
            d = l.jvp(gpu, &d, a)?;
        }
        for b in (0..n).rev() {
            let u = self.upsample[b].jvp(gpu, &d, &t.up[b])?;
            d = concat_channels(gpu, &[&u, &skips[b]])?;
            for (l, a) in self.decoder[b].iter().zip(&t.dec[b]) {
                d = l.jvp(gpu, &d, a)?;
            }
        }
        Ok(d)
    }

    /// J_fᵀ·u.
    fn net_vjp(&self, gpu: &Gpu, t: &Trace, y: &Tensor, u: &Tensor) -> Result<Tensor> {
        let n = self.scales();
        let mut g = u.clone();
        let mut g_skips: Vec<Option<Tensor>> = vec![None; n];
        #[allow(clippy::needless_range_loop)] // b indexes five per-scale lists
        for b in 0..n {
            // Decoder block b: its input is concat [up_b, skip_b] at scale b.
            let size = hw(&t.enc[b][1]);
            let block = &self.decoder[b];
            g = block[1].vjp(gpu, &g, &t.dec[b][1], size)?;
            g = block[0].vjp(gpu, &g, &t.dec[b][0], size)?;
            let parts =
                concat_channels_vjp(gpu, &g, &[self.upsample[b].out_channels(), self.widths[b]])?;
            g_skips[b] = Some(parts[1].clone());
            let below = if b + 1 == n {
                &t.mid[1]
            } else {
                &t.dec[b + 1][1]
            };
            // Now the cotangent of decoder block b+1's output (or the middle's).
            g = self.upsample[b].vjp(gpu, &parts[0], &t.up[b], hw(below))?;
        }
        // g: cotangent of the middle block's output.
        let size = hw(&t.pooled[n - 1]);
        g = self.middle[1].vjp(gpu, &g, &t.mid[1], size)?;
        g = self.middle[0].vjp(gpu, &g, &t.mid[0], size)?;
        for b in (0..n).rev() {
            let size = hw(&t.enc[b][1]);
            g = avg_pool2_vjp(gpu, &g, size)?;
            let skip = g_skips[b].take().expect("every scale");
            g = elementwise::axpby(gpu, 1.0, &g, 1.0, &skip)?;
            g = self.encoder[b][1].vjp(gpu, &g, &t.enc[b][1], size)?;
            g = self.encoder[b][0].vjp(
                gpu,
                &g,
                &t.enc[b][0],
                if b == 0 { hw(y) } else { hw(&t.pooled[b - 1]) },
            )?;
        }
        Ok(g)
    }
}

impl Denoiser for BfUnet {
    fn describe(&self) -> String {
        self.desc.clone()
    }
    fn channels(&self) -> usize {
        self.channels
    }
    fn receptive_radius(&self) -> usize {
        // Block b's two 3×3 convs reach 2·2^b input pixels on the way down
        // and again on the way up; pooling and up-sampling at scale b each
        // add ≤ 2^(b+1) − 1; the middle block 2·2^S. In all
        // Σ_b (8·2^b − 2) + 2^(S+1) = 10·2^S − 8 − 2S.
        let s = self.scales();
        (10 << s) - 8 - 2 * s
    }
    fn size_multiple(&self) -> usize {
        1 << self.scales()
    }
    fn values_per_pixel(&self) -> usize {
        // Full resolution: the concat [up-sampled, skip] of decoder block 0.
        self.decoder[0][0].in_channels()
    }
    fn parameters(&self) -> usize {
        self.params
    }
    fn set_precision(&mut self, gpu: &Gpu, precision: Precision) -> Result<()> {
        if precision == Precision::F16 {
            let layers = self
                .encoder
                .iter_mut()
                .flatten()
                .chain(&mut self.middle)
                .chain(&mut self.upsample)
                .chain(self.decoder.iter_mut().flatten());
            for l in layers {
                l.enable_f16(gpu)?;
            }
        }
        self.precision = precision;
        Ok(())
    }
    fn denoise(&self, gpu: &Gpu, y: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        let f = self.network(gpu, y)?;
        Ok(elementwise::sub(gpu, y, &f)?)
    }
    fn residual(&self, gpu: &Gpu, y: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        self.network(gpu, y)
    }
    fn jvp(&self, gpu: &Gpu, y: &Tensor, v: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        self.check_input(y)?;
        check_tangent(y, v)?;
        let t = self.trace(gpu, y)?;
        let jf = self.net_jvp(gpu, &t, v)?;
        Ok(elementwise::sub(gpu, v, &jf)?)
    }
    fn vjp(&self, gpu: &Gpu, y: &Tensor, u: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        self.check_input(y)?;
        check_tangent(y, u)?;
        let t = self.trace(gpu, y)?;
        let jf = self.net_vjp(gpu, &t, y, u)?;
        Ok(elementwise::sub(gpu, u, &jf)?)
    }
}
