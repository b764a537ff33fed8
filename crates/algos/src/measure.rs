//! Linear measurement operators of the inverse problems of Kadkhodaie &
//! Simoncelli (2021), on the GPU: each is a pair M (measurements → image)
//! and Mᵀ (image → measurements) with orthonormal rows, so that M Mᵀ is the
//! orthogonal projection onto the measured subspace and MᵀM = I on the
//! measurement space (checked in `crates/algos/tests/measure.rs`).
//!
//! Conventions follow the authors' code (`Utils_inverse_prob.py` of
//! universal_inverse_problem):
//! * **synthesis**: M = Mᵀ = 0.
//! * **inpainting**: a 0/1 mask, M = Mᵀ = mask ⊙ (a rectangle of missing
//!   pixels in every channel, or any mask image).
//! * **random pixels**: exactly ⌊p·N⌋ of the N = C·H·W values are kept
//!   (channels masked independently), chosen uniformly: the values whose
//!   hash `mix(i ^ key(seed, STREAM_PIXELS))` (i = flat (C, H, W) index) is
//!   among the ⌊p·N⌋ smallest.
//! * **super-resolution** by s×s blocks: Mᵀ = s · block mean (a stride-s conv
//!   with the kernel 1/s, i.e. the normalised box), M = value / s replicated
//!   over the block (its transpose). H and W must be multiples of s.
//! * **random basis** (compressive sensing): m = ⌊p·N⌋ measurements Mᵀx =
//!   Uᵀx with U the thin Q of the QR of an N×m standard normal matrix
//!   (entries `normal(key(seed, STREAM_BASIS), k·N + i)` for column k and
//!   flat (C, H, W) index i; Cholesky QR in f64 on the CPU, R with a positive
//!   diagonal). U is dense (N·m floats on the GPU): meant for small crops.
//! * **spectral super-resolution**: Mᵀ = mask ⊙ orthonormal 2-D DFT of each
//!   channel, M = real part of the inverse DFT. The authors keep rows
//!   `k < xf or k ≥ H − xf` and columns `k < yf or k ≥ W − yf` with
//!   `xf = ⌊round(H·√p)/2⌋`, `yf = ⌊round(H·W·p/xf)/4⌋`. That set is not
//!   closed under k → −k (frequency −xf is kept, +xf is not), so their
//!   Re(F* D F) gives those unpaired frequencies weight ½ and is not a
//!   projection. We keep a frequency when it **or its mirror** is in the
//!   authors' set, which makes M Mᵀ the orthogonal projection onto the
//!   smallest symmetric set containing theirs (60×60, p = 0.2: 727 of 3600
//!   frequencies per channel at weight 1, where the authors' operator has
//!   625 at weight 1 and 102 at weight ½; their mask lists 676). The demo
//!   figures match the paper's (benches/sampler_demo.rs: 25.3 → 27.0 dB,
//!   253 iterations, paper 25 → 27, 251). Measurements are complex spectra
//!   `[n, h, w, 2C]` (interleaved re, im; zero off the mask); M is Mᵀ's
//!   adjoint on such spectra (every Mᵀx is one).

use prior_gpu::{Gpu, GpuError, Shape, Tensor};
use prior_ops::measure::{self as kernels, Axis, DftPass};
use prior_ops::reference::rng;

/// Noise stream of the random-pixel mask.
pub const STREAM_PIXELS: u32 = 0xF000_0001;
/// Noise stream of the random basis.
pub const STREAM_BASIS: u32 = 0xF000_0002;

/// Errors of building or applying a measurement operator.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// Parameters that make no operator (a fraction that measures nothing, a
    /// rectangle outside the image, a basis over the buffer limit, ...).
    #[error("{0}")]
    Invalid(String),
    /// A GPU error.
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

/// Result with [`MeasureError`] as the default error.
pub type Result<T, E = MeasureError> = std::result::Result<T, E>;

/// A linear measurement operator on images `[n, h, w, c]`.
pub trait Measurement {
    /// One line: task and parameters.
    fn describe(&self) -> String;
    /// `(h, w, c)` of one image.
    fn image_shape(&self) -> (usize, usize, usize);
    /// Real dimension of the measurement space of one image.
    fn dimensions(&self) -> usize;
    /// Shape of the measurement tensor of `n` images.
    fn measurement_shape(&self, n: usize) -> Shape;
    /// Mᵀ: images → measurements (x_c = Mᵀ x).
    fn mt(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor>;
    /// M: measurements → images.
    fn m(&self, gpu: &Gpu, x_c: &Tensor) -> Result<Tensor>;
    /// M Mᵀ x, the projection onto the measured subspace.
    fn project(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        let c = self.mt(gpu, x)?;
        self.m(gpu, &c)
    }
    /// For masking operators (M Mᵀ v = m ⊙ v): the mask `[1, h, w, c]`,
    /// which lets the sampler fuse the projection into its direction kernel.
    fn mask(&self) -> Option<&Tensor> {
        None
    }
}

/// A task of the paper, with its parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Task {
    /// Unconditional synthesis (M = 0).
    Synthesis,
    /// A missing rectangle (0-based top, left, height, width), all channels.
    InpaintRect {
        /// First missing row.
        top: usize,
        /// First missing column.
        left: usize,
        /// Missing rows.
        height: usize,
        /// Missing columns.
        width: usize,
    },
    /// A mask image `(h, w, mc)` channels-last, mc = 1 (all channels) or c:
    /// values > 0.5 are measured (known), the rest is missing.
    InpaintMask {
        /// `h·w·mc` values, channels-last.
        mask: Vec<f32>,
        /// mc: 1 or the image's channels.
        channels: usize,
    },
    /// Keep a random fraction of the values.
    Pixels {
        /// Fraction of the values kept, in (0, 1].
        fraction: f64,
    },
    /// s×s block averaging.
    SuperRes {
        /// s, the block side (divides height and width).
        factor: usize,
    },
    /// A random orthonormal basis of ⌊p·N⌋ vectors.
    RandomBasis {
        /// p, measurements per image value.
        fraction: f64,
    },
    /// Any linear measurement: the rows of an n × N matrix (N = C·H·W, each
    /// row in flat (C, H, W) order, row-major `rows[k·N + i]`), made
    /// orthonormal on the way in ([`orthonormalize_rows`]) so that M Mᵀ is
    /// the orthogonal projection onto their span.
    Matrix {
        /// The n × N values, row-major.
        rows: Vec<f64>,
        /// n, the number of rows (measurements).
        count: usize,
        /// Where they came from (a file name), for [`Measurement::describe`].
        source: String,
    },
    /// Keep the low DFT frequencies (fraction p, the authors' layout).
    Spectral {
        /// p, fraction of the frequencies kept.
        fraction: f64,
    },
}

impl Task {
    /// Short name of the task (`synthesis`, `inpaint`, `pixels`, `superres`,
    /// `cs`, `matrix`, `spectral`), as the CLI and file names use it.
    pub fn name(&self) -> &'static str {
        match self {
            Task::Synthesis => "synthesis",
            Task::InpaintRect { .. } | Task::InpaintMask { .. } => "inpaint",
            Task::Pixels { .. } => "pixels",
            Task::SuperRes { .. } => "superres",
            Task::RandomBasis { .. } => "cs",
            Task::Matrix { .. } => "matrix",
            Task::Spectral { .. } => "spectral",
        }
    }
}

fn invalid<T>(msg: String) -> Result<T> {
    Err(MeasureError::Invalid(msg))
}

fn check_fraction(task: &str, p: f64) -> Result<()> {
    if !(p > 0.0 && p <= 1.0) {
        return invalid(format!("{task}: the fraction must be in (0, 1], got {p}"));
    }
    Ok(())
}

fn check_image(what: &str, x: &Tensor, (h, w, c): (usize, usize, usize)) -> Result<()> {
    let s = x.shape();
    if (s.h, s.w, s.c) != (h, w, c) {
        return invalid(format!(
            "{what}: the operator is for {h}x{w}x{c} images, got {s}"
        ));
    }
    Ok(())
}

/// Builds the operator of `task` for `h × w × c` images; `seed` draws the
/// random pixels or the random basis.
pub fn build(
    gpu: &Gpu,
    task: &Task,
    (h, w, c): (usize, usize, usize),
    seed: u64,
) -> Result<Box<dyn Measurement>> {
    if h == 0 || w == 0 || c == 0 {
        return invalid(format!("empty image {h}x{w}x{c}"));
    }
    let dims = (h, w, c);
    gpu.check_fits("image", Shape::new(1, h, w, c))?;
    Ok(match task {
        Task::Synthesis => Box::new(Synthesis { dims }),
        Task::InpaintRect {
            top,
            left,
            height,
            width,
        } => {
            if *height == 0 || *width == 0 || top + height > h || left + width > w {
                return invalid(format!(
                    "inpaint: rectangle top {top}, left {left}, {height}x{width} is empty or leaves the {h}x{w} image"
                ));
            }
            let mut m = vec![1.0f32; h * w * c];
            for y in *top..top + height {
                for x in *left..left + width {
                    for ch in 0..c {
                        m[(y * w + x) * c + ch] = 0.0;
                    }
                }
            }
            Box::new(Masking::new(
                gpu,
                dims,
                m,
                format!(
                    "inpaint rows {top}..{} columns {left}..{}",
                    top + height,
                    left + width
                ),
            )?)
        }
        Task::InpaintMask { mask, channels } => {
            if (*channels != 1 && *channels != c) || mask.len() != h * w * channels {
                return invalid(format!(
                    "inpaint: the mask has {} values with {channels} channel(s); the image is {h}x{w}x{c} (mask must be {h}x{w} with 1 or {c} channels)",
                    mask.len()
                ));
            }
            let m: Vec<f32> = (0..h * w * c)
                .map(|j| {
                    if mask[(j / c) * channels + (j % c) % channels] > 0.5 {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect();
            Box::new(Masking::new(gpu, dims, m, "inpaint (mask image)".into())?)
        }
        Task::Pixels { fraction } => {
            check_fraction("pixels", *fraction)?;
            let m = random_pixel_mask(dims, *fraction, seed);
            Box::new(Masking::new(
                gpu,
                dims,
                m,
                format!("random pixels p={fraction}, seed {seed}"),
            )?)
        }
        Task::SuperRes { factor } => {
            let s = *factor;
            if s < 1 || h % s != 0 || w % s != 0 {
                return invalid(format!(
                    "superres: the image size {h}x{w} is not a multiple of the factor {s}"
                ));
            }
            Box::new(BlockSuperRes { dims, s })
        }
        Task::RandomBasis { fraction } => {
            check_fraction("cs", *fraction)?;
            Box::new(DenseBasis::random(gpu, dims, *fraction, seed)?)
        }
        Task::Matrix {
            rows,
            count,
            source,
        } => Box::new(DenseBasis::from_rows(gpu, dims, rows, *count, source)?),
        Task::Spectral { fraction } => {
            check_fraction("spectral", *fraction)?;
            Box::new(Spectral::new(gpu, dims, *fraction)?)
        }
    })
}

/// M = Mᵀ = 0.
pub struct Synthesis {
    dims: (usize, usize, usize),
}

impl Measurement for Synthesis {
    fn describe(&self) -> String {
        "synthesis (no measurements)".into()
    }
    fn image_shape(&self) -> (usize, usize, usize) {
        self.dims
    }
    fn dimensions(&self) -> usize {
        0
    }
    fn measurement_shape(&self, n: usize) -> Shape {
        let (h, w, c) = self.dims;
        Shape::new(n, h, w, c)
    }
    fn mt(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        check_image("synthesis Mᵀ", x, self.dims)?;
        Ok(gpu.zeros(x.shape()))
    }
    fn m(&self, gpu: &Gpu, x_c: &Tensor) -> Result<Tensor> {
        check_image("synthesis M", x_c, self.dims)?;
        Ok(gpu.zeros(x_c.shape()))
    }
}

/// M = Mᵀ = mask ⊙ (inpainting, random pixels).
pub struct Masking {
    dims: (usize, usize, usize),
    mask: Tensor,
    kept: usize,
    desc: String,
}

impl Masking {
    /// `mask`: `h·w·c` values (0 or 1), channels-last.
    pub fn new(
        gpu: &Gpu,
        dims: (usize, usize, usize),
        mask: Vec<f32>,
        desc: String,
    ) -> Result<Masking> {
        let (h, w, c) = dims;
        let kept = mask.iter().filter(|v| **v > 0.5).count();
        Ok(Masking {
            dims,
            mask: gpu.upload(Shape::new(1, h, w, c), &mask),
            kept,
            desc,
        })
    }
}

impl Measurement for Masking {
    fn describe(&self) -> String {
        let n = self.dims.0 * self.dims.1 * self.dims.2;
        format!("{} ({} of {} values measured)", self.desc, self.kept, n)
    }
    fn image_shape(&self) -> (usize, usize, usize) {
        self.dims
    }
    fn dimensions(&self) -> usize {
        self.kept
    }
    fn measurement_shape(&self, n: usize) -> Shape {
        let (h, w, c) = self.dims;
        Shape::new(n, h, w, c)
    }
    fn mt(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        check_image("mask Mᵀ", x, self.dims)?;
        Ok(kernels::mask_mul(gpu, x, &self.mask)?)
    }
    fn m(&self, gpu: &Gpu, x_c: &Tensor) -> Result<Tensor> {
        check_image("mask M", x_c, self.dims)?;
        Ok(kernels::mask_mul(gpu, x_c, &self.mask)?)
    }
    fn mask(&self) -> Option<&Tensor> {
        Some(&self.mask)
    }
}

/// The random-pixel mask (channels-last 0/1 values), see the module docs.
pub fn random_pixel_mask((h, w, c): (usize, usize, usize), fraction: f64, seed: u64) -> Vec<f32> {
    let n = h * w * c;
    let keep = ((fraction * n as f64).floor() as usize).min(n);
    let key = rng::key(seed, STREAM_PIXELS);
    let mut order: Vec<(u32, u32)> = (0..n as u32).map(|i| (rng::mix(i ^ key), i)).collect();
    order.sort_unstable();
    let mut m = vec![0.0f32; n];
    for &(_, i) in &order[..keep] {
        let i = i as usize;
        let (ch, pix) = (i / (h * w), i % (h * w));
        m[pix * c + ch] = 1.0;
    }
    m
}

/// s×s block super-resolution.
pub struct BlockSuperRes {
    dims: (usize, usize, usize),
    s: usize,
}

impl Measurement for BlockSuperRes {
    fn describe(&self) -> String {
        let (h, w, _) = self.dims;
        format!(
            "{}x super-resolution ({}x{} → {h}x{w})",
            self.s,
            h / self.s,
            w / self.s
        )
    }
    fn image_shape(&self) -> (usize, usize, usize) {
        self.dims
    }
    fn dimensions(&self) -> usize {
        let (h, w, c) = self.dims;
        h / self.s * (w / self.s) * c
    }
    fn measurement_shape(&self, n: usize) -> Shape {
        let (h, w, c) = self.dims;
        Shape::new(n, h / self.s, w / self.s, c)
    }
    fn mt(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        check_image("superres Mᵀ", x, self.dims)?;
        Ok(kernels::block_down(gpu, x, self.s)?)
    }
    fn m(&self, gpu: &Gpu, x_c: &Tensor) -> Result<Tensor> {
        let (h, w, c) = self.dims;
        check_image("superres M", x_c, (h / self.s, w / self.s, c))?;
        Ok(kernels::block_up(gpu, x_c, self.s)?)
    }
}

/// A dense orthonormal basis of m vectors in N = h·w·c dimensions: the
/// random basis of compressive sensing ([`Task::RandomBasis`]) or the rows
/// of a matrix from a file ([`Task::Matrix`]).
pub struct DenseBasis {
    dims: (usize, usize, usize),
    /// U (N × m), rows in channels-last pixel order.
    u: Tensor,
    m: usize,
    /// `cs` or `matrix`, for error messages.
    task: &'static str,
    what: String,
}

impl DenseBasis {
    /// ⌊`fraction`·N⌋ orthonormal vectors in N = h·w·c dimensions, drawn from
    /// our generator under `seed` (`dims` = `(h, w, c)`); refused when the
    /// dense basis would exceed the adapter's buffer limit.
    pub fn random(
        gpu: &Gpu,
        dims: (usize, usize, usize),
        fraction: f64,
        seed: u64,
    ) -> Result<DenseBasis> {
        let (h, w, c) = dims;
        let n = h * w * c;
        let m = (fraction * n as f64).floor() as usize;
        if m == 0 {
            return invalid(format!(
                "cs: fraction {fraction} of {n} values is no measurement"
            ));
        }
        Self::check_size(gpu, "cs", n, m)?;
        let q = random_orthonormal(n, m, seed);
        Ok(Self::upload(
            gpu,
            dims,
            &q,
            (m, "cs"),
            format!("random orthonormal basis p={fraction} ({m} of {n} dimensions, seed {seed})"),
        ))
    }

    /// The `count` rows of `rows` (row-major, each in flat (C, H, W) order
    /// of `dims`), orthonormalised with [`orthonormalize_rows`].
    pub fn from_rows(
        gpu: &Gpu,
        dims: (usize, usize, usize),
        rows: &[f64],
        count: usize,
        source: &str,
    ) -> Result<DenseBasis> {
        let (h, w, c) = dims;
        let n = h * w * c;
        if count == 0 || rows.len() != count * n {
            return invalid(format!(
                "matrix {source}: {} values for {count} rows; the image is {h}x{w}x{c}, so each row needs N = C·H·W = {n} values",
                rows.len()
            ));
        }
        if count > n {
            return invalid(format!(
                "matrix {source}: {count} rows in {n} dimensions cannot be independent (at most {n})"
            ));
        }
        Self::check_size(gpu, "matrix", n, count)?;
        let q = orthonormalize_rows(rows, count, n)
            .map_err(|e| MeasureError::Invalid(format!("matrix {source}: {e}")))?;
        Ok(Self::upload(
            gpu,
            dims,
            &q,
            (count, "matrix"),
            format!("matrix {source} ({count} of {n} dimensions)"),
        ))
    }

    fn check_size(gpu: &Gpu, task: &str, n: usize, m: usize) -> Result<()> {
        let bytes = (n * m) as u64 * 4;
        if bytes > gpu.max_buffer_bytes || (n * m) as u64 >= u32::MAX as u64 {
            return invalid(format!(
                "{task}: the dense {n}x{m} basis needs {:.0} MiB, over this adapter's {:.0} MiB buffer limit; use a smaller crop",
                bytes as f64 / 1048576.0,
                gpu.max_buffer_bytes as f64 / 1048576.0
            ));
        }
        Ok(())
    }

    /// Uploads orthonormal vectors given column-major (vector k at
    /// `q[k·N..(k+1)·N]`, flat (C, H, W) order).
    fn upload(
        gpu: &Gpu,
        dims: (usize, usize, usize),
        q: &[f64],
        (m, task): (usize, &'static str),
        what: String,
    ) -> Self {
        let (h, w, c) = dims;
        let n = h * w * c;
        // Row j of the GPU matrix is channels-last value j = flat (C,H,W) index i.
        let mut u = vec![0.0f32; n * m];
        for j in 0..n {
            let (pix, ch) = (j / c, j % c);
            let i = ch * h * w + pix;
            for k in 0..m {
                u[j * m + k] = q[k * n + i] as f32;
            }
        }
        DenseBasis {
            dims,
            u: gpu.upload(Shape::vector(n * m), &u),
            m,
            task,
            what,
        }
    }
}

/// max |M Mᵀ − I| of `count` rows of length `n` (row-major): 0 for
/// orthonormal rows.
pub fn orthonormality_error(rows: &[f64], count: usize, n: usize) -> f64 {
    let mut worst = 0.0f64;
    for a in 0..count {
        let ra = &rows[a * n..(a + 1) * n];
        for b in 0..=a {
            let rb = &rows[b * n..(b + 1) * n];
            let d: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
            let want = if a == b { 1.0 } else { 0.0 };
            worst = worst.max((d - want).abs());
        }
    }
    worst
}

/// Orthonormal rows spanning the same space as the `count` rows of length
/// `n` (row-major), in f64: Gram–Schmidt, each row projected out twice
/// ("twice is enough": orthonormal to rounding even for nearly dependent
/// rows); row k keeps the direction of its component orthogonal to rows
/// 0..k, so orthonormal rows come back unchanged up to rounding. A row whose
/// remaining part is below 1e-9 of its norm (or not finite) is an error
/// naming it.
pub fn orthonormalize_rows(
    rows: &[f64],
    count: usize,
    n: usize,
) -> std::result::Result<Vec<f64>, String> {
    assert_eq!(rows.len(), count * n);
    let mut q = rows.to_vec();
    for k in 0..count {
        let (done, rest) = q.split_at_mut(k * n);
        let row = &mut rest[..n];
        let norm0 = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        if !norm0.is_finite() {
            return Err(format!("row {k} has a value that is not finite"));
        }
        for _ in 0..2 {
            for j in 0..k {
                let qj = &done[j * n..(j + 1) * n];
                let d: f64 = row.iter().zip(qj).map(|(x, y)| x * y).sum();
                for (x, y) in row.iter_mut().zip(qj) {
                    *x -= d * y;
                }
            }
        }
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm0 == 0.0 || norm <= 1e-9 * norm0 {
            return Err(format!(
                "row {k} is zero or a linear combination of the rows before it (rank-deficient matrix)"
            ));
        }
        for x in row.iter_mut() {
            *x /= norm;
        }
    }
    Ok(q)
}

impl Measurement for DenseBasis {
    fn describe(&self) -> String {
        self.what.clone()
    }
    fn image_shape(&self) -> (usize, usize, usize) {
        self.dims
    }
    fn dimensions(&self) -> usize {
        self.m
    }
    fn measurement_shape(&self, n: usize) -> Shape {
        Shape::new(n, 1, 1, self.m)
    }
    fn mt(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        check_image(&format!("{} Mᵀ", self.task), x, self.dims)?;
        let (h, w, c) = self.dims;
        Ok(kernels::matvec_t(gpu, &self.u, h * w * c, self.m, x)?)
    }
    fn m(&self, gpu: &Gpu, x_c: &Tensor) -> Result<Tensor> {
        if x_c.shape().h != 1 || x_c.shape().w != 1 || x_c.shape().c != self.m {
            return invalid(format!(
                "{} M: expected measurements [n, 1, 1, {}], got {}",
                self.task,
                self.m,
                x_c.shape()
            ));
        }
        let (h, w, c) = self.dims;
        let y = kernels::matvec(gpu, &self.u, h * w * c, self.m, x_c)?;
        Ok(y.reshape(Shape::new(x_c.shape().n, h, w, c)))
    }
}

/// Orthonormal columns (column-major `n × m`, column k at `[k·n..]`) of the
/// thin QR of an `n × m` standard normal matrix drawn from `seed`: Cholesky
/// QR in f64 (G = AᵀA = RᵀR, Q = A R⁻¹; a Gaussian matrix with m ≤ n is
/// well conditioned, cond ≈ (1 + √(m/n)) / (1 − √(m/n)), so one pass is
/// orthonormal to ~1e-14 for m ≤ n/2, and below ~1e-10 unless m is within
/// a few columns of n). R has a positive diagonal, so Q is the unique thin
/// QR factor that LAPACK would give up to column signs.
pub fn random_orthonormal(n: usize, m: usize, seed: u64) -> Vec<f64> {
    assert!(m <= n && m > 0);
    let key = rng::key(seed, STREAM_BASIS);
    let a: Vec<f64> = (0..n * m)
        .map(|idx| rng::normal(key, idx as u32) as f64)
        .collect();
    // Gram matrix (lower triangle), 4×4 blocks of dot products.
    let mut g = vec![0.0f64; m * m];
    let col = |k: usize| &a[k * n..(k + 1) * n];
    let mut i0 = 0;
    while i0 < m {
        let ib = (m - i0).min(4);
        let mut j0 = 0;
        while j0 <= i0 {
            let jb = (m - j0).min(4);
            let mut acc = [[[0.0f64; 8]; 4]; 4];
            let ci: Vec<&[f64]> = (0..ib).map(|t| col(i0 + t)).collect();
            let cj: Vec<&[f64]> = (0..jb).map(|t| col(j0 + t)).collect();
            let chunks = n / 8;
            for q in 0..chunks {
                let o = q * 8;
                for (x, ai) in ci.iter().enumerate() {
                    let va = &ai[o..o + 8];
                    for (y, bj) in cj.iter().enumerate() {
                        let vb = &bj[o..o + 8];
                        for l in 0..8 {
                            acc[x][y][l] += va[l] * vb[l];
                        }
                    }
                }
            }
            for x in 0..ib {
                for y in 0..jb {
                    let mut s: f64 = acc[x][y].iter().sum();
                    for o in chunks * 8..n {
                        s += ci[x][o] * cj[y][o];
                    }
                    g[(i0 + x) * m + j0 + y] = s;
                }
            }
            j0 += 4;
        }
        i0 += 4;
    }
    // Cholesky G = L Lᵀ (lower, row-major), R = Lᵀ.
    let mut l = vec![0.0f64; m * m];
    for i in 0..m {
        for j in 0..=i {
            let (ri, rj) = (&l[i * m..i * m + j], &l[j * m..j * m + j]);
            let s: f64 = ri.iter().zip(rj).map(|(x, y)| x * y).sum();
            let v = g[i * m + j] - s;
            if i == j {
                l[i * m + i] = v.max(f64::MIN_POSITIVE).sqrt();
            } else {
                l[i * m + j] = v / l[j * m + j];
            }
        }
    }
    // Q = A R⁻¹ column by column: q_j = (a_j − Σ_{i<j} L[j][i] q_i) / L[j][j],
    // with 8 target columns updated per pass over each finished column.
    let mut q = a;
    let mut j0 = 0;
    while j0 < m {
        let jb = (m - j0).min(8);
        let (done, rest) = q.split_at_mut(j0 * n);
        let block = &mut rest[..jb * n];
        for i in 0..j0 {
            let qi = &done[i * n..(i + 1) * n];
            for t in 0..jb {
                let coef = l[(j0 + t) * m + i];
                let tgt = &mut block[t * n..(t + 1) * n];
                for (x, y) in tgt.iter_mut().zip(qi) {
                    *x -= coef * y;
                }
            }
        }
        for t in 0..jb {
            let j = j0 + t;
            let (before, cur) = block.split_at_mut(t * n);
            let cur = &mut cur[..n];
            for s in 0..t {
                let coef = l[j * m + j0 + s];
                for (x, y) in cur.iter_mut().zip(&before[s * n..(s + 1) * n]) {
                    *x -= coef * y;
                }
            }
            let d = 1.0 / l[j * m + j];
            for x in cur.iter_mut() {
                *x *= d;
            }
        }
        j0 += jb;
    }
    q
}

/// Spectral super-resolution.
pub struct Spectral {
    dims: (usize, usize, usize),
    mask: Tensor,
    tw_h: Tensor,
    tw_w: Tensor,
    kept: usize,
    fraction: f64,
}

/// The kept-frequency mask `[h·w]` (1 = kept), see the module docs;
/// returns also the authors' `(xf, yf)`.
pub fn spectral_mask(h: usize, w: usize, fraction: f64) -> Result<(Vec<f32>, usize, usize)> {
    let xf = ((h as f64 * fraction.sqrt()).round_ties_even() / 2.0).floor() as usize;
    if xf == 0 {
        return invalid(format!(
            "spectral: fraction {fraction} keeps no frequency of a {h}x{w} image"
        ));
    }
    let yf =
        ((h as f64 * w as f64 * fraction / xf as f64).round_ties_even() / 4.0).floor() as usize;
    if yf == 0 {
        return invalid(format!(
            "spectral: fraction {fraction} keeps no column frequency of a {h}x{w} image"
        ));
    }
    let keep_row = |k: usize| k < xf || k + xf >= h;
    let keep_col = |k: usize| k < yf || k + yf >= w;
    let authors = |i: usize, j: usize| keep_row(i) && keep_col(j);
    let mut m = vec![0.0f32; h * w];
    for i in 0..h {
        for j in 0..w {
            let (mi, mj) = ((h - i) % h, (w - j) % w);
            if authors(i, j) || authors(mi, mj) {
                m[i * w + j] = 1.0;
            }
        }
    }
    Ok((m, xf, yf))
}

impl Spectral {
    /// Keeps the fraction `fraction` of the lowest DFT frequencies of images
    /// of `dims` = `(h, w, c)`.
    pub fn new(gpu: &Gpu, dims: (usize, usize, usize), fraction: f64) -> Result<Spectral> {
        let (h, w, _) = dims;
        let (mask, _, _) = spectral_mask(h, w, fraction)?;
        let kept = mask.iter().filter(|v| **v > 0.5).count();
        Ok(Spectral {
            dims,
            mask: gpu.upload(Shape::new(1, h, w, 1), &mask),
            tw_h: gpu.upload(Shape::vector(2 * h), &kernels::twiddles(h)),
            tw_w: gpu.upload(Shape::vector(2 * w), &kernels::twiddles(w)),
            kept,
            fraction,
        })
    }
}

impl Measurement for Spectral {
    fn describe(&self) -> String {
        let (h, w, _) = self.dims;
        format!(
            "spectral super-resolution p={} ({} of {} frequencies per channel)",
            self.fraction,
            self.kept,
            h * w
        )
    }
    fn image_shape(&self) -> (usize, usize, usize) {
        self.dims
    }
    fn dimensions(&self) -> usize {
        self.kept * self.dims.2
    }
    fn measurement_shape(&self, n: usize) -> Shape {
        let (h, w, c) = self.dims;
        Shape::new(n, h, w, 2 * c)
    }
    fn mt(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        check_image("spectral Mᵀ", x, self.dims)?;
        let pass = |axis, complex_in| DftPass {
            axis,
            complex_in,
            inverse: false,
            real_out: false,
        };
        let a = kernels::dft(gpu, x, pass(Axis::W, false), &self.tw_w, None)?;
        Ok(kernels::dft(
            gpu,
            &a,
            pass(Axis::H, true),
            &self.tw_h,
            Some(&self.mask),
        )?)
    }
    fn m(&self, gpu: &Gpu, x_c: &Tensor) -> Result<Tensor> {
        let (h, w, c) = self.dims;
        check_image("spectral M", x_c, (h, w, 2 * c))?;
        let pass = |axis, real_out| DftPass {
            axis,
            complex_in: true,
            inverse: true,
            real_out,
        };
        let a = kernels::dft(gpu, x_c, pass(Axis::H, false), &self.tw_h, None)?;
        Ok(kernels::dft(
            gpu,
            &a,
            pass(Axis::W, true),
            &self.tw_w,
            None,
        )?)
    }
}
