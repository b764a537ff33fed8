//! Coarse-to-fine synthesis and super-resolution with the multi-scale
//! conditional model (`prior_models::multiscale::MultiScale`), as in
//! Kadkhodaie, Guth, Mallat & Simoncelli (ICLR 2023):
//!
//! * [`synthesize`]: sample the coarsest Haar low-pass with the low model
//!   (the stochastic coarse-to-fine sampler of [`crate::sampler`], unconditional),
//!   then for j = J−1 … 0 sample the level-j details given the coarser image
//!   and reconstruct level j.
//! * [`super_resolve`]: start from a given low-resolution image (the Haar
//!   low-pass at level k ≤ J, i.e. an image 2^k times smaller, each pixel
//!   the mean of a 2^k × 2^k block) and sample only the missing detail levels
//!   k−1 … 0. The result's level-k low-pass is the given image exactly (up to
//!   rounding): only details are added.
//!
//! Conditional detail sampling runs the same sampler on the 3C detail
//! channels with the conditional model's residual
//! `f(details) = cond_j(concat(low, details))`. The sampler starts its
//! iterate at mean 0.5 (the middle of the pixel range); details have mean 0,
//! so the sampler runs on `z = details + 0.5` with `f(z) = cond_j(concat(low, z − 0.5))`,
//! which is the same iteration started at mean 0.
//!
//! **Noise levels.** [`SamplerParams`] are given in image units (σ₀, σ_L of
//! white noise on the full-resolution image). A Haar level scales white
//! noise by ½ (the transform is ½ × orthonormal), so level j's details run
//! with σ₀/2^(j+1), σ_L/2^(j+1) and the coarsest low-pass with σ₀/2^J,
//! σ_L/2^J: every level stops at the noise that σ_L on the image would leave
//! there. h₀, β, max_iters and fixed_step are used as given at every level.
//! The seed of level j's run is `seed + (j + 1)·2^32`, the low-pass run's
//! `seed + (J + 1)·2^32`, so levels draw independent noise.

use prior_gpu::{Gpu, Shape, Tensor};
use prior_models::multiscale::MultiScale;
use prior_models::{Denoiser, ModelError, Noise};
use prior_ops::channels::concat_channels;
use prior_ops::elementwise::axpby;
use prior_ops::haar::haar_synthesis;

use crate::control::Flow;
use crate::sampler::{self, Progress, SamplerError, SamplerParams};

/// One sampler run of a multi-scale synthesis.
#[derive(Clone, Debug)]
pub struct LevelRun {
    /// `Some(j)`: the details of level j; `None`: the coarsest low-pass.
    pub level: Option<usize>,
    /// Size (h, w) of the sampled coefficients.
    pub size: (usize, usize),
    /// σ₀ used at this level (scaled, see the module doc).
    pub sigma0: f32,
    /// σ_L used at this level (scaled likewise).
    pub sigma_final: f32,
    /// Updates applied per sample.
    pub iterations: Vec<usize>,
    /// Whether each sample reached σ_L (false: stopped by max_iters).
    pub converged: Vec<bool>,
    /// Wall-clock time of this level, seconds.
    pub seconds: f64,
}

/// Result of [`synthesize`] or [`super_resolve`].
pub struct MultiScaleRun {
    /// The images, `[n, h, w, C]`.
    pub image: Tensor,
    /// The runs, coarse to fine.
    pub levels: Vec<LevelRun>,
}

/// What the progress callback sees: the level being sampled and the sampler's own progress.
pub struct LevelProgress<'a, 'b> {
    /// As [`LevelRun::level`].
    pub level: Option<usize>,
    /// The sampler's progress within that level.
    pub progress: &'a Progress<'b>,
}

/// The results of a run as the JSON object of `prior sample --json` with a
/// multi-scale model (before the CLI adds `output`): one home for those
/// keys, which the browser API returns too. `task` is `synthesis` or
/// `superres`; `final_sigma` the last σ_t per sample the progress callback
/// saw (`null` when none). Per-sample values are scalars when n = 1.
pub fn summary(
    out: &MultiScaleRun,
    params: &SamplerParams,
    task: &str,
    final_sigma: Option<&[f32]>,
    adapter: &str,
) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::json;
    let shape = out.image.shape();
    let n = shape.n;
    let levels: Vec<serde_json::Value> = out
        .levels
        .iter()
        .map(|l| {
            json!({"level": l.level.map_or(json!("low"), |j| json!(j)), "size": [l.size.0, l.size.1],
                   "sigma0": l.sigma0, "sigma_final": l.sigma_final, "iterations": l.iterations,
                   "converged": l.converged, "seconds": l.seconds})
        })
        .collect();
    let iterations: Vec<usize> = (0..n)
        .map(|s| out.levels.iter().map(|l| l.iterations[s]).sum())
        .collect();
    let seconds: f64 = out.levels.iter().map(|l| l.seconds).sum();
    let v = json!({
        "task": task, "model": prior_models::Arch::Multiscale.name(), "samples": n,
        "size": [shape.h, shape.w, shape.c],
        "iterations": if n == 1 { json!(iterations[0]) } else { json!(iterations) },
        "final_sigma": final_sigma.map(|f| if n == 1 { json!(f[0]) } else { json!(f) }),
        "seconds": seconds, "levels": levels, "seed": params.seed, "beta": params.beta,
        "adapter": adapter,
    });
    match v {
        serde_json::Value::Object(m) => m,
        _ => unreachable!("json! of an object"),
    }
}

fn level_params(params: &SamplerParams, factor: f32, seed_slot: u64) -> SamplerParams {
    SamplerParams {
        sigma0: params.sigma0 * factor,
        sigma_final: params.sigma_final * factor,
        seed: params.seed.wrapping_add(seed_slot << 32),
        ..params.clone()
    }
}

/// Samples the level-j details `[n, h, w, 3C]` given the level-(j+1)
/// low-pass `low` (`[n, h, w, C]`), and returns the reconstructed level-j
/// image `[n, 2h, 2w, C]`.
pub async fn sample_level<P, R>(
    gpu: &Gpu,
    model: &MultiScale,
    j: usize,
    low: &Tensor,
    params: &SamplerParams,
    mut progress: P,
) -> Result<(Tensor, LevelRun), SamplerError>
where
    P: FnMut(&LevelProgress) -> R,
    R: Flow,
{
    if j >= model.levels() {
        return Err(SamplerError::Invalid(format!(
            "level {j} does not exist: the model has {} levels",
            model.levels()
        )));
    }
    let s = low.shape();
    if s.c != model.channels() {
        return Err(SamplerError::Invalid(format!(
            "the low-pass has {} channel(s), the model takes {}",
            s.c,
            model.channels()
        )));
    }
    let p = level_params(params, 0.5f32.powi(j as i32 + 1), j as u64 + 1);
    let shape = Shape::new(s.n, s.h, s.w, 3 * s.c);
    let half = gpu.upload(shape, &vec![0.5; shape.numel()]);
    let residual = |gpu: &Gpu, z: &Tensor, _: Noise<'_>| -> Result<Tensor, ModelError> {
        let details = axpby(gpu, 1.0, z, -1.0, &half)?;
        model.conditional_residual(gpu, j, low, &details)
    };
    let run = sampler::run(gpu, shape, None, &p, residual, |pr: &Progress| {
        progress(&LevelProgress {
            level: Some(j),
            progress: pr,
        })
        .flow()
    })
    .await?;
    let details = axpby(gpu, 1.0, &run.x, -1.0, &half)?;
    let image = haar_synthesis(gpu, &concat_channels(gpu, &[low, &details])?)?;
    let info = LevelRun {
        level: Some(j),
        size: (s.h, s.w),
        sigma0: p.sigma0,
        sigma_final: p.sigma_final,
        iterations: run.iterations,
        converged: run.converged,
        seconds: run.seconds,
    };
    Ok((image, info))
}

/// Samples `n` images of `h × w` from the multi-scale prior: the coarsest
/// low-pass with the low model, then every detail level (h and w must be
/// multiples of 2^J).
pub async fn synthesize<P, R>(
    gpu: &Gpu,
    model: &MultiScale,
    n: usize,
    h: usize,
    w: usize,
    params: &SamplerParams,
    mut progress: P,
) -> Result<MultiScaleRun, SamplerError>
where
    P: FnMut(&LevelProgress) -> R,
    R: Flow,
{
    let levels = model.levels();
    let m = 1usize << levels;
    if n == 0 || h == 0 || w == 0 || !h.is_multiple_of(m) || !w.is_multiple_of(m) {
        return Err(SamplerError::Invalid(format!(
            "{n} image(s) of {h}×{w}: the size must be a non-zero multiple of 2^{levels} = {m} for this {levels}-level model"
        )));
    }
    let c = model.channels();
    let shape = Shape::new(n, h / m, w / m, c);
    let p = level_params(params, 0.5f32.powi(levels as i32), levels as u64 + 1);
    let residual = |gpu: &Gpu, y: &Tensor, _: Noise<'_>| model.low_residual(gpu, y);
    let run = sampler::run(gpu, shape, None, &p, residual, |pr: &Progress| {
        progress(&LevelProgress {
            level: None,
            progress: pr,
        })
        .flow()
    })
    .await?;
    let mut runs = vec![LevelRun {
        level: None,
        size: (shape.h, shape.w),
        sigma0: p.sigma0,
        sigma_final: p.sigma_final,
        iterations: run.iterations,
        converged: run.converged,
        seconds: run.seconds,
    }];
    let mut low = run.x;
    for j in (0..levels).rev() {
        let (img, info) = sample_level(gpu, model, j, &low, params, &mut progress).await?;
        low = img;
        runs.push(info);
    }
    Ok(MultiScaleRun {
        image: low,
        levels: runs,
    })
}

/// Super-resolution by 2^k: samples the details of levels k−1 … 0 given
/// `low` (`[n, h, w, C]`, the Haar low-pass at level k of the wanted
/// `[n, 2^k h, 2^k w, C]` images, i.e. 2^k × 2^k block means), 1 ≤ k ≤ J.
pub async fn super_resolve<P, R>(
    gpu: &Gpu,
    model: &MultiScale,
    low: &Tensor,
    k: usize,
    params: &SamplerParams,
    mut progress: P,
) -> Result<MultiScaleRun, SamplerError>
where
    P: FnMut(&LevelProgress) -> R,
    R: Flow,
{
    if k == 0 || k > model.levels() {
        return Err(SamplerError::Invalid(format!(
            "super-resolution by 2^{k}: k must be between 1 and the model's {} levels",
            model.levels()
        )));
    }
    if low.numel() == 0 {
        return Err(SamplerError::Invalid(format!(
            "empty low-resolution input {}",
            low.shape()
        )));
    }
    let mut img = low.clone();
    let mut runs = Vec::with_capacity(k);
    for j in (0..k).rev() {
        let (next, info) = sample_level(gpu, model, j, &img, params, &mut progress).await?;
        img = next;
        runs.push(info);
    }
    Ok(MultiScaleRun {
        image: img,
        levels: runs,
    })
}
