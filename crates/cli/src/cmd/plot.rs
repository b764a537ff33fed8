//! The σ_t-against-iteration plot of `prior sample` / `prior solve`, drawn
//! with the shared line-plot helper of `prior_algos::plot`.

use image::RgbImage;
use prior_algos::plot::{LinePlot, Series, PALETTE};

/// Renders σ_t (one series per sample, σ of iteration t at index t − 1) on a
/// log axis, with `sigma_final` as a horizontal line when positive.
/// Non-positive or non-finite values are skipped.
pub fn sigma_plot(series: &[Vec<f32>], sigma_final: f32, width: u32, height: u32) -> RgbImage {
    let iters = series.iter().map(|s| s.len()).max().unwrap_or(1).max(1) as f64;
    let mut plot = LinePlot {
        title: "EFFECTIVE NOISE LEVEL".into(),
        x_label: "ITERATION".into(),
        y_label: "SIGMA_T".into(),
        log_y: true,
        ..Default::default()
    };
    for (k, s) in series.iter().enumerate() {
        let points = s
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite() && **v > 0.0)
            .map(|(i, v)| (i as f64 + 1.0, *v as f64))
            .collect();
        let label = if series.len() > 1 {
            format!("SAMPLE {k}")
        } else {
            "SIGMA_T".into()
        };
        plot.series.push(Series {
            label,
            points,
            color: [PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[4], PALETTE[5]][k % 5],
            markers: false,
        });
    }
    if sigma_final > 0.0 {
        let points = vec![(1.0, sigma_final as f64), (iters, sigma_final as f64)];
        plot.series.push(Series {
            label: "SIGMA_L".into(),
            points,
            color: PALETTE[3],
            markers: false,
        });
    }
    plot.render(width, height)
}

/// PNG bytes of an RGB image.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>, String> {
    Ok(prior_algos::plot::encode_png(img))
}
