//! `prior jacobian`: the Jacobian J = ∂x̂/∂y of a denoiser at one noisy
//! image and the adaptive basis it exposes (Mohan et al. 2020; Kadkhodaie
//! et al. 2024): singular values and vectors, effective dimensionality
//! (Σ sᵢ² and the trace) against the noise level, the symmetric part's
//! eigenvalues and the asymmetry ‖J − Jᵀ‖_F/‖J‖_F, and adaptive filters
//! (rows of J at chosen pixels).
//!
//! `--full` builds the dense N×N matrix (N = C·H·W, one batched JVP per
//! column) and analyses it exactly (f64 SVD/eigendecomposition); without it
//! everything is matrix free: top singular triplets by randomized subspace
//! iteration and the trace and Σ sᵢ² by Hutchinson's estimator (Rademacher
//! probes from our generator), each reported with its standard error.
//! Noise: `--add-noise SIGMA --seed N` adds the noise of `prior denoise`
//! (stream round(SIGMA)·1000), so `-i` is then the clean image.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use prior_algos::jacobian::{self, At};
use prior_algos::plot::{self, LinePlot, Scaling, Series, Tile, PALETTE};
use prior_gpu::Gpu;
use prior_models::tiling::Planar;
use prior_models::{Conditioning, Denoiser};
use serde_json::json;

use crate::io::{self, Image};

/// The largest N = C·H·W accepted by `--full` (the matrix alone is N² floats).
pub const MAX_FULL: usize = 4096;

/// Arguments of `prior jacobian`.
#[derive(Args, Debug, Clone)]
pub struct JacobianArgs {
    /// Weight file: a `.safetensors` weight blob or a PyTorch checkpoint.
    #[arg(short = 'm', long = "model", value_name = "WEIGHTS")]
    pub model: PathBuf,
    /// The noisy image (png, jpg, tif, bmp, or .npy (H,W)/(C,H,W)); with
    /// --add-noise or --sigmas, the clean image.
    #[arg(short = 'i', long = "input", value_name = "NOISY")]
    pub input: PathBuf,
    /// Analyse a crop `TOP,LEFT,H,W` (0-based) of the input.
    #[arg(long, value_name = "TOP,LEFT,H,W")]
    pub crop: Option<String>,
    /// Add Gaussian noise of standard deviation SIGMA_255/255 first.
    #[arg(long = "add-noise", value_name = "SIGMA_255")]
    pub add_noise: Option<f64>,
    /// Noise variance t (pixels in [0, 1]) for noise-conditioned models (the
    /// energy model, whose J = I − t·∇²U is taken at fixed t). Default:
    /// (SIGMA_255/255)² with --add-noise, else estimated from the image; the
    /// --sigmas sweep always uses (σ/255)² at each level. Blind denoisers ignore it.
    #[arg(long = "t", value_name = "T")]
    pub t: Option<f32>,
    /// Seed of the noise generator (and of the random probes).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Build the dense N×N Jacobian and analyse it exactly (N ≤ 4096).
    #[arg(long)]
    pub full: bool,
    /// Write the dense Jacobian (with --full) as float32 .npy shaped (N, N):
    /// row = output element, column = input element, both row-major over (C,H,W).
    #[arg(short = 'o', long = "output", value_name = "J.npy", requires = "full")]
    pub output: Option<PathBuf>,
    /// Also eigendecompose the symmetric part (J + Jᵀ)/2 (with --full).
    #[arg(long, requires = "full")]
    pub eig: bool,
    /// Singular values / vectors to report and draw.
    #[arg(long = "top-k", value_name = "K", default_value_t = jacobian::defaults::TOP_K)]
    pub top_k: usize,
    /// Singular-value decay plot (PNG, log scale).
    #[arg(long = "svd-plot", value_name = "PNG")]
    pub svd_plot: Option<PathBuf>,
    /// The top-k left singular vectors as an image grid (PNG).
    #[arg(long, value_name = "PNG")]
    pub vectors: Option<PathBuf>,
    /// Pixels whose adaptive filters (rows of J, by VJP) to draw: `y,x;y,x;…`.
    #[arg(long, value_name = "Y,X;Y,X")]
    pub pixels: Option<String>,
    /// Where to draw the adaptive filters (PNG; needs --pixels).
    #[arg(long, value_name = "PNG", requires = "pixels")]
    pub filters: Option<PathBuf>,
    /// Noise levels (0–255) for effective dimensionality vs σ: `-i` is the
    /// clean image, noise is added at each level (seed --seed).
    #[arg(long, value_name = "S1,S2,…", value_delimiter = ',')]
    pub sigmas: Vec<f64>,
    /// Where to plot effective dimensionality against σ (PNG; needs --sigmas).
    #[arg(long = "dim-plot", value_name = "PNG", requires = "sigmas")]
    pub dim_plot: Option<PathBuf>,
    /// Hutchinson probes (matrix-free trace and Σ s²).
    #[arg(long, value_name = "P", default_value_t = jacobian::defaults::PROBES)]
    pub probes: usize,
    /// Oversampling and power iterations of the randomized SVD (matrix free).
    #[arg(long, value_name = "P", default_value_t = jacobian::defaults::OVERSAMPLE)]
    pub oversample: usize,
    /// Power iterations of the randomized SVD (matrix free).
    #[arg(long, value_name = "Q", default_value_t = jacobian::defaults::POWER)]
    pub power: usize,
    /// Tangents per GPU batch (capped by the adapter's buffer limit).
    #[arg(long, value_name = "B", default_value_t = jacobian::defaults::BATCH)]
    pub batch: usize,
    /// Print one JSON summary line on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_crop(s: &str) -> Result<[usize; 4], String> {
    let v: Vec<usize> = s
        .split(',')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("--crop {s}: expected TOP,LEFT,H,W (four non-negative integers)"))?;
    match v[..] {
        [t, l, h, w] if h > 0 && w > 0 => Ok([t, l, h, w]),
        _ => Err(format!("--crop {s}: expected TOP,LEFT,H,W with H, W > 0")),
    }
}

/// Parses `y,x;y,x` pixel lists.
pub fn parse_pixels(s: &str) -> Result<Vec<(usize, usize)>, String> {
    s.split(';')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let v: Vec<&str> = p.split(',').map(str::trim).collect();
            match v[..] {
                [y, x] => match (y.parse(), x.parse()) {
                    (Ok(y), Ok(x)) => Ok((y, x)),
                    _ => Err(format!(
                        "--pixels: '{p}' is not y,x (non-negative integers)"
                    )),
                },
                _ => Err(format!("--pixels: '{p}' is not y,x")),
            }
        })
        .collect()
}

fn crop(img: &Image, c: [usize; 4]) -> Result<Image, String> {
    let [t, l, h, w] = c;
    if t + h > img.h || l + w > img.w {
        return Err(format!(
            "--crop {t},{l},{h},{w} exceeds the {}×{} image",
            img.h, img.w
        ));
    }
    let mut d = Vec::with_capacity(img.c * h * w);
    for ch in 0..img.c {
        for y in t..t + h {
            d.extend((l..l + w).map(|x| img.get(ch, y, x)));
        }
    }
    Ok(Image::new(img.c, h, w, d))
}

/// t = (σ/255)² for a noise level on the 0–255 scale.
fn variance_of(sigma255: f64) -> f32 {
    (sigma255 / 255.0).powi(2) as f32
}

fn write_png(path: &Path, img: &image::RgbImage) -> Result<(), String> {
    io::write_atomic(path, &plot::encode_png(img)).map_err(|e| e.to_string())
}

fn zoom_for(h: usize, w: usize) -> u32 {
    (96 / h.max(w).max(1)).clamp(1, 8) as u32
}

/// Analysis of one noisy image: exact (`--full`) or matrix free.
struct Result1 {
    trace: f64,
    trace_se: Option<f64>,
    sum_sq: f64,
    sum_sq_se: Option<f64>,
    s: Vec<f64>,
    u: Option<prior_algos::linalg::Dense>,
    asymmetry: Option<f64>,
    eig: Option<Vec<f64>>,
    jvps: usize,
    vjps: usize,
    jac: Option<Vec<f32>>,
}

/// `svd`: also the top singular values (matrix free: randomized SVD);
/// `vectors`: and the singular vectors; `keep`: return the dense matrix.
fn analyse(
    gpu: &Gpu,
    at: &At<'_>,
    args: &JacobianArgs,
    svd: bool,
    vectors: bool,
    keep: bool,
) -> Result<Result1, String> {
    let n = at.n();
    let k = args.top_k.clamp(1, n);
    if args.full {
        let j = pollster::block_on(jacobian::jacobian(gpu, at)).map_err(|e| e.to_string())?;
        let sp = jacobian::spectrum(&j, n, vectors, args.eig).map_err(|e| e.to_string())?;
        Ok(Result1 {
            trace: sp.trace,
            trace_se: None,
            sum_sq: sp.sum_sq,
            sum_sq_se: None,
            s: sp.s,
            u: sp.u,
            asymmetry: Some(sp.asymmetry),
            eig: sp.eig,
            jvps: n,
            vjps: 0,
            jac: keep.then_some(j),
        })
    } else {
        let h = pollster::block_on(jacobian::hutchinson(gpu, at, args.probes, args.seed))
            .map_err(|e| e.to_string())?;
        let (s, u, jv, vj) = if svd || vectors {
            let l = (k + args.oversample).min(n);
            let r = pollster::block_on(jacobian::randomized_svd(
                gpu,
                at,
                k,
                args.oversample,
                args.power,
                args.seed,
            ))
            .map_err(|e| e.to_string())?;
            (r.s, Some(r.u), l * (1 + args.power), l * (1 + args.power))
        } else {
            (Vec::new(), None, 0, 0)
        };
        Ok(Result1 {
            trace: h.trace,
            trace_se: Some(h.trace_se),
            sum_sq: h.sum_sq,
            sum_sq_se: Some(h.sum_sq_se),
            s,
            u,
            asymmetry: None,
            eig: None,
            jvps: args.probes + jv,
            vjps: vj,
            jac: None,
        })
    }
}

/// Runs `prior jacobian`.
pub fn run(args: JacobianArgs) -> Result<(), String> {
    if args.top_k == 0 {
        return Err("--top-k must be at least 1".into());
    }
    if args.probes == 0 {
        return Err("--probes must be at least 1".into());
    }
    for s in args.sigmas.iter().chain(args.add_noise.iter()) {
        if !(s.is_finite() && *s > 0.0 && *s <= 100_000.0) {
            return Err(format!(
                "noise level {s} must be in (0, 100000] (0–255 scale)"
            ));
        }
    }
    if let Some(t) = args.t {
        if !(t.is_finite() && t >= 0.0) {
            return Err(format!(
                "--t {t}: the noise variance must be a finite non-negative number"
            ));
        }
    }
    let pixels = args
        .pixels
        .as_deref()
        .map(parse_pixels)
        .transpose()?
        .unwrap_or_default();
    let mut outs: Vec<&PathBuf> = Vec::new();
    outs.extend(args.output.iter());
    outs.extend(args.svd_plot.iter());
    outs.extend(args.vectors.iter());
    outs.extend(args.filters.iter());
    outs.extend(args.dim_plot.iter());
    for o in &outs {
        io::ensure_not_input(o, std::slice::from_ref(&args.input)).map_err(|e| e.to_string())?;
    }

    let mut img = io::read_input(&args.input).map_err(|e| e.to_string())?;
    if let Some(c) = &args.crop {
        img = crop(&img, parse_crop(c)?)?;
    }
    let n = img.len();
    if args.full && n > MAX_FULL {
        return Err(format!(
            "--full on a {}×{}×{} image needs a {n}×{n} matrix (limit N = {MAX_FULL}): use --crop, or drop --full for the matrix-free estimates",
            img.c, img.h, img.w
        ));
    }
    for &(y, x) in &pixels {
        if y >= img.h || x >= img.w {
            return Err(format!(
                "--pixels {y},{x} is outside the {}×{} image",
                img.h, img.w
            ));
        }
    }
    let clean = img.clone();
    if let Some(s) = args.add_noise {
        img.data = jacobian::add_noise(&clean.data, s, args.seed);
    }

    let gpu = pollster::block_on(Gpu::from_env()).map_err(|e| e.to_string())?;
    let model: Box<dyn Denoiser> = prior_models::load_path(&gpu, &args.model)
        .map_err(|e| format!("cannot load the model: {e}"))?;
    let variance = args.t.or(args.add_noise.map(variance_of));
    let planar = Planar {
        c: img.c,
        h: img.h,
        w: img.w,
        data: &img.data,
    };
    let at =
        At::new(&gpu, model.as_ref(), planar, args.batch, variance).map_err(|e| e.to_string())?;

    // With --sigmas and no --add-noise, -i is clean and only the sweep runs.
    let sweep_only = !args.sigmas.is_empty() && args.add_noise.is_none();
    if sweep_only
        && (args.output.is_some()
            || args.svd_plot.is_some()
            || args.vectors.is_some()
            || args.pixels.is_some())
    {
        return Err("with --sigmas, -o/--svd-plot/--vectors/--pixels analyse one noisy image: also give --add-noise SIGMA".into());
    }
    let t0 = Instant::now();
    let want_vectors = args.vectors.is_some();
    let r = if sweep_only {
        Result1 {
            trace: f64::NAN,
            trace_se: None,
            sum_sq: f64::NAN,
            sum_sq_se: None,
            s: Vec::new(),
            u: None,
            asymmetry: None,
            eig: None,
            jvps: 0,
            vjps: 0,
            jac: None,
        }
    } else {
        analyse(&gpu, &at, &args, true, want_vectors, args.output.is_some())?
    };
    let secs = t0.elapsed().as_secs_f64();

    if let (Some(path), Some(j)) = (&args.output, &r.jac) {
        io::write_npy(path, &[n, n], j).map_err(|e| e.to_string())?;
    }
    if let Some(path) = &args.svd_plot {
        let pts: Vec<(f64, f64)> =
            r.s.iter()
                .enumerate()
                .map(|(i, v)| ((i + 1) as f64, *v))
                .collect();
        let p = LinePlot {
            title: format!("SINGULAR VALUES OF J ({}x{})", img.h, img.w),
            x_label: "INDEX".into(),
            y_label: "SINGULAR VALUE".into(),
            log_x: true,
            log_y: true,
            series: vec![Series {
                label: if args.full {
                    "EXACT SVD".into()
                } else {
                    "RANDOMIZED SVD".into()
                },
                points: pts,
                color: PALETTE[0],
                markers: !args.full,
            }],
        };
        write_png(path, &p.render(560, 380))?;
    }
    if let (Some(path), Some(u)) = (&args.vectors, &r.u) {
        let k = args.top_k.min(u.cols);
        let tiles: Vec<Tile> = (0..k)
            .map(|j| Tile {
                c: img.c,
                h: img.h,
                w: img.w,
                data: u.col(j).iter().map(|&v| v as f32).collect(),
                label: format!("{} S={:.2}", j + 1, r.s[j]),
            })
            .collect();
        let cols = (k as f64).sqrt().ceil() as usize;
        write_png(
            path,
            &plot::image_grid(
                &tiles,
                cols,
                zoom_for(img.h, img.w),
                Scaling::SymmetricPerTile,
            ),
        )?;
    }
    let mut filter_norms = Vec::new();
    if !pixels.is_empty() {
        let idx: Vec<usize> = pixels.iter().map(|&(y, x)| y * img.w + x).collect();
        let rows =
            pollster::block_on(jacobian::rows(&gpu, &at, &idx)).map_err(|e| e.to_string())?;
        for ((y, x), row) in pixels.iter().zip(&rows) {
            let sum: f64 = row.iter().map(|v| *v as f64).sum();
            let norm: f64 = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
            filter_norms.push(json!({"pixel": [y, x], "sum": sum, "norm": norm}));
        }
        if let Some(path) = &args.filters {
            let mut tiles = vec![Tile {
                c: img.c,
                h: img.h,
                w: img.w,
                data: img.data.clone(),
                label: "NOISY".into(),
            }];
            let den = pollster::block_on(at.denoised(&gpu)).map_err(|e| e.to_string())?;
            tiles.push(Tile {
                c: img.c,
                h: img.h,
                w: img.w,
                data: den,
                label: "DENOISED".into(),
            });
            // Filters with a mark at their pixel, on a symmetric grey scale.
            let tiles_f: Vec<Tile> = pixels
                .iter()
                .zip(&rows)
                .map(|(&(y, x), row)| Tile {
                    c: img.c,
                    h: img.h,
                    w: img.w,
                    data: row.clone(),
                    label: format!("{y},{x}"),
                })
                .collect();
            let z = zoom_for(img.h, img.w);
            let top = plot::image_grid(&tiles, 2, z, Scaling::Unit);
            let bottom =
                plot::image_grid(&tiles_f, tiles_f.len().min(4), z, Scaling::SymmetricPerTile);
            let mut all = image::RgbImage::from_pixel(
                top.width().max(bottom.width()),
                top.height() + bottom.height(),
                image::Rgb([255, 255, 255]),
            );
            image::imageops::replace(&mut all, &top, 0, 0);
            image::imageops::replace(&mut all, &bottom, 0, top.height() as i64);
            write_png(path, &all)?;
        }
    }

    // The model as analysed above (the sweep below gives t per level).
    let described = match (model.conditioning(), variance) {
        (Conditioning::NoiseVariance, Some(t)) => format!("{}, t = {t}", model.describe()),
        (Conditioning::NoiseVariance, None) => {
            format!("{}, t estimated from the image", model.describe())
        }
        (Conditioning::Blind, _) => model.describe(),
    };
    // Effective dimensionality against σ.
    let mut sweep = Vec::new();
    for &s in &args.sigmas {
        let noisy = jacobian::add_noise(&clean.data, s, args.seed);
        let p = Planar {
            c: img.c,
            h: img.h,
            w: img.w,
            data: &noisy,
        };
        let at_s = At::new(&gpu, model.as_ref(), p, args.batch, Some(variance_of(s)))
            .map_err(|e| e.to_string())?;
        let sub = JacobianArgs {
            svd_plot: None,
            vectors: None,
            ..args.clone()
        };
        let rs = analyse(&gpu, &at_s, &sub, false, false, false)?;
        sweep.push((s, rs.sum_sq, rs.sum_sq_se, rs.trace, rs.trace_se));
    }
    if let Some(path) = &args.dim_plot {
        let p = LinePlot {
            title: format!("EFFECTIVE DIMENSIONALITY ({}x{}, N={n})", img.h, img.w),
            x_label: "NOISE SIGMA (0-255)".into(),
            y_label: "DIMENSIONS".into(),
            log_x: true,
            log_y: true,
            series: vec![
                Series {
                    label: "SUM S^2".into(),
                    points: sweep.iter().map(|r| (r.0, r.1)).collect(),
                    color: PALETTE[0],
                    markers: true,
                },
                Series {
                    label: "TRACE".into(),
                    points: sweep.iter().map(|r| (r.0, r.3)).collect(),
                    color: PALETTE[1],
                    markers: true,
                },
            ],
        };
        write_png(path, &p.render(560, 380))?;
    }

    let secs_total = t0.elapsed().as_secs_f64();
    let top: Vec<f64> = r.s.iter().take(args.top_k.min(10)).copied().collect();
    if args.json {
        let summary = json!({
            "input": args.input.display().to_string(),
            "model": described,
            "shape": [img.c, img.h, img.w],
            "n": n,
            "sigma255": args.add_noise,
            "seed": args.seed,
            "method": if args.full { "full" } else { "matrix-free" },
            "trace": (!sweep_only).then_some(r.trace),
            "trace_se": r.trace_se,
            "sum_sq_singular_values": (!sweep_only).then_some(r.sum_sq),
            "sum_sq_se": r.sum_sq_se,
            "top_singular_values": top,
            "asymmetry": r.asymmetry,
            "top_eigenvalues_sym": r.eig.as_ref().map(|e| e.iter().take(10).copied().collect::<Vec<_>>()),
            "filters": filter_norms,
            "sigmas": sweep.iter().map(|r| json!({"sigma255": r.0, "sum_sq": r.1, "sum_sq_se": r.2, "trace": r.3, "trace_se": r.4})).collect::<Vec<_>>(),
            "jvps": r.jvps,
            "vjps": r.vjps,
            "seconds": secs,
            "seconds_total": secs_total,
            "adapter": gpu.adapter.name,
        });
        println!("{summary}");
    } else {
        let pm = |se: Option<f64>| se.map(|s| format!(" ± {s:.2}")).unwrap_or_default();
        println!(
            "{described} on {}×{}×{} (N = {n}) — {}",
            img.c,
            img.h,
            img.w,
            args.input.display()
        );
        let method = if args.full {
            "dense Jacobian"
        } else {
            "matrix free"
        };
        if sweep_only {
            println!(
                "  {method}, {} noise levels in {secs_total:.1} s on {}",
                sweep.len(),
                gpu.adapter.name
            );
        } else {
            println!(
                "  {method}: {} JVPs, {} VJPs in {secs:.1} s on {}",
                r.jvps, r.vjps, gpu.adapter.name
            );
        }
        if !sweep_only {
            println!("  trace J          = {:.3}{}", r.trace, pm(r.trace_se));
            println!("  Σ s² = ‖J‖²_F    = {:.3}{}", r.sum_sq, pm(r.sum_sq_se));
        }
        if !top.is_empty() {
            println!(
                "  top singular values: {}",
                top.iter()
                    .map(|v| format!("{v:.4}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        if let Some(a) = r.asymmetry {
            println!("  ‖J − Jᵀ‖_F/‖J‖_F = {a:.4}");
        }
        if let Some(e) = &r.eig {
            println!(
                "  top eigenvalues of (J+Jᵀ)/2: {}",
                e.iter()
                    .take(10)
                    .map(|v| format!("{v:.4}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        for f in &filter_norms {
            println!(
                "  filter at {}: sum {:.4}, norm {:.4}",
                f["pixel"],
                f["sum"].as_f64().unwrap_or(0.0),
                f["norm"].as_f64().unwrap_or(0.0)
            );
        }
        for r in &sweep {
            println!(
                "  σ = {:>5}: Σ s² = {:.2}{}, trace = {:.2}{}",
                r.0,
                r.1,
                pm(r.2),
                r.3,
                pm(r.4)
            );
        }
    }
    Ok(())
}
