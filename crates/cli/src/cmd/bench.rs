//! `prior bench`: how fast prior is on this adapter. Measures an FMA
//! ceiling with a WGSL microkernel (`shaders/fma_peak.wgsl`), the GFLOP/s
//! of each convolution variant prior has for the shapes its models use, and
//! the whole-model time of each architecture whose checkpoint is in
//! `--checkpoints`, each next to the fraction of the ceiling it reaches.
//!
//! Times are wall-clock from submission to the readback of the result (one
//! readback per call, as a model call does), the best of `--reps` after one
//! warm-up call that also compiles the pipelines.
//!
//! Tuning (`PRIOR_TUNE`, default `quick`, see `prior_ops::tune`): for each
//! conv shape the table shows every variant (the fixed lavapipe-shaped
//! kernel, its no-subgroup form, the four tile shapes of
//! `conv2d_tiled.wgsl`, the naive baseline; on adapters with shader-f16 the
//! f16-storage kernel of `--precision f16` too) and the tuner's choice: the one
//! held in the user's cache for this adapter, else the pick from the
//! bench's own timings (saved to the cache). Before timing a model, one
//! call records its conv shapes and `tune_seen` tunes those the cache
//! lacks, so the model rows run the tuned kernels.

use std::path::{Path, PathBuf};
use std::time::Instant;

use prior_gpu::{Gpu, Shape, Tensor};
use prior_models::Noise;
use prior_ops::conv2d::{ConvConfig, ConvVariant, Epilogue, Tile};
use prior_ops::conv_transpose2d::ConvTranspose2d;
use prior_ops::precision::{Activation, HalfTensor, Precision};
use prior_ops::tune::{self, ConvKey, TuneMode};
use prior_ops::Conv2d;
use serde_json::json;

/// `prior bench` arguments.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Image side (pixels) of the convolution shapes and of the whole-model runs.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Timed repetitions per measurement (the best is reported), after one warm-up.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Folder of the checkpoints (`../shared/checkpoints` layout); architectures whose file is missing are skipped.
    #[arg(long, default_value = "../shared/checkpoints")]
    pub checkpoints: PathBuf,
    /// Only the ceiling and the convolutions (no whole models).
    #[arg(long)]
    pub no_models: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Best wall-clock seconds of `reps` calls of `f`, after a warm-up. Each
/// call ends by reading back one number (the output's squared norm, reduced
/// on the GPU), so the time covers the work, not the transfer of the output.
fn time_best(
    gpu: &Gpu,
    reps: usize,
    mut f: impl FnMut() -> Result<Tensor, String>,
) -> Result<f64, String> {
    let mut run = || -> Result<f64, String> {
        let t = Instant::now();
        let out = f()?;
        let norm = prior_ops::reduce::dot(gpu, &out, &out).map_err(|e| e.to_string())?;
        pollster::block_on(gpu.read(&norm)).map_err(|e| e.to_string())?;
        Ok(t.elapsed().as_secs_f64())
    };
    run()?;
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        best = best.min(run()?);
    }
    Ok(best)
}

/// The FMA ceiling: GFLOP/s of the microkernel, sized to run ≥ 0.2 s.
fn ceiling(gpu: &Gpu, reps: usize) -> Result<(f64, f64), String> {
    let invocations: u32 = 1 << 16;
    let mut iters: u32 = 64;
    loop {
        let t = time_best(gpu, 0, || {
            prior_ops::peak::fma_peak(gpu, invocations, iters).map_err(|e| e.to_string())
        })?;
        if t >= 0.2 || iters >= 1 << 20 {
            break;
        }
        iters = (iters as f64 * (0.25 / t.max(1e-4)).clamp(2.0, 16.0)) as u32;
    }
    let t = time_best(gpu, reps, || {
        prior_ops::peak::fma_peak(gpu, invocations, iters).map_err(|e| e.to_string())
    })?;
    let flops = prior_ops::peak::FLOPS_PER_ROUND as f64 * iters as f64 * invocations as f64;
    Ok((flops / t / 1e9, t))
}

struct Row {
    what: String,
    /// The layer shape (`shape` of the table).
    shape: String,
    /// [`ConvVariant::name`].
    variant: &'static str,
    gflop: f64,
    seconds: f64,
}

/// What the tuner holds for one conv shape after the bench.
struct TunedRow {
    shape: String,
    key: String,
    choice: &'static str,
    /// `cache` (held from an earlier run), `timed` (picked from this
    /// bench's timings), or `off` (`PRIOR_TUNE=off`: the fixed default).
    source: &'static str,
}

fn weights(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i % 17) as f32 - 8.0) * 0.01).collect()
}

/// A short description of each variant, for the table.
fn describe(gpu: &Gpu, v: ConvVariant) -> String {
    match v {
        ConvVariant::Fixed if gpu.subgroups_at_least(8) => {
            "fixed (4x8/invocation, subgroups)".into()
        }
        ConvVariant::Fixed => "fixed (4x8/invocation)".into(),
        ConvVariant::Plain => "fixed, no subgroups".into(),
        ConvVariant::Naive => "naive, 1 output/invocation".into(),
        ConvVariant::Tiled(t) => {
            let (m, n) = t.size();
            format!("tiled {m}px x {n}ch, workgroup memory")
        }
        ConvVariant::Auto => "auto".into(),
    }
}

/// One conv shape's launch, by variant.
type RunConv<'a> = Box<dyn Fn(ConvVariant) -> Result<Tensor, String> + 'a>;
/// One conv shape's f16-storage launch (the output's packed words).
type RunF16<'a> = Box<dyn Fn(ConvVariant) -> Result<Tensor, String> + 'a>;

/// The rows of [`convolutions`]: per variant, the tuner's choices, warnings.
struct ConvTable {
    rows: Vec<Row>,
    tuned: Vec<TunedRow>,
    warnings: Vec<String>,
}

/// GFLOP/s of the convolution shapes prior's models use, per variant, and
/// the tuner's choice for each (from the cache, else from these timings).
fn convolutions(gpu: &Gpu, size: usize, reps: usize, mode: TuneMode) -> Result<ConvTable, String> {
    let store = tune::default_store();
    let store = store.as_ref();
    let mut warnings = if mode == TuneMode::Off {
        Vec::new()
    } else {
        tune::load_store(gpu, store)
    };
    let mut rows = Vec::new();
    let mut tuned = Vec::new();
    let mut variants = vec![ConvVariant::Fixed];
    if gpu.subgroups_at_least(8) {
        variants.push(ConvVariant::Plain);
    }
    variants.extend(Tile::ALL.map(ConvVariant::Tiled));
    let h = size / 2;
    // (name, geometry, transposed, input side)
    let shapes: [(&str, ConvConfig, bool, usize); 6] = [
        ("3x3 64->64", ConvConfig::same(64, 64, 3, 1), false, size),
        ("1x1 64->64", ConvConfig::same(64, 64, 1, 1), false, size),
        (
            "3x3 stride 2 32->64",
            ConvConfig::new(32, 64, 3, 3).stride(2).pad(1),
            false,
            size,
        ),
        (
            "2x2 stride 2 64->64",
            ConvConfig::new(64, 64, 2, 2).stride(2),
            false,
            size,
        ),
        (
            "convT 2x2 stride 2 64->64",
            ConvConfig::new(64, 64, 2, 2).stride(2),
            true,
            h,
        ),
        (
            "convT 4x4 stride 2 pad 1 64->64",
            ConvConfig::new(64, 64, 4, 4).stride(2).pad(1),
            true,
            h,
        ),
    ];
    for (shape, cfg, transposed, side) in shapes {
        let s = Shape::new(1, side, side, cfg.cin);
        let x = gpu.upload(s, &vec![0.5; s.numel()]);
        let w = weights(cfg.weights());
        // With shader-f16, the f16-storage kernel too (f16 in and out, as
        // between two layers; --precision chooses it, not the tuner).
        let f16 = gpu.adapter.f16;
        let x16 = Activation::F16(HalfTensor::upload(gpu, s, &vec![0.5; s.numel()]));
        let (key, flops, run, run16): (ConvKey, f64, RunConv, Option<RunF16>) = if transposed {
            let mut up = ConvTranspose2d::new(gpu, &w, cfg);
            if f16 {
                up.enable_f16(gpu);
            }
            let up = std::rc::Rc::new(up);
            let out = up
                .out_size(side, side)
                .ok_or_else(|| format!("{shape} on {side}x{side}: empty output"))?;
            let flops = 2.0 * up.macs(1, side, side) as f64;
            let x = x.clone();
            let up16 = up.clone();
            let run16 = f16.then(|| -> RunF16 {
                Box::new(move |v| {
                    up16.forward_f16_with(gpu, &x16, Precision::F16, false, v)
                        .map(|y| y.words().clone())
                        .map_err(|e| e.to_string())
                })
            });
            let run = Box::new(move |variant| {
                up.forward(
                    gpu,
                    &x,
                    Epilogue {
                        variant,
                        ..Default::default()
                    },
                )
                .map_err(|e| e.to_string())
            });
            (ConvKey::transposed(cfg, s, out), flops, run, run16)
        } else {
            let mut conv = Conv2d::new(gpu, &w, cfg);
            if f16 {
                conv.enable_f16(gpu);
            }
            let conv = std::rc::Rc::new(conv);
            let flops = 2.0 * conv.macs(1, side, side) as f64;
            let x = x.clone();
            let conv16 = conv.clone();
            let run16 = f16.then(|| -> RunF16 {
                Box::new(move |v| {
                    conv16
                        .forward_f16_with(gpu, &x16, Precision::F16, false, v)
                        .map(|y| y.words().clone())
                        .map_err(|e| e.to_string())
                })
            });
            let run = Box::new(move |variant| {
                conv.forward(
                    gpu,
                    &x,
                    Epilogue {
                        variant,
                        ..Default::default()
                    },
                )
                .map_err(|e| e.to_string())
            });
            (ConvKey::conv(cfg, s), flops, run, run16)
        };
        let mut list = variants.clone();
        if !transposed {
            list.push(ConvVariant::Naive);
        }
        let mut timings = Vec::new();
        for variant in list {
            let t = time_best(gpu, reps, || run(variant))?;
            timings.push(tune::Timing {
                variant,
                seconds: t,
            });
            rows.push(Row {
                what: format!("{shape} on {side}x{side}, {}", describe(gpu, variant)),
                shape: shape.to_string(),
                variant: variant.name(),
                gflop: flops / 1e9,
                seconds: t,
            });
        }
        let (choice, source) = match (mode, tune::chosen(gpu, &key)) {
            (TuneMode::Off, _) => (ConvVariant::Fixed, "off"),
            (_, Some(v)) => (v, "cache"),
            (_, None) => {
                let (v, w) = tune::decide(gpu, key, &timings, mode, store);
                warnings.extend(w);
                (v, "timed")
            }
        };
        // f16 storage runs the tuner's kernel family: a tiled choice with
        // f16 storage, else the fixed f16 kernel.
        if let Some(run16) = run16 {
            let t = time_best(gpu, reps, || run16(choice))?;
            let kernel = match choice {
                ConvVariant::Tiled(t) => describe(gpu, ConvVariant::Tiled(t)),
                _ => "fixed".into(),
            };
            rows.push(Row {
                what: format!("{shape} on {side}x{side}, f16 storage, {kernel}"),
                shape: shape.to_string(),
                variant: "f16",
                gflop: flops / 1e9,
                seconds: t,
            });
        }
        tuned.push(TunedRow {
            shape: format!("{shape} on {side}x{side}"),
            key: key.text(),
            choice: choice.name(),
            source,
        });
    }
    Ok(ConvTable {
        rows,
        tuned,
        warnings,
    })
}

/// The architectures and the checkpoint each is timed with.
const MODELS: &[(&str, &str, usize)] = &[
    (
        "BF-CNN",
        "universal_inverse_problem/BSD400_gray/model.pt",
        1,
    ),
    (
        "DnCNN (bias-free)",
        "bias_free_denoising/dncnn/bias_free/0-100.pt",
        1,
    ),
    (
        "RCNN (bias-free)",
        "bias_free_denoising/rcnn/bias_free/0-100.pt",
        1,
    ),
    (
        "small UNet (bias-free)",
        "bias_free_denoising/unet/bias_free/0-100.pt",
        1,
    ),
    (
        "multi-scale (160, rf9)",
        "local_probability_models/multi_scale_160_rf9",
        1,
    ),
    (
        "energy UNet (MNIST fixture, 16 × 32x32)",
        "dual_score_matching/mnist32_gray_tiny/model.pth.tar",
        16,
    ),
];

struct ModelRow {
    arch: String,
    input: String,
    seconds: Option<f64>,
    /// 2 · parameters · pixels: the flops of a single-resolution conv chain
    /// (exact up to the borders for BF-CNN and DnCNN); none for the others.
    gflop_estimate: Option<f64>,
    skipped: Option<String>,
}

fn models(gpu: &Gpu, dir: &Path, size: usize, reps: usize, mode: TuneMode) -> Vec<ModelRow> {
    let mut rows = Vec::new();
    for &(arch, rel, batch) in MODELS {
        let path = dir.join(rel);
        let mut row = ModelRow {
            arch: arch.to_string(),
            input: String::new(),
            seconds: None,
            gflop_estimate: None,
            skipped: None,
        };
        if !path.exists() {
            row.skipped = Some(format!("{} not found", path.display()));
            rows.push(row);
            continue;
        }
        let model = match prior_models::load_path(gpu, &path) {
            Ok(m) => m,
            Err(e) => {
                row.skipped = Some(format!("cannot load {}: {e}", path.display()));
                rows.push(row);
                continue;
            }
        };
        let side = if batch > 1 { 32 } else { size };
        let m = model.size_multiple().max(1);
        let side = side.div_ceil(m) * m;
        let s = Shape::new(batch, side, side, model.channels());
        row.input = format!("{batch} x {side}x{side}x{}", model.channels());
        let y = gpu.upload(s, &vec![0.5; s.numel()]);
        let t = gpu.upload(Shape::new(batch, 1, 1, 1), &vec![0.01; batch]);
        let call = || {
            model
                .denoise(gpu, &y, Noise::Variance(&t))
                .map_err(|e| e.to_string())
        };
        if mode != TuneMode::Off {
            // One call records the model's conv shapes; tune those the cache lacks.
            let tuned = call().and_then(|_| {
                let cfg = tune::TuneConfig::new(mode);
                let store = tune::default_store();
                pollster::block_on(tune::tune_seen(gpu, cfg, store.as_ref()))
                    .map_err(|e| e.to_string())
            });
            match tuned {
                Ok(r) => r.warnings.iter().for_each(|w| eprintln!("warning: {w}")),
                Err(e) => {
                    row.skipped = Some(e);
                    rows.push(row);
                    continue;
                }
            }
        }
        let timed = time_best(gpu, reps, call);
        match timed {
            Ok(secs) => row.seconds = Some(secs),
            Err(e) => row.skipped = Some(e),
        }
        if arch.starts_with("BF-CNN") || arch.starts_with("DnCNN") {
            row.gflop_estimate = Some(2.0 * model.parameters() as f64 * s.numel() as f64 / 1e9);
        }
        rows.push(row);
    }
    rows
}

/// The tuning mode of this adapter (`PRIOR_TUNE`, else the adapter's
/// default), with the user's cached choices loaded so `Auto` convolutions
/// run them; a corrupt cache is reported on stderr and ignored. Commands
/// call it once their GPU is open (`denoise`, `sample`).
pub fn tune_begin(gpu: &Gpu) -> Result<TuneMode, String> {
    let mode = TuneMode::for_adapter(gpu)?;
    if mode != TuneMode::Off {
        let store = tune::default_store();
        for w in tune::load_store(gpu, store.as_ref()) {
            eprintln!("warning: {w}");
        }
    }
    Ok(mode)
}

/// Tunes the conv shapes the calls so far met without a cached choice
/// (nothing when `mode` is off or every shape is cached) and saves them;
/// `prior denoise` calls it after its first image. A failure is a warning:
/// the fixed kernels keep running.
pub fn tune_seen_now(gpu: &Gpu, mode: TuneMode) {
    if mode == TuneMode::Off || tune::seen(gpu).is_empty() {
        return;
    }
    let store = tune::default_store();
    let cfg = tune::TuneConfig::new(mode);
    match pollster::block_on(tune::tune_seen(gpu, cfg, store.as_ref())) {
        Ok(r) => r.warnings.iter().for_each(|w| eprintln!("warning: {w}")),
        Err(e) => eprintln!("warning: tuning the convolutions failed ({e}); the fixed kernels run"),
    }
}

/// Runs `prior bench`.
pub fn run(args: BenchArgs) -> Result<(), String> {
    if args.size < 8 || args.size > 4096 {
        return Err(format!("--size {}: must be in 8..=4096", args.size));
    }
    let gpu = pollster::block_on(Gpu::from_env()).map_err(|e| e.to_string())?;
    let mode = TuneMode::for_adapter(&gpu)?;
    let a = &gpu.adapter;
    if !args.json {
        println!(
            "adapter: {} ({}, {}, driver {})",
            a.name, a.backend, a.device_type, a.driver
        );
    }
    let (peak, peak_s) = ceiling(&gpu, args.reps)?;
    if !args.json {
        println!(
            "FMA ceiling (shaders/fma_peak.wgsl): {peak:.1} GFLOP/s ({:.3} s)",
            peak_s
        );
        println!(
            "{:<64} {:>9} {:>10} {:>9} {:>8}",
            "convolution", "GFLOP", "ms", "GFLOP/s", "ceiling"
        );
    }
    let ConvTable {
        rows: convs,
        tuned,
        warnings,
    } = convolutions(&gpu, args.size, args.reps, mode)?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if !args.json {
        for r in &convs {
            let gf = r.gflop / r.seconds;
            println!(
                "{:<64} {:>9.3} {:>10.2} {:>9.1} {:>7.1}%",
                r.what,
                r.gflop,
                r.seconds * 1e3,
                gf,
                100.0 * gf / peak
            );
        }
        println!(
            "tuner (PRIOR_TUNE={}; Auto runs this choice on this adapter):",
            format!("{mode:?}").to_lowercase()
        );
        for t in &tuned {
            println!("  {:<46} {:<12} ({})", t.shape, t.choice, t.source);
        }
    }
    let model_rows = if args.no_models {
        Vec::new()
    } else {
        models(&gpu, &args.checkpoints, args.size, args.reps, mode)
    };
    if !args.json && !model_rows.is_empty() {
        println!(
            "{:<42} {:>20} {:>10} {:>9} {:>8}",
            "model (denoise call)", "input", "ms", "GFLOP/s", "ceiling"
        );
        for r in &model_rows {
            match (r.seconds, &r.skipped) {
                (Some(s), _) => {
                    let (gf, frac) = match r.gflop_estimate {
                        Some(g) => (
                            format!("{:.1}", g / s),
                            format!("{:.1}%", 100.0 * g / s / peak),
                        ),
                        None => ("-".into(), "-".into()),
                    };
                    println!(
                        "{:<42} {:>20} {:>10.1} {:>9} {:>8}",
                        r.arch,
                        r.input,
                        s * 1e3,
                        gf,
                        frac
                    );
                }
                (None, Some(why)) => println!("{:<42} skipped: {why}", r.arch),
                (None, None) => {}
            }
        }
        println!(
            "(GFLOP/s of whole models: 2·parameters·pixels, for the single-resolution chains only)"
        );
    }
    if args.json {
        let v = json!({
            "adapter": {"name": a.name, "backend": a.backend, "device_type": a.device_type, "driver": a.driver, "subgroups": a.subgroups},
            "fma_ceiling_gflops": peak,
            "tune_mode": format!("{mode:?}").to_lowercase(),
            "tuned": tuned.iter().map(|t| json!({
                "shape": t.shape, "key": t.key, "choice": t.choice, "source": t.source,
            })).collect::<Vec<_>>(),
            "convolutions": convs.iter().map(|r| json!({
                "what": r.what, "shape": r.shape, "variant": r.variant,
                "gflop": r.gflop, "seconds": r.seconds,
                "gflops": r.gflop / r.seconds, "fraction_of_ceiling": r.gflop / r.seconds / peak,
            })).collect::<Vec<_>>(),
            "models": model_rows.iter().map(|r| json!({
                "architecture": r.arch, "input": r.input, "seconds": r.seconds,
                "gflops_estimate": r.gflop_estimate.zip(r.seconds).map(|(g, s)| g / s),
                "fraction_of_ceiling": r.gflop_estimate.zip(r.seconds).map(|(g, s)| g / s / peak),
                "skipped": r.skipped,
            })).collect::<Vec<_>>(),
        });
        println!("{v}");
    }
    Ok(())
}
