//! Plain convolution chains: BF-CNN (universal_inverse_problem,
//! optimal_measurement `conv3_ln`, local_probability `low_40x40` and
//! `BF_CNN_RF`) and DnCNN (bias and bias-free), as described in
//! `../shared/README.md`. Normalisations and biases are folded into each
//! convolution's epilogue (`scale = gamma / sd`, ...), so a layer is one
//! kernel launch.

use prior_gpu::{Gpu, Shape, Tensor};
use prior_ops::batch_norm::BatchNorm;
use prior_ops::conv2d::{Conv2d, Epilogue};

use crate::arch::Arch;
use crate::blob::WeightBlob;
use crate::denoiser::{Denoiser, ModelError, Noise, Result};
use crate::hparams::{Hparams, Norm};

pub use crate::hparams::Output;

pub struct Layer {
    pub conv: Conv2d,
    pub relu: bool,
}

pub struct ConvChain {
    pub layers: Vec<Layer>,
    pub output: Output,
    pub in_channels: usize,
    pub out_channels: usize,
    /// `[low, H, V, D]` in, residual of `[H, V, D]` out (multi-scale parts).
    pub conditional_details: bool,
    params: usize,
    desc: String,
    /// The layers' input-gradient convolutions, built on the first VJP.
    vjp_layers: std::sync::OnceLock<Vec<prior_ops::autodiff::ConvVjp>>,
}

impl ConvChain {
    pub fn from_blob(gpu: &Gpu, blob: &WeightBlob) -> Result<ConvChain> {
        let origin = blob.origin.display().to_string();
        let bad = |reason: String| ModelError::Invalid {
            origin: origin.clone(),
            reason,
        };
        let (arch, hp) = match blob.hparams()? {
            Hparams::Bfcnn(h) => (Arch::Bfcnn, h),
            Hparams::Dncnn(h) => (Arch::Dncnn, h),
            other => {
                let (got, b, d) = (other.arch(), Arch::Bfcnn, Arch::Dncnn);
                return Err(bad(format!(
                    "a '{got}' blob is not a conv chain ({b}, {d})"
                )));
            }
        };
        let (norm, relu_first, conditional_details) =
            (hp.norm, hp.relu_first, hp.conditional_details);
        // DnCNN's forward returns y − last_layer(x): its chain predicts the
        // residual even though the model (hparams.output) returns the denoised image.
        let output = if arch == Arch::Dncnn {
            Output::Residual
        } else {
            hp.output
        };

        // (weight name, optional bias name, optional norm) per layer.
        let mut names: Vec<(String, Option<String>, Option<BatchNorm>)> = Vec::new();
        let vec_of = |name: &str| -> Result<Vec<f32>> { Ok(blob.tensor(name)?.data.clone()) };
        if arch == Arch::Bfcnn {
            let n = hp.layers;
            if n < 2 {
                return Err(bad(format!("hparams.layers is {n}, expected at least 2")));
            }
            for i in 0..n {
                let bn = if i == 0 || i == n - 1 {
                    None
                } else {
                    let j = i - 1;
                    Some(match norm {
                        Norm::BfSd if blob.has(&format!("running_sd.{j}")) => BatchNorm::BfSd {
                            sd: vec_of(&format!("running_sd.{j}"))?,
                            gamma: vec_of(&format!("gammas.{j}"))?,
                        },
                        Norm::BfSd => BatchNorm::BfSd {
                            sd: vec_of(&format!("BN_layers.{j}.running_sd"))?,
                            gamma: vec_of(&format!("BN_layers.{j}.gammas"))?,
                        },
                        Norm::BfSdStacked => {
                            let sd = blob.tensor("running_sd")?;
                            let g = blob.tensor("gammas")?;
                            let c = sd.numel() / sd.shape[0];
                            BatchNorm::BfSd {
                                sd: sd.data[j * c..(j + 1) * c].to_vec(),
                                gamma: g.data[j * c..(j + 1) * c].to_vec(),
                            }
                        }
                        other => return Err(bad(format!("BF-CNN with norm {other:?}"))),
                    })
                };
                names.push((format!("conv_layers.{i}.weight"), None, bn));
            }
        } else {
            // DnCNN: first_layer, hidden_layer_list.{i} + bn_layer_list.{i}, last_layer.
            let hidden = (0..)
                .take_while(|i| blob.has(&format!("hidden_layer_list.{i}.weight")))
                .count();
            let bias = |p: &str| blob.has(&format!("{p}.bias")).then(|| format!("{p}.bias"));
            names.push(("first_layer.weight".into(), bias("first_layer"), None));
            for i in 0..hidden {
                let b = format!("bn_layer_list.{i}");
                let bn = match norm {
                    Norm::Bn => BatchNorm::Standard {
                        mean: vec_of(&format!("{b}.running_mean"))?,
                        var: vec_of(&format!("{b}.running_var"))?,
                        weight: vec_of(&format!("{b}.weight"))?,
                        bias: vec_of(&format!("{b}.bias"))?,
                    },
                    Norm::BfVar => BatchNorm::BfVar {
                        var: vec_of(&format!("{b}.running_var"))?,
                        weight: vec_of(&format!("{b}.weight"))?,
                    },
                    other => return Err(bad(format!("DnCNN with norm {other:?}"))),
                };
                let p = format!("hidden_layer_list.{i}");
                names.push((format!("{p}.weight"), bias(&p), Some(bn)));
            }
            names.push(("last_layer.weight".into(), bias("last_layer"), None));
        }

        let n = names.len();
        let mut layers = Vec::with_capacity(n);
        let mut params = 0;
        for (i, (wname, bname, bn)) in names.into_iter().enumerate() {
            let w = blob.tensor(&wname)?;
            if w.shape.len() != 4 || w.shape[2] != w.shape[3] || w.shape[2] % 2 == 0 {
                return Err(bad(format!(
                    "{wname} has shape {:?}, expected (out, in, k, k) with odd k",
                    w.shape
                )));
            }
            let (cout, cin, k) = (w.shape[0], w.shape[1], w.shape[2]);
            params += w.numel();
            let mut conv = Conv2d::same(gpu, &w.data, cout, cin, k, 1);
            let bias = match &bname {
                Some(b) => {
                    let t = blob.tensor(b)?;
                    params += t.numel();
                    Some(t.data.clone())
                }
                None => None,
            };
            if let Some(bn) = &bn {
                if bn.channels() != cout {
                    return Err(bad(format!(
                        "normalisation after {wname} has {} channels, conv has {cout}",
                        bn.channels()
                    )));
                }
                params += match bn {
                    BatchNorm::BfSd { .. } | BatchNorm::BfVar { .. } => 2 * cout,
                    BatchNorm::Standard { .. } => 4 * cout,
                };
            }
            match (&bn, &bias) {
                (Some(bn), b) => {
                    let (scale, shift) = bn.scale_shift();
                    // bn(conv + bias) = conv·scale + (bias·scale + shift)
                    let shift = match (shift, b) {
                        (Some(s), Some(b)) => Some(
                            s.iter()
                                .zip(b)
                                .zip(&scale)
                                .map(|((s, b), k)| s + b * k)
                                .collect(),
                        ),
                        (Some(s), None) => Some(s),
                        (None, Some(b)) => Some(b.iter().zip(&scale).map(|(b, k)| b * k).collect()),
                        (None, None) => None,
                    };
                    conv.set_affine(gpu, Some(&scale), shift.as_deref());
                }
                (None, Some(b)) => conv.set_affine(gpu, None, Some(b)),
                (None, None) => {}
            }
            let relu = if i == 0 { relu_first } else { i < n - 1 };
            layers.push(Layer { conv, relu });
        }
        // Check the chain's channel counts line up.
        for pair in layers.windows(2) {
            if pair[0].conv.cout != pair[1].conv.cin {
                return Err(bad(format!(
                    "layer outputs {} channels but the next takes {}",
                    pair[0].conv.cout, pair[1].conv.cin
                )));
            }
        }
        let in_channels = layers[0].conv.cin;
        let out_channels = layers[n - 1].conv.cout;
        if !conditional_details && in_channels != out_channels {
            return Err(bad(format!(
                "{in_channels} channels in but {out_channels} out"
            )));
        }
        let desc = format!(
            "{arch} ({}) {n} layers, {in_channels}→{out_channels} channels, output {:?}, from {}",
            blob.variant().unwrap_or("-"),
            output,
            blob.meta("prior.source").unwrap_or("?")
        );
        Ok(ConvChain {
            layers,
            output,
            in_channels,
            out_channels,
            conditional_details,
            params,
            desc,
            vjp_layers: Default::default(),
        })
    }

    /// The raw network output f(y) (residual or denoised, per [`Output`]).
    pub fn network(&self, gpu: &Gpu, y: &Tensor) -> Result<Tensor> {
        let mut x = y.clone();
        for l in &self.layers {
            x = l.conv.forward(
                gpu,
                &x,
                Epilogue {
                    relu: l.relu,
                    ..Default::default()
                },
            )?;
        }
        Ok(x)
    }

    fn check_input(&self, y: &Tensor) -> Result<()> {
        if y.shape().c != self.in_channels {
            return Err(ModelError::Input(format!(
                "the model takes {} channel(s), the input has {}",
                self.in_channels,
                y.shape().c
            )));
        }
        Ok(())
    }
}

impl Denoiser for ConvChain {
    fn describe(&self) -> String {
        self.desc.clone()
    }
    fn channels(&self) -> usize {
        self.in_channels
    }
    fn receptive_radius(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.conv.dilation * (l.conv.kh - 1) / 2)
            .sum()
    }
    fn values_per_pixel(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.conv.cout.max(l.conv.cin))
            .max()
            .unwrap_or(1)
    }
    fn parameters(&self) -> usize {
        self.params
    }
    fn denoise(&self, gpu: &Gpu, y: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        self.check_input(y)?;
        if self.conditional_details {
            return Err(ModelError::Input(
                "this is one scale of a multi-scale model: it denoises wavelet details, not images"
                    .into(),
            ));
        }
        let f = self.network(gpu, y)?;
        match self.output {
            Output::Residual => Ok(prior_ops::elementwise::sub(gpu, y, &f)?),
            Output::Denoised => Ok(f),
        }
    }
    /// J·v with J = ∂x̂/∂y (see [`ConvChain::linearize`]).
    fn jvp(&self, gpu: &Gpu, y: &Tensor, v: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        self.refuse_conditional("JVP")?;
        self.linearize(gpu, y)?.jvp(gpu, v)
    }
    /// Jᵀ·u with J = ∂x̂/∂y (see [`ConvChain::linearize`]).
    fn vjp(&self, gpu: &Gpu, y: &Tensor, u: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        self.refuse_conditional("VJP")?;
        self.linearize(gpu, y)?.vjp(gpu, u)
    }
    fn residual(&self, gpu: &Gpu, y: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        self.check_input(y)?;
        let f = self.network(gpu, y)?;
        match self.output {
            Output::Residual => Ok(f),
            Output::Denoised => Ok(prior_ops::elementwise::sub(gpu, y, &f)?),
        }
    }
}

/// Shape helper: one image `(h, w, c)` as a batch of one.
pub fn single(h: usize, w: usize, c: usize) -> Shape {
    Shape::new(1, h, w, c)
}

// ---------------------------------------------------------------------------
// Jacobian-vector products

/// A conv chain linearised at one input y: the post-ReLU activations of the
/// primal pass (one per layer), from which batches of tangents go forward
/// (JVP) and batches of cotangents go backward (VJP) without rerunning the
/// primal pass. The chain is piecewise linear (bias-free models: x̂(y) = J(y)·y).
pub struct Linearized<'a> {
    chain: &'a ConvChain,
    /// Output of every layer at y (`[1, h, w, c_l]`), post-ReLU where the layer has one.
    acts: Vec<Tensor>,
    input: Shape,
}

impl ConvChain {
    fn refuse_conditional(&self, what: &str) -> Result<()> {
        if self.conditional_details {
            return Err(ModelError::Input(format!(
                "the {what} of a denoised image is not defined for one scale of a multi-scale model: use ConvChain::linearize(..).network_jvp / network_vjp"
            )));
        }
        Ok(())
    }

    fn vjp_layers(&self, gpu: &Gpu) -> Result<&[prior_ops::autodiff::ConvVjp]> {
        if self.vjp_layers.get().is_none() {
            let built = self
                .layers
                .iter()
                .map(|l| prior_ops::autodiff::ConvVjp::new(gpu, &l.conv))
                .collect::<Result<Vec<_>, _>>()?;
            let _ = self.vjp_layers.set(built);
        }
        Ok(self.vjp_layers.get().expect("set above"))
    }

    /// Runs the primal pass at `y` (`[1, h, w, c]`) keeping every layer's
    /// output, for [`Linearized::jvp`] / [`Linearized::vjp`] and the raw
    /// network's [`Linearized::network_jvp`] / [`Linearized::network_vjp`].
    pub fn linearize(&self, gpu: &Gpu, y: &Tensor) -> Result<Linearized<'_>> {
        self.check_input(y)?;
        let s = y.shape();
        if s.n != 1 {
            return Err(ModelError::Input(format!(
                "Jacobian products are taken at one input (n = 1), got a batch of {}; put the tangents in the batch instead",
                s.n
            )));
        }
        let mut acts = Vec::with_capacity(self.layers.len());
        let mut x = y.clone();
        for l in &self.layers {
            x = l.conv.forward(
                gpu,
                &x,
                Epilogue {
                    relu: l.relu,
                    ..Default::default()
                },
            )?;
            acts.push(x.clone());
        }
        Ok(Linearized {
            chain: self,
            acts,
            input: s,
        })
    }
}

impl Linearized<'_> {
    /// f(y), the raw network output of the primal pass.
    pub fn network_output(&self) -> &Tensor {
        self.acts.last().expect("a chain has layers")
    }

    fn check(&self, t: &Tensor, c: usize, what: &str) -> Result<()> {
        let s = t.shape();
        if s.h != self.input.h || s.w != self.input.w || s.c != c || s.n == 0 {
            return Err(ModelError::Input(format!(
                "{what} {s} does not match the linearisation point {} with {c} channel(s)",
                self.input
            )));
        }
        Ok(())
    }

    /// J_f·v for the raw network f (`[k, h, w, c_in]` → `[k, h, w, c_out]`):
    /// each layer is its convolution with the scale but no shift, and the
    /// ReLU derivative is the conv epilogue's mask (the layer's primal output).
    pub fn network_jvp(&self, gpu: &Gpu, v: &Tensor) -> Result<Tensor> {
        self.check(v, self.chain.in_channels, "tangent")?;
        let mut t = v.clone();
        for (l, a) in self.chain.layers.iter().zip(&self.acts) {
            t = prior_ops::autodiff::conv2d_jvp(gpu, &l.conv, &t, l.relu.then_some(a))?;
        }
        Ok(t)
    }

    /// J_fᵀ·u for the raw network f (`[k, h, w, c_out]` → `[k, h, w, c_in]`):
    /// through each layer's input-gradient convolution, last to first; the
    /// ReLU derivative of layer l−1 is fused into layer l's transposed conv.
    pub fn network_vjp(&self, gpu: &Gpu, u: &Tensor) -> Result<Tensor> {
        self.check(u, self.chain.out_channels, "cotangent")?;
        let layers = &self.chain.layers;
        let grads = self.chain.vjp_layers(gpu)?;
        let n = layers.len();
        let mut g = u.clone();
        for i in (0..n).rev() {
            let out_mask = (i == n - 1 && layers[i].relu).then_some(&self.acts[i]);
            let in_mask = (i > 0 && layers[i - 1].relu).then(|| &self.acts[i - 1]);
            g = grads[i].apply(gpu, &g, out_mask, in_mask)?;
        }
        Ok(g)
    }

    /// J·v with J = ∂x̂/∂y of the denoised output: J_f (denoising network)
    /// or I − J_f (residual network).
    pub fn jvp(&self, gpu: &Gpu, v: &Tensor) -> Result<Tensor> {
        self.chain.refuse_conditional("JVP")?;
        let jf = self.network_jvp(gpu, v)?;
        match self.chain.output {
            Output::Denoised => Ok(jf),
            Output::Residual => Ok(prior_ops::autodiff::sub_jvp(gpu, v, &jf)?),
        }
    }

    /// Jᵀ·u with J = ∂x̂/∂y (`[k, h, w, c]`).
    pub fn vjp(&self, gpu: &Gpu, u: &Tensor) -> Result<Tensor> {
        self.chain.refuse_conditional("VJP")?;
        let jf = self.network_vjp(gpu, u)?;
        match self.chain.output {
            Output::Denoised => Ok(jf),
            Output::Residual => Ok(prior_ops::autodiff::sub_jvp(gpu, u, &jf)?),
        }
    }
}
