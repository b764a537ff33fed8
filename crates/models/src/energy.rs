//! The energy UNet of dual score matching (Guth, Kadkhodaie, Simoncelli,
//! NeurIPS 2025): a network f(y, t) whose inner product with its input is
//! the energy
//!
//! ```text
//! U(y, t) = ½·⟨y, f(y, t)⟩,   −log p_t(y) = U(y, t) + log Z_t,
//! ```
//!
//! with t the per-pixel noise variance (pixels in [0, 1]). One forward pass
//! gives U; the data score ∇_yU = ½·f + ½·J_fᵀ·y comes from a full reverse
//! pass (VJP) through every layer (convolutions, strided and transposed
//! convolutions, GELU, the per-sample normalisations, the concatenations),
//! and the noise score ∂U/∂t = ½·⟨y, ∂f/∂t⟩ from a forward-mode pass (JVP)
//! whose tangent enters through the noise embedding and the conditioning
//! gains of every normalisation. The denoiser is x̂ = y − t·∇_yU (Tweedie);
//! its Jacobian J = I − t·∇²_yU (t fixed) is a Hessian-vector product per
//! tangent, by forward over reverse ([`EnergyUNet::hessian_vector`]).
//!
//! Architecture (`../shared/README.md`, "energy UNet of dual score
//! matching"): bias-free convs; encoder scale 0 = 3×3 convs C→w→w→w, scales
//! s ≥ 1 = a 2×2 stride-2 conv then 3×3 convs; middle = 2×2 stride-2 conv,
//! 3×3 conv, 2×2 stride-2 transposed conv; decoder scales S−1..1 = concat
//! with the skip, 3×3 convs, transposed conv; decoder scale 0 = concat, 3×3
//! convs, last 3×3 conv to C channels. Every conv but the last is followed by
//! the noise-conditioned normalisation ([`prior_ops::group_norm`]) and exact
//! GELU. Widths, layer counts and scales are read from the tensor shapes;
//! the group size from the checkpoint's `network_kwargs` (default 1).
//!
//! Noise embedding: `[cos(t·f), sin(t·f)]` for 32 frequencies
//! `exp(−linspace(ln 1, ln 100, 32))` → Linear(64, 256) → SiLU →
//! Linear(256, 256) → SiLU; every normalisation has its own Linear(256, C)
//! (here concatenated into one layer, so one launch computes all gains).

use prior_gpu::{Gpu, Shape, Tensor};
use prior_ops::activations::{gelu, gelu_jvp, gelu_vjp_jvp, silu, silu_jvp};
use prior_ops::channels::{concat_channels, concat_channels_vjp};
use prior_ops::elementwise::axpby;
use prior_ops::embedding::{dsm_frequencies, Sinusoid};
use prior_ops::group_norm::{gains, Dual, GroupNorm, NormStats};
use prior_ops::linear::{sample_axpy, Linear};
use prior_ops::noise_estimate;
use prior_ops::reduce::dot_per_sample;

use crate::blob::{TensorF32, WeightBlob};
use crate::denoiser::{Conditioning, Denoiser, ModelError, Noise, Result};
use crate::hparams::Hparams;
use crate::layers::{hw, Affine, ConvLayer, ConvLayerConfig};

/// Metadata keys of a calibrated blob (written by `prior calibrate`).
pub mod keys {
    /// log Z (nats) of the density at t = 0, estimated at `LOG_Z_T`.
    pub const LOG_Z: &str = "prior.log_z";
    /// The noise variance at which log Z was estimated.
    pub const LOG_Z_T: &str = "prior.log_z_t";
    /// Number of noisy calibration images averaged.
    pub const LOG_Z_COUNT: &str = "prior.log_z_count";
}

/// Normalisation epsilon of the released models (not stored in the files).
pub const EPS: f32 = 1e-5;
/// Noise variance at which log Z is estimated (the authors' choice).
pub const LOG_Z_T: f64 = 1e3;

/// One bias-free (transposed) convolution (3×3 stride 1, 2×2 stride-2
/// down-sampling, or 2×2 stride-2 transposed up-sampling) and its
/// normalisation. The convolution is linear, so its JVP is
/// [`ConvLayer::linear`], its VJP [`ConvLayer::adjoint`], and the tangent
/// of its VJP (forward over reverse) the adjoint of the tangent.
struct Layer {
    op: ConvLayer,
    /// `None` only for the network's last conv.
    norm: Option<GroupNorm>,
    cout: usize,
}

/// What the forward pass keeps of each normalised layer for the derivative passes.
struct Rec {
    h: Tensor,
    z: Tensor,
    st: NormStats,
}

/// The tangents (h', z') of a normalised layer in a forward-mode pass.
struct TanRec {
    h: Tensor,
    z: Tensor,
}

/// Intermediate values of one forward pass.
struct Tape {
    recs: Vec<Rec>,
    /// The input size `(h, w)` of every layer, in forward order.
    in_hw: Vec<(usize, usize)>,
    /// Channel counts of the decoder concatenations `[x, skip]`, per scale.
    cat: Vec<(usize, usize)>,
}

/// Per-sample noise-level conditioning: the gains of every normalisation.
struct Cond {
    gain: Tensor,
    e1: Tensor,
    e2: Tensor,
}

/// The results of [`EnergyUNet::evaluate`].
pub struct EnergyEval {
    /// U(y, t) per sample, `[n, 1, 1, 1]`.
    pub energy: Tensor,
    /// f(y, t), `[n, h, w, c]`.
    pub f: Tensor,
    /// ∇_yU, when asked for.
    pub grad: Option<Tensor>,
    /// ∂U/∂t per sample, when asked for.
    pub dudt: Option<Tensor>,
}

/// The energy UNet on the GPU.
pub struct EnergyUNet {
    channels: usize,
    scales: usize,
    base_width: usize,
    group_size: usize,
    params: usize,
    enc: Vec<Vec<Layer>>,
    mid: Vec<Layer>,
    dec: Vec<Vec<Layer>>,
    sinusoid: Sinusoid,
    lin1: Linear,
    lin2: Linear,
    /// All conditioning layers Linear(256, C_l) stacked: 256 → Σ C_l.
    cond: Linear,
    /// All normalisation weights concatenated (Σ C_l).
    norm_w: Tensor,
    /// log Z from the blob's calibration metadata, if present.
    pub log_z: Option<LogZ>,
}

/// A stored log-partition estimate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogZ {
    /// log Z (nats) of the density at t = 0.
    pub log_z: f64,
    /// The noise variance at which it was estimated.
    pub t: f64,
    /// Number of noisy calibration images averaged.
    pub count: usize,
}

fn invalid(blob: &WeightBlob, reason: impl Into<String>) -> ModelError {
    ModelError::Invalid {
        origin: blob.origin.display().to_string(),
        reason: reason.into(),
    }
}

/// Parses the calibration metadata of a blob, if present.
pub fn log_z_of(blob: &WeightBlob) -> Result<Option<LogZ>> {
    let Some(lz) = blob.meta(keys::LOG_Z) else {
        return Ok(None);
    };
    let num = |k: &str, v: Option<&str>| -> Result<f64> {
        v.ok_or_else(|| invalid(blob, format!("{} is set but {k} is missing", keys::LOG_Z)))?
            .trim()
            .parse::<f64>()
            .map_err(|_| invalid(blob, format!("{k} is not a number")))
    };
    let log_z = num(keys::LOG_Z, Some(lz))?;
    let t = num(keys::LOG_Z_T, blob.meta(keys::LOG_Z_T))?;
    let count = num(keys::LOG_Z_COUNT, blob.meta(keys::LOG_Z_COUNT))? as usize;
    if !log_z.is_finite() || !t.is_finite() || t <= 0.0 {
        return Err(invalid(
            blob,
            format!("bad calibration: log Z {log_z} at t {t}"),
        ));
    }
    Ok(Some(LogZ { log_z, t, count }))
}

struct Builder<'a> {
    gpu: &'a Gpu,
    blob: &'a WeightBlob,
    group_size: usize,
    /// (conditioning weight rows, biases, norm weights), concatenated.
    cw: Vec<f32>,
    cb: Vec<f32>,
    nw: Vec<f32>,
    emb_dim: usize,
}

impl Builder<'_> {
    fn t(&self, name: &str) -> Result<&TensorF32> {
        Ok(self.blob.tensor(&format!("network.{name}"))?)
    }

    fn norm(&mut self, prefix: &str, c: usize) -> Result<GroupNorm> {
        let w = self
            .blob
            .tensor_shaped(&format!("network.{prefix}.weight"), &[c])?;
        let lw = self.blob.tensor_shaped(
            &format!("network.{prefix}.conditioning_embedding.weight"),
            &[c, self.emb_dim],
        )?;
        let lb = self.blob.tensor_shaped(
            &format!("network.{prefix}.conditioning_embedding.bias"),
            &[c],
        )?;
        if !c.is_multiple_of(self.group_size) {
            return Err(invalid(
                self.blob,
                format!(
                    "{prefix}: {c} channels are not a multiple of group_size {}",
                    self.group_size
                ),
            ));
        }
        let off = self.nw.len();
        self.nw.extend_from_slice(&w.data);
        self.cw.extend_from_slice(&lw.data);
        self.cb.extend_from_slice(&lb.data);
        Ok(GroupNorm::new(c, self.group_size, EPS, off)?)
    }

    /// The layers of one `nn.Sequential` block: convs at indices 0, 3, 6, ...
    /// each followed by a normalisation at +1 (except the network's last).
    /// `first_down`: the first conv is the 2×2 stride-2 one; `last_up`: the
    /// last is a transposed conv; `last_plain`: the last has no normalisation.
    fn block(
        &mut self,
        prefix: &str,
        first_down: bool,
        last_up: bool,
        last_plain: bool,
    ) -> Result<Vec<Layer>> {
        let mut n = 0;
        while self.blob.has(&format!("network.{prefix}.{}.weight", 3 * n)) {
            n += 1;
        }
        if n == 0 {
            return Err(invalid(self.blob, format!("no layers in network.{prefix}")));
        }
        let mut layers = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("{prefix}.{}", 3 * i);
            let w = self.t(&format!("{name}.weight"))?;
            if w.shape.len() != 4 {
                return Err(invalid(
                    self.blob,
                    format!(
                        "network.{name}.weight has shape {:?}, expected 4-D",
                        w.shape
                    ),
                ));
            }
            let shape = [w.shape[0], w.shape[1], w.shape[2], w.shape[3]];
            let (cfg, expect) = if i == 0 && first_down {
                let cfg = ConvLayerConfig::from_weight_shape(shape, false).stride(2);
                (cfg, "the 2×2 stride-2 conv")
            } else if i == n - 1 && last_up {
                // ConvTranspose2d layout (in, out, kh, kw).
                let cfg = ConvLayerConfig::from_weight_shape(shape, true).stride(2);
                (cfg, "the 2×2 transposed conv")
            } else {
                let cfg = ConvLayerConfig::from_weight_shape(shape, false).pad(1);
                (cfg, "a 3×3 conv")
            };
            let (kh, kw) = (shape[2], shape[3]);
            let want = if cfg.conv.stride == 2 { 2 } else { 3 };
            if (kh, kw) != (want, want) {
                return Err(invalid(
                    self.blob,
                    format!("network.{name}: expected {expect}, found {kh}×{kw}"),
                ));
            }
            let op = ConvLayer::new(self.gpu, &w.data, cfg, Affine::default())?;
            let cout = op.out_channels();
            let norm = if i == n - 1 && last_plain {
                None
            } else {
                Some(self.norm(&format!("{prefix}.{}", 3 * i + 1), cout)?)
            };
            layers.push(Layer { op, norm, cout });
        }
        Ok(layers)
    }
}

impl EnergyUNet {
    /// Builds the model from a blob with `prior.arch = energy_unet` (an
    /// imported `model.pth.tar` or its safetensors conversion).
    pub fn from_blob(gpu: &Gpu, blob: &WeightBlob) -> Result<EnergyUNet> {
        let Hparams::EnergyUnet(hp) = blob.hparams()? else {
            let arch = blob.arch()?;
            return Err(invalid(
                blob,
                format!("architecture '{arch}' is not an energy UNet"),
            ));
        };
        let mut scales = 0;
        while blob.has(&format!("network.encoder.{scales}.0.weight")) {
            scales += 1;
        }
        if scales == 0 {
            return Err(invalid(
                blob,
                "no network.encoder.0.0.weight: not a dual-score-matching energy UNet",
            ));
        }
        let first = blob.tensor("network.encoder.0.0.weight")?;
        if first.shape.len() != 4 {
            return Err(invalid(
                blob,
                "network.encoder.0.0.weight is not a conv weight",
            ));
        }
        let (base_width, channels) = (first.shape[0], first.shape[1]);
        let l1 = blob.tensor("network.noise_var_embedding.time_embed.0.weight")?;
        if l1.shape.len() != 2 || l1.shape[1] % 2 != 0 {
            return Err(invalid(
                blob,
                format!("time_embed.0.weight has shape {:?}", l1.shape),
            ));
        }
        let (emb_dim, fourier) = (l1.shape[0], l1.shape[1]);
        let b1 = blob.tensor_shaped("network.noise_var_embedding.time_embed.0.bias", &[emb_dim])?;
        let l2 = blob.tensor_shaped(
            "network.noise_var_embedding.time_embed.2.weight",
            &[emb_dim, emb_dim],
        )?;
        let b2 = blob.tensor_shaped("network.noise_var_embedding.time_embed.2.bias", &[emb_dim])?;
        let group_size = hp.group_size;

        let mut bld = Builder {
            gpu,
            blob,
            group_size,
            cw: Vec::new(),
            cb: Vec::new(),
            nw: Vec::new(),
            emb_dim,
        };
        let mut enc = Vec::new();
        for s in 0..scales {
            enc.push(bld.block(&format!("encoder.{s}"), s > 0, false, false)?);
        }
        let mid = bld.block("middle_block", true, true, false)?;
        let mut dec: Vec<Vec<Layer>> = Vec::new();
        for s in 0..scales {
            dec.push(bld.block(&format!("decoder.{s}"), false, s > 0, s == 0)?);
        }
        // Shape chain check: every block's input channels.
        let mut c = channels;
        for (s, block) in enc.iter().enumerate() {
            for l in block {
                if l.op.in_channels() != c {
                    return Err(invalid(
                        blob,
                        format!(
                            "encoder.{s}: a layer takes {} channels, gets {c}",
                            l.op.in_channels()
                        ),
                    ));
                }
                c = l.cout;
            }
        }
        let skips: Vec<usize> = enc.iter().map(|b| b.last().unwrap().cout).collect();
        for l in &mid {
            if l.op.in_channels() != c {
                return Err(invalid(
                    blob,
                    format!(
                        "middle_block: a layer takes {} channels, gets {c}",
                        l.op.in_channels()
                    ),
                ));
            }
            c = l.cout;
        }
        for s in (0..scales).rev() {
            c += skips[s];
            for l in &dec[s] {
                if l.op.in_channels() != c {
                    return Err(invalid(
                        blob,
                        format!(
                            "decoder.{s}: a layer takes {} channels, gets {c}",
                            l.op.in_channels()
                        ),
                    ));
                }
                c = l.cout;
            }
        }
        if c != channels {
            return Err(invalid(
                blob,
                format!("the network returns {c} channels for {channels} input channels"),
            ));
        }
        let total = bld.nw.len();
        let cond = Linear::new(gpu, &bld.cw, Some(&bld.cb), total, emb_dim)?;
        let norm_w = gpu.upload(Shape::vector(total), &bld.nw);
        Ok(EnergyUNet {
            channels,
            scales,
            base_width,
            group_size,
            params: blob.param_count(),
            enc,
            mid,
            dec,
            sinusoid: Sinusoid::new(gpu, &dsm_frequencies(fourier / 2)),
            lin1: Linear::new(gpu, &l1.data, Some(&b1.data), emb_dim, fourier)?,
            lin2: Linear::new(gpu, &l2.data, Some(&b2.data), emb_dim, emb_dim)?,
            cond,
            norm_w,
            log_z: log_z_of(blob)?,
        })
    }

    /// Height and width must be multiples of this (one halving per scale plus the middle block).
    pub fn multiple(&self) -> usize {
        1 << self.scales
    }

    fn check_input(&self, y: &Tensor, t: &Tensor) -> Result<()> {
        let s = y.shape();
        if s.c != self.channels {
            return Err(ModelError::Input(format!(
                "the energy model takes {} channel(s), the input has {}",
                self.channels, s.c
            )));
        }
        let m = self.multiple();
        if !s.h.is_multiple_of(m) || !s.w.is_multiple_of(m) || s.h == 0 || s.w == 0 {
            return Err(ModelError::Input(format!(
                "the energy UNet needs height and width divisible by {m}; the input is {}×{}",
                s.h, s.w
            )));
        }
        if t.numel() != s.n {
            return Err(ModelError::Input(format!(
                "{} noise variances for {} images",
                t.numel(),
                s.n
            )));
        }
        Ok(())
    }

    fn conditioning(&self, gpu: &Gpu, tt: &Tensor) -> Result<Cond> {
        let e0 = self.sinusoid.forward(gpu, tt)?;
        let e1 = self.lin1.forward(gpu, &e0)?;
        let e2 = self.lin2.forward(gpu, &silu(gpu, &e1))?;
        let emb = silu(gpu, &e2);
        let lin = self.cond.forward(gpu, &emb)?;
        let gain = gains(gpu, &self.norm_w, &lin, false)?;
        Ok(Cond { gain, e1, e2 })
    }

    /// The tangent of the gains for a unit tangent in t.
    fn conditioning_tangent(&self, gpu: &Gpu, tt: &Tensor, c: &Cond) -> Result<Tensor> {
        let de0 = self.sinusoid.derivative(gpu, tt)?;
        let de1 = self.lin1.jvp(gpu, &de0)?;
        let de2 = self.lin2.jvp(gpu, &silu_jvp(gpu, &c.e1, &de1)?)?;
        let demb = silu_jvp(gpu, &c.e2, &de2)?;
        let dlin = self.cond.jvp(gpu, &demb)?;
        Ok(gains(gpu, &self.norm_w, &dlin, true)?)
    }

    fn layer_fwd(
        &self,
        gpu: &Gpu,
        l: &Layer,
        x: &Tensor,
        gain: &Tensor,
        tape: Option<&mut Tape>,
    ) -> Result<Tensor> {
        let h = l.op.forward(gpu, x)?;
        let mut tape = tape;
        if let Some(t) = tape.as_deref_mut() {
            t.in_hw.push(hw(x));
        }
        let Some(norm) = &l.norm else { return Ok(h) };
        let (z, st) = norm.forward(gpu, &h, gain)?;
        let a = gelu(gpu, &z);
        if let Some(tape) = tape {
            tape.recs.push(Rec { h, z, st });
        }
        Ok(a)
    }

    /// f(y, t), recording the intermediate values when `keep`.
    fn forward(
        &self,
        gpu: &Gpu,
        y: &Tensor,
        gain: &Tensor,
        keep: bool,
    ) -> Result<(Tensor, Option<Tape>)> {
        let mut tape = keep.then(|| Tape {
            recs: Vec::new(),
            in_hw: Vec::new(),
            cat: Vec::new(),
        });
        let mut x = y.clone();
        let mut skips = Vec::with_capacity(self.scales);
        for block in &self.enc {
            for l in block {
                x = self.layer_fwd(gpu, l, &x, gain, tape.as_mut())?;
            }
            skips.push(x.clone());
        }
        for l in &self.mid {
            x = self.layer_fwd(gpu, l, &x, gain, tape.as_mut())?;
        }
        for s in (0..self.scales).rev() {
            if let Some(t) = tape.as_mut() {
                t.cat.push((x.shape().c, skips[s].shape().c));
            }
            x = concat_channels(gpu, &[&x, &skips[s]])?;
            for l in &self.dec[s] {
                x = self.layer_fwd(gpu, l, &x, gain, tape.as_mut())?;
            }
        }
        Ok((x, tape))
    }

    /// J_fᵀ·u (with respect to y) from the recorded forward pass and, with
    /// `tan` = (the tangents of a forward pass along some y', the tangent u'
    /// of `u`), also the tangent of J_fᵀ·u when y moves along y' and u along
    /// u' (forward over reverse: every layer's VJP differentiated once more).
    fn vjp_y(
        &self,
        gpu: &Gpu,
        tape: &Tape,
        gain: &Tensor,
        u: &Tensor,
        tan: Option<(&[TanRec], &Tensor)>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let mut recs = tape.recs.iter().rev();
        let mut sizes = tape.in_hw.iter().rev();
        let mut trecs = tan.map(|(t, _)| t.iter().rev());
        let mut back =
            |l: &Layer, u: Tensor, ut: Option<Tensor>| -> Result<(Tensor, Option<Tensor>)> {
                let (hb, hbt) = match &l.norm {
                    Some(norm) => {
                        let r = recs.next().expect("one record per normalised layer");
                        let zb = gelu_jvp(gpu, &r.z, &u)?;
                        let hbt = match (trecs.as_mut(), ut) {
                            (Some(tr), Some(ut)) => {
                                let t = tr.next().expect("one tangent record per normalised layer");
                                let zbt = gelu_vjp_jvp(gpu, &r.z, &t.z, &u, &ut)?;
                                let zb = Dual {
                                    value: &zb,
                                    tangent: &zbt,
                                };
                                let h = Dual {
                                    value: &r.h,
                                    tangent: &t.h,
                                };
                                Some(norm.vjp_jvp(gpu, zb, h, &r.st, gain)?)
                            }
                            _ => None,
                        };
                        (norm.vjp(gpu, &zb, &r.h, &r.st, gain)?, hbt)
                    }
                    None => (u, ut),
                };
                let in_hw = *sizes.next().expect("one input size per layer");
                let adj = |x: &Tensor| -> Result<Tensor> { Ok(l.op.adjoint(gpu, x, in_hw)?) };
                Ok((adj(&hb)?, hbt.as_ref().map(adj).transpose()?))
            };
        let mut u = (u.clone(), tan.map(|(_, ut)| ut.clone()));
        let mut skip_bar: Vec<Option<(Tensor, Option<Tensor>)>> = vec![None; self.scales];
        for (i, s) in (0..self.scales)
            .rev()
            .enumerate()
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            for l in self.dec[s].iter().rev() {
                u = back(l, u.0, u.1)?;
            }
            let (cx, cs) = tape.cat[i];
            let split = |t: &Tensor| -> Result<(Tensor, Tensor)> {
                let mut parts = concat_channels_vjp(gpu, t, &[cx, cs])?;
                let skip = parts.pop().expect("two parts");
                Ok((parts.pop().expect("two parts"), skip))
            };
            let (x, sk) = split(&u.0)?;
            let (xt, skt) = match &u.1 {
                Some(t) => {
                    let (a, b) = split(t)?;
                    (Some(a), Some(b))
                }
                None => (None, None),
            };
            skip_bar[s] = Some((sk, skt));
            u = (x, xt);
        }
        for l in self.mid.iter().rev() {
            u = back(l, u.0, u.1)?;
        }
        for s in (0..self.scales).rev() {
            let (sb, sbt) = skip_bar[s]
                .take()
                .expect("every scale has a skip cotangent");
            let x = axpby(gpu, 1.0, &u.0, 1.0, &sb)?;
            let xt = match (u.1, sbt) {
                (Some(a), Some(b)) => Some(axpby(gpu, 1.0, &a, 1.0, &b)?),
                _ => None,
            };
            u = (x, xt);
            for l in self.enc[s].iter().rev() {
                u = back(l, u.0, u.1)?;
            }
        }
        Ok(u)
    }

    /// Forward mode from the recorded forward pass: the tangent of f for an
    /// input tangent `yt` and/or a tangent `dgain` of the gains (∂f/∂t enters
    /// there). With `record`, also returns every normalised layer's tangents
    /// (h', z') for [`EnergyUNet::vjp_y`]'s second-order pass.
    fn jvp_f(
        &self,
        gpu: &Gpu,
        tape: &Tape,
        gain: &Tensor,
        yt: Option<&Tensor>,
        dgain: Option<&Tensor>,
        record: bool,
    ) -> Result<(Tensor, Vec<TanRec>)> {
        let mut recs = tape.recs.iter();
        let mut out = Vec::new();
        let mut fwd = |l: &Layer, x: Option<Tensor>| -> Result<Tensor> {
            let h = x.map(|x| l.op.linear(gpu, &x)).transpose()?;
            match &l.norm {
                Some(norm) => {
                    let r = recs.next().expect("one record per normalised layer");
                    let zt = norm.jvp(gpu, h.as_ref(), &r.h, &r.st, gain, dgain)?;
                    let at = gelu_jvp(gpu, &r.z, &zt)?;
                    if record {
                        let ht = h.expect("recorded passes have an input tangent");
                        out.push(TanRec { h: ht, z: zt });
                    }
                    Ok(at)
                }
                None => Ok(h.expect("the last layer's input tangent is never zero")),
            }
        };
        let mut x: Option<Tensor> = yt.cloned();
        let mut skips = Vec::with_capacity(self.scales);
        for block in &self.enc {
            for l in block {
                x = Some(fwd(l, x)?);
            }
            skips.push(x.clone().expect("set by the block"));
        }
        for l in &self.mid {
            x = Some(fwd(l, x)?);
        }
        for s in (0..self.scales).rev() {
            let xt = x.take().expect("set by the block");
            x = Some(concat_channels(gpu, &[&xt, &skips[s]])?);
            for l in &self.dec[s] {
                x = Some(fwd(l, x)?);
            }
        }
        Ok((x.expect("the network has layers"), out))
    }

    /// H·v with H = ∇²_yU(y, t), for a batch `y` and tangents `v` of the same
    /// shape (one noise variance per sample, held fixed): the tangent of
    /// ∇_yU = ½·f + ½·J_fᵀ·y along v, i.e. ½·J_f·v + ½·(J_fᵀ·v + (∂_v J_fᵀ)·y),
    /// from one forward pass, one forward-mode pass and one reverse pass
    /// carrying its own tangent. `t` is `[n, 1, 1, 1]`. Nothing is read back.
    pub fn hessian_vector(&self, gpu: &Gpu, y: &Tensor, t: &Tensor, v: &Tensor) -> Result<Tensor> {
        self.check_input(y, t)?;
        if v.shape() != y.shape() {
            return Err(ModelError::Input(format!(
                "tangent {} does not match the input {}",
                v.shape(),
                y.shape()
            )));
        }
        let s = y.shape();
        // the largest single buffer (primal and tangent tensors have the same shapes)
        gpu.check_fits(
            "energy UNet activations",
            Shape::new(s.n, s.h, s.w, self.values_per_pixel()),
        )?;
        let cond = self.conditioning(gpu, t)?;
        let (_, tape) = self.forward(gpu, y, &cond.gain, true)?;
        let tape = tape.expect("kept");
        let (jv, trecs) = self.jvp_f(gpu, &tape, &cond.gain, Some(v), None, true)?;
        let (_, gt) = self.vjp_y(gpu, &tape, &cond.gain, y, Some((&trecs, v)))?;
        Ok(axpby(gpu, 0.5, &jv, 0.5, &gt.expect("asked for"))?)
    }

    /// J·v for the denoiser x̂ = y − t·∇_yU at one image `y` (`[1, h, w, c]`)
    /// with noise variance `t` (`[1, 1, 1, 1]`) and a batch of tangents `v`
    /// (`[k, h, w, c]`): v − t·H·v. J is symmetric (H is a Hessian), so this
    /// is also Jᵀ·v.
    pub fn denoiser_jvp(&self, gpu: &Gpu, y: &Tensor, t: &Tensor, v: &Tensor) -> Result<Tensor> {
        crate::layers::check_tangent(y, v)?;
        let k = v.shape().n;
        let (yk, tk) = if k == 1 {
            (y.clone(), t.clone())
        } else {
            (gpu.repeat_batch(y, k), gpu.repeat_batch(t, k))
        };
        let hv = self.hessian_vector(gpu, &yk, &tk, v)?;
        let neg = axpby(gpu, -1.0, &tk, 0.0, &tk)?;
        Ok(sample_axpy(gpu, v, &neg, &hv)?)
    }

    /// The per-sample noise variance `[n, 1, 1, 1]` of a call at `y`: the
    /// one given (broadcast from a single value if need be), or the blind
    /// estimate of each sample, computed on the GPU
    /// ([`prior_ops::noise_estimate`]).
    pub fn noise_variance(&self, gpu: &Gpu, y: &Tensor, noise: Noise<'_>) -> Result<Tensor> {
        let n = y.shape().n;
        Ok(match noise.variance(n)? {
            Some(t) if t.numel() == n => t.clone(),
            Some(t) => gpu.repeat_batch(t, n),
            None => noise_estimate::noise_variance(gpu, y)?,
        })
    }

    /// U(y, t) for a batch `y` (`[n, h, w, c]`) with one noise variance per
    /// image (`t`, `[n, 1, 1, 1]`), and optionally ∇_yU (`grad`) and ∂U/∂t
    /// (`dudt`). Nothing is read back.
    pub fn evaluate(
        &self,
        gpu: &Gpu,
        y: &Tensor,
        t: &Tensor,
        grad: bool,
        dudt: bool,
    ) -> Result<EnergyEval> {
        self.check_input(y, t)?;
        let s = y.shape();
        gpu.check_fits(
            "energy UNet activations",
            Shape::new(s.n, s.h, s.w, self.values_per_pixel()),
        )?;
        let cond = self.conditioning(gpu, t)?;
        let (f, tape) = self.forward(gpu, y, &cond.gain, grad || dudt)?;
        let dot = dot_per_sample(gpu, y, &f)?;
        let energy = axpby(gpu, 0.5, &dot, 0.0, &dot)?;
        let grad_t = match (&tape, grad) {
            (Some(tape), true) => {
                let (jty, _) = self.vjp_y(gpu, tape, &cond.gain, y, None)?;
                Some(axpby(gpu, 0.5, &f, 0.5, &jty)?)
            }
            _ => None,
        };
        let dudt_t = match (&tape, dudt) {
            (Some(tape), true) => {
                let dgain = self.conditioning_tangent(gpu, t, &cond)?;
                let (df, _) = self.jvp_f(gpu, tape, &cond.gain, None, Some(&dgain), false)?;
                let d = dot_per_sample(gpu, y, &df)?;
                Some(axpby(gpu, 0.5, &d, 0.0, &d)?)
            }
            _ => None,
        };
        Ok(EnergyEval {
            energy,
            f,
            grad: grad_t,
            dudt: dudt_t,
        })
    }

    /// U(y, t) per image, read back (f64).
    pub async fn energies(&self, gpu: &Gpu, y: &Tensor, t: &Tensor) -> Result<Vec<f64>> {
        let e = self.evaluate(gpu, y, t, false, false)?;
        Ok(gpu
            .read(&e.energy)
            .await?
            .into_iter()
            .map(f64::from)
            .collect())
    }

    /// x̂ = y − t·∇_yU for a batch with one noise variance per image (`t`,
    /// `[n, 1, 1, 1]`).
    pub fn denoise_with(&self, gpu: &Gpu, y: &Tensor, t: &Tensor) -> Result<Tensor> {
        let e = self.evaluate(gpu, y, t, true, false)?;
        let g = e.grad.expect("asked for");
        let neg = axpby(gpu, -1.0, t, 0.0, t)?;
        Ok(sample_axpy(gpu, y, &neg, &g)?)
    }

    /// Number of encoder (and decoder) scales, the middle block not counted.
    pub fn scales(&self) -> usize {
        self.scales
    }

    /// Channels of the first encoder scale.
    pub fn base_width(&self) -> usize {
        self.base_width
    }

    /// Channels per normalisation group.
    pub fn group_size(&self) -> usize {
        self.group_size
    }
}

impl Denoiser for EnergyUNet {
    fn describe(&self) -> String {
        format!(
            "energy UNet (dual score matching), {} scales, base width {}, group size {}{}",
            self.scales, self.base_width, self.group_size, ", conditioned on the noise variance t"
        )
    }
    fn channels(&self) -> usize {
        self.channels
    }
    /// The normalisations use whole-image statistics: every output depends
    /// on every input, so the model never tiles.
    fn receptive_radius(&self) -> usize {
        1 << 20
    }
    fn size_multiple(&self) -> usize {
        self.multiple()
    }
    /// The widest intermediate tensor per input pixel: the largest of
    /// channels/4^s over the layers at scale s (each scale halves H and W)
    /// and the decoder concatenations.
    fn values_per_pixel(&self) -> usize {
        let mut v = self.channels;
        for (s, (e, d)) in self.enc.iter().zip(self.dec.iter()).enumerate() {
            let area = 1usize << (2 * s);
            let skip = e.last().map_or(0, |l| l.cout);
            let widest = e
                .iter()
                .chain(d.iter())
                .map(|l| l.cout)
                .max()
                .unwrap_or(0)
                .max(2 * skip);
            v = v.max(widest.div_ceil(area));
        }
        let area = 1usize << (2 * self.scales);
        v.max(
            self.mid
                .iter()
                .map(|l| l.cout)
                .max()
                .unwrap_or(0)
                .div_ceil(area),
        )
    }
    fn parameters(&self) -> usize {
        self.params
    }
    fn conditioning(&self) -> Conditioning {
        Conditioning::NoiseVariance
    }
    /// x̂ = y − t·∇_yU, with t given or, called blind, estimated per image
    /// on the GPU ([`EnergyUNet::noise_variance`]).
    fn denoise(&self, gpu: &Gpu, y: &Tensor, noise: Noise<'_>) -> Result<Tensor> {
        let t = self.noise_variance(gpu, y, noise)?;
        self.denoise_with(gpu, y, &t)
    }
    /// J·v with J = ∂x̂/∂y = I − t·∇²_yU, t held fixed at the value
    /// [`Denoiser::denoise`] uses (given, or estimated from `y`; the
    /// estimator's own dependence on `y` is not differentiated).
    fn jvp(&self, gpu: &Gpu, y: &Tensor, v: &Tensor, noise: Noise<'_>) -> Result<Tensor> {
        crate::layers::check_tangent(y, v)?;
        let t = self.noise_variance(gpu, y, noise)?;
        self.denoiser_jvp(gpu, y, &t, v)
    }
    /// Jᵀ·u = J·u: the denoiser's Jacobian I − t·∇²_yU is symmetric.
    fn vjp(&self, gpu: &Gpu, y: &Tensor, u: &Tensor, noise: Noise<'_>) -> Result<Tensor> {
        self.jvp(gpu, y, u, noise)
    }
}

/// A log-partition estimate with its Monte-Carlo standard error.
#[derive(Clone, Copy, Debug)]
pub struct Calibration {
    /// The estimate of log Z (nats).
    pub log_z: f64,
    /// Its Monte-Carlo standard error (nats).
    pub stderr: f64,
    /// The noise variance of the estimate.
    pub t: f64,
    /// Number of images averaged.
    pub count: usize,
}

impl EnergyUNet {
    /// Estimates log Z = (d/2)·ln(2πe·t) − E[U(x + √t·z, t)] over `clean`
    /// images (channels-last `[n, h, w, c]` values of shape `s`), at noise
    /// variance `t` (the authors use 10³, where p_t is nearly Gaussian and its
    /// entropy is (d/2)·ln(2πe·t)). Noise comes from prior's counter-based
    /// generator (`seed`, stream 0, counter = image index·d + element), so the
    /// estimate does not depend on `batch`. Reads back one vector per batch.
    pub async fn calibrate(
        &self,
        gpu: &Gpu,
        clean: &[f32],
        s: Shape,
        t: f64,
        seed: u64,
        batch: usize,
    ) -> Result<Calibration> {
        let d = s.h * s.w * s.c;
        if s.n == 0 || clean.len() != s.numel() {
            return Err(ModelError::Input(format!(
                "{} values for {} calibration images of {}×{}×{}",
                clean.len(),
                s.n,
                s.h,
                s.w,
                s.c
            )));
        }
        if !(t > 0.0 && t.is_finite()) {
            return Err(ModelError::Input(format!(
                "calibration noise variance {t} must be positive"
            )));
        }
        let batch = batch.max(1);
        let mut u = Vec::with_capacity(s.n);
        for start in (0..s.n).step_by(batch) {
            let nb = batch.min(s.n - start);
            let shape = Shape::new(nb, s.h, s.w, s.c);
            let x = gpu.upload(shape, &clean[start * d..(start + nb) * d]);
            let offset = u32::try_from(start * d).map_err(|_| {
                ModelError::Input("too many calibration values for the noise counter (2³²)".into())
            })?;
            let y = prior_ops::rng::axpy_normal(gpu, &x, shape, t.sqrt() as f32, seed, 0, offset)?;
            let tt = gpu.upload(Shape::new(nb, 1, 1, 1), &vec![t as f32; nb]);
            u.extend(self.energies(gpu, &y, &tt).await?);
        }
        let n = u.len() as f64;
        let mean = u.iter().sum::<f64>() / n;
        let var = u.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        let log_z =
            d as f64 / 2.0 * (2.0 * std::f64::consts::PI * std::f64::consts::E * t).ln() - mean;
        Ok(Calibration {
            log_z,
            stderr: (var / n).sqrt(),
            t,
            count: s.n,
        })
    }
}

/// −log p(x) of one image in the three units `prior logp` prints.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Likelihood {
    /// U(x, 0), the unnormalised energy (nats).
    pub energy: f64,
    /// −log p(x) = U(x, 0) + log Z, nats, for the density on [0, 1]^d.
    pub nats: f64,
    /// 8 + (−log p)/(d·ln 2): bits per dimension of the 8-bit image
    /// (the density times the bin volume 256^−d).
    pub bits_per_dim: f64,
    /// 10·log10(2)·bits/dim = −(10/d)·log10 P(8-bit image): the probability
    /// of the quantised image in decibels per dimension.
    pub db_per_dim: f64,
}

impl Likelihood {
    /// From U(x, 0), log Z and the dimension d = C·H·W.
    pub fn new(energy: f64, log_z: f64, d: usize) -> Likelihood {
        let nats = energy + log_z;
        let bits_per_dim = 8.0 + nats / (d as f64 * std::f64::consts::LN_2);
        Likelihood {
            energy,
            nats,
            bits_per_dim,
            db_per_dim: 10.0 * std::f64::consts::LOG10_2 * bits_per_dim,
        }
    }
}
