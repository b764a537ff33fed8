//! Helpers shared by the models: reading weights from a blob, shape checks,
//! the one differentiable convolution layer ([`prior_ops::layer::ConvLayer`]),
//! and the plain chain of such layers ([`LayerChain`]) that BF-CNN, DnCNN
//! and the parts of the multi-scale model are made of. Models import these
//! from here, never from a sibling model.

use prior_gpu::{Gpu, Shape, Tensor};
use prior_ops::batch_norm::BatchNorm;
use prior_ops::precision::{Activation, HalfTensor, Precision};

pub use prior_ops::layer::{Affine, ConvLayer, ConvLayerConfig, VjpAt};

use crate::arch::Arch;
use crate::blob::WeightBlob;
use crate::denoiser::{ModelError, Result};
use crate::hparams::{Hparams, Norm, Output};

/// Gives every layer of a chain `layers` (each feeding the next) its f16
/// weights for [`forward_f16`]; an error when an activation between two
/// layers has an odd channel count (f16 pairs share a word).
pub(crate) fn enable_f16(gpu: &Gpu, layers: &mut [ConvLayer]) -> Result<()> {
    let n = layers.len();
    for (i, l) in layers.iter_mut().enumerate() {
        if i + 1 < n && !l.out_channels().is_multiple_of(2) {
            return Err(ModelError::Input(format!(
                "f16 storage needs even channel counts between layers; layer {i} has {}",
                l.out_channels()
            )));
        }
        l.enable_f16(gpu)?;
    }
    Ok(())
}

/// The chain `layers` (after [`enable_f16`]) on the f32 input `x` with f16
/// weights and f16 activations between layers: the first layer reads f32,
/// the last writes f32, every sum is f32.
pub(crate) fn forward_f16(gpu: &Gpu, layers: &[ConvLayer], x: &Tensor) -> Result<Tensor> {
    let n = layers.len();
    let mut a = Activation::F32(x.clone());
    for (i, l) in layers.iter().enumerate() {
        let out = if i + 1 == n {
            Precision::F32
        } else {
            Precision::F16
        };
        a = l.forward_f16(gpu, &a, out)?;
    }
    Ok(f32_of(a))
}

/// The f16 tensor of an activation a layer wrote with `Precision::F16`.
pub(crate) fn f16_of(a: &Activation) -> &HalfTensor {
    match a {
        Activation::F16(h) => h,
        Activation::F32(_) => unreachable!("written with Precision::F16"),
    }
}

/// The f32 tensor of an activation a layer wrote with `Precision::F32`.
pub(crate) fn f32_of(a: Activation) -> Tensor {
    match a {
        Activation::F32(t) => t,
        Activation::F16(_) => unreachable!("written with Precision::F32"),
    }
}

/// `(h, w)` of a tensor.
pub(crate) fn hw(t: &Tensor) -> (usize, usize) {
    (t.shape().h, t.shape().w)
}

/// Invalid-weights error naming the blob.
pub(crate) fn invalid(blob: &WeightBlob, reason: String) -> ModelError {
    ModelError::Invalid {
        origin: blob.origin.display().to_string(),
        reason,
    }
}

/// A weight tensor that must have rank 4; returns its data and shape.
pub(crate) fn weight4<'a>(blob: &'a WeightBlob, name: &str) -> Result<(&'a [f32], [usize; 4])> {
    let t = blob.tensor(name)?;
    match t.shape[..] {
        [a, b, c, d] => Ok((&t.data, [a, b, c, d])),
        _ => Err(invalid(
            blob,
            format!("{name} has shape {:?}, expected a 4-D conv weight", t.shape),
        )),
    }
}

/// An optional bias of `n` values.
pub(crate) fn bias<'a>(blob: &'a WeightBlob, name: &str, n: usize) -> Result<Option<&'a [f32]>> {
    if !blob.has(name) {
        return Ok(None);
    }
    let t = blob.tensor(name)?;
    if t.numel() != n {
        return Err(invalid(
            blob,
            format!("{name} has {} values, expected {n}", t.numel()),
        ));
    }
    Ok(Some(&t.data))
}

/// Tangents/cotangents must have the primal's pixel grid and channels, and
/// the primal must be one sample.
pub(crate) fn check_tangent(y: &Tensor, v: &Tensor) -> Result<()> {
    let (s, t) = (y.shape(), v.shape());
    if s.n != 1 {
        return Err(ModelError::Input(format!(
            "JVP/VJP take one primal image, got a batch of {}",
            s.n
        )));
    }
    if (t.h, t.w, t.c) != (s.h, s.w, s.c) || t.n == 0 {
        return Err(ModelError::Input(format!(
            "tangent {t} does not match the input {s}"
        )));
    }
    Ok(())
}

/// A plain chain of [`ConvLayer`]s, each feeding the next: the network of
/// BF-CNN and DnCNN (`prior.arch` `bfcnn` / `dncnn`, as described in
/// `../shared/README.md`), shared by the conv-chain model and the parts of
/// the multi-scale model. Normalisations and biases are folded into each
/// convolution's epilogue (`scale = gamma / sd`, ...), so a layer is one
/// kernel launch forwards and one backwards.
pub struct LayerChain {
    /// The layers, first to last.
    pub layers: Vec<ConvLayer>,
    /// What the raw network output f(y) is (DnCNN's chain always predicts
    /// the residual, whatever the model returns).
    pub output: Output,
    /// Channels of the input.
    pub in_channels: usize,
    /// Channels of the output.
    pub out_channels: usize,
    /// `[low, H, V, D]` in, residual of `[H, V, D]` out (multi-scale parts).
    pub conditional_details: bool,
    params: usize,
    desc: String,
    /// The storage precision of [`LayerChain::network`] (Jacobian passes
    /// always run f32).
    precision: Precision,
}

impl LayerChain {
    /// Reads a BF-CNN or DnCNN stack from a blob (`prior.arch` `bfcnn` or
    /// `dncnn`), folding each normalisation and bias into its conv's
    /// epilogue; checks that the channel counts line up.
    pub fn from_blob(gpu: &Gpu, blob: &WeightBlob) -> Result<LayerChain> {
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
            let (scale, shift) = match (&bn, bias) {
                (Some(bn), b) => {
                    let (scale, shift) = bn.scale_shift();
                    // bn(conv + bias) = conv·scale + (bias·scale + shift)
                    let shift = match (shift, b) {
                        (Some(s), Some(b)) => Some(
                            s.iter()
                                .zip(&b)
                                .zip(&scale)
                                .map(|((s, b), k)| s + b * k)
                                .collect(),
                        ),
                        (Some(s), None) => Some(s),
                        (None, Some(b)) => Some(b.iter().zip(&scale).map(|(b, k)| b * k).collect()),
                        (None, None) => None,
                    };
                    (Some(scale), shift)
                }
                (None, b) => (None, b),
            };
            let relu = if i == 0 { relu_first } else { i < n - 1 };
            let cfg = ConvLayerConfig::same(cin, cout, k, 1).relu(relu);
            let affine = Affine {
                scale: scale.as_deref(),
                shift: shift.as_deref(),
            };
            layers.push(ConvLayer::new(gpu, &w.data, cfg, affine)?);
        }
        // Check the chain's channel counts line up.
        for pair in layers.windows(2) {
            if pair[0].out_channels() != pair[1].in_channels() {
                return Err(bad(format!(
                    "layer outputs {} channels but the next takes {}",
                    pair[0].out_channels(),
                    pair[1].in_channels()
                )));
            }
        }
        let in_channels = layers[0].in_channels();
        let out_channels = layers[n - 1].out_channels();
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
        Ok(LayerChain {
            layers,
            output,
            in_channels,
            out_channels,
            conditional_details,
            params,
            desc,
            precision: Precision::F32,
        })
    }

    /// Sets the storage precision of [`LayerChain::network`]: with
    /// [`Precision::F16`] every layer keeps an f16 copy of its weights and
    /// the activations between layers are f16 (the first layer reads the
    /// f32 input, the last writes f32; accumulation is f32 throughout).
    /// The caller checks the adapter ([`Precision::on`]).
    pub fn set_precision(&mut self, gpu: &Gpu, precision: Precision) -> Result<()> {
        if precision == Precision::F16 {
            enable_f16(gpu, &mut self.layers)?;
        }
        self.precision = precision;
        Ok(())
    }

    /// The storage precision of [`LayerChain::network`].
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The raw network output f(y) (residual or denoised, per [`Output`]).
    pub fn network(&self, gpu: &Gpu, y: &Tensor) -> Result<Tensor> {
        if self.precision == Precision::F16 {
            return forward_f16(gpu, &self.layers, y);
        }
        let mut x = y.clone();
        for l in &self.layers {
            x = l.forward(gpu, &x)?;
        }
        Ok(x)
    }

    /// A `Result` error unless `y` has the chain's input channels.
    pub fn check_input(&self, y: &Tensor) -> Result<()> {
        if y.shape().c != self.in_channels {
            return Err(ModelError::Input(format!(
                "the model takes {} channel(s), the input has {}",
                self.in_channels,
                y.shape().c
            )));
        }
        Ok(())
    }

    /// Architecture, layers, channels, output and source, for `describe`.
    pub fn describe(&self) -> String {
        self.desc.clone()
    }

    /// Weights, biases and normalisation parameters.
    pub fn parameters(&self) -> usize {
        self.params
    }

    /// How far (in pixels) an output pixel sees: the layers' reaches summed.
    pub fn receptive_radius(&self) -> usize {
        self.layers.iter().map(ConvLayer::reach).sum()
    }

    /// The widest activation per pixel (channels).
    pub fn values_per_pixel(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.out_channels().max(l.in_channels()))
            .max()
            .unwrap_or(1)
    }

    /// Runs the primal pass at `y` (`[1, h, w, c]`) keeping every layer's
    /// output, for [`ChainLinearized::network_jvp`] /
    /// [`ChainLinearized::network_vjp`].
    pub fn linearize(&self, gpu: &Gpu, y: &Tensor) -> Result<ChainLinearized<'_>> {
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
            x = l.forward(gpu, &x)?;
            acts.push(x.clone());
        }
        Ok(ChainLinearized {
            chain: self,
            acts,
            input: s,
        })
    }
}

/// A [`LayerChain`] linearised at one input y: the post-ReLU activations of
/// the primal pass (one per layer), from which batches of tangents go
/// forward (JVP) and batches of cotangents go backward (VJP) without
/// rerunning the primal pass. The chain is piecewise linear (bias-free
/// models: f(y) = J_f(y)·y).
pub struct ChainLinearized<'a> {
    chain: &'a LayerChain,
    /// Output of every layer at y (`[1, h, w, c_l]`), post-ReLU where the layer has one.
    acts: Vec<Tensor>,
    input: Shape,
}

impl ChainLinearized<'_> {
    /// f(y), the raw network output of the primal pass.
    pub fn network_output(&self) -> &Tensor {
        self.acts.last().expect("a chain has layers")
    }

    /// The shape of the linearisation point y.
    pub fn input_shape(&self) -> Shape {
        self.input
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
    /// each layer's JVP, the ReLU derivative fused into its launch.
    pub fn network_jvp(&self, gpu: &Gpu, v: &Tensor) -> Result<Tensor> {
        self.check(v, self.chain.in_channels, "tangent")?;
        let mut t = v.clone();
        for (l, a) in self.chain.layers.iter().zip(&self.acts) {
            t = l.jvp(gpu, &t, a)?;
        }
        Ok(t)
    }

    /// J_fᵀ·u for the raw network f (`[k, h, w, c_out]` → `[k, h, w, c_in]`):
    /// through each layer's adjoint, last to first; the ReLU derivative of
    /// layer l−1 is fused into layer l's adjoint launch ([`VjpAt::in_mask`]),
    /// so each layer takes one launch.
    pub fn network_vjp(&self, gpu: &Gpu, u: &Tensor) -> Result<Tensor> {
        self.check(u, self.chain.out_channels, "cotangent")?;
        let layers = &self.chain.layers;
        let hw = (self.input.h, self.input.w);
        let mut g = u.clone();
        for i in (0..layers.len()).rev() {
            // Layer i's own ReLU derivative was fused into layer i+1's
            // launch, except for the last layer's.
            let at = VjpAt {
                out: (i + 1 == layers.len()).then(|| &self.acts[i]),
                in_hw: hw,
                in_mask: (i > 0 && layers[i - 1].relu).then(|| &self.acts[i - 1]),
            };
            g = layers[i].vjp_at(gpu, &g, at)?;
        }
        Ok(g)
    }
}
