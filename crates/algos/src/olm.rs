//! Learned optimal linear measurements (Zhang, Kadkhodaie, Simoncelli &
//! Brainard, TMLR 2025): the n orthonormal rows M (n × D, D = C·H·W in flat
//! planar `(C, H, W)` order) that let the prior-driven reconstruction
//! recover images best, learned by gradient descent through the whole
//! unrolled stochastic sampler.
//!
//! # The unrolled sampler (one run per image and repetition)
//!
//! With P = MᵀM (the orthogonal projection onto the measured subspace), x
//! the clean image, e the training mean image:
//!
//! ```text
//! y₀ = e − P e + P x + σ₀ z₀
//! t = 1..T:  h_t = h₀ t / (1 + h₀ (t − 1)),   c_t = √((1 − β h_t)² − (1 − h_t)²)
//!            f_t = f(y_{t−1})                           (the denoiser's residual)
//!            d_t = f_t − P f_t + P y_{t−1} − P x
//!            σ_t = ‖d_t‖/√D,   y_t = y_{t−1} − h_t d_t + c_t σ_t z_t
//! x̂ = y_T − f(y_T)
//! ```
//!
//! The loss of a batch of B images, each reconstructed A times
//! (`average`): L = (1/B) Σ_b ‖x̄_b − x_b‖², x̄_b = (1/A) Σ_a x̂_{a,b} (the
//! squared error of the averaged reconstruction, as the authors' `average`
//! and `MSELoss(reduction='sum')`, divided by the batch size as their
//! logged loss; Adam hardly cares about the scale).
//!
//! # The reverse pass
//!
//! The forward pass keeps two images per step and run, y_{t−1} and f_t
//! (no activation of the network). Going back, step t's cotangents are
//! (ȳ_t given, z_t regenerated from the counter-based generator):
//!
//! ```text
//! σ̄_t = c_t (z_t · ȳ_t),   d̄_t = −h_t ȳ_t + σ̄_t d_t / (D σ_t)
//! f̄_t = (I − P) d̄_t
//! ȳ_{t−1} = ȳ_t + P d̄_t + f̄_t − Jᵀ f̄_t          (J = ∂x̂/∂y at y_{t−1}: the model's VJP)
//! P̄ += d̄_t ⊗ (y_{t−1} − f_t − x)
//! ```
//!
//! starting from ȳ_T = Jᵀ(y_T) ū (x̂ = y − f(y) ⇒ ∂x̂/∂y = J) with
//! ū = ∂L/∂x̂, and ending with P̄ += ȳ₀ ⊗ (x − e). A term P v with
//! cotangent ū gives ∂/∂M = (Mū) vᵀ + (Mv) ūᵀ, accumulated in f64 on the
//! CPU. The network (forward of the whole batch per step, and one VJP per
//! run per step, which reruns that run's forward) runs on the GPU; the O(nD)
//! vector algebra runs on the CPU in f64, so each step reads f(y) back (one
//! `[runs, h, w, c]` tensor) in the forward pass and each VJP result in the
//! reverse pass. Fusing that algebra into GPU kernels (it costs ~4nD flops
//! per run and step against ~1 GFLOP for one BF-CNN pass on a 28×28 digit)
//! is left for later.
//!
//! **Noise**: run s (= a·B + b, repetition a of image b) of optimisation
//! step k draws z_t (t = 0 for y₀) element i (flat planar index) as
//! `normal(key(noise_seed(seed, k), t), s·D + i)` of `prior_ops::reference::rng`.
//!
//! # Against the authors' code (lingqiz/optimal-measurement, read, not copied)
//!
//! Same: the start (e − MᵀMe) + Mᵀm + σ₀z with σ₀ = 1 and e the training
//! mean, h₀ = 0.1, β = 0.2 while training, the h_t schedule, the sign
//! conventions (theirs: d = −(ours), y + h d), σ_t = ‖d‖/√D with the
//! gradient flowing through σ_t and γ_t, at most 100 steps, output y − f(y),
//! the loss on the average of several reconstructions, Adam with an
//! exponential decay per epoch, random orthonormal initialisation.
//! Different: (1) they keep M orthonormal with PyTorch's Householder
//! parametrisation; we take Adam steps on M itself with the gradient
//! projected onto the tangent space of the Stiefel manifold
//! (G − sym(G Mᵀ) M) and re-orthonormalise the rows (Gram–Schmidt twice in
//! f64, [`crate::measure::orthonormalize_rows`]) after every step. (2) While
//! training they stop when the batch mean σ_t ≤ σ_L or after 100 steps; we
//! run a fixed T steps (`steps`), which is what happens for them when σ_L
//! is not reached. (3) Evaluation ([`reconstruct`]) stops each run on its
//! own when its σ_t ≤ σ_L (they stop the batch on its mean). (4) Our pixel
//! order is row-major (theirs is MATLAB's column-major: transpose to
//! compare matrices).

use prior_gpu::{Gpu, GpuError, Shape};
use prior_models::{Denoiser, ModelError, Noise};
use prior_ops::layout::{chw_to_hwc, hwc_to_chw};
use prior_ops::reference::rng;

use crate::linalg::{self, Dense, LinalgError};
use crate::measure::{orthonormalize_rows, random_orthonormal};

/// Errors of learning measurements.
#[derive(Debug, thiserror::Error)]
pub enum OlmError {
    /// Parameters or inputs out of range; the message names them.
    #[error("{0}")]
    Invalid(String),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A GPU error.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// A dense factorisation failed.
    #[error(transparent)]
    Linalg(#[from] LinalgError),
    /// A run's σ_t became NaN or infinite.
    #[error("the unrolled sampler diverged: run {run} at step {step} has σ_t = {sigma}")]
    Diverged {
        /// Run (a·B + b).
        run: usize,
        /// Step t (1-based).
        step: usize,
        /// The σ_t found.
        sigma: f64,
    },
}

/// Result with [`OlmError`] as the default error.
pub type Result<T, E = OlmError> = std::result::Result<T, E>;

/// `n` orthonormal rows in `dim` dimensions (row-major `n × dim`, f64).
#[derive(Clone, Debug, PartialEq)]
pub struct Rows {
    /// n, the number of measurements.
    pub n: usize,
    /// D = C·H·W.
    pub dim: usize,
    /// The values, row k at `[k·dim..(k + 1)·dim]`.
    pub data: Vec<f64>,
}

impl Rows {
    /// Orthonormalises `data` (n × dim, row-major); an error names a
    /// rank-deficient or non-finite row.
    pub fn new(n: usize, dim: usize, data: Vec<f64>) -> Result<Rows> {
        if n == 0 || n > dim || data.len() != n * dim {
            return Err(OlmError::Invalid(format!(
                "{} values for {n} measurement rows of {dim} (need 1 ≤ n ≤ {dim})",
                data.len()
            )));
        }
        let data = orthonormalize_rows(&data, n, dim).map_err(OlmError::Invalid)?;
        Ok(Rows { n, dim, data })
    }

    /// A random orthonormal matrix (the thin Q of a Gaussian matrix drawn
    /// from `seed`: [`random_orthonormal`], the rows of `prior solve cs`'s basis).
    pub fn random(n: usize, dim: usize, seed: u64) -> Result<Rows> {
        if n == 0 || n > dim {
            return Err(OlmError::Invalid(format!(
                "{n} measurements in {dim} dimensions (need 1 ≤ n ≤ {dim})"
            )));
        }
        // Column-major dim × n = row-major n × dim.
        Rows::new(n, dim, random_orthonormal(dim, n, seed))
    }

    /// Row k.
    pub fn row(&self, k: usize) -> &[f64] {
        &self.data[k * self.dim..(k + 1) * self.dim]
    }

    /// M v (n values).
    pub fn apply(&self, v: &[f64]) -> Vec<f64> {
        (0..self.n)
            .map(|k| self.row(k).iter().zip(v).map(|(a, b)| a * b).sum())
            .collect()
    }

    /// Mᵀ m (dim values).
    pub fn back(&self, m: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.dim];
        for (k, &c) in m.iter().enumerate() {
            for (o, r) in out.iter_mut().zip(self.row(k)) {
                *o += c * r;
            }
        }
        out
    }

    /// P v = MᵀM v.
    pub fn project(&self, v: &[f64]) -> Vec<f64> {
        self.back(&self.apply(v))
    }

    /// max |M Mᵀ − I|.
    pub fn orthonormality_error(&self) -> f64 {
        let mut e: f64 = 0.0;
        for i in 0..self.n {
            for j in 0..self.n {
                let d: f64 = self
                    .row(i)
                    .iter()
                    .zip(self.row(j))
                    .map(|(a, b)| a * b)
                    .sum();
                e = e.max((d - if i == j { 1.0 } else { 0.0 }).abs());
            }
        }
        e
    }

    /// The values as f32 (what `.npy` files hold).
    pub fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&v| v as f32).collect()
    }
}

/// The top-`n` principal components of `images` (each `dim` values): the
/// leading eigenvectors of their covariance (mean removed), as rows.
pub fn pca(images: &[Vec<f32>], n: usize) -> Result<Rows> {
    let Some(first) = images.first() else {
        return Err(OlmError::Invalid("PCA needs at least one image".into()));
    };
    let dim = first.len();
    if n == 0 || n > dim {
        return Err(OlmError::Invalid(format!(
            "{n} components in {dim} dimensions"
        )));
    }
    let mean = mean_image(images)?;
    let mut cov = vec![0.0f64; dim * dim];
    let mut c = vec![0.0f64; dim];
    for im in images {
        for (ci, (&v, &m)) in c.iter_mut().zip(im.iter().zip(&mean)) {
            *ci = v as f64 - m;
        }
        for i in 0..dim {
            let ci = c[i];
            if ci == 0.0 {
                continue;
            }
            let row = &mut cov[i * dim..i * dim + i + 1];
            for (r, cj) in row.iter_mut().zip(&c[..=i]) {
                *r += ci * cj;
            }
        }
    }
    for i in 0..dim {
        for j in 0..i {
            cov[j * dim + i] = cov[i * dim + j];
        }
    }
    let (_, vecs) = linalg::symmetric_eigen(&Dense::new(dim, dim, cov))?;
    let mut data = Vec::with_capacity(n * dim);
    for k in 0..n {
        // Sign convention: the largest-magnitude entry positive.
        let col = vecs.col(k);
        let big = col
            .iter()
            .copied()
            .fold(0.0f64, |a, b| if b.abs() > a.abs() { b } else { a });
        let s = if big < 0.0 { -1.0 } else { 1.0 };
        data.extend(col.iter().map(|v| v * s));
    }
    Rows::new(n, dim, data)
}

/// The mean image (f64).
pub fn mean_image(images: &[Vec<f32>]) -> Result<Vec<f64>> {
    let Some(first) = images.first() else {
        return Err(OlmError::Invalid("no images".into()));
    };
    let dim = first.len();
    let mut m = vec![0.0f64; dim];
    for (k, im) in images.iter().enumerate() {
        if im.len() != dim {
            return Err(OlmError::Invalid(format!(
                "image {k} has {} values, image 0 has {dim}",
                im.len()
            )));
        }
        for (a, &b) in m.iter_mut().zip(im) {
            *a += b as f64;
        }
    }
    let s = 1.0 / images.len() as f64;
    m.iter_mut().for_each(|v| *v *= s);
    Ok(m)
}

/// The unrolled sampler's settings (the authors' training defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct Unroll {
    /// σ₀ of the start (1 in the authors' code).
    pub sigma0: f64,
    /// h₀, the first step size.
    pub h0: f64,
    /// β ∈ (0, 1] (0.2 while training, 0.1 when evaluating).
    pub beta: f64,
    /// T, the number of steps (at most; [`reconstruct`] may stop earlier).
    pub steps: usize,
    /// σ_L: [`reconstruct`] stops a run when σ_t ≤ σ_L.
    pub sigma_final: f64,
    /// A, reconstructions averaged per image.
    pub average: usize,
}

impl Default for Unroll {
    fn default() -> Self {
        Unroll {
            sigma0: 1.0,
            h0: 0.1,
            beta: 0.2,
            steps: 100,
            sigma_final: 0.01,
            average: 5,
        }
    }
}

impl Unroll {
    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(OlmError::Invalid(m));
        if !(self.h0 > 0.0 && self.h0 <= 1.0) {
            return bad(format!("h0 must be in (0, 1], got {}", self.h0));
        }
        if !(self.beta > 0.0 && self.beta <= 1.0) {
            return bad(format!("beta must be in (0, 1], got {}", self.beta));
        }
        if !(self.sigma0 > 0.0 && self.sigma0.is_finite()) {
            return bad(format!("sigma0 must be positive, got {}", self.sigma0));
        }
        if self.steps == 0 || self.average == 0 {
            return bad("steps and average must be at least 1".into());
        }
        Ok(())
    }

    /// h_t of step t ≥ 1.
    pub fn h(&self, t: usize) -> f64 {
        let t = t as f64;
        self.h0 * t / (1.0 + self.h0 * (t - 1.0))
    }

    /// c_t = √((1 − β h_t)² − (1 − h_t)²), so that γ_t = c_t σ_t.
    pub fn c(&self, t: usize) -> f64 {
        let h = self.h(t);
        ((1.0 - self.beta * h).powi(2) - (1.0 - h).powi(2))
            .max(0.0)
            .sqrt()
    }
}

/// The image geometry and the model of a run.
pub struct Setup<'a> {
    /// The frozen denoiser.
    pub model: &'a dyn Denoiser,
    /// `(c, h, w)` of one image (D = c·h·w).
    pub dims: (usize, usize, usize),
    /// e, the training mean image (D values, planar).
    pub mean: &'a [f64],
}

impl Setup<'_> {
    fn dim(&self) -> usize {
        self.dims.0 * self.dims.1 * self.dims.2
    }

    fn check(&self, m: &Rows, images: &[Vec<f32>]) -> Result<()> {
        let d = self.dim();
        if self.model.channels() != self.dims.0 {
            return Err(OlmError::Invalid(format!(
                "the model takes {} channel(s), the images have {}",
                self.model.channels(),
                self.dims.0
            )));
        }
        if m.dim != d || self.mean.len() != d {
            return Err(OlmError::Invalid(format!(
                "the measurement rows have {} columns and the mean image {} values, but a {}×{}×{} image has {d}",
                m.dim,
                self.mean.len(),
                self.dims.0,
                self.dims.1,
                self.dims.2
            )));
        }
        if images.is_empty() {
            return Err(OlmError::Invalid("no images".into()));
        }
        if let Some(k) = images.iter().position(|i| i.len() != d) {
            return Err(OlmError::Invalid(format!(
                "image {k} has {} values, expected {d}",
                images[k].len()
            )));
        }
        Ok(())
    }

    /// f(y) of each run (planar f64), one batched model call.
    async fn residual(&self, gpu: &Gpu, ys: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
        let (c, h, w) = self.dims;
        let d = self.dim();
        let mut hwc = Vec::with_capacity(ys.len() * d);
        for y in ys {
            let v: Vec<f32> = y.iter().map(|&v| v as f32).collect();
            hwc.extend(chw_to_hwc(c, h, w, &v));
        }
        let t = gpu.upload(Shape::new(ys.len(), h, w, c), &hwc);
        let f = self.model.residual(gpu, &t, Noise::Blind)?;
        let back = gpu.read(&f).await?;
        Ok(back
            .chunks(d)
            .map(|v| hwc_to_chw(c, h, w, v).iter().map(|&x| x as f64).collect())
            .collect())
    }

    /// Jᵀu with J = ∂x̂/∂y at y (planar f64).
    async fn vjp(&self, gpu: &Gpu, y: &[f64], u: &[f64]) -> Result<Vec<f64>> {
        let (c, h, w) = self.dims;
        let up = |v: &[f64]| {
            let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            gpu.upload(Shape::new(1, h, w, c), &chw_to_hwc(c, h, w, &v))
        };
        let r = self.model.vjp(gpu, &up(y), &up(u), Noise::Blind)?;
        let back = gpu.read(&r).await?;
        Ok(hwc_to_chw(c, h, w, &back)
            .iter()
            .map(|&x| x as f64)
            .collect())
    }
}

/// The seed of the noise of optimisation step `k` under `seed`.
pub fn noise_seed(seed: u64, k: u64) -> u64 {
    seed.wrapping_add(k << 32)
}

/// z_t of all runs (`runs × dim`, run-major): stream t, element s·D + i.
fn noise(seed: u64, t: usize, runs: usize, dim: usize) -> Vec<f64> {
    rng::normals(seed, t as u32, runs * dim)
        .into_iter()
        .map(|v| v as f64)
        .collect()
}

/// The result of one forward (and reverse) pass.
#[derive(Clone, Debug)]
pub struct Pass {
    /// L = (1/B) Σ_b ‖x̄_b − x_b‖².
    pub loss: f64,
    /// Mean squared error per pixel of the averaged reconstructions, L/D.
    pub mse: f64,
    /// ∂L/∂M (n × D, row-major), when the reverse pass ran.
    pub grad: Option<Vec<f64>>,
    /// The averaged reconstructions x̄_b (planar f32).
    pub recon: Vec<Vec<f32>>,
    /// Steps run (the slowest run's).
    pub steps: usize,
}

struct Tape {
    /// y_{t−1} per step (each: all runs).
    ys: Vec<Vec<Vec<f64>>>,
    /// f_t = f(y_{t−1}) per step.
    fs: Vec<Vec<Vec<f64>>>,
    /// σ_t per step and run.
    sigmas: Vec<Vec<f64>>,
}

/// Runs the unrolled sampler on `images` (planar f32, D each) measured by
/// `m`, `cfg.average` times each, with the noise of `seed`; with `grad`,
/// runs the reverse pass too and returns ∂L/∂M. Without `grad`, a run stops
/// when its σ_t ≤ σ_L (`early_stop`) or after `cfg.steps`.
struct Mode {
    seed: u64,
    grad: bool,
    early_stop: bool,
}

async fn pass(
    gpu: &Gpu,
    setup: &Setup<'_>,
    m: &Rows,
    images: &[Vec<f32>],
    cfg: &Unroll,
    mode: Mode,
) -> Result<Pass> {
    let Mode {
        seed,
        grad,
        early_stop,
    } = mode;
    cfg.check()?;
    setup.check(m, images)?;
    let d = setup.dim();
    let b = images.len();
    let runs = b * cfg.average;
    let xs: Vec<Vec<f64>> = images
        .iter()
        .map(|i| i.iter().map(|&v| v as f64).collect())
        .collect();
    let e = setup.mean;
    let pe = m.project(e);
    let px: Vec<Vec<f64>> = xs.iter().map(|x| m.project(x)).collect();
    let z0 = noise(seed, 0, runs, d);
    let mut y: Vec<Vec<f64>> = (0..runs)
        .map(|s| {
            let bi = s % b;
            (0..d)
                .map(|i| e[i] - pe[i] + px[bi][i] + cfg.sigma0 * z0[s * d + i])
                .collect()
        })
        .collect();
    let mut tape = Tape {
        ys: Vec::new(),
        fs: Vec::new(),
        sigmas: Vec::new(),
    };
    let mut active = vec![true; runs];
    let mut steps = 0;
    for t in 1..=cfg.steps {
        let idx: Vec<usize> = (0..runs).filter(|&s| active[s]).collect();
        if idx.is_empty() {
            break;
        }
        let batch: Vec<Vec<f64>> = idx.iter().map(|&s| y[s].clone()).collect();
        let fb = setup.residual(gpu, &batch).await?;
        let z = noise(seed, t, runs, d);
        let (h, c) = (cfg.h(t), cfg.c(t));
        let mut sig = vec![0.0; runs];
        for (j, &s) in idx.iter().enumerate() {
            let f = &fb[j];
            let ys = &y[s];
            let bi = s % b;
            // P (y − f) − P x, then d = f + that.
            let v: Vec<f64> = ys.iter().zip(f).map(|(a, c)| a - c).collect();
            let pv = m.project(&v);
            let dt: Vec<f64> = (0..d).map(|i| f[i] + pv[i] - px[bi][i]).collect();
            let sigma = (dt.iter().map(|v| v * v).sum::<f64>() / d as f64).sqrt();
            if !sigma.is_finite() {
                return Err(OlmError::Diverged {
                    run: s,
                    step: t,
                    sigma,
                });
            }
            sig[s] = sigma;
            let g = c * sigma;
            let zs = &z[s * d..(s + 1) * d];
            let ynew: Vec<f64> = (0..d).map(|i| ys[i] - h * dt[i] + g * zs[i]).collect();
            y[s] = ynew;
            if early_stop && sigma <= cfg.sigma_final {
                active[s] = false;
            }
        }
        if grad {
            tape.ys.push(batch);
            tape.fs.push(fb);
            tape.sigmas.push(sig);
        }
        steps = t;
    }
    // x̂ = y − f(y), averaged over the repetitions.
    let ff = setup.residual(gpu, &y).await?;
    let mut xbar = vec![vec![0.0f64; d]; b];
    for s in 0..runs {
        let bi = s % b;
        for i in 0..d {
            xbar[bi][i] += (y[s][i] - ff[s][i]) / cfg.average as f64;
        }
    }
    let mut loss = 0.0;
    for bi in 0..b {
        loss += xbar[bi]
            .iter()
            .zip(&xs[bi])
            .map(|(a, c)| (a - c) * (a - c))
            .sum::<f64>();
    }
    loss /= b as f64;
    let recon = xbar
        .iter()
        .map(|v| v.iter().map(|&x| x as f32).collect())
        .collect();
    let mut out = Pass {
        loss,
        mse: loss / d as f64,
        grad: None,
        recon,
        steps,
    };
    if !grad {
        return Ok(out);
    }

    // Reverse pass.
    let mut gm = vec![0.0f64; m.n * d];
    let add_pair = |gm: &mut [f64], ubar: &[f64], v: &[f64]| {
        // ∂/∂M of ūᵀ MᵀM v = (Mū) vᵀ + (Mv) ūᵀ.
        let a = m.apply(ubar);
        let bv = m.apply(v);
        for k in 0..m.n {
            let row = &mut gm[k * d..(k + 1) * d];
            for i in 0..d {
                row[i] += a[k] * v[i] + bv[k] * ubar[i];
            }
        }
    };
    let scale = 2.0 / (cfg.average as f64 * b as f64);
    let mut ybar = Vec::with_capacity(runs);
    for (s, ys) in y.iter().enumerate() {
        let bi = s % b;
        let u: Vec<f64> = (0..d).map(|i| scale * (xbar[bi][i] - xs[bi][i])).collect();
        ybar.push(setup.vjp(gpu, ys, &u).await?);
    }
    for t in (1..=steps).rev() {
        let (yprev, fs, sig) = (&tape.ys[t - 1], &tape.fs[t - 1], &tape.sigmas[t - 1]);
        let z = noise(seed, t, runs, d);
        let (h, c) = (cfg.h(t), cfg.c(t));
        for s in 0..runs {
            let bi = s % b;
            let (yp, f) = (&yprev[s], &fs[s]);
            let yb = &ybar[s];
            let zs = &z[s * d..(s + 1) * d];
            let v: Vec<f64> = yp.iter().zip(f).map(|(a, c)| a - c).collect();
            let pv = m.project(&v);
            let dt: Vec<f64> = (0..d).map(|i| f[i] + pv[i] - px[bi][i]).collect();
            let sigma = sig[s];
            let sbar = c * zs.iter().zip(yb).map(|(a, c)| a * c).sum::<f64>();
            let k = if sigma > 0.0 {
                sbar / (d as f64 * sigma)
            } else {
                0.0
            };
            let dbar: Vec<f64> = (0..d).map(|i| -h * yb[i] + k * dt[i]).collect();
            let pd = m.project(&dbar);
            let fbar: Vec<f64> = (0..d).map(|i| dbar[i] - pd[i]).collect();
            let jt = setup.vjp(gpu, yp, &fbar).await?;
            let w: Vec<f64> = (0..d).map(|i| v[i] - xs[bi][i]).collect();
            add_pair(&mut gm, &dbar, &w);
            let nb: Vec<f64> = (0..d).map(|i| yb[i] + pd[i] + fbar[i] - jt[i]).collect();
            ybar[s] = nb;
        }
    }
    for (s, yb) in ybar.iter().enumerate() {
        let bi = s % b;
        let w: Vec<f64> = (0..d).map(|i| xs[bi][i] - e[i]).collect();
        add_pair(&mut gm, yb, &w);
    }
    out.grad = Some(gm);
    Ok(out)
}

/// Loss and ∂L/∂M of one batch (the unrolled sampler run for `cfg.steps`
/// steps, then its reverse pass), with the noise of `seed`.
pub async fn loss_and_grad(
    gpu: &Gpu,
    setup: &Setup<'_>,
    m: &Rows,
    images: &[Vec<f32>],
    cfg: &Unroll,
    seed: u64,
) -> Result<Pass> {
    pass(
        gpu,
        setup,
        m,
        images,
        cfg,
        Mode {
            seed,
            grad: true,
            early_stop: false,
        },
    )
    .await
}

/// Reconstructions only (no reverse pass): each run stops when its σ_t ≤
/// σ_L or after `cfg.steps`; `x̄` averages `cfg.average` runs per image.
pub async fn reconstruct(
    gpu: &Gpu,
    setup: &Setup<'_>,
    m: &Rows,
    images: &[Vec<f32>],
    cfg: &Unroll,
    seed: u64,
) -> Result<Pass> {
    pass(
        gpu,
        setup,
        m,
        images,
        cfg,
        Mode {
            seed,
            grad: false,
            early_stop: true,
        },
    )
    .await
}

/// The component of `g` (n × D) tangent to the Stiefel manifold at `m`
/// (rows): g − sym(g Mᵀ) M.
pub fn tangent(m: &Rows, g: &[f64]) -> Vec<f64> {
    let (n, d) = (m.n, m.dim);
    let mut gm = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            gm[i * n + j] = g[i * d..(i + 1) * d]
                .iter()
                .zip(m.row(j))
                .map(|(a, b)| a * b)
                .sum();
        }
    }
    let mut out = g.to_vec();
    for i in 0..n {
        for j in 0..n {
            let s = 0.5 * (gm[i * n + j] + gm[j * n + i]);
            if s == 0.0 {
                continue;
            }
            for (o, r) in out[i * d..(i + 1) * d].iter_mut().zip(m.row(j)) {
                *o -= s * r;
            }
        }
    }
    out
}

/// Adam (Kingma & Ba) with bias correction, on M's values.
#[derive(Clone, Debug)]
pub struct Adam {
    /// Learning rate (multiplied by `decay` after each epoch).
    pub lr: f64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Steps taken.
    pub t: u64,
    m: Vec<f64>,
    v: Vec<f64>,
}

impl Adam {
    /// PyTorch's defaults (β₁ 0.9, β₂ 0.999, ε 1e-8) at learning rate `lr`.
    pub fn new(lr: f64, len: usize) -> Adam {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            t: 0,
            m: vec![0.0; len],
            v: vec![0.0; len],
        }
    }

    /// One step: M ← retract(M − lr·Adam(tangent(∂L/∂M))), the rows
    /// re-orthonormalised.
    pub fn step(&mut self, m: &mut Rows, grad: &[f64]) -> Result<()> {
        if grad.len() != m.data.len() || self.m.len() != grad.len() {
            return Err(OlmError::Invalid(format!(
                "a gradient of {} values for {} parameters",
                grad.len(),
                m.data.len()
            )));
        }
        let g = tangent(m, grad);
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t as i32);
        let c2 = 1.0 - b2.powi(self.t as i32);
        let mut data = m.data.clone();
        for i in 0..g.len() {
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * g[i];
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * g[i] * g[i];
            let mh = self.m[i] / c1;
            let vh = self.v[i] / c2;
            data[i] -= self.lr * mh / (vh.sqrt() + self.eps);
        }
        *m = Rows::new(m.n, m.dim, data)?;
        Ok(())
    }
}
