//! The Jacobian of a denoiser and the adaptive basis it exposes.
//!
//! A bias-free ReLU denoiser is locally linear: x̂(y) = J(y)·y with
//! J = ∂x̂/∂y (Mohan, Kadkhodaie, Simoncelli, Fernandez-Granda 2020). The
//! singular vectors of J are the adaptive basis the denoiser projects onto;
//! its effective dimensionality is Σ sᵢ² = ‖J‖²_F (and the trace, the
//! divergence, for the MSE estimate). Everything here runs on the model's
//! batched [`Denoiser::jvp`] / [`Denoiser::vjp`]:
//!
//! - [`jacobian`]: the full N×N matrix from one-hot JVPs in chunks;
//! - [`rows`]: chosen rows (the "adaptive filters") from one-hot VJPs;
//! - [`hutchinson`]: trace and ‖J‖²_F with Rademacher probes, matrix free;
//! - [`randomized_svd`]: top-k singular triplets by randomized subspace
//!   iteration (Halko, Martinsson, Tropp 2011), matrix free.
//!
//! Vectors are planar `(C, H, W)` and flat: index `(c·H + y)·W + x`. The
//! Jacobian is row-major: row = output element, column = input element.

use prior_gpu::{Gpu, GpuError, Shape, Tensor};
use prior_models::tiling::Planar;
use prior_models::{Denoiser, ModelError, Noise};
use prior_ops::layout::{chw_to_hwc, hwc_to_chw};
use prior_ops::reference::rng;

use crate::linalg::{self, Dense, LinalgError};

/// The defaults of the matrix-free analysis: one home for the values of
/// `prior jacobian`'s flags and the browser API's options.
pub mod defaults {
    /// Singular values / vectors reported (`--top-k`).
    pub const TOP_K: usize = 16;
    /// Hutchinson probes (`--probes`).
    pub const PROBES: usize = 64;
    /// Oversampling of the randomized SVD (`--oversample`).
    pub const OVERSAMPLE: usize = 10;
    /// Power iterations of the randomized SVD (`--power`).
    pub const POWER: usize = 3;
    /// Tangents per GPU batch (`--batch`).
    pub const BATCH: usize = 128;
}

/// An error of Jacobian analysis.
#[derive(Debug, thiserror::Error)]
pub enum JacobianError {
    /// The model refused the input or failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A GPU error.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// A dense factorisation did not converge.
    #[error(transparent)]
    Linalg(#[from] LinalgError),
    /// The input does not fit the model (channels, size, length); the message says how.
    #[error("{0}")]
    Input(String),
}

/// Result with [`JacobianError`] as the default error.
pub type Result<T, E = JacobianError> = std::result::Result<T, E>;

/// The stream of our counter-based generator that Rademacher probe `p` uses.
pub const PROBE_STREAM: u32 = 0x4a00_0000;
/// The stream of the Gaussian test matrix of [`randomized_svd`] (column j: + j).
pub const SKETCH_STREAM: u32 = 0x4b00_0000;

/// Rademacher vector (±1) number `probe` under `seed`: the sign bit of our
/// generator's hash, `mix(i ^ key(seed, PROBE_STREAM + probe))`.
pub fn rademacher(seed: u64, probe: u32, n: usize) -> Vec<f32> {
    let k = rng::key(seed, PROBE_STREAM.wrapping_add(probe));
    (0..n as u32)
        .map(|i| {
            if rng::mix(i ^ k) >> 31 == 0 {
                1.0
            } else {
                -1.0
            }
        })
        .collect()
}

/// A model linearised at one input: batched products with planar vectors.
pub struct At<'a> {
    /// The model.
    pub model: &'a dyn Denoiser,
    /// Channels of the input.
    pub c: usize,
    /// Height of the input, pixels.
    pub h: usize,
    /// Width of the input, pixels.
    pub w: usize,
    y: Tensor,
    /// The noise variance t the model is linearised at (`[1, 1, 1, 1]`),
    /// held fixed; `None`: blind (noise-conditioned models estimate it).
    t: Option<Tensor>,
    /// The most tangents one batch may hold.
    pub max_batch: usize,
}

impl<'a> At<'a> {
    /// Uploads `y` and sizes batches so that one tangent batch's largest
    /// activation (`values_per_pixel` floats per pixel per sample) fits the
    /// adapter's buffer limit; `batch` caps it further. `variance` is the
    /// noise variance given to noise-conditioned models (`None`: blind).
    pub fn new(
        gpu: &Gpu,
        model: &'a dyn Denoiser,
        y: Planar<'_>,
        batch: usize,
        variance: Option<f32>,
    ) -> Result<At<'a>> {
        if y.c != model.channels() {
            return Err(JacobianError::Input(format!(
                "the model takes {} channel(s), the image has {}",
                model.channels(),
                y.c
            )));
        }
        let m = model.size_multiple();
        if !y.h.is_multiple_of(m) || !y.w.is_multiple_of(m) {
            return Err(JacobianError::Input(format!(
                "the image is {}×{}, but {} needs height and width divisible by {m}: crop or pad it",
                y.h,
                y.w,
                model.describe()
            )));
        }
        if y.data.len() != y.c * y.h * y.w {
            return Err(JacobianError::Input(format!(
                "{} values for a {}×{}×{} image",
                y.data.len(),
                y.c,
                y.h,
                y.w
            )));
        }
        let per_sample = (y.h * y.w * model.values_per_pixel().max(y.c) * 4) as u64;
        let fit = (gpu.max_buffer_bytes / per_sample.max(1)) as usize;
        if fit == 0 {
            return Err(JacobianError::Input(format!(
                "a {}×{} image needs {per_sample} bytes per tangent, over the adapter's {}-byte buffer limit: use a smaller crop",
                y.h, y.w, gpu.max_buffer_bytes
            )));
        }
        let t = gpu.upload(
            Shape::new(1, y.h, y.w, y.c),
            &chw_to_hwc(y.c, y.h, y.w, y.data),
        );
        let var = variance.map(|v| gpu.upload(Shape::new(1, 1, 1, 1), &[v]));
        Ok(At {
            model,
            c: y.c,
            h: y.h,
            w: y.w,
            y: t,
            t: var,
            max_batch: fit.min(batch.max(1)),
        })
    }

    fn noise(&self) -> Noise<'_> {
        self.t.as_ref().map_or(Noise::Blind, Noise::Variance)
    }

    /// Number of elements N = C·H·W.
    pub fn n(&self) -> usize {
        self.c * self.h * self.w
    }

    fn upload(&self, gpu: &Gpu, vs: &[f32]) -> Tensor {
        let n = self.n();
        let k = vs.len() / n;
        let mut hwc = Vec::with_capacity(vs.len());
        for v in vs.chunks(n) {
            hwc.extend(chw_to_hwc(self.c, self.h, self.w, v));
        }
        gpu.upload(Shape::new(k, self.h, self.w, self.c), &hwc)
    }

    async fn download(&self, gpu: &Gpu, t: &Tensor) -> Result<Vec<f32>> {
        let hwc = gpu.read(t).await?;
        let n = self.n();
        let mut out = Vec::with_capacity(hwc.len());
        for v in hwc.chunks(n) {
            out.extend(hwc_to_chw(self.c, self.h, self.w, v));
        }
        Ok(out)
    }

    async fn product(&self, gpu: &Gpu, vs: &[f32], transpose: bool) -> Result<Vec<f32>> {
        let n = self.n();
        if !vs.len().is_multiple_of(n) {
            return Err(JacobianError::Input(format!(
                "{} values is not a whole number of {n}-vectors",
                vs.len()
            )));
        }
        let mut out = Vec::with_capacity(vs.len());
        for chunk in vs.chunks(self.max_batch * n) {
            let t = self.upload(gpu, chunk);
            let r = if transpose {
                self.model.vjp(gpu, &self.y, &t, self.noise())?
            } else {
                self.model.jvp(gpu, &self.y, &t, self.noise())?
            };
            out.extend(self.download(gpu, &r).await?);
        }
        Ok(out)
    }

    /// J·vᵢ for the k vectors `vs` (k·N values, one after the other).
    pub async fn jvp(&self, gpu: &Gpu, vs: &[f32]) -> Result<Vec<f32>> {
        self.product(gpu, vs, false).await
    }

    /// Jᵀ·uᵢ for the k vectors `us`.
    pub async fn vjp(&self, gpu: &Gpu, us: &[f32]) -> Result<Vec<f32>> {
        self.product(gpu, us, true).await
    }

    /// The denoised image x̂(y) (planar).
    pub async fn denoised(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let d = self.model.denoise(gpu, &self.y, self.noise())?;
        self.download(gpu, &d).await
    }

    /// The input y (planar).
    pub async fn input(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        self.download(gpu, &self.y).await
    }
}

/// The full N×N Jacobian (row-major f32), column by column from batched
/// one-hot JVPs, `batch` tangents per launch chain.
pub async fn jacobian(gpu: &Gpu, at: &At<'_>) -> Result<Vec<f32>> {
    let n = at.n();
    let mut j = vec![0.0f32; n * n];
    let mut start = 0;
    while start < n {
        let k = at.max_batch.min(n - start);
        let mut e = vec![0.0f32; k * n];
        for b in 0..k {
            e[b * n + start + b] = 1.0;
        }
        let cols = at.jvp(gpu, &e).await?;
        for b in 0..k {
            for i in 0..n {
                j[i * n + start + b] = cols[b * n + i];
            }
        }
        start += k;
    }
    Ok(j)
}

/// Rows `idx` of J (each N values): Jᵀ·e_i from one-hot VJPs. Row i is the
/// "adaptive filter" the denoiser applies to produce output element i.
pub async fn rows(gpu: &Gpu, at: &At<'_>, idx: &[usize]) -> Result<Vec<Vec<f32>>> {
    let n = at.n();
    if let Some(bad) = idx.iter().find(|&&i| i >= n) {
        return Err(JacobianError::Input(format!(
            "row {bad} is outside the {n}×{n} Jacobian"
        )));
    }
    let mut e = vec![0.0f32; idx.len() * n];
    for (b, &i) in idx.iter().enumerate() {
        e[b * n + i] = 1.0;
    }
    let r = at.vjp(gpu, &e).await?;
    Ok(r.chunks(n).map(|c| c.to_vec()).collect())
}

/// Matrix-free estimates from Rademacher probes z: tr J ≈ mean zᵀJz and
/// ‖J‖²_F = Σ sᵢ² ≈ mean ‖Jz‖², each with its standard error.
#[derive(Clone, Debug)]
pub struct Hutchinson {
    /// Number of probes.
    pub probes: usize,
    /// Estimate of tr J.
    pub trace: f64,
    /// Standard error of `trace`.
    pub trace_se: f64,
    /// Estimate of ‖J‖²_F.
    pub sum_sq: f64,
    /// Standard error of `sum_sq`.
    pub sum_sq_se: f64,
}

fn mean_se(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    if x.len() < 2 {
        return (m, f64::NAN);
    }
    let var = x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

/// Hutchinson's estimator with `probes` Rademacher vectors (our generator, `seed`).
pub async fn hutchinson(gpu: &Gpu, at: &At<'_>, probes: usize, seed: u64) -> Result<Hutchinson> {
    if probes == 0 {
        return Err(JacobianError::Input(
            "Hutchinson's estimator needs at least one probe".into(),
        ));
    }
    let n = at.n();
    let (mut tr, mut fro) = (Vec::with_capacity(probes), Vec::with_capacity(probes));
    let mut p = 0;
    while p < probes {
        let k = at.max_batch.min(probes - p);
        let z: Vec<f32> = (0..k)
            .flat_map(|b| rademacher(seed, (p + b) as u32, n))
            .collect();
        let jz = at.jvp(gpu, &z).await?;
        for b in 0..k {
            let (zb, jb) = (&z[b * n..(b + 1) * n], &jz[b * n..(b + 1) * n]);
            tr.push(zb.iter().zip(jb).map(|(a, c)| *a as f64 * *c as f64).sum());
            fro.push(jb.iter().map(|c| *c as f64 * *c as f64).sum());
        }
        p += k;
    }
    let (trace, trace_se) = mean_se(&tr);
    let (sum_sq, sum_sq_se) = mean_se(&fro);
    Ok(Hutchinson {
        probes,
        trace,
        trace_se,
        sum_sq,
        sum_sq_se,
    })
}

/// Top singular triplets: J ≈ U·diag(s)·Vᵀ (columns of `u`, `v` are planar vectors).
#[derive(Clone, Debug)]
pub struct TopSvd {
    /// The k largest singular values, non-increasing.
    pub s: Vec<f64>,
    /// Left singular vectors, `N × k` (one planar vector per column).
    pub u: Dense,
    /// Right singular vectors, `N × k` (one planar vector per column).
    pub v: Dense,
}

fn to_cols(n: usize, k: usize, flat: &[f32]) -> Dense {
    // flat holds k vectors of n; as an n × k matrix.
    let mut d = vec![0.0; n * k];
    for j in 0..k {
        for i in 0..n {
            d[i * k + j] = flat[j * n + i] as f64;
        }
    }
    Dense::new(n, k, d)
}

fn from_cols(m: &Dense) -> Vec<f32> {
    (0..m.cols)
        .flat_map(|j| (0..m.rows).map(move |i| (j, i)))
        .map(|(j, i)| m.get(i, j) as f32)
        .collect()
}

/// Randomized SVD of J, matrix free: a Gaussian sketch of `k + oversample`
/// columns (our generator, `seed`), `power` subspace iterations (each one
/// VJP and one JVP batch, re-orthonormalised), then B = QᵀJ from VJPs and
/// the SVD of the small B. The top-k singular values are accurate when
/// s_k / s_{k+oversample} is large or with a few power iterations.
pub async fn randomized_svd(
    gpu: &Gpu,
    at: &At<'_>,
    k: usize,
    oversample: usize,
    power: usize,
    seed: u64,
) -> Result<TopSvd> {
    let n = at.n();
    let l = (k + oversample).min(n);
    if k == 0 || k > n {
        return Err(JacobianError::Input(format!(
            "randomized SVD: k = {k} must be in 1..={n}"
        )));
    }
    let omega: Vec<f32> = (0..l)
        .flat_map(|j| rng::normals(seed, SKETCH_STREAM.wrapping_add(j as u32), n))
        .collect();
    let mut q = linalg::orthonormal_columns(&to_cols(n, l, &at.jvp(gpu, &omega).await?));
    for _ in 0..power {
        let z = linalg::orthonormal_columns(&to_cols(n, l, &at.vjp(gpu, &from_cols(&q)).await?));
        q = linalg::orthonormal_columns(&to_cols(n, l, &at.jvp(gpu, &from_cols(&z)).await?));
    }
    // Bᵀ = JᵀQ (n × l); B = Ũ S Vᵀ ⇔ Bᵀ = V S Ũᵀ.
    let bt = to_cols(n, l, &at.vjp(gpu, &from_cols(&q)).await?);
    let f = linalg::svd(&bt)?;
    // f.u = V (n × l), f.v = Ũ (l × l)
    let u = q.matmul(&f.v);
    let take = |m: &Dense| {
        let mut d = vec![0.0; m.rows * k];
        for i in 0..m.rows {
            d[i * k..(i + 1) * k].copy_from_slice(&m.data[i * m.cols..i * m.cols + k]);
        }
        Dense::new(m.rows, k, d)
    };
    Ok(TopSvd {
        s: f.s[..k].to_vec(),
        u: take(&u),
        v: take(&f.u),
    })
}

/// Dense analysis of a full Jacobian.
#[derive(Clone, Debug)]
pub struct Spectrum {
    /// Singular values, non-increasing.
    pub s: Vec<f64>,
    /// tr J.
    pub trace: f64,
    /// Σ sᵢ² = ‖J‖²_F, the effective dimensionality of the papers.
    pub sum_sq: f64,
    /// ‖J − Jᵀ‖_F / ‖J‖_F.
    pub asymmetry: f64,
    /// Eigenvalues of (J + Jᵀ)/2, non-increasing (when asked for).
    pub eig: Option<Vec<f64>>,
    /// Left singular vectors (N × r columns) when asked for.
    pub u: Option<Dense>,
}

/// SVD (with vectors if `vectors`) and optionally the symmetric
/// eigendecomposition of an N×N Jacobian.
pub fn spectrum(j: &[f32], n: usize, vectors: bool, eig: bool) -> Result<Spectrum> {
    let a = Dense::from_f32(n, n, j);
    let (s, u) = if vectors {
        let f = linalg::svd(&a)?;
        (f.s, Some(f.u))
    } else {
        (linalg::singular_values(&a)?, None)
    };
    let eig = if eig {
        Some(linalg::symmetric_eigen(&a)?.0)
    } else {
        None
    };
    Ok(Spectrum {
        trace: a.trace(),
        sum_sq: s.iter().map(|v| v * v).sum(),
        asymmetry: linalg::asymmetry(&a),
        s,
        eig,
        u,
    })
}

/// `clean + f32(σ/255)·z`, z from our counter-based generator with stream
/// `round(σ)·1000` (image 0 of `prior denoise --add-noise` and the Set12
/// goldens), element = flat planar index.
pub fn add_noise(clean: &[f32], sigma255: f64, seed: u64) -> Vec<f32> {
    let z = rng::normals(
        seed,
        (sigma255.round() as u32).wrapping_mul(1000),
        clean.len(),
    );
    let s = (sigma255 / 255.0) as f32;
    clean.iter().zip(z).map(|(x, z)| x + s * z).collect()
}
