//! The multi-scale conditional denoiser of Kadkhodaie, Guth, Mallat and
//! Simoncelli (ICLR 2023, `local_probability_models`): a blind BF-CNN on the
//! coarsest Haar low-pass and one conditional `BF_CNN_RF` per level.
//!
//! Denoising `y` (`[n, h, w, C]`, h and w multiples of 2^J):
//! 1. decompose J Haar levels (`prior_ops::haar`, ½-scaled orthonormal,
//!    coefficients `[L, H, V, D]`): `coefs_j = A(low_j)`, `low_0 = y`,
//!    `low_{j+1}` = the L band of `coefs_j`;
//! 2. denoise the coarsest low-pass with the low model:
//!    `low_J ← low_J − f_low(low_J)`;
//! 3. for j = J−1 … 0: `details_j ← details_j − cond_j(concat(denoised low_{j+1}, noisy details_j))`,
//!    then `denoised low_j = S(concat(denoised low_{j+1}, denoised details_j))`.
//!
//! **Noise levels.** The transform is ½ × orthonormal per level, so white
//! noise of standard deviation σ in the image becomes σ/2^(j+1) in the level-j
//! details and σ/2^J in the coarsest low-pass. The networks are blind (they
//! estimate the noise level themselves), so nothing is passed to them; a
//! caller that reasons about per-level noise (e.g. the samplers in
//! `prior_algos::multiscale`) must use these scalings.
//!
//! **Loading.** [`MultiScale::from_dir`] takes the authors' folder
//! (`low_40x40.pt` + `rf*_scale_{0..J-1}.pt`, or the same names as
//! `.safetensors` blobs); [`MultiScale::to_blob`] combines the parts into one
//! weight blob (`prior.arch = "multiscale"`, tensors prefixed `low.` and
//! `scale{j}.`, `prior.hparams = {"levels": J, "channels": C, "parts": {"low": {...},
//! "scale0": {...}, ...}}` where each part records its own `arch`, `variant`,
//! `hparams` and `source`), which [`MultiScale::from_blob`] reads back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prior_gpu::{Gpu, Tensor};
use prior_ops::channels::{replace_channels, slice_channels, slice_channels_vjp};
use prior_ops::elementwise::sub;
use prior_ops::haar::{
    check_pyramid_shape, haar_analysis, haar_analysis_vjp, haar_synthesis, haar_synthesis_vjp,
};

use crate::arch::Arch;
use crate::blob::{keys, WeightBlob};
use crate::denoiser::{Denoiser, ModelError, Noise, Result};
use crate::hparams::{Hparams, MultiscaleHparams, MultiscalePart, Output};
use crate::layers::{ChainLinearized, LayerChain};

/// The multi-scale conditional model.
pub struct MultiScale {
    /// Blind denoiser of the coarsest low-pass (`low_40x40`).
    pub low: LayerChain,
    /// `scales[j]`: the conditional residual of level j's details given the
    /// (denoised) coarser low-pass, input `[L, H, V, D]` (4C channels), output 3C.
    pub scales: Vec<LayerChain>,
    channels: usize,
    blob: WeightBlob,
    desc: String,
}

/// Everything [`MultiScale::denoise_traced`] computes (the goldens' intermediates).
pub struct MultiScaleTrace {
    /// x̂(y), `[n, h, w, C]`.
    pub output: Tensor,
    /// The low model's residual on the noisy coarsest low-pass, `[n, h/2^J, w/2^J, C]`.
    pub residual_low: Tensor,
    /// `residual_scales[j]`: cond_j's residual, `[n, h/2^(j+1), w/2^(j+1), 3C]`.
    pub residual_scales: Vec<Tensor>,
    /// Per level j, the conditional network's input `[denoised low_{j+1}, noisy details_j]`.
    pub cond_inputs: Vec<Tensor>,
    /// The noisy coarsest low-pass.
    pub noisy_low: Tensor,
}

fn invalid(origin: &str, reason: String) -> ModelError {
    ModelError::Invalid {
        origin: origin.to_string(),
        reason,
    }
}

/// Part name of level j in a combined blob.
fn scale_name(j: usize) -> String {
    format!("scale{j}")
}

impl MultiScale {
    /// Builds the model from the blob of the low model and one blob per level
    /// (`scales[j]` = level j, finest first).
    pub fn from_parts(
        gpu: &Gpu,
        low: WeightBlob,
        scales: Vec<WeightBlob>,
        origin: &str,
    ) -> Result<MultiScale> {
        if scales.is_empty() {
            return Err(invalid(
                origin,
                "a multi-scale model needs at least one conditional level (rf*_scale_0)".into(),
            ));
        }
        let low_net = LayerChain::from_blob(gpu, &low)?;
        let c = low_net.in_channels;
        if low_net.conditional_details
            || low_net.out_channels != c
            || low_net.output != Output::Residual
        {
            return Err(invalid(
                origin,
                format!("{}: the low-pass model must be a blind residual denoiser with as many channels out as in", low.origin.display()),
            ));
        }
        let mut nets = Vec::with_capacity(scales.len());
        for (j, b) in scales.iter().enumerate() {
            let net = LayerChain::from_blob(gpu, b)?;
            if !net.conditional_details
                || net.in_channels != 4 * c
                || net.out_channels != 3 * c
                || net.output != Output::Residual
            {
                return Err(invalid(
                    origin,
                    format!(
                        "{} (level {j}) is not a conditional detail model for {c}-channel images: \
                         it takes {} channels and returns {} (need {} → {} with conditional_details)",
                        b.origin.display(),
                        net.in_channels,
                        net.out_channels,
                        4 * c,
                        3 * c
                    ),
                ));
            }
            nets.push(net);
        }
        let blob = combine(&low, &scales, c, origin)?;
        let desc = format!(
            "multiscale conditional model, J = {} Haar levels, {c} channel(s); low: {}; level 0: {}",
            nets.len(),
            low_net.describe(),
            nets[0].describe()
        );
        Ok(MultiScale {
            low: low_net,
            scales: nets,
            channels: c,
            blob,
            desc,
        })
    }

    /// Loads the authors' folder: one `low*.pt` (or `.safetensors`) and
    /// `*scale_{j}.pt` for j = 0..J−1 (J = the number of such files).
    pub fn from_dir(gpu: &Gpu, dir: &Path) -> Result<MultiScale> {
        let origin = dir.display().to_string();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| invalid(&origin, format!("cannot list the folder: {e}")))?;
        let mut low: Vec<PathBuf> = Vec::new();
        let mut scales: Vec<(usize, PathBuf)> = Vec::new();
        for e in entries {
            let path = e
                .map_err(|e| invalid(&origin, format!("cannot list the folder: {e}")))?
                .path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            let Some(stem) = name
                .strip_suffix(".pt")
                .or_else(|| name.strip_suffix(".safetensors"))
            else {
                continue;
            };
            if stem.starts_with("low") {
                low.push(path);
            } else if let Some(j) = stem
                .rsplit_once("scale_")
                .and_then(|(_, j)| j.parse::<usize>().ok())
            {
                scales.push((j, path));
            }
        }
        let low = match low.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(invalid(
                    &origin,
                    "no low-pass model (low*.pt or low*.safetensors) in the folder".into(),
                ))
            }
            many => {
                return Err(invalid(
                    &origin,
                    format!("several low-pass models in the folder: {many:?}; keep one"),
                ))
            }
        };
        scales.sort();
        for (i, (j, p)) in scales.iter().enumerate() {
            if *j != i {
                return Err(invalid(
                    &origin,
                    format!("conditional models must be numbered scale_0 … scale_{{J-1}} without gaps or duplicates; found {} where scale_{i} was expected", p.display()),
                ));
            }
        }
        if scales.is_empty() {
            return Err(invalid(
                &origin,
                "no conditional models (rf*_scale_0.pt, ...) in the folder".into(),
            ));
        }
        let low = WeightBlob::load(&low)?;
        let scales = scales
            .iter()
            .map(|(_, p)| WeightBlob::load(p))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        MultiScale::from_parts(gpu, low, scales, &origin)
    }

    /// Loads a multi-scale model from a folder of parts ([`MultiScale::from_dir`])
    /// or a combined weight blob ([`MultiScale::from_blob`]); any other model
    /// is refused with an error naming its architecture.
    pub fn load(gpu: &Gpu, path: &Path) -> Result<MultiScale> {
        if path.is_dir() {
            return MultiScale::from_dir(gpu, path);
        }
        let blob = WeightBlob::load(path)?;
        match blob.arch()? {
            Arch::Multiscale => MultiScale::from_blob(gpu, &blob),
            other => Err(invalid(
                &path.display().to_string(),
                format!("this is a '{other}' model, not a multi-scale one (give the folder of low*.pt + rf*_scale_j.pt or a combined multiscale blob)"),
            )),
        }
    }

    /// Reads a combined blob written by [`MultiScale::to_blob`].
    pub fn from_blob(gpu: &Gpu, blob: &WeightBlob) -> Result<MultiScale> {
        let origin = blob.origin.display().to_string();
        let Hparams::Multiscale(hp) = blob.hparams()? else {
            return Err(invalid(&origin, format!("not a {} blob", Arch::Multiscale)));
        };
        let levels = hp.levels;
        let low = split(blob, &hp, "low")?;
        let scales = (0..levels)
            .map(|j| split(blob, &hp, &scale_name(j)))
            .collect::<Result<Vec<_>>>()?;
        let mut m = MultiScale::from_parts(gpu, low, scales, &origin)?;
        // Keep the blob's own provenance.
        m.blob.meta = blob.meta.clone();
        Ok(m)
    }

    /// The combined weight blob (`prior.arch = "multiscale"`), ready for
    /// [`WeightBlob::save_atomic`].
    pub fn to_blob(&self) -> WeightBlob {
        self.blob.clone()
    }

    /// J, the number of Haar levels.
    pub fn levels(&self) -> usize {
        self.scales.len()
    }

    fn check(&self, y: &Tensor) -> Result<()> {
        let s = y.shape();
        if s.c != self.channels {
            return Err(ModelError::Input(format!(
                "the multi-scale model takes {} channel(s), the input has {}",
                self.channels, s.c
            )));
        }
        check_pyramid_shape(Arch::Multiscale.name(), s, self.levels())
            .map_err(|e| ModelError::Input(e.to_string()))
    }

    /// The low model's residual f_low(low) on a coarsest low-pass `[n, h, w, C]`.
    pub fn low_residual(&self, gpu: &Gpu, low: &Tensor) -> Result<Tensor> {
        self.low.network(gpu, low)
    }

    /// Level j's conditional residual of the details given the low-pass:
    /// `cond_j(concat(low, details))`, `low` `[n, h, w, C]`, `details` `[n, h, w, 3C]`;
    /// returns `[n, h, w, 3C]`.
    pub fn conditional_residual(
        &self,
        gpu: &Gpu,
        j: usize,
        low: &Tensor,
        details: &Tensor,
    ) -> Result<Tensor> {
        let net = self.scales.get(j).ok_or_else(|| {
            ModelError::Input(format!(
                "level {j} does not exist: the model has {} levels",
                self.levels()
            ))
        })?;
        let inp = prior_ops::channels::concat_channels(gpu, &[low, details])?;
        net.network(gpu, &inp)
    }

    /// Denoises `y` and keeps the intermediate residuals and network inputs.
    pub fn denoise_traced(&self, gpu: &Gpu, y: &Tensor) -> Result<MultiScaleTrace> {
        self.check(y)?;
        let c = self.channels;
        let levels = self.levels();
        let mut coefs = Vec::with_capacity(levels);
        let mut low = y.clone();
        for _ in 0..levels {
            let a = haar_analysis(gpu, &low)?;
            low = slice_channels(gpu, &a, 0, c)?;
            coefs.push(a);
        }
        let residual_low = self.low.network(gpu, &low)?;
        let mut low_d = sub(gpu, &low, &residual_low)?;
        let mut residual_scales = vec![None; levels];
        let mut cond_inputs = vec![None; levels];
        for j in (0..levels).rev() {
            let inp = replace_channels(gpu, &coefs[j], 0, &low_d)?;
            let r = self.scales[j].network(gpu, &inp)?;
            let r4 = slice_channels_vjp(gpu, &r, 4 * c, c)?; // [0, r]
            low_d = haar_synthesis(gpu, &sub(gpu, &inp, &r4)?)?;
            residual_scales[j] = Some(r);
            cond_inputs[j] = Some(inp);
        }
        Ok(MultiScaleTrace {
            output: low_d,
            residual_low,
            residual_scales: residual_scales.into_iter().map(Option::unwrap).collect(),
            cond_inputs: cond_inputs.into_iter().map(Option::unwrap).collect(),
            noisy_low: low,
        })
    }
}

/// The model linearised at one input y (`[1, h, w, C]`): every part's
/// linearisation at the input it saw in the primal pass, so batches of
/// tangents go forward ([`MultiScaleLinearized::jvp`]) and cotangents
/// backward ([`MultiScaleLinearized::vjp`]) without rerunning the networks.
/// The Haar steps, slices and subtractions are linear and are differentiated
/// exactly (`prior_ops::haar`, `prior_ops::channels`).
pub struct MultiScaleLinearized<'a> {
    model: &'a MultiScale,
    low: ChainLinearized<'a>,
    /// `scales[j]` linearised at `[denoised low_{j+1}, noisy details_j]`.
    scales: Vec<ChainLinearized<'a>>,
    /// x̂(y).
    pub output: Tensor,
    input: prior_gpu::Shape,
}

impl MultiScale {
    /// Runs the primal pass at `y` (`[1, h, w, C]`) keeping what JVPs and VJPs need.
    pub fn linearize(&self, gpu: &Gpu, y: &Tensor) -> Result<MultiScaleLinearized<'_>> {
        self.check(y)?;
        if y.shape().n != 1 {
            return Err(ModelError::Input(format!(
                "Jacobian products are taken at one input (n = 1), got a batch of {}; put the tangents in the batch instead",
                y.shape().n
            )));
        }
        let c = self.channels;
        let levels = self.levels();
        let mut coefs = Vec::with_capacity(levels);
        let mut low = y.clone();
        for _ in 0..levels {
            let a = haar_analysis(gpu, &low)?;
            low = slice_channels(gpu, &a, 0, c)?;
            coefs.push(a);
        }
        let low_lin = self.low.linearize(gpu, &low)?;
        let mut low_d = sub(gpu, &low, low_lin.network_output())?;
        let mut scales: Vec<Option<ChainLinearized<'_>>> = (0..levels).map(|_| None).collect();
        for j in (0..levels).rev() {
            let inp = replace_channels(gpu, &coefs[j], 0, &low_d)?;
            let lin = self.scales[j].linearize(gpu, &inp)?;
            let r4 = slice_channels_vjp(gpu, lin.network_output(), 4 * c, c)?;
            low_d = haar_synthesis(gpu, &sub(gpu, &inp, &r4)?)?;
            scales[j] = Some(lin);
        }
        Ok(MultiScaleLinearized {
            model: self,
            low: low_lin,
            scales: scales.into_iter().map(Option::unwrap).collect(),
            output: low_d,
            input: y.shape(),
        })
    }
}

impl MultiScaleLinearized<'_> {
    fn check(&self, t: &Tensor, what: &str) -> Result<()> {
        let (s, i) = (t.shape(), self.input);
        if (s.h, s.w, s.c) != (i.h, i.w, i.c) || s.n == 0 {
            return Err(ModelError::Input(format!(
                "{what} {s} does not match the linearisation point {i}"
            )));
        }
        Ok(())
    }

    /// J·v (J = ∂x̂/∂y) for tangents `v` `[k, h, w, C]`.
    pub fn jvp(&self, gpu: &Gpu, v: &Tensor) -> Result<Tensor> {
        self.check(v, "tangent")?;
        let c = self.model.channels;
        let levels = self.model.levels();
        let mut vcoefs = Vec::with_capacity(levels);
        let mut vlow = v.clone();
        for _ in 0..levels {
            let a = haar_analysis(gpu, &vlow)?;
            vlow = slice_channels(gpu, &a, 0, c)?;
            vcoefs.push(a);
        }
        let mut vd = sub(gpu, &vlow, &self.low.network_jvp(gpu, &vlow)?)?;
        for j in (0..levels).rev() {
            let vinp = replace_channels(gpu, &vcoefs[j], 0, &vd)?;
            let vr = self.scales[j].network_jvp(gpu, &vinp)?;
            let vr4 = slice_channels_vjp(gpu, &vr, 4 * c, c)?;
            vd = haar_synthesis(gpu, &sub(gpu, &vinp, &vr4)?)?;
        }
        Ok(vd)
    }

    /// Jᵀ·u (J = ∂x̂/∂y) for cotangents `u` `[k, h, w, C]`.
    pub fn vjp(&self, gpu: &Gpu, u: &Tensor) -> Result<Tensor> {
        self.check(u, "cotangent")?;
        let c = self.model.channels;
        let levels = self.model.levels();
        // Decoder, fine to coarse: g is the cotangent of denoised low_j.
        let mut g = u.clone();
        let mut ginps = Vec::with_capacity(levels);
        for j in 0..levels {
            // low_j = S(inp_j − [0, r_j]), r_j = cond_j(inp_j)
            let gc = haar_synthesis_vjp(gpu, &g)?;
            let gr = slice_channels(gpu, &gc, c, 3 * c)?;
            let ginp = sub(gpu, &gc, &self.scales[j].network_vjp(gpu, &gr)?)?;
            g = slice_channels(gpu, &ginp, 0, c)?; // → denoised low_{j+1}
            ginps.push(ginp);
        }
        // Coarsest: denoised low_J = low_J − f_low(low_J).
        let mut gl = sub(gpu, &g, &self.low.network_vjp(gpu, &g)?)?;
        // Encoder, coarse to fine: coefs_j = A(low_j) = [noisy low_{j+1}, details_j].
        for j in (0..levels).rev() {
            let full = replace_channels(gpu, &ginps[j], 0, &gl)?;
            gl = haar_analysis_vjp(gpu, &full)?;
        }
        Ok(gl)
    }
}

/// Bound on the receptive radius in fine pixels: with `R_J = r_low` (level-J
/// pixels) and `R_j = 2·(r_j + R_{j+1}) + 1` (a level-j pixel sits in the
/// 2×2 block of one level-(j+1) position; cond_j reaches r_j positions
/// around it, the denoised low-pass there R_{j+1} more).
fn receptive_radius(r_low: usize, r_scales: &[usize]) -> usize {
    r_scales.iter().rev().fold(r_low, |r, &rj| 2 * (rj + r) + 1)
}

/// The combined blob of the parts.
fn combine(
    low: &WeightBlob,
    scales: &[WeightBlob],
    channels: usize,
    origin: &str,
) -> Result<WeightBlob> {
    let mut parts = BTreeMap::new();
    let mut out_tensors = BTreeMap::new();
    let named = std::iter::once(("low".to_string(), low))
        .chain(scales.iter().enumerate().map(|(j, b)| (scale_name(j), b)));
    for (name, b) in named {
        let info = MultiscalePart {
            arch: b.arch()?,
            variant: b.variant().unwrap_or("").to_string(),
            hparams: b.hparams()?.to_json(),
            source: b.meta(keys::SOURCE).unwrap_or("").to_string(),
            source_sha256: b.meta(keys::SOURCE_SHA256).unwrap_or("").to_string(),
        };
        parts.insert(name.clone(), info);
        for (k, t) in &b.tensors {
            out_tensors.insert(format!("{name}.{k}"), t.clone());
        }
    }
    let hp = Hparams::Multiscale(MultiscaleHparams {
        levels: scales.len(),
        channels,
        parts,
    });
    let mut blob = WeightBlob::new(Arch::Multiscale.name(), &hp);
    blob.tensors = out_tensors;
    let src = Path::new(origin)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| origin.to_string());
    blob.meta.insert(keys::SOURCE.to_string(), src);
    Ok(blob)
}

/// Part `name` of a combined blob as a blob of its own.
fn split(blob: &WeightBlob, hp: &MultiscaleHparams, name: &str) -> Result<WeightBlob> {
    let origin = blob.origin.display().to_string();
    let info = hp
        .parts
        .get(name)
        .ok_or_else(|| invalid(&origin, format!("prior.hparams.parts.{name} is missing")))?;
    let hparams = Hparams::from_json(info.arch, info.hparams.clone()).map_err(|e| {
        invalid(
            &origin,
            format!(
                "prior.hparams.parts.{name}.hparams ({} hyper-parameters): {e}",
                info.arch
            ),
        )
    })?;
    let mut part = WeightBlob::new(&info.variant, &hparams);
    part.meta
        .insert(keys::SOURCE.to_string(), info.source.clone());
    part.origin = PathBuf::from(format!("{}#{name}", blob.origin.display()));
    let prefix = format!("{name}.");
    for (k, t) in &blob.tensors {
        if let Some(rest) = k.strip_prefix(&prefix) {
            part.tensors.insert(rest.to_string(), t.clone());
        }
    }
    if part.tensors.is_empty() {
        return Err(invalid(
            &origin,
            format!("no tensors named {prefix}* in the blob"),
        ));
    }
    Ok(part)
}

impl Denoiser for MultiScale {
    fn describe(&self) -> String {
        self.desc.clone()
    }
    fn channels(&self) -> usize {
        self.channels
    }
    fn receptive_radius(&self) -> usize {
        let rs: Vec<usize> = self.scales.iter().map(|n| n.receptive_radius()).collect();
        receptive_radius(self.low.receptive_radius(), &rs)
    }
    fn size_multiple(&self) -> usize {
        1 << self.levels()
    }
    fn values_per_pixel(&self) -> usize {
        // Level-j tensors have 4^(j+1) fine pixels per position.
        let mut v = self
            .low
            .values_per_pixel()
            .div_ceil(1 << (2 * self.levels()));
        for (j, n) in self.scales.iter().enumerate() {
            v = v.max(n.values_per_pixel().div_ceil(1 << (2 * (j + 1))));
        }
        v.max(self.channels)
    }
    fn parameters(&self) -> usize {
        self.low.parameters() + self.scales.iter().map(|n| n.parameters()).sum::<usize>()
    }
    /// f16 storage for the low-pass and every conditional chain (their
    /// inputs and outputs, and the Haar steps between them, stay f32).
    fn set_precision(
        &mut self,
        gpu: &Gpu,
        precision: prior_ops::precision::Precision,
    ) -> Result<()> {
        self.low.set_precision(gpu, precision)?;
        for net in &mut self.scales {
            net.set_precision(gpu, precision)?;
        }
        Ok(())
    }
    fn denoise(&self, gpu: &Gpu, y: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        Ok(self.denoise_traced(gpu, y)?.output)
    }
    /// J·v through the whole composition (see [`MultiScale::linearize`]).
    fn jvp(&self, gpu: &Gpu, y: &Tensor, v: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        self.linearize(gpu, y)?.jvp(gpu, v)
    }
    /// Jᵀ·u through the whole composition (see [`MultiScale::linearize`]).
    fn vjp(&self, gpu: &Gpu, y: &Tensor, u: &Tensor, _noise: Noise<'_>) -> Result<Tensor> {
        self.linearize(gpu, y)?.vjp(gpu, u)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn receptive_radius_recursion() {
        // One level: a fine pixel's block position reaches r0 + r_low coarse
        // positions, i.e. 2(r0 + r_low) + 1 fine pixels.
        assert_eq!(super::receptive_radius(20, &[6]), 53);
        assert_eq!(super::receptive_radius(20, &[6, 6, 6]), 251);
        assert_eq!(super::receptive_radius(0, &[0]), 1);
    }
}
