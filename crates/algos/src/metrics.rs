//! CPU image-quality metrics, accumulated in `f64`: the PSNR and SSIM that
//! `prior denoise` and `prior solve` report, in one home for the CLI and the
//! browser build.
//!
//! The slice/image arguments of each metric must have the same length/shape;
//! a mismatch is a programming error and panics with a message (check shapes
//! of user-supplied images before calling).

use prior_models::tiling::Planar;

fn check_len(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(
        a.len(),
        b.len(),
        "{what}: inputs differ in length ({} vs {})",
        a.len(),
        b.len()
    );
}

/// Mean squared error. 0 for empty inputs; NaN if any value is NaN.
pub fn mse(a: &[f32], b: &[f32]) -> f64 {
    check_len("mse", a, b);
    if a.is_empty() {
        return 0.0;
    }
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = x as f64 - y as f64;
            d * d
        })
        .sum();
    sum / a.len() as f64
}

/// Peak signal-to-noise ratio in dB: `10 log10(peak² / MSE)`; `+inf` when
/// the inputs are equal.
pub fn psnr(a: &[f32], b: &[f32], peak: f64) -> f64 {
    let m = mse(a, b);
    if m == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (peak * peak / m).log10()
}

/// Largest absolute difference; 0 for empty inputs, NaN if any value is NaN.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    check_len("max_abs_diff", a, b);
    let mut m = 0.0f64;
    for (&x, &y) in a.iter().zip(b) {
        let d = (x as f64 - y as f64).abs();
        if d.is_nan() {
            return f64::NAN;
        }
        if d > m {
            m = d;
        }
    }
    m
}

/// Gaussian window half-width: `int(truncate * sigma + 0.5)` with scipy's
/// default truncate 3.5 and sigma 1.5, giving an 11-tap window.
const SSIM_RADIUS: usize = 5;
const SSIM_SIGMA: f64 = 1.5;
const SSIM_K1: f64 = 0.01;
const SSIM_K2: f64 = 0.03;

fn gaussian_window() -> [f64; 2 * SSIM_RADIUS + 1] {
    let mut g = [0.0; 2 * SSIM_RADIUS + 1];
    let mut sum = 0.0;
    for (i, v) in g.iter_mut().enumerate() {
        let x = i as f64 - SSIM_RADIUS as f64;
        *v = (-0.5 * x * x / (SSIM_SIGMA * SSIM_SIGMA)).exp();
        sum += *v;
    }
    for v in g.iter_mut() {
        *v /= sum;
    }
    g
}

/// Mean structural similarity (Wang et al. 2004) for data range 1: an 11×11
/// Gaussian window with σ = 1.5, K1 = 0.01, K2 = 0.03, population
/// (not sample) covariances, averaged over the 'valid' region (windows that
/// lie wholly inside the image) and then over channels. Matches scikit-image
/// `structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
/// use_sample_covariance=False, data_range=1)` on float64 data (with
/// `channel_axis` for several channels).
///
/// `a` and `b` are planar `(C, H, W)` images.
/// Panics if the shapes differ; returns NaN if the image is smaller than
/// 11×11 or has no channels.
pub fn ssim(a: Planar<'_>, b: Planar<'_>) -> f64 {
    assert_eq!(
        (a.c, a.h, a.w),
        (b.c, b.h, b.w),
        "ssim: images differ in shape ({:?} vs {:?})",
        (a.c, a.h, a.w),
        (b.c, b.h, b.w)
    );
    assert_eq!(
        a.data.len(),
        a.c * a.h * a.w,
        "ssim: first image's data does not match its shape"
    );
    assert_eq!(
        b.data.len(),
        b.c * b.h * b.w,
        "ssim: second image's data does not match its shape"
    );
    let win = 2 * SSIM_RADIUS + 1;
    if a.c == 0 || a.h < win || a.w < win {
        return f64::NAN;
    }
    let n = a.h * a.w;
    let total: f64 = (0..a.c)
        .map(|ch| {
            let r = ch * n..(ch + 1) * n;
            ssim_plane(&a.data[r.clone()], &b.data[r], a.h, a.w)
        })
        .sum();
    total / a.c as f64
}

/// Mean SSIM of one `h × w` plane (h, w ≥ 11).
fn ssim_plane(x: &[f32], y: &[f32], h: usize, w: usize) -> f64 {
    let g = gaussian_window();
    let win = g.len();
    let (oh, ow) = (h - win + 1, w - win + 1);
    let c1 = (SSIM_K1 * 1.0).powi(2);
    let c2 = (SSIM_K2 * 1.0).powi(2);

    // Horizontal pass over every row: 5 moments, each h × ow.
    let n = h * ow;
    let mut hx = vec![0.0f64; n];
    let mut hy = vec![0.0f64; n];
    let mut hxx = vec![0.0f64; n];
    let mut hyy = vec![0.0f64; n];
    let mut hxy = vec![0.0f64; n];
    for r in 0..h {
        let xr = &x[r * w..(r + 1) * w];
        let yr = &y[r * w..(r + 1) * w];
        for c in 0..ow {
            let (mut sx, mut sy, mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for (k, &gk) in g.iter().enumerate() {
                let xv = xr[c + k] as f64;
                let yv = yr[c + k] as f64;
                sx += gk * xv;
                sy += gk * yv;
                sxx += gk * xv * xv;
                syy += gk * yv * yv;
                sxy += gk * xv * yv;
            }
            let i = r * ow + c;
            hx[i] = sx;
            hy[i] = sy;
            hxx[i] = sxx;
            hyy[i] = syy;
            hxy[i] = sxy;
        }
    }

    // Vertical pass and the SSIM map, summed.
    let mut total = 0.0f64;
    for r in 0..oh {
        for c in 0..ow {
            let (mut mx, mut my, mut exx, mut eyy, mut exy) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for (k, &gk) in g.iter().enumerate() {
                let i = (r + k) * ow + c;
                mx += gk * hx[i];
                my += gk * hy[i];
                exx += gk * hxx[i];
                eyy += gk * hyy[i];
                exy += gk * hxy[i];
            }
            let vx = exx - mx * mx;
            let vy = eyy - my * my;
            let vxy = exy - mx * my;
            let num = (2.0 * mx * my + c1) * (2.0 * vxy + c2);
            let den = (mx * mx + my * my + c1) * (vx + vy + c2);
            total += num / den;
        }
    }
    total / (oh * ow) as f64
}
