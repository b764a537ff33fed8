//! The stochastic coarse-to-fine sampler of Kadkhodaie & Simoncelli (2021)
//! ("Solving linear inverse problems using the prior implicit in a
//! denoiser"), generic over the residual function f(y) = y − x̂(y) and the
//! measurement operator (`../shared/README.md`, "The stochastic
//! coarse-to-fine sampler"):
//!
//! ```text
//! y₀ ~ N(0.5·(1 − M Mᵀ 1) + M x_c, σ₀²)
//! t = 1, 2, …:  h_t = h₀ t / (1 + h₀ (t − 1))
//!               d_t = f(y) − M Mᵀ f(y) + M Mᵀ y − M x_c      (d_t = f(y) for synthesis)
//!               σ_t = ‖d_t‖/√N,  γ_t = σ_t √((1 − β h_t)² − (1 − h_t)²)
//!               y ← y − h_t d_t + γ_t z
//!               stop when σ_t ≤ σ_L;   return y − f(y)
//! ```
//!
//! Everything but the stopping test runs on the GPU: d_t, σ_t (a per-sample
//! reduction), γ_t and the update (`prior_ops::sampler`); the loop reads back
//! one small state tensor per iteration (σ_t and the status of each sample),
//! or every `check_every` iterations.
//! As in the authors' loop, the update of the iteration whose σ_t reaches σ_L
//! is applied before stopping; [`SampleRun::iterations`] counts the updates
//! (the authors print t + 1).
//!
//! **Batches**: `shape.n` samples run together in one batched residual call
//! per iteration, each with its own σ_t; a sample whose σ_t ≤ σ_L is frozen
//! on the GPU (its later updates are skipped) while the others go on, and
//! the loop ends when every sample has stopped (or after `max_iters`).
//!
//! **Noise**: `z` of iteration t is stream t of `seed` (y₀ uses stream 0),
//! element (s, h, w, c) at counter (first_sample + s)·N + (flat (C, H, W)
//! index), `first_sample` 0 unless a run is split by sample index, so a seed
//! reproduces a run bit for bit on one adapter, and to ~1e-6 per step across
//! adapters; sample 0 of a batch draws the noise of the single-sample run
//! of that seed (results agree to ~1e-5: batched convolutions may round
//! differently).
//!
//! **Noise-conditioned models** ([`Schedule`]): every residual call gets
//! the noise variance of each sample ([`Noise::Variance`], `[n, 1, 1, 1]`
//! on the GPU, σ₀² at the first call). With [`Schedule::Measured`] (the
//! default, the authors' sampler) that is the last measured σ_t² and blind
//! denoisers ignore it. A noise-conditioned model's residual need not be a
//! calibrated noise estimate (the energy fixture's is 0.86σ at t = 1 on
//! pure noise), and feeding its own estimate back shrinks t geometrically;
//! [`Schedule::Recursion`] instead follows the level the update implies,
//! σ₁ = σ₀, σ_{t+1} = (1 − βh_t)·σ_t (the shrinkage (1 − h_t)σ_t and the
//! injected γ_t add in quadrature to exactly that), stops when it reaches
//! σ_L, and reports the measured ‖d_t‖/√N beside it. With measurements the
//! same recursion holds: the measured components follow the same update
//! (d_t there is M Mᵀ y − M x_c, shrunk by h_t, plus the same injected
//! noise), so the whole iterate carries one level and the model is given
//! it for every pixel.
//!
//! **Divergence**: a sample whose σ_t exceeds `divergence_factor · σ₀` or is
//! not finite is not updated and the run stops with
//! [`SamplerError::Diverged`], which carries the last good iterate.

use prior_gpu::{Gpu, GpuError, Shape, Tensor};
use prior_models::{ModelError, Noise};
use prior_ops::reference::rng;
use prior_ops::sampler::{self as kernels, field, Step, CONVERGED, DIVERGED, STATE};

pub use prior_ops::sampler::Schedule;

use crate::control::{Clock, Flow};
use crate::measure::{MeasureError, Measurement};

/// The defaults of the sampler's options: one home for the values of the
/// CLI's flags (`prior sample`, `prior solve`) and the browser API's options.
pub mod defaults {
    /// σ₀.
    pub const SIGMA0: f32 = 1.0;
    /// σ_L.
    pub const SIGMA_FINAL: f32 = 0.01;
    /// h₀.
    pub const H0: f32 = 0.01;
    /// β for synthesis (`prior sample`; the paper's synthesis setting).
    pub const BETA_SAMPLE: f32 = 0.5;
    /// β for inverse problems (`prior solve`).
    pub const BETA_SOLVE: f32 = 0.01;
    /// The iteration cap.
    pub const MAX_ITERS: usize = 3000;
    /// The seed.
    pub const SEED: u64 = 0;
    /// Readback interval.
    pub const CHECK_EVERY: usize = 1;
    /// The grey level of the start.
    pub const START_MEAN: f32 = 0.5;
    /// Divergence bound, a multiple of σ₀.
    pub const DIVERGENCE_FACTOR: f32 = 10.0;
}

/// Sampler parameters (the paper's defaults, [`defaults`]; β is
/// [`defaults::BETA_SOLVE`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerParams {
    /// σ₀: standard deviation of the initial noise.
    pub sigma0: f32,
    /// σ_L: stop when σ_t ≤ σ_L.
    pub sigma_final: f32,
    /// h₀: first step size.
    pub h0: f32,
    /// β ∈ (0, 1]: 1 injects no noise; small β injects more.
    pub beta: f32,
    /// Give up (without an error) after this many iterations.
    pub max_iters: usize,
    /// Seed of the initial and injected noise.
    pub seed: u64,
    /// Use this constant step instead of the h_t schedule.
    pub fixed_step: Option<f32>,
    /// Divergence bound on σ_t, as a multiple of σ₀.
    pub divergence_factor: f32,
    /// Read σ_t back (stopping test, divergence test, callback) every this
    /// many iterations (≥ 1). Stopped samples are frozen on the GPU, so the
    /// result is the same for any value; larger values let a fast GPU run
    /// several iterations per submission, at the price of up to
    /// `check_every − 1` extra denoiser calls after the last sample stops.
    pub check_every: usize,
    /// Where σ_t comes from (measured, or the recursion for
    /// noise-conditioned models).
    pub schedule: Schedule,
    /// The grey level m of the start y₀ ~ N(m·(1 − M Mᵀ 1) + M x_c, σ₀²):
    /// 0.5 in the paper.
    pub start_mean: f32,
    /// Global index of the batch's first sample: sample s of the batch
    /// draws the noise of sample `first_sample + s` of one batch of all
    /// samples, so a run split into slices of sample indices (`--shard`)
    /// draws the same noise as one run. 0 for an ordinary run.
    pub first_sample: usize,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            sigma0: defaults::SIGMA0,
            sigma_final: defaults::SIGMA_FINAL,
            h0: defaults::H0,
            beta: defaults::BETA_SOLVE,
            max_iters: defaults::MAX_ITERS,
            seed: defaults::SEED,
            fixed_step: None,
            divergence_factor: defaults::DIVERGENCE_FACTOR,
            check_every: defaults::CHECK_EVERY,
            schedule: Schedule::Measured,
            first_sample: 0,
            start_mean: defaults::START_MEAN,
        }
    }
}

impl SamplerParams {
    /// h_t of iteration t ≥ 1.
    pub fn step(&self, t: usize) -> f32 {
        match self.fixed_step {
            Some(h) => h,
            None => {
                let (h0, t) = (self.h0 as f64, t as f64);
                (h0 * t / (1.0 + h0 * (t - 1.0))) as f32
            }
        }
    }

    fn check(&self) -> Result<(), SamplerError> {
        let bad = |m: String| Err(SamplerError::Invalid(m));
        if !(self.sigma0 > 0.0 && self.sigma0.is_finite()) {
            return bad(format!("sigma0 must be positive, got {}", self.sigma0));
        }
        if !(self.sigma_final > 0.0 && self.sigma_final < self.sigma0) {
            return bad(format!(
                "sigma_final must be in (0, sigma0 = {}), got {}",
                self.sigma0, self.sigma_final
            ));
        }
        if !(self.h0 > 0.0 && self.h0 <= 1.0) {
            return bad(format!("h0 must be in (0, 1], got {}", self.h0));
        }
        if !(self.beta > 0.0 && self.beta <= 1.0) {
            return bad(format!("beta must be in (0, 1], got {}", self.beta));
        }
        if let Some(h) = self.fixed_step {
            if !(h > 0.0 && h <= 1.0) {
                return bad(format!("the fixed step must be in (0, 1], got {h}"));
            }
        }
        if self.check_every == 0 {
            return bad("check_every must be at least 1".into());
        }
        if self.max_iters == 0 {
            return bad("max_iters must be at least 1".into());
        }
        if self.divergence_factor.is_nan() || self.divergence_factor <= 1.0 {
            return bad(format!(
                "divergence_factor must exceed 1, got {}",
                self.divergence_factor
            ));
        }
        Ok(())
    }
}

/// Errors of a sampler run.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// Parameters or inputs out of range; the message names them.
    #[error("sampler: {0}")]
    Invalid(String),
    /// The measurement operator failed.
    #[error(transparent)]
    Measure(#[from] MeasureError),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A GPU error.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// The progress callback asked to stop ([`Flow`]) after this iteration.
    #[error("sampler: cancelled after iteration {iteration}")]
    Cancelled {
        /// The last iteration run (1-based).
        iteration: usize,
    },
    /// σ_t grew past the bound or became NaN; `last` is the batch of
    /// iterates before the failing step (the diverged sample's last good one).
    #[error("sampler diverged: sample {sample} at iteration {iteration} has σ_t = {sigma} (bound {bound}); try a smaller h0 or a larger beta")]
    Diverged {
        /// 0-based sample of the batch.
        sample: usize,
        /// Iteration of the failing step (1-based).
        iteration: usize,
        /// The σ_t found.
        sigma: f32,
        /// The bound on σ_t (`divergence_factor · sigma0`).
        bound: f32,
        /// The batch before the failing step, `[n, h, w, c]`.
        last: Tensor,
    },
}

/// A linear inverse problem: the operator and the measurements x_c = Mᵀ x
/// of one image (`op.measurement_shape(1)`), shared by every sample.
pub struct Problem<'a> {
    /// The measurement operator M.
    pub op: &'a dyn Measurement,
    /// The measurements of one image, `op.measurement_shape(1)`.
    pub x_c: &'a Tensor,
}

/// What the per-iteration callback sees.
pub struct Progress<'a> {
    /// Iteration t (1-based) just run.
    pub iteration: usize,
    /// σ_t per sample (for stopped samples, their last σ).
    pub sigmas: &'a [f32],
    /// The measured level ‖d_t‖/√N per sample (equal to `sigmas` with
    /// [`Schedule::Measured`]).
    pub measured: &'a [f32],
    /// Samples still running after this iteration.
    pub running: usize,
    /// The batch of iterates y after this iteration's update.
    pub y: &'a Tensor,
}

/// Result of a run.
pub struct SampleRun {
    /// y − f(y) at the last iterate, `[n, h, w, c]`.
    pub x: Tensor,
    /// Updates applied per sample.
    pub iterations: Vec<usize>,
    /// σ_t of each sample's last applied update.
    pub final_sigma: Vec<f32>,
    /// The measured level ‖d_t‖/√N of each sample's last computed iteration.
    pub final_measured: Vec<f32>,
    /// Whether each sample reached σ_L (false: stopped by `max_iters`).
    pub converged: Vec<bool>,
    /// Iterations the loop ran (the slowest sample's).
    pub loop_iterations: usize,
    /// Wall-clock seconds of the loop and the final denoising.
    pub seconds: f64,
}

/// Runs the sampler on a batch of `shape.n` images of `shape.h × shape.w ×
/// shape.c`. `residual(gpu, y, noise)` returns f(y) for the batch at the
/// noise level `noise` (always [`Noise::Variance`], one per sample);
/// `problem` is `None` for synthesis. `callback` runs after every iteration
/// whose state is read back (every `check_every`-th); when it returns
/// `ControlFlow::Break` the run ends with [`SamplerError::Cancelled`].
pub async fn run<F, C, R>(
    gpu: &Gpu,
    shape: Shape,
    problem: Option<Problem<'_>>,
    params: &SamplerParams,
    mut residual: F,
    mut callback: C,
) -> Result<SampleRun, SamplerError>
where
    F: FnMut(&Gpu, &Tensor, Noise<'_>) -> Result<Tensor, ModelError>,
    C: FnMut(&Progress) -> R,
    R: Flow,
{
    params.check()?;
    if shape.numel() == 0 {
        return Err(SamplerError::Invalid(format!("empty batch {shape}")));
    }
    gpu.check_fits("sampler batch", shape)?;
    let one = Shape::new(1, shape.h, shape.w, shape.c);
    let start = Clock::start();

    // b = M x_c, and the start mean m·(1 − M Mᵀ 1) + b (m = start_mean, 0.5 by default).
    let m0 = params.start_mean;
    let (b, base) = match &problem {
        None => (None, gpu.upload(one, &vec![m0; one.numel()])),
        Some(p) => {
            let (h, w, c) = p.op.image_shape();
            if (h, w, c) != (shape.h, shape.w, shape.c) {
                return Err(SamplerError::Invalid(format!(
                    "the operator is for {h}x{w}x{c} images, the sampler for {shape}"
                )));
            }
            let ms = p.x_c.shape();
            let expect = p.op.measurement_shape(1);
            if ms != expect {
                return Err(SamplerError::Invalid(format!(
                    "measurements {ms}, expected {expect} (one image's, shared by the batch) for {}",
                    p.op.describe()
                )));
            }
            let b = p.op.m(gpu, p.x_c)?;
            let ones = gpu.upload(one, &vec![1.0; one.numel()]);
            let p1 = p.op.project(gpu, &ones)?;
            let half = prior_ops::elementwise::axpby(gpu, m0, &ones, -m0, &p1)?;
            let base = prior_ops::elementwise::axpby(gpu, 1.0, &half, 1.0, &b)?;
            (Some(b), base)
        }
    };
    // Noise counters of sample s start at (first_sample + s)·C·H·W.
    let offset = params.first_sample as u64 * one.numel() as u64;
    if offset + shape.numel() as u64 >= u32::MAX as u64 {
        return Err(SamplerError::Invalid(format!(
            "samples {}..{} of {}x{}x{} images are beyond the 2^32 noise counters of one seed",
            params.first_sample,
            params.first_sample + shape.n,
            shape.h,
            shape.w,
            shape.c
        )));
    }
    let offset = offset as u32;
    let y = prior_ops::rng::axpy_normal(gpu, &base, shape, params.sigma0, params.seed, 0, offset)?;
    let state = kernels::new_state(gpu, shape.n, params.sigma0);
    let bound = params.divergence_factor * params.sigma0;
    let mut sigmas = vec![0.0f32; shape.n];
    let mut measured = vec![0.0f32; shape.n];
    let mut loop_iterations = 0;
    for t in 1..=params.max_iters {
        let var = match params.schedule {
            Schedule::Estimated => prior_ops::noise_estimate::noise_variance(gpu, &y)?,
            _ => kernels::variance(gpu, &state)?,
        };
        let f = residual(gpu, &y, Noise::Variance(&var))?;
        if f.shape() != shape {
            return Err(SamplerError::Invalid(format!(
                "the residual function returned {} for {shape}",
                f.shape()
            )));
        }
        let d = match &problem {
            None => f,
            Some(p) => {
                let b = b.as_ref().expect("b is set for problems");
                match p.op.mask() {
                    Some(m) => kernels::direction_mask(gpu, &f, &y, m, b)?,
                    None => {
                        let u = prior_ops::elementwise::axpby(gpu, 1.0, &y, -1.0, &f)?;
                        let pu = p.op.project(gpu, &u)?;
                        kernels::direction_general(gpu, &f, &pu, b)?
                    }
                }
            }
        };
        let step = Step {
            t: t as u32,
            h: params.step(t),
            beta: params.beta,
            sigma_final: params.sigma_final,
            sigma_max: bound,
            schedule: params.schedule,
        };
        kernels::coefficients_with(gpu, &d, &state, &step, Some(&var))?;
        kernels::update_from(gpu, &y, &d, &state, rng::key(params.seed, t as u32), offset)?;
        loop_iterations = t;
        if t % params.check_every != 0 && t != params.max_iters {
            continue;
        }
        let st = gpu.read(&state).await?;
        let mut running = 0;
        for s in 0..shape.n {
            let v = &st[s * STATE..(s + 1) * STATE];
            sigmas[s] = v[field::SIGMA];
            measured[s] = v[field::MEASURED];
            if v[field::STATUS] == DIVERGED {
                // The failing iteration follows the sample's last applied update.
                let iteration = v[field::ITERATIONS] as usize + 1;
                let sigma = if v[field::MEASURED] > v[field::SIGMA] || v[field::MEASURED].is_nan() {
                    v[field::MEASURED]
                } else {
                    v[field::SIGMA]
                };
                return Err(SamplerError::Diverged {
                    sample: s,
                    iteration,
                    sigma,
                    bound,
                    last: y,
                });
            }
            if v[field::STATUS] != CONVERGED {
                running += 1;
            }
        }
        let flow = callback(&Progress {
            iteration: t,
            sigmas: &sigmas,
            measured: &measured,
            running,
            y: &y,
        })
        .flow();
        if flow.is_break() {
            return Err(SamplerError::Cancelled { iteration: t });
        }
        if running == 0 {
            break;
        }
    }
    let var = match params.schedule {
        Schedule::Estimated => prior_ops::noise_estimate::noise_variance(gpu, &y)?,
        _ => kernels::variance(gpu, &state)?,
    };
    let f = residual(gpu, &y, Noise::Variance(&var))?;
    let x = prior_ops::elementwise::sub(gpu, &y, &f)?;
    let st = gpu.read(&state).await?;
    let per = |k: usize| -> Vec<f32> { (0..shape.n).map(|s| st[s * STATE + k]).collect() };
    Ok(SampleRun {
        iterations: per(field::ITERATIONS)
            .into_iter()
            .map(|v| v as usize)
            .collect(),
        final_sigma: per(field::SIGMA_GOOD),
        final_measured: per(field::MEASURED),
        converged: per(field::STATUS)
            .into_iter()
            .map(|v| v == CONVERGED)
            .collect(),
        x,
        loop_iterations,
        seconds: start.seconds(),
    })
}

/// The results of a run as the JSON object of `prior sample --json` /
/// `prior solve --json` (before the command adds its own keys): one home
/// for those keys, which the browser API returns too. Per-sample values
/// are scalars when `shape.n == 1`, arrays otherwise.
pub fn summary(
    r: &SampleRun,
    shape: Shape,
    params: &SamplerParams,
    adapter: &str,
) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::json;
    let mut m = serde_json::Map::new();
    let one = shape.n == 1;
    let per = |v: serde_json::Value, first: serde_json::Value| if one { first } else { v };
    m.insert(
        "iterations".into(),
        per(json!(r.iterations), json!(r.iterations[0])),
    );
    m.insert(
        "final_sigma".into(),
        per(json!(r.final_sigma), json!(r.final_sigma[0])),
    );
    m.insert(
        "measured_sigma".into(),
        per(json!(r.final_measured), json!(r.final_measured[0])),
    );
    m.insert(
        "schedule".into(),
        json!(match params.schedule {
            Schedule::Measured => "measured",
            Schedule::Recursion => "recursion",
            Schedule::Estimated => "estimated",
        }),
    );
    m.insert(
        "converged".into(),
        per(json!(r.converged), json!(r.converged[0])),
    );
    m.insert(
        "seconds".into(),
        json!((r.seconds * 1000.0).round() / 1000.0),
    );
    m.insert(
        "seconds_per_iteration".into(),
        json!(r.seconds / r.loop_iterations.max(1) as f64),
    );
    m.insert("samples".into(), json!(shape.n));
    m.insert("size".into(), json!([shape.h, shape.w, shape.c]));
    m.insert("seed".into(), json!(params.seed));
    m.insert("beta".into(), json!(params.beta));
    m.insert("h0".into(), json!(params.h0));
    m.insert("sigma0".into(), json!(params.sigma0));
    m.insert("sigma_final".into(), json!(params.sigma_final));
    m.insert("adapter".into(), json!(adapter));
    m
}
