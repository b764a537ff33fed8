//! Running a model on whole images of any size. Images whose activations
//! would exceed the adapter's buffer limit are cut into tiles that overlap
//! by at least the receptive-field radius; each tile's centre is computed
//! from exactly the inputs an untiled pass would use, so the stitched result
//! equals one pass (tested in `tests/tiling.rs`).

use prior_gpu::{Gpu, GpuError, Shape};
use prior_ops::layout::{chw_to_hwc, hwc_to_chw};

use crate::denoiser::{Denoiser, ModelError, Noise, Result};

/// What to compute per image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Apply {
    /// x̂(y)
    Denoise,
    /// f(y) = y − x̂(y)
    Residual,
}

/// A planar `(C, H, W)` image (the layout of files and PyTorch).
#[derive(Clone, Debug, PartialEq)]
pub struct Planar<'a> {
    /// Channels.
    pub c: usize,
    /// Height, pixels.
    pub h: usize,
    /// Width, pixels.
    pub w: usize,
    /// The values, `[c][h][w]` row-major (`c·h·w` of them).
    pub data: &'a [f32],
}

/// The tile plan for an `h × w` image: (core size, halo), or `None` for one pass.
pub fn plan(gpu: &Gpu, model: &dyn Denoiser, h: usize, w: usize) -> Result<Option<(usize, usize)>> {
    let vpp = model.values_per_pixel().max(model.channels()) as u64;
    let max = gpu.max_buffer_bytes;
    // Also stay under the dispatch limit of the tiled conv (4 px per invocation, 64 per group).
    let max_pixels_dispatch = gpu.limits.max_compute_workgroups_per_dimension as u64 * 64 * 4;
    let fits = |th: usize, tw: usize| {
        let px = (th * tw) as u64;
        px * vpp * 4 <= max && px <= max_pixels_dispatch
    };
    if fits(h, w) {
        return Ok(None);
    }
    let m = model.size_multiple().max(model.tile_alignment()).max(1);
    let halo = model.receptive_radius().div_ceil(m) * m;
    let mut core = h.max(w).div_ceil(m) * m;
    while core >= m && !fits((core + 2 * halo).min(h), (core + 2 * halo).min(w)) {
        core -= m;
    }
    if core < m {
        return Err(ModelError::Gpu(GpuError::TooLarge {
            what: format!(
                "a {h}×{w} image (even one tile of {} px with its halo)",
                m + 2 * halo
            ),
            bytes: ((m + 2 * halo).pow(2) as u64) * vpp * 4,
            limit: max,
            adapter: gpu.adapter.name.clone(),
        }));
    }
    Ok(Some((core, halo)))
}

/// Applies `model` to one planar image, tiling when needed, at the noise
/// variance `variance` (`None`: blind; a noise-conditioned model then
/// estimates it on each pass — such models never tile). Returns `(C, H, W)`.
pub async fn apply_image(
    gpu: &Gpu,
    model: &dyn Denoiser,
    img: Planar<'_>,
    what: Apply,
    variance: Option<f32>,
) -> Result<Vec<f32>> {
    let Planar { c, h, w, data } = img;
    if data.len() != c * h * w {
        return Err(ModelError::Input(format!(
            "{} values for a {c}×{h}×{w} image",
            data.len()
        )));
    }
    if c != model.channels() {
        return Err(ModelError::Input(format!(
            "the model takes {} channel(s) ({}), the image has {c}",
            model.channels(),
            if model.channels() == 1 {
                "grayscale"
            } else {
                "colour"
            }
        )));
    }
    let m = model.size_multiple();
    if h % m != 0 || w % m != 0 {
        return Err(ModelError::Input(format!(
            "this model needs height and width divisible by {m}; the image is {h}×{w}"
        )));
    }
    let hwc = chw_to_hwc(c, h, w, data);
    let t = variance.map(|v| gpu.upload(Shape::new(1, 1, 1, 1), &[v]));
    let run = |tile: &[f32], th: usize, tw: usize| {
        let x = gpu.upload(Shape::new(1, th, tw, c), tile);
        let noise = t.as_ref().map_or(Noise::Blind, Noise::Variance);
        let y = match what {
            Apply::Denoise => model.denoise(gpu, &x, noise),
            Apply::Residual => model.residual(gpu, &x, noise),
        };
        async move { Ok::<_, ModelError>(gpu.read(&y?).await?) }
    };
    let out = match plan(gpu, model, h, w)? {
        None => run(&hwc, h, w).await?,
        Some((core, halo)) => {
            let mut out = vec![0.0f32; hwc.len()];
            for ty in (0..h).step_by(core) {
                for tx in (0..w).step_by(core) {
                    let (y0, y1) = (ty.saturating_sub(halo), (ty + core + halo).min(h));
                    let (x0, x1) = (tx.saturating_sub(halo), (tx + core + halo).min(w));
                    let (th, tw) = (y1 - y0, x1 - x0);
                    let mut tile = Vec::with_capacity(th * tw * c);
                    for yy in y0..y1 {
                        tile.extend_from_slice(&hwc[(yy * w + x0) * c..(yy * w + x1) * c]);
                    }
                    let res = run(&tile, th, tw).await?;
                    for yy in ty..(ty + core).min(h) {
                        let cx1 = (tx + core).min(w);
                        let src = ((yy - y0) * tw + (tx - x0)) * c;
                        out[(yy * w + tx) * c..(yy * w + cx1) * c]
                            .copy_from_slice(&res[src..src + (cx1 - tx) * c]);
                    }
                }
            }
            out
        }
    };
    Ok(hwc_to_chw(c, h, w, &out))
}
