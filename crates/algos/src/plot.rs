//! Small PNG plots drawn with the `image` crate only (no font files): line
//! plots with axes, ticks, tick labels, optional log scales and a legend,
//! and grids of signed images (singular vectors, adaptive filters).
//! Text uses a built-in 5×7 bitmap font (upper case, digits, `.-+=()/,:_|^%`;
//! lower-case letters are drawn as upper case).
//!
//! Reusable by any analysis: build a [`LinePlot`] or call [`image_grid`],
//! then [`encode_png`] and write the bytes atomically.

use image::{Rgb, RgbImage};

/// An RGB colour, 8 bits per channel.
pub type Color = [u8; 3];

/// Distinguishable line colours (Tableau 10).
pub const PALETTE: [Color; 6] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
];

fn glyph(ch: char) -> [u8; 7] {
    let rows: [&str; 7] = match ch.to_ascii_uppercase() {
        '0' => [
            "01110", "10001", "10011", "10101", "11001", "10001", "01110",
        ],
        '1' => [
            "00100", "01100", "00100", "00100", "00100", "00100", "01110",
        ],
        '2' => [
            "01110", "10001", "00001", "00010", "00100", "01000", "11111",
        ],
        '3' => [
            "11111", "00010", "00100", "00010", "00001", "10001", "01110",
        ],
        '4' => [
            "00010", "00110", "01010", "10010", "11111", "00010", "00010",
        ],
        '5' => [
            "11111", "10000", "11110", "00001", "00001", "10001", "01110",
        ],
        '6' => [
            "00110", "01000", "10000", "11110", "10001", "10001", "01110",
        ],
        '7' => [
            "11111", "00001", "00010", "00100", "01000", "01000", "01000",
        ],
        '8' => [
            "01110", "10001", "10001", "01110", "10001", "10001", "01110",
        ],
        '9' => [
            "01110", "10001", "10001", "01111", "00001", "00010", "01100",
        ],
        'A' => [
            "01110", "10001", "10001", "11111", "10001", "10001", "10001",
        ],
        'B' => [
            "11110", "10001", "10001", "11110", "10001", "10001", "11110",
        ],
        'C' => [
            "01110", "10001", "10000", "10000", "10000", "10001", "01110",
        ],
        'D' => [
            "11100", "10010", "10001", "10001", "10001", "10010", "11100",
        ],
        'E' => [
            "11111", "10000", "10000", "11110", "10000", "10000", "11111",
        ],
        'F' => [
            "11111", "10000", "10000", "11110", "10000", "10000", "10000",
        ],
        'G' => [
            "01110", "10001", "10000", "10111", "10001", "10001", "01111",
        ],
        'H' => [
            "10001", "10001", "10001", "11111", "10001", "10001", "10001",
        ],
        'I' => [
            "01110", "00100", "00100", "00100", "00100", "00100", "01110",
        ],
        'J' => [
            "00111", "00010", "00010", "00010", "00010", "10010", "01100",
        ],
        'K' => [
            "10001", "10010", "10100", "11000", "10100", "10010", "10001",
        ],
        'L' => [
            "10000", "10000", "10000", "10000", "10000", "10000", "11111",
        ],
        'M' => [
            "10001", "11011", "10101", "10101", "10001", "10001", "10001",
        ],
        'N' => [
            "10001", "10001", "11001", "10101", "10011", "10001", "10001",
        ],
        'O' => [
            "01110", "10001", "10001", "10001", "10001", "10001", "01110",
        ],
        'P' => [
            "11110", "10001", "10001", "11110", "10000", "10000", "10000",
        ],
        'Q' => [
            "01110", "10001", "10001", "10001", "10101", "10010", "01101",
        ],
        'R' => [
            "11110", "10001", "10001", "11110", "10100", "10010", "10001",
        ],
        'S' => [
            "01111", "10000", "10000", "01110", "00001", "00001", "11110",
        ],
        'T' => [
            "11111", "00100", "00100", "00100", "00100", "00100", "00100",
        ],
        'U' => [
            "10001", "10001", "10001", "10001", "10001", "10001", "01110",
        ],
        'V' => [
            "10001", "10001", "10001", "10001", "10001", "01010", "00100",
        ],
        'W' => [
            "10001", "10001", "10001", "10101", "10101", "10101", "01010",
        ],
        'X' => [
            "10001", "10001", "01010", "00100", "01010", "10001", "10001",
        ],
        'Y' => [
            "10001", "10001", "10001", "01010", "00100", "00100", "00100",
        ],
        'Z' => [
            "11111", "00001", "00010", "00100", "01000", "10000", "11111",
        ],
        '.' => [
            "00000", "00000", "00000", "00000", "00000", "01100", "01100",
        ],
        '-' => [
            "00000", "00000", "00000", "11111", "00000", "00000", "00000",
        ],
        '+' => [
            "00000", "00100", "00100", "11111", "00100", "00100", "00000",
        ],
        '=' => [
            "00000", "00000", "11111", "00000", "11111", "00000", "00000",
        ],
        '(' => [
            "00010", "00100", "01000", "01000", "01000", "00100", "00010",
        ],
        ')' => [
            "01000", "00100", "00010", "00010", "00010", "00100", "01000",
        ],
        '/' => [
            "00000", "00001", "00010", "00100", "01000", "10000", "00000",
        ],
        ',' => [
            "00000", "00000", "00000", "00000", "01100", "00100", "01000",
        ],
        ':' => [
            "00000", "01100", "01100", "00000", "01100", "01100", "00000",
        ],
        '_' => [
            "00000", "00000", "00000", "00000", "00000", "00000", "11111",
        ],
        '|' => [
            "00100", "00100", "00100", "00100", "00100", "00100", "00100",
        ],
        '^' => [
            "00100", "01010", "10001", "00000", "00000", "00000", "00000",
        ],
        '%' => [
            "11000", "11001", "00010", "00100", "01000", "10011", "00011",
        ],
        ' ' => ["00000"; 7],
        _ => [
            "11111", "10001", "10001", "10001", "10001", "10001", "11111",
        ],
    };
    let mut g = [0u8; 7];
    for (r, row) in rows.iter().enumerate() {
        g[r] = u8::from_str_radix(row, 2).unwrap_or(0);
    }
    g
}

/// Width in pixels of `text` at `scale` (6 px per character per scale).
pub fn text_width(text: &str, scale: u32) -> u32 {
    (text.chars().count() as u32 * 6).saturating_sub(1) * scale
}

/// Draws `text` with its top-left corner at (x, y).
pub fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, scale: u32, color: Color) {
    for (k, ch) in text.chars().enumerate() {
        let g = glyph(ch);
        let x0 = x + (k as i64) * 6 * scale as i64;
        for (r, bits) in g.iter().enumerate() {
            for c in 0..5 {
                if bits >> (4 - c) & 1 == 1 {
                    fill_rect(
                        img,
                        x0 + c * scale as i64,
                        y + r as i64 * scale as i64,
                        scale,
                        scale,
                        color,
                    );
                }
            }
        }
    }
}

/// Fills a `w × h` rectangle (clipped).
pub fn fill_rect(img: &mut RgbImage, x: i64, y: i64, w: u32, h: u32, color: Color) {
    for yy in y.max(0)..(y + h as i64).min(img.height() as i64) {
        for xx in x.max(0)..(x + w as i64).min(img.width() as i64) {
            img.put_pixel(xx as u32, yy as u32, Rgb(color));
        }
    }
}

/// A line from (x0, y0) to (x1, y1), `width` pixels thick (clipped).
pub fn draw_line(
    img: &mut RgbImage,
    (x0, y0): (f64, f64),
    (x1, y1): (f64, f64),
    width: u32,
    color: Color,
) {
    let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
    let off = (width as i64 - 1) / 2;
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
        fill_rect(
            img,
            x.round() as i64 - off,
            y.round() as i64 - off,
            width,
            width,
            color,
        );
    }
}

/// One curve of a [`LinePlot`].
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text; empty: the series is left out of the legend.
    pub label: String,
    /// `(x, y)` points, joined in the given order.
    pub points: Vec<(f64, f64)>,
    /// Line colour.
    pub color: Color,
    /// Draw a square marker at every point (for short series).
    pub markers: bool,
}

/// A line plot with axes, ticks, tick labels, optional log10 axes, a title
/// and a legend. Non-positive values are skipped on a log axis.
#[derive(Clone, Debug, Default)]
pub struct LinePlot {
    /// Title above the plot.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Log10 x axis.
    pub log_x: bool,
    /// Log10 y axis.
    pub log_y: bool,
    /// The curves.
    pub series: Vec<Series>,
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        let e = a.log10().floor();
        let m = v / 10f64.powf(e);
        if (m.round() - m).abs() < 1e-9 {
            return format!("{}E{}", m.round(), e);
        }
        return format!("{m:.1}E{e}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// "Nice" linear ticks covering [lo, hi].
fn linear_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-300);
    let raw = span / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 7.0)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

struct Axis {
    log: bool,
    lo: f64,
    hi: f64,
}

impl Axis {
    fn fit(vals: impl Iterator<Item = f64>, log: bool) -> Axis {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in vals {
            let v = if log { v.log10() } else { v };
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if log {
            (lo, hi) = (lo.floor(), hi.ceil());
            if hi <= lo {
                hi = lo + 1.0;
            }
        } else {
            if hi <= lo {
                (lo, hi) = (lo - 0.5, hi + 0.5);
            }
            let pad = 0.05 * (hi - lo);
            (lo, hi) = (lo - pad, hi + pad);
        }
        Axis { log, lo, hi }
    }
    fn t(&self, v: f64) -> f64 {
        let v = if self.log { v.log10() } else { v };
        (v - self.lo) / (self.hi - self.lo)
    }
    /// (value, is_major) ticks.
    fn ticks(&self) -> Vec<(f64, bool)> {
        if self.log {
            let decades = (self.hi - self.lo) as i64;
            let mut t = Vec::new();
            let step = (decades / 6).max(1);
            for e in self.lo as i64..=self.hi as i64 {
                t.push((10f64.powi(e as i32), (e - self.lo as i64) % step == 0));
                if decades <= 4 && e < self.hi as i64 {
                    for m in 2..10 {
                        // Over at most two decades, label 2× and 5× too.
                        t.push((
                            m as f64 * 10f64.powi(e as i32),
                            decades <= 2 && (m == 2 || m == 5),
                        ));
                    }
                }
            }
            t
        } else {
            linear_ticks(self.lo, self.hi)
                .into_iter()
                .map(|v| (v, true))
                .collect()
        }
    }
}

impl LinePlot {
    /// Renders the plot into a `width × height` RGB image.
    pub fn render(&self, width: u32, height: u32) -> RgbImage {
        let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
        let ok = |v: f64, log: bool| v.is_finite() && (!log || v > 0.0);
        let pts = || {
            self.series
                .iter()
                .flat_map(|s| s.points.iter())
                .filter(|(x, y)| ok(*x, self.log_x) && ok(*y, self.log_y))
        };
        let ax = Axis::fit(pts().map(|p| p.0), self.log_x);
        let ay = Axis::fit(pts().map(|p| p.1), self.log_y);
        let (l, r, t, b) = (62i64, 16i64, 34i64, 40i64);
        let (pw, ph) = (width as i64 - l - r, height as i64 - t - b);
        let px = |x: f64| l as f64 + ax.t(x) * pw as f64;
        let py = |y: f64| (t + ph) as f64 - ay.t(y) * ph as f64;
        let (black, grid, light) = ([0, 0, 0], [215, 215, 215], [238, 238, 238]);
        // Grid and ticks.
        for (v, major) in ax.ticks() {
            let x = px(v).round() as i64;
            if x < l || x > l + pw {
                continue;
            }
            fill_rect(
                &mut img,
                x,
                t,
                1,
                ph as u32,
                if major { grid } else { light },
            );
            fill_rect(&mut img, x, t + ph, 1, if major { 5 } else { 3 }, black);
            if major {
                let s = fmt_tick(v);
                draw_text(
                    &mut img,
                    x - text_width(&s, 1) as i64 / 2,
                    t + ph + 8,
                    &s,
                    1,
                    black,
                );
            }
        }
        for (v, major) in ay.ticks() {
            let y = py(v).round() as i64;
            if y < t || y > t + ph {
                continue;
            }
            fill_rect(
                &mut img,
                l,
                y,
                pw as u32,
                1,
                if major { grid } else { light },
            );
            let len = if major { 5 } else { 3 };
            fill_rect(&mut img, l - len, y, len as u32, 1, black);
            if major {
                let s = fmt_tick(v);
                draw_text(
                    &mut img,
                    l - 8 - text_width(&s, 1) as i64,
                    y - 3,
                    &s,
                    1,
                    black,
                );
            }
        }
        // Frame.
        fill_rect(&mut img, l, t, pw as u32, 1, black);
        fill_rect(&mut img, l, t + ph, pw as u32 + 1, 1, black);
        fill_rect(&mut img, l, t, 1, ph as u32, black);
        fill_rect(&mut img, l + pw, t, 1, ph as u32, black);
        // Curves.
        for s in &self.series {
            let p: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter(|(x, y)| ok(*x, self.log_x) && ok(*y, self.log_y))
                .map(|&(x, y)| (px(x), py(y)))
                .collect();
            for w in p.windows(2) {
                draw_line(&mut img, w[0], w[1], 2, s.color);
            }
            if s.markers || p.len() == 1 {
                for &(x, y) in &p {
                    fill_rect(
                        &mut img,
                        x.round() as i64 - 2,
                        y.round() as i64 - 2,
                        5,
                        5,
                        s.color,
                    );
                }
            }
        }
        // Labels.
        draw_text(
            &mut img,
            (width as i64 - text_width(&self.title, 2) as i64) / 2,
            6,
            &self.title,
            2,
            black,
        );
        draw_text(&mut img, l, t - 11, &self.y_label, 1, black);
        draw_text(
            &mut img,
            l + (pw - text_width(&self.x_label, 1) as i64) / 2,
            height as i64 - 14,
            &self.x_label,
            1,
            black,
        );
        // Legend (top right, inside the frame).
        let labelled: Vec<&Series> = self.series.iter().filter(|s| !s.label.is_empty()).collect();
        if !labelled.is_empty() {
            let lw = labelled
                .iter()
                .map(|s| text_width(&s.label, 1))
                .max()
                .unwrap_or(0) as i64
                + 30;
            let (x0, y0) = (l + pw - lw - 8, t + 8);
            fill_rect(
                &mut img,
                x0,
                y0,
                lw as u32,
                12 * labelled.len() as u32 + 6,
                [255, 255, 255],
            );
            for (k, s) in labelled.iter().enumerate() {
                let y = y0 + 4 + 12 * k as i64;
                fill_rect(&mut img, x0 + 4, y + 3, 16, 2, s.color);
                draw_text(&mut img, x0 + 24, y, &s.label, 1, black);
            }
        }
        img
    }
}

/// One planar image of a grid (`c` = 1 or 3, values of any sign).
#[derive(Clone, Debug)]
pub struct Tile {
    /// Channels: 1 (grey) or 3 (RGB).
    pub c: usize,
    /// Height, pixels.
    pub h: usize,
    /// Width, pixels.
    pub w: usize,
    /// The values, planar `[c][h][w]`.
    pub data: Vec<f32>,
    /// Text under the tile; empty: none.
    pub label: String,
}

/// How tile values map to grey levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scaling {
    /// Each tile on its own: 0 is mid grey, ±max|v| are black/white (signed vectors).
    SymmetricPerTile,
    /// Values in [0, 1] as they are (images).
    Unit,
}

/// Arranges tiles in `cols` columns, each magnified `zoom`× (nearest), with a
/// 4-pixel gap and, when a tile has a label, a line of text under it.
pub fn image_grid(tiles: &[Tile], cols: usize, zoom: u32, scaling: Scaling) -> RgbImage {
    let cols = cols.max(1).min(tiles.len().max(1));
    let rows = tiles.len().div_ceil(cols).max(1);
    let th = tiles.iter().map(|t| t.h).max().unwrap_or(1) as u32 * zoom;
    let tw = tiles.iter().map(|t| t.w).max().unwrap_or(1) as u32 * zoom;
    let lab = if tiles.iter().any(|t| !t.label.is_empty()) {
        11
    } else {
        0
    };
    let gap = 4;
    let w = cols as u32 * (tw + gap) + gap;
    let h = rows as u32 * (th + gap + lab) + gap;
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    for (k, t) in tiles.iter().enumerate() {
        let (gx, gy) = ((k % cols) as u32, (k / cols) as u32);
        let (x0, y0) = (gap + gx * (tw + gap), gap + gy * (th + gap + lab));
        let m = t
            .data
            .iter()
            .fold(0f32, |a, v| a.max(v.abs()))
            .max(f32::MIN_POSITIVE);
        let plane = t.h * t.w;
        for y in 0..t.h * zoom as usize {
            for x in 0..t.w * zoom as usize {
                let i = (y / zoom as usize) * t.w + x / zoom as usize;
                let mut px = [0u8; 3];
                for (ch, p) in px.iter_mut().enumerate() {
                    let v = t.data[(ch % t.c) * plane + i];
                    let g = match scaling {
                        Scaling::SymmetricPerTile => 0.5 + 0.5 * v / m,
                        Scaling::Unit => v,
                    };
                    *p = (g.clamp(0.0, 1.0) * 255.0).round() as u8;
                }
                img.put_pixel(x0 + x as u32, y0 + y as u32, Rgb(px));
            }
        }
        if lab > 0 {
            draw_text(
                &mut img,
                x0 as i64,
                (y0 + th + 2) as i64,
                &t.label,
                1,
                [0, 0, 0],
            );
        }
    }
    img
}

/// PNG bytes of an RGB image.
pub fn encode_png(img: &RgbImage) -> Vec<u8> {
    use image::ImageEncoder as _;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .expect("encoding a PNG into memory cannot fail");
    out
}
