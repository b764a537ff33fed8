//! Annealed Metropolis-adjusted Langevin sampling (MALA) for models that
//! give an energy U(y, t) with p_t(y) ∝ exp(−U(y, t)) (the dual-score-matching
//! energy UNet, or any [`Energy`]). Unlike a denoiser's score, U itself is
//! known, so every Langevin step can be corrected exactly by a
//! Metropolis–Hastings test.
//!
//! ```text
//! t_l = t_max·(t_min/t_max)^((l−1)/(L−1)),  l = 1..L      (geometric; t_1 = t_max)
//! ε_l = c_l·t_l                                          (c_1 = step_scale)
//! y₀  = 0.5 + √t_max·z
//! level l, K steps at fixed (t_l, ε_l), U = U(·, t_l), g = ∇_yU:
//!     y' = y − ε·g(y) + √(2ε)·z
//!     log α = U(y) − U(y') + log q(y | y') − log q(y' | y),
//!             q(b | a) = N(b; a − ε·g(a), 2ε·I)
//!     accept (y ← y') with probability min(1, α)
//! between levels (optional): c_{l+1} = c_l·clamp(exp(1.5·(a_l − a*)), ½, 2)
//! return y − t_L·g(y)   (the Tweedie estimate E[x | y] at t_L; or y itself)
//! ```
//!
//! Within a level the chain is an exact MALA chain for p_{t_l}: the step
//! size only changes between levels (from the acceptance rate a_l the level
//! measured), never during one. ε ∝ t because p_t is smooth on the scale √t:
//! a Langevin step moves y by ~√(2ε) = √(2c·t), a fixed fraction of the
//! noise level. For a Gaussian of variance v in d dimensions MALA's optimal
//! ε/v scales as d^(−1/3) (acceptance ≈ 0.574, Roberts & Rosenthal 1998);
//! hence the default target [`MalaParams::target_acceptance`].
//!
//! **GPU**: each step is one energy-and-gradient evaluation of the proposal
//! plus the kernels of `prior_ops::mala` (proposal, MH ratio, uniform draw,
//! accept/reject, select), which keep U and ∇U of the accepted state, so no
//! evaluation is repeated. Nothing is read back within a level; the
//! acceptance counts (a small state tensor) are read once per level. Each
//! level starts with one extra evaluation, of U(y, t_l) and ∇U at the new t.
//!
//! **Noise**: y₀ is stream [`STREAM`] of `seed`; step j (1-based, counted
//! over all levels) draws its proposal noise from stream `STREAM + 2j`
//! (element (s, h, w, c) at counter s·N + flat (C, H, W) index) and the
//! uniform of sample s from stream `STREAM + 2j + 1` (counter s). These
//! streams start at 2³¹, far from the coarse-to-fine sampler's (0 and the
//! iteration number), so the two samplers never share noise, and a seed
//! reproduces a run bit for bit on one adapter.

use prior_gpu::{Gpu, GpuError, Shape, Tensor};
use prior_models::energy::EnergyUNet;
use prior_models::ModelError;
use prior_ops::mala::{self as kernels, field, Pair, STATE};
use prior_ops::reference::rng;

/// The first noise stream of a MALA run (y₀); step j uses `STREAM + 2j`
/// (proposal) and `STREAM + 2j + 1` (uniforms).
pub const STREAM: u32 = 0x8000_0000;

/// A model with an energy: p_t(y) ∝ exp(−U(y, t)), t the noise variance.
pub trait Energy {
    /// U(y, t) per sample (`[n, 1, 1, 1]`) and ∇_yU (`[n, h, w, c]`) for a
    /// batch `y` with one noise variance per sample (`t`, `[n, 1, 1, 1]`).
    /// Nothing may be read back.
    fn energy_and_grad(
        &self,
        gpu: &Gpu,
        y: &Tensor,
        t: &Tensor,
    ) -> Result<(Tensor, Tensor), ModelError>;
}

impl Energy for EnergyUNet {
    fn energy_and_grad(
        &self,
        gpu: &Gpu,
        y: &Tensor,
        t: &Tensor,
    ) -> Result<(Tensor, Tensor), ModelError> {
        let e = self.evaluate(gpu, y, t, true, false)?;
        Ok((e.energy, e.grad.expect("asked for")))
    }
}

/// Parameters of an annealed MALA run.
#[derive(Clone, Debug, PartialEq)]
pub struct MalaParams {
    /// L: noise levels (≥ 1; with 1, every step is at `t_max`).
    pub levels: usize,
    /// K: MALA steps per level (≥ 1).
    pub steps: usize,
    /// t_1: the first (largest) noise variance; y₀ = 0.5 + √t_max·z.
    pub t_max: f32,
    /// t_L: the last noise variance (≤ t_max).
    pub t_min: f32,
    /// c_1: the first level's step ε_1 = c_1·t_1.
    pub step_scale: f32,
    /// Adapt c_l between levels towards this acceptance rate (`None`: a
    /// fixed c, ε_l = c·t_l at every level).
    pub target_acceptance: Option<f32>,
    /// Return the Tweedie estimate y − t_L·∇U(y, t_L) (true) or the last
    /// chain state y (false).
    pub denoise: bool,
    /// Seed of the initial, proposal and acceptance noise.
    pub seed: u64,
}

impl Default for MalaParams {
    /// 40 levels from t = 1 to 10⁻⁴, 8 steps each, c₁ = 0.1 adapted towards
    /// 0.574. On the MNIST energy fixture these do not yet give digits
    /// (mean 9.6 bits/dim; `MALA_NOTES.md`).
    fn default() -> Self {
        MalaParams {
            levels: 40,
            steps: 8,
            t_max: 1.0,
            t_min: 1e-4,
            step_scale: 0.1,
            target_acceptance: Some(0.574),
            denoise: true,
            seed: 0,
        }
    }
}

impl MalaParams {
    /// t_l of level l (0-based): geometric from t_max to t_min.
    pub fn t(&self, l: usize) -> f32 {
        if self.levels <= 1 {
            return self.t_max;
        }
        let r = l as f64 / (self.levels - 1) as f64;
        (self.t_max as f64 * (self.t_min as f64 / self.t_max as f64).powf(r)) as f32
    }

    fn check(&self) -> Result<(), MalaError> {
        let bad = |m: String| Err(MalaError::Invalid(m));
        if self.levels == 0 || self.steps == 0 {
            return bad(format!(
                "levels ({}) and steps ({}) must be at least 1",
                self.levels, self.steps
            ));
        }
        if (self.levels as u64) * (self.steps as u64) >= 1 << 30 {
            return bad(format!(
                "{} levels × {} steps: over 2^30 steps (noise streams)",
                self.levels, self.steps
            ));
        }
        if !(self.t_max > 0.0 && self.t_max.is_finite()) {
            return bad(format!(
                "t_max must be positive and finite, got {}",
                self.t_max
            ));
        }
        if !(self.t_min > 0.0 && self.t_min <= self.t_max) {
            return bad(format!(
                "t_min must be in (0, t_max = {}], got {}",
                self.t_max, self.t_min
            ));
        }
        if !(self.step_scale > 0.0 && self.step_scale.is_finite()) {
            return bad(format!(
                "the step scale must be positive and finite, got {}",
                self.step_scale
            ));
        }
        if let Some(a) = self.target_acceptance {
            if !(a > 0.0 && a < 1.0) {
                return bad(format!("the target acceptance must be in (0, 1), got {a}"));
            }
        }
        Ok(())
    }
}

/// Errors of a MALA run.
#[derive(Debug, thiserror::Error)]
pub enum MalaError {
    /// Options or inputs out of range; the message names them.
    #[error("mala: {0}")]
    Invalid(String),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A GPU error.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// The callback asked to stop ([`crate::control::Flow`]) after this level.
    #[error("mala: cancelled after level {level}")]
    Cancelled {
        /// The last level run (0-based).
        level: usize,
    },
    /// U(y, t) of a chain is not finite: the chain cannot move.
    #[error("mala: sample {sample} has energy {energy} at level {level} (t = {t}); try a smaller --step-scale")]
    NotFinite {
        /// 0-based sample of the batch.
        sample: usize,
        /// 0-based level.
        level: usize,
        /// The level's noise variance.
        t: f32,
        /// The energy found.
        energy: f32,
    },
}

/// What one level did.
#[derive(Clone, Debug, PartialEq)]
pub struct LevelReport {
    /// 0-based level.
    pub level: usize,
    /// Its noise variance t_l.
    pub t: f32,
    /// Its step size ε_l.
    pub eps: f32,
    /// Accepted proposals / K per sample.
    pub acceptance: Vec<f32>,
    /// Mean of `acceptance` over the batch.
    pub mean_acceptance: f32,
    /// U(y, t_l) per sample at the end of the level.
    pub energy: Vec<f32>,
}

/// Result of a run.
pub struct MalaRun {
    /// The output, `[n, h, w, c]`: y − t_L·∇U(y, t_L), or y (`denoise` off).
    pub x: Tensor,
    /// The last chain state y.
    pub y: Tensor,
    /// One report per level.
    pub levels: Vec<LevelReport>,
    /// Energy-and-gradient evaluations (L·K + L).
    pub evaluations: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The results of a run as the JSON object of `prior sample --method mala
/// --json` (before the CLI adds `output`): one home for those keys, which
/// the browser API returns too.
pub fn summary(
    out: &MalaRun,
    shape: Shape,
    params: &MalaParams,
    adapter: &str,
) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::json;
    let mean_acc =
        out.levels.iter().map(|l| l.mean_acceptance).sum::<f32>() / out.levels.len() as f32;
    let levels: Vec<serde_json::Value> = out
        .levels
        .iter()
        .map(|l| json!({"level": l.level, "t": l.t, "eps": l.eps, "acceptance": l.mean_acceptance}))
        .collect();
    let v = json!({
        "task": "synthesis", "method": "mala", "samples": shape.n, "size": [shape.h, shape.w, shape.c],
        "levels": levels, "mean_acceptance": mean_acc, "steps_per_level": params.steps,
        "t_max": params.t_max, "t_min": params.t_min, "step_scale": params.step_scale,
        "target_acceptance": params.target_acceptance, "denoise": params.denoise,
        "evaluations": out.evaluations, "seconds": (out.seconds * 1000.0).round() / 1000.0,
        "seed": params.seed, "adapter": adapter,
    });
    match v {
        serde_json::Value::Object(m) => m,
        _ => unreachable!("json! of an object"),
    }
}

/// Runs annealed MALA on a batch of `shape.n` chains of `shape.h × shape.w
/// × shape.c` images. `callback` sees each level's report when the level
/// ends (after its one readback); when it returns `ControlFlow::Break` the
/// run ends with [`MalaError::Cancelled`].
pub async fn run<E, C, R>(
    gpu: &Gpu,
    energy: &E,
    shape: Shape,
    params: &MalaParams,
    mut callback: C,
) -> Result<MalaRun, MalaError>
where
    E: Energy + ?Sized,
    C: FnMut(&LevelReport) -> R,
    R: crate::control::Flow,
{
    params.check()?;
    if shape.numel() == 0 {
        return Err(MalaError::Invalid(format!("empty batch {shape}")));
    }
    gpu.check_fits("mala batch", shape)?;
    let start = crate::control::Clock::start();
    let n = shape.n;
    let one = Shape::new(1, shape.h, shape.w, shape.c);
    let mean = gpu.upload(one, &vec![0.5; one.numel()]);
    let y = prior_ops::rng::axpy_normal(
        gpu,
        &mean,
        shape,
        params.t_max.sqrt(),
        params.seed,
        STREAM,
        0,
    )?;
    let state = kernels::new_state(gpu, n);
    let mut g: Option<Tensor> = None;
    let mut scale = params.step_scale;
    let mut accepted_before = vec![0.0f32; n];
    let mut levels = Vec::with_capacity(params.levels);
    let mut evaluations = 0;
    let mut step = 0u32;
    let mut t_last = gpu.upload(Shape::new(n, 1, 1, 1), &vec![params.t_max; n]);
    for l in 0..params.levels {
        let t_l = params.t(l);
        let eps = scale * t_l;
        let t = gpu.upload(Shape::new(n, 1, 1, 1), &vec![t_l; n]);
        // U and ∇U of the current state at the new t (owned copies: the
        // select kernel updates y and g in place).
        let (u0, g0) = energy.energy_and_grad(gpu, &y, &t)?;
        evaluations += 1;
        check_outputs(&u0, &g0, shape)?;
        kernels::set_energy(gpu, &state, &u0)?;
        let gl = gpu.duplicate(&g0);
        for _ in 0..params.steps {
            step += 1;
            let kp = rng::key(params.seed, STREAM + 2 * step);
            let ku = rng::key(params.seed, STREAM + 2 * step + 1);
            let y_prop = kernels::propose(gpu, &y, &gl, eps, kp)?;
            let (u_prop, g_prop) = energy.energy_and_grad(gpu, &y_prop, &t)?;
            evaluations += 1;
            check_outputs(&u_prop, &g_prop, shape)?;
            let pair = Pair {
                y: &y,
                g: &gl,
                y_prop: &y_prop,
                g_prop: &g_prop,
                u_prop: &u_prop,
            };
            kernels::accept(gpu, &pair, &state, eps, ku)?;
            kernels::select(gpu, &state, &y, &gl, &y_prop, &g_prop)?;
        }
        let st = gpu.read(&state).await?;
        let acceptance: Vec<f32> = (0..n)
            .map(|s| (st[s * STATE + field::ACCEPTED] - accepted_before[s]) / params.steps as f32)
            .collect();
        for (s, a) in accepted_before.iter_mut().enumerate() {
            *a = st[s * STATE + field::ACCEPTED];
        }
        let energies: Vec<f32> = (0..n).map(|s| st[s * STATE + field::ENERGY]).collect();
        if let Some((s, e)) = energies.iter().enumerate().find(|(_, e)| !e.is_finite()) {
            return Err(MalaError::NotFinite {
                sample: s,
                level: l,
                t: t_l,
                energy: *e,
            });
        }
        let mean_acceptance = acceptance.iter().sum::<f32>() / n as f32;
        let report = LevelReport {
            level: l,
            t: t_l,
            eps,
            acceptance,
            mean_acceptance,
            energy: energies,
        };
        if crate::control::Flow::flow(callback(&report)).is_break() {
            return Err(MalaError::Cancelled { level: l });
        }
        levels.push(report);
        if let Some(target) = params.target_acceptance {
            scale *= (1.5 * (mean_acceptance - target)).exp().clamp(0.5, 2.0);
        }
        g = Some(gl);
        t_last = t;
    }
    let g = g.expect("at least one level");
    let x = if params.denoise {
        let neg = prior_ops::elementwise::axpby(gpu, -1.0, &t_last, 0.0, &t_last)?;
        prior_ops::linear::sample_axpy(gpu, &y, &neg, &g)?
    } else {
        gpu.duplicate(&y)
    };
    Ok(MalaRun {
        x,
        y,
        levels,
        evaluations,
        seconds: start.seconds(),
    })
}

fn check_outputs(u: &Tensor, g: &Tensor, shape: Shape) -> Result<(), MalaError> {
    if u.numel() != shape.n || g.shape() != shape {
        return Err(MalaError::Invalid(format!(
            "the energy returned U {:?} and ∇U {:?} for a batch {shape}",
            u.shape(),
            g.shape()
        )));
    }
    Ok(())
}
