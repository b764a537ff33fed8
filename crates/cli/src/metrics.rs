//! CPU image-quality metrics: [`prior_algos::metrics`] (their one home,
//! shared with the browser build), with SSIM over the CLI's [`Image`].

use crate::io::Image;
use prior_models::tiling::Planar;

pub use prior_algos::metrics::{max_abs_diff, mse, psnr};

/// [`prior_algos::metrics::ssim`] of two images (panics if their shapes
/// differ; NaN below 11×11).
pub fn ssim(a: &Image, b: &Image) -> f64 {
    fn planar(i: &Image) -> Planar<'_> {
        Planar {
            c: i.c,
            h: i.h,
            w: i.w,
            data: &i.data,
        }
    }
    prior_algos::metrics::ssim(planar(a), planar(b))
}
