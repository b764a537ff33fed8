//! The σ_t-against-iteration plot of `prior sample` / `prior solve`
//! (`--plot FILE.png`), drawn with the `image` crate alone: axes, a linear
//! iteration axis, a log₁₀ σ axis with a gridline and label per decade,
//! the σ_L stopping level as a dashed line, one coloured curve per sample,
//! and tick labels in a built-in 5×7 bitmap font.

use image::{Rgb, RgbImage};

const COLORS: [[u8; 3]; 6] = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [148, 103, 189], [140, 86, 75], [227, 119, 194]];

fn glyph(ch: char) -> Option<[&'static str; 7]> {
    Some(match ch {
        '0' => ["01110", "10001", "10011", "10101", "11001", "10001", "01110"],
        '1' => ["00100", "01100", "00100", "00100", "00100", "00100", "01110"],
        '2' => ["01110", "10001", "00001", "00010", "00100", "01000", "11111"],
        '3' => ["11111", "00010", "00100", "00010", "00001", "10001", "01110"],
        '4' => ["00010", "00110", "01010", "10010", "11111", "00010", "00010"],
        '5' => ["11111", "10000", "11110", "00001", "00001", "10001", "01110"],
        '6' => ["00110", "01000", "10000", "11110", "10001", "10001", "01110"],
        '7' => ["11111", "00001", "00010", "00100", "01000", "01000", "01000"],
        '8' => ["01110", "10001", "10001", "01110", "10001", "10001", "01110"],
        '9' => ["01110", "10001", "10001", "01111", "00001", "00010", "01100"],
        '.' => ["00000", "00000", "00000", "00000", "00000", "01100", "01100"],
        '-' => ["00000", "00000", "00000", "11111", "00000", "00000", "00000"],
        'A' => ["01110", "10001", "10001", "11111", "10001", "10001", "10001"],
        'E' => ["11111", "10000", "10000", "11110", "10000", "10000", "11111"],
        'G' => ["01110", "10001", "10000", "10111", "10001", "10001", "01111"],
        'I' => ["01110", "00100", "00100", "00100", "00100", "00100", "01110"],
        'L' => ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
        'M' => ["10001", "11011", "10101", "10101", "10001", "10001", "10001"],
        'N' => ["10001", "10001", "11001", "10101", "10011", "10001", "10001"],
        'O' => ["01110", "10001", "10001", "10001", "10001", "10001", "01110"],
        'R' => ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
        'S' => ["01111", "10000", "10000", "01110", "00001", "00001", "11110"],
        'T' => ["11111", "00100", "00100", "00100", "00100", "00100", "00100"],
        '_' => ["00000", "00000", "00000", "00000", "00000", "00000", "11111"],
        '(' => ["00010", "00100", "01000", "01000", "01000", "00100", "00010"],
        ')' => ["01000", "00100", "00010", "00010", "00010", "00100", "01000"],
        ' ' => ["00000"; 7],
        _ => return None,
    })
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: [u8; 3]) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, Rgb(c));
    }
}

/// Width in pixels of `text` at scale 1 (6 px per character).
fn text_width(text: &str) -> i64 {
    text.chars().count() as i64 * 6
}

fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, c: [u8; 3]) {
    for (k, ch) in text.chars().enumerate() {
        if let Some(rows) = glyph(ch.to_ascii_uppercase()) {
            for (r, row) in rows.iter().enumerate() {
                for (q, bit) in row.bytes().enumerate() {
                    if bit == b'1' {
                        put(img, x + k as i64 * 6 + q as i64, y + r as i64, c);
                    }
                }
            }
        }
    }
}

fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3], dash: Option<u32>) {
    let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as u32).max(1);
    for i in 0..=n {
        if let Some(d) = dash {
            if (i / d) % 2 == 1 {
                continue;
            }
        }
        let t = i as f64 / n as f64;
        put(img, (x0 + t * (x1 - x0)).round() as i64, (y0 + t * (y1 - y0)).round() as i64, c);
    }
}

fn fmt_decade(e: i32) -> String {
    if (-3..=3).contains(&e) {
        let v = 10f64.powi(e);
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("1E{e}")
    }
}

/// Renders σ_t (one series per sample, σ of iteration t at index t − 1)
/// on a log axis, with `sigma_final` dashed. Non-positive or non-finite
/// values are skipped.
pub fn sigma_plot(series: &[Vec<f32>], sigma_final: f32, width: u32, height: u32) -> RgbImage {
    let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let (l, r, t, b) = (56.0, 16.0, 24.0, 36.0);
    let (pw, ph) = (width as f64 - l - r, height as f64 - t - b);
    let iters = series.iter().map(|s| s.len()).max().unwrap_or(1).max(1) as f64;
    let vals = series.iter().flatten().copied().chain([sigma_final]).filter(|v| v.is_finite() && *v > 0.0);
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals {
        lo = lo.min((v as f64).log10());
        hi = hi.max((v as f64).log10());
    }
    if !lo.is_finite() {
        (lo, hi) = (-2.0, 0.0);
    }
    let (lo, mut hi) = (lo.floor(), hi.ceil());
    if hi <= lo {
        hi = lo + 1.0;
    }
    let px = |i: f64| l + (i - 1.0).max(0.0) / (iters - 1.0).max(1.0) * pw;
    let py = |v: f64| t + (hi - v.log10()) / (hi - lo) * ph;
    let grid = [225, 225, 225];
    let ink = [40, 40, 40];
    // Decade gridlines and labels.
    for e in lo as i32..=hi as i32 {
        let y = py(10f64.powi(e));
        line(&mut img, (l, y), (l + pw, y), grid, None);
        line(&mut img, (l - 4.0, y), (l, y), ink, None);
        let s = fmt_decade(e);
        draw_text(&mut img, (l - 7.0) as i64 - text_width(&s), y as i64 - 3, &s, ink);
    }
    // Iteration ticks: a "nice" step giving at most ~8 ticks.
    let raw = (iters / 8.0).max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| iters / s <= 8.0).unwrap_or(10.0 * mag);
    let mut k = step;
    let mut ticks = vec![1.0];
    while k <= iters {
        ticks.push(k);
        k += step;
    }
    for &i in &ticks {
        let x = px(i);
        line(&mut img, (x, t + ph), (x, t + ph + 4.0), ink, None);
        let s = format!("{}", i as usize);
        draw_text(&mut img, x as i64 - text_width(&s) / 2, (t + ph + 8.0) as i64, &s, ink);
    }
    // Axes.
    line(&mut img, (l, t), (l, t + ph), ink, None);
    line(&mut img, (l, t + ph), (l + pw, t + ph), ink, None);
    draw_text(&mut img, (l + pw / 2.0) as i64 - text_width("ITERATION") / 2, height as i64 - 12, "ITERATION", ink);
    draw_text(&mut img, 4, 6, "SIGMA (LOG)", ink);
    // σ_L.
    if sigma_final > 0.0 {
        let y = py(sigma_final as f64);
        line(&mut img, (l, y), (l + pw, y), [214, 39, 40], Some(4));
        draw_text(&mut img, (l + pw) as i64 - text_width("SIGMA_L"), y as i64 - 10, "SIGMA_L", [214, 39, 40]);
    }
    // Curves.
    for (k, s) in series.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        let mut prev: Option<(f64, f64)> = None;
        for (i, v) in s.iter().enumerate() {
            if !(v.is_finite() && *v > 0.0) {
                prev = None;
                continue;
            }
            let p = (px(i as f64 + 1.0), py(*v as f64));
            if let Some(q) = prev {
                line(&mut img, q, p, c, None);
                line(&mut img, (q.0, q.1 + 1.0), (p.0, p.1 + 1.0), c, None);
            } else {
                put(&mut img, p.0 as i64, p.1 as i64, c);
            }
            prev = Some(p);
        }
    }
    img
}

/// PNG bytes of an RGB image.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>, String> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).map_err(|e| format!("PNG encoding: {e}"))?;
    Ok(out.into_inner())
}
