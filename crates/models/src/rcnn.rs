//! The recurrent CNN of bias_free_denoising (Mohan et al., ICLR 2020; the
//! authors' `models/rcnn.py` + `backbone_cnn.py`), bias and bias-free.
//!
//! One shared stage: conv 2C→64 + ReLU, `depth` × [conv 64→64 + ReLU], conv
//! 64→C (never a bias), all 3×3 'same'. At eval `prev = x`, then `stages`
//! times `prev = stage(concat[x, prev])`; the output is the denoised image.

use prior_gpu::{Gpu, Tensor};
use prior_ops::channels::{concat_channels, concat_channels_vjp};
use prior_ops::elementwise;

use crate::arch::Arch;
use crate::blob::WeightBlob;
use crate::denoiser::{Denoiser, ModelError, Noise, Result};
use crate::hparams::Hparams;
use crate::layers::{
    bias, check_tangent, enable_f16, forward_f16, hw, invalid, weight4, Affine, ConvLayer,
    ConvLayerConfig,
};
use prior_ops::precision::Precision;

/// The recurrent CNN denoiser: one stack of conv layers applied `stages` times.
pub struct Rcnn {
    /// first, hidden..., last.
    layers: Vec<ConvLayer>,
    stages: usize,
    channels: usize,
    params: usize,
    desc: String,
    /// Storage of [`Denoiser::denoise`] (f16: each stage's convs with f16
    /// weights and activations; its input concat and output stay f32).
    precision: Precision,
}

impl Rcnn {
    /// Builds the model from a blob with `prior.arch = rcnn`.
    pub fn from_blob(gpu: &Gpu, blob: &WeightBlob) -> Result<Rcnn> {
        let Hparams::Rcnn(hp) = blob.hparams()? else {
            return Err(invalid(blob, format!("not an {} blob", Arch::Rcnn)));
        };
        let stages = hp.stages;
        if stages == 0 {
            return Err(invalid(blob, "hparams.stages is 0".into()));
        }
        let hidden = (0..)
            .take_while(|i| blob.has(&format!("cnn.hidden_layer_list.{i}.weight")))
            .count();
        let mut names = vec!["cnn.first_layer".to_string()];
        names.extend((0..hidden).map(|i| format!("cnn.hidden_layer_list.{i}")));
        names.push("cnn.last_layer".into());
        let n = names.len();
        let mut layers = Vec::with_capacity(n);
        let mut params = 0;
        for (i, name) in names.iter().enumerate() {
            let (w, shape) = weight4(blob, &format!("{name}.weight"))?;
            if shape[2] != shape[3] || shape[2] % 2 == 0 {
                return Err(invalid(
                    blob,
                    format!(
                        "{name}.weight has shape {shape:?}, expected (out, in, k, k) with odd k"
                    ),
                ));
            }
            let b = bias(blob, &format!("{name}.bias"), shape[0])?;
            params += w.len() + b.map_or(0, |b| b.len());
            let cfg = ConvLayerConfig::from_weight_shape(shape, false)
                .pad(shape[2] / 2)
                .relu(i < n - 1);
            layers.push(ConvLayer::new(
                gpu,
                w,
                cfg,
                Affine {
                    scale: None,
                    shift: b,
                },
            )?);
        }
        for pair in layers.windows(2) {
            if pair[0].out_channels() != pair[1].in_channels() {
                return Err(invalid(
                    blob,
                    format!(
                        "a layer outputs {} channels but the next takes {}",
                        pair[0].out_channels(),
                        pair[1].in_channels()
                    ),
                ));
            }
        }
        let channels = layers[n - 1].out_channels();
        if layers[0].in_channels() != 2 * channels {
            return Err(invalid(
                blob,
                format!("the stage takes {} channels, expected 2 × {channels} (image and previous estimate)", layers[0].in_channels()),
            ));
        }
        let desc = format!(
            "rcnn ({}) {stages} stages of {n} convs, width {}, {channels} channel(s), output denoised, from {}",
            blob.variant().unwrap_or("-"),
            layers[0].out_channels(),
            blob.meta("prior.source").unwrap_or("?")
        );
        Ok(Rcnn {
            layers,
            stages,
            channels,
            params,
            desc,
            precision: Precision::F32,
        })
    }

    fn check_input(&self, y: &Tensor) -> Result<()> {
        if y.shape().c != self.channels {
            return Err(ModelError::Input(format!(
                "the model takes {} channel(s), the input has {}",
                self.channels,
                y.shape().c
            )));
        }
        Ok(())
    }

    /// Every layer output of every stage (`acts[stage][layer]`).
    fn trace(&self, gpu: &Gpu, y: &Tensor) -> Result<Vec<Vec<Tensor>>> {
        let mut prev = y.clone();
        let mut all = Vec::with_capacity(self.stages);
        for _ in 0..self.stages {
            let mut x = concat_channels(gpu, &[y, &prev])?;
            let mut acts = Vec::with_capacity(self.layers.len());
            for l in &self.layers {
                x = l.forward(gpu, &x)?;
                acts.push(x.clone());
            }
            prev = x;
            all.push(acts);
        }
        Ok(all)
    }
}

impl Denoiser for Rcnn {
    fn describe(&self) -> String {
        self.desc.clone()
    }
    fn channels(&self) -> usize {
        self.channels
    }
    fn receptive_radius(&self) -> usize {
        let per_stage: usize = self.layers.iter().map(ConvLayer::reach).sum();
        self.stages * per_stage
    }
    fn values_per_pixel(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.out_channels().max(l.in_channels()))
            .max()
            .unwrap_or(1)
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
        let mut prev = y.clone();
        for _ in 0..self.stages {
            let mut x = concat_channels(gpu, &[y, &prev])?;
            if self.precision == Precision::F16 {
                x = forward_f16(gpu, &self.layers, &x)?;
            } else {
                for l in &self.layers {
                    x = l.forward(gpu, &x)?;
                }
            }
            prev = x;
        }
        Ok(prev)
    }
    fn jvp(&self, gpu: &Gpu, y: &Tensor, v: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        self.check_input(y)?;
        check_tangent(y, v)?;
        let acts = self.trace(gpu, y)?;
        let mut dprev = v.clone();
        for stage in &acts {
            let mut d = concat_channels(gpu, &[v, &dprev])?;
            for (l, a) in self.layers.iter().zip(stage) {
                d = l.jvp(gpu, &d, a)?;
            }
            dprev = d;
        }
        Ok(dprev)
    }
    fn vjp(&self, gpu: &Gpu, y: &Tensor, u: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        self.check_input(y)?;
        check_tangent(y, u)?;
        let acts = self.trace(gpu, y)?;
        let size = hw(y);
        let mut g = u.clone();
        let mut gx: Option<Tensor> = None;
        for stage in acts.iter().rev() {
            for (l, a) in self.layers.iter().zip(stage).rev() {
                g = l.vjp(gpu, &g, a, size)?;
            }
            let parts = concat_channels_vjp(gpu, &g, &[self.channels, self.channels])?;
            gx = Some(match gx {
                Some(acc) => elementwise::axpby(gpu, 1.0, &acc, 1.0, &parts[0])?,
                None => parts[0].clone(),
            });
            g = parts[1].clone();
        }
        // prev starts as x.
        Ok(match gx {
            Some(acc) => elementwise::axpby(gpu, 1.0, &acc, 1.0, &g)?,
            None => g,
        })
    }
}
