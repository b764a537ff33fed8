//! `prior sample`: draw images from the prior implicit in a denoiser with
//! the stochastic coarse-to-fine sampler of Kadkhodaie & Simoncelli (2021)
//! (`prior_algos::sampler`), or, with `--method mala`, annealed MALA from an
//! energy model (`super::mala`). Also holds what `prior solve` shares: the
//! sampler flags, the output flags (`--samples`, `--trajectory`, `--every`,
//! `--plot`, `--json`) and the driver with its progress bar.

use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use prior_algos::sampler::{
    self, defaults, Problem, SampleRun, SamplerError, SamplerParams, Schedule,
};
use prior_gpu::{Gpu, Shape, Tensor};
use prior_models::{Conditioning, Denoiser, Noise};

use crate::io::{self, Image};

/// The sampler's parameters (paper defaults; `prior sample` uses β = 0.5,
/// the paper's synthesis setting, `prior solve` β = 0.01).
#[derive(Args, Debug, Clone)]
pub struct SamplerFlags {
    /// σ₀: standard deviation of the initial noise.
    #[arg(long, default_value_t = defaults::SIGMA0)]
    pub sigma0: f32,
    /// σ_L: stop when the noise level σ_t (see --schedule) reaches it.
    #[arg(long = "sigma-final", default_value_t = defaults::SIGMA_FINAL)]
    pub sigma_final: f32,
    /// h₀: first step size (h_t = h₀ t / (1 + h₀ (t − 1))).
    #[arg(long, default_value_t = defaults::H0)]
    pub h0: f32,
    /// β ∈ (0, 1]: 1 injects no noise, smaller values inject more
    /// [default: 0.5 for sample, 0.01 for solve].
    #[arg(long)]
    pub beta: Option<f32>,
    /// Stop after this many iterations even if σ_L was not reached.
    #[arg(long = "max-iters", default_value_t = defaults::MAX_ITERS)]
    pub max_iters: usize,
    /// Seed of the noise (and of random measurement operators).
    #[arg(long, default_value_t = defaults::SEED)]
    pub seed: u64,
    /// Constant step size instead of the h_t schedule.
    #[arg(long = "fixed-step")]
    pub fixed_step: Option<f32>,
    /// Read σ_t back every K iterations (the result does not change; fast
    /// GPUs then run K iterations per submission).
    #[arg(long = "check-every", value_name = "K", default_value_t = defaults::CHECK_EVERY)]
    pub check_every: usize,
    /// Where the noise level σ_t of each iterate comes from: `measured`
    /// σ_t = ‖d_t‖/√N (the authors' sampler), `recursion` σ₁ = σ₀,
    /// σ_{t+1} = (1 − β h_t) σ_t (the level the update implies; the measured
    /// one is reported beside it), or `auto`: recursion for noise-conditioned
    /// models (the energy model, which is given σ_t² at every call), measured
    /// for blind ones.
    #[arg(long, value_enum, default_value_t = ScheduleFlag::Auto)]
    pub schedule: ScheduleFlag,
    /// The grey level m of the start y₀ = m + σ₀ z (outside the measured
    /// subspace for `solve`); the paper's is 0.5.
    #[arg(long = "start-mean", value_name = "M", default_value_t = defaults::START_MEAN)]
    pub start_mean: f32,
}

/// `--schedule`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleFlag {
    /// Recursion for noise-conditioned models, measured for blind ones.
    Auto,
    /// σ_t = ‖d_t‖/√N, measured from the denoiser's residual.
    Measured,
    /// σ₁ = σ₀, σ_{t+1} = (1 − β h_t) σ_t.
    Recursion,
    /// σ_t estimated blind from the iterate itself: median(|d|)/0.6745 over
    /// its finest diagonal Haar details d (Donoho).
    Estimated,
}

impl ScheduleFlag {
    /// The schedule for a model conditioned as `c`.
    pub fn resolve(self, c: Conditioning) -> Schedule {
        match (self, c) {
            (ScheduleFlag::Measured, _) | (ScheduleFlag::Auto, Conditioning::Blind) => {
                Schedule::Measured
            }
            (ScheduleFlag::Recursion, _) | (ScheduleFlag::Auto, Conditioning::NoiseVariance) => {
                Schedule::Recursion
            }
            (ScheduleFlag::Estimated, _) => Schedule::Estimated,
        }
    }
}

impl SamplerFlags {
    /// The parameters for a model conditioned as `c` (which decides
    /// `--schedule auto`).
    pub fn params(&self, default_beta: f32, c: Conditioning) -> SamplerParams {
        SamplerParams {
            sigma0: self.sigma0,
            sigma_final: self.sigma_final,
            h0: self.h0,
            beta: self.beta.unwrap_or(default_beta),
            max_iters: self.max_iters,
            seed: self.seed,
            fixed_step: self.fixed_step,
            check_every: self.check_every,
            schedule: self.schedule.resolve(c),
            start_mean: self.start_mean,
            ..Default::default()
        }
    }
}

/// Output options shared by `sample` and `solve`.
#[derive(Args, Debug, Clone)]
pub struct RunFlags {
    /// Draw N samples in one batched run (each stops at its own σ_L; the
    /// run ends when all have). With N > 1, `-o x.npy` writes one
    /// (N, C, H, W) array, other outputs are numbered `x_0.png`, `x_1.png`, …
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    /// Write every K-th iterate y_t (see --every) as images into DIR.
    #[arg(long, value_name = "DIR")]
    pub trajectory: Option<PathBuf>,
    /// Trajectory interval (iterates are seen where σ_t is read back: use a
    /// multiple of --check-every).
    #[arg(long, value_name = "K", default_value_t = 10)]
    pub every: usize,
    /// Write a PNG plot of σ_t against the iteration (log scale).
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Print one JSON line with the results instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print the GPU time of each kernel at the end (timestamp queries; an
    /// error on adapters without them).
    #[arg(long)]
    pub profile: bool,
}

/// Arguments of `prior sample`.
#[derive(Args, Debug, Clone)]
pub struct SampleArgs {
    /// Weight file: a `.safetensors` weight blob or a PyTorch checkpoint.
    #[arg(short = 'm', long = "model", value_name = "WEIGHTS")]
    pub model: PathBuf,
    /// Image size, HxW (e.g. 40x40).
    #[arg(long, value_name = "HxW")]
    pub size: String,
    /// Channels (default: the model's).
    #[arg(long)]
    pub channels: Option<usize>,
    /// Output image (.png clamped to [0,1], or .npy unclamped).
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: PathBuf,
    /// The sampler: `coarse-to-fine` (any denoiser) or `mala`, annealed
    /// Metropolis-adjusted Langevin from an energy model's U(y, t)
    /// (geometric t from --t-max to --t-min, step ε = c·t; see --levels …
    /// --no-denoise; of the coarse-to-fine flags it uses only --seed).
    #[arg(long, value_enum, default_value_t = super::mala::Method::CoarseToFine)]
    pub method: super::mala::Method,
    /// The coarse-to-fine sampler's flags.
    #[command(flatten)]
    pub sampler: SamplerFlags,
    /// The flags of `--method mala`.
    #[command(flatten)]
    pub mala: super::mala::MalaFlags,
    /// Output flags (`--samples`, `--trajectory`, `--plot`, `--json`, ...).
    #[command(flatten)]
    pub run: RunFlags,
    /// Storage precision of the denoiser: f16 (f32 accumulation) for the
    /// BF-CNN, DnCNN, RCNN, small UNet, BF-UNet and multi-scale models with
    /// the coarse-to-fine sampler and multi-scale synthesis (not MALA), on
    /// adapters with shader-f16 (elsewhere a warning, and f32 runs).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: super::denoise::PrecisionArg,
    /// `--shard I/N`: draw only slice I of the --samples indices, written
    /// as OUT_k.EXT with the global index k; a rerun skips those written.
    #[command(flatten)]
    pub shard: crate::shard::ShardArgs,
}

/// What determines a batch run's outputs (for `--shard` resume records):
/// the arguments without the shard, and the model file's identity.
pub(crate) fn shard_settings(args: &impl std::fmt::Debug, model: &Path) -> serde_json::Value {
    serde_json::json!({"args": format!("{args:?}"), "model": crate::shard::file_identity(model)})
}

/// Parses `HxW`.
pub fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("--size {s}: expected HxW with positive integers, e.g. 40x40");
    let (h, w) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (h, w) = (
        h.trim().parse::<usize>().map_err(|_| bad())?,
        w.trim().parse::<usize>().map_err(|_| bad())?,
    );
    if h == 0 || w == 0 {
        return Err(bad());
    }
    Ok((h, w))
}

pub(crate) fn load_model(gpu: &Gpu, path: &Path) -> Result<Box<dyn Denoiser>, String> {
    if !path.exists() {
        return Err(format!("{}: model file not found", path.display()));
    }
    if path.is_dir() {
        // Multi-scale models may be folders; let the loader decide.
        return prior_models::load_path(gpu, path)
            .map_err(|e| format!("cannot load the model: {e}"));
    }
    prior_models::load_path(gpu, path).map_err(|e| format!("cannot load the model: {e}"))
}

/// Checks an output path's extension before any work.
pub(crate) fn check_output(path: &Path) -> Result<(), String> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("png") | Some("npy") => Ok(()),
        _ => Err(format!(
            "{}: the output must be a .png or .npy file",
            path.display()
        )),
    }
}

/// Planar (C, H, W) → channels-last.
pub(crate) fn to_channels_last(img: &Image) -> Vec<f32> {
    let (c, h, w) = (img.c, img.h, img.w);
    let mut v = vec![0.0; c * h * w];
    for ch in 0..c {
        for p in 0..h * w {
            v[p * c + ch] = img.data[ch * h * w + p];
        }
    }
    v
}

/// Channels-last sample `s` of a batch → planar image.
pub(crate) fn sample_image(data: &[f32], shape: Shape, s: usize) -> Image {
    let (h, w, c) = (shape.h, shape.w, shape.c);
    let per = h * w * c;
    let src = &data[s * per..(s + 1) * per];
    let mut v = vec![0.0; per];
    for p in 0..h * w {
        for ch in 0..c {
            v[ch * h * w + p] = src[p * c + ch];
        }
    }
    Image::new(c, h, w, v)
}

fn numbered(path: &Path, k: usize) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}_{k}.{ext}"))
}

/// Writes a batch: one file for n = 1, an (N, C, H, W) `.npy`, or numbered files.
/// The `output` key of a command's `--json`: the files written.
pub(crate) fn output_list(written: &[PathBuf]) -> serde_json::Value {
    written
        .iter()
        .map(|p| serde_json::Value::from(p.display().to_string()))
        .collect()
}

pub(crate) fn write_batch(path: &Path, data: &[f32], shape: Shape) -> Result<Vec<PathBuf>, String> {
    let imgs: Vec<Image> = (0..shape.n).map(|s| sample_image(data, shape, s)).collect();
    let is_npy = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if shape.n == 1 {
        io::write_output(path, &imgs[0]).map_err(|e| e.to_string())?;
        Ok(vec![path.to_path_buf()])
    } else if is_npy {
        io::write_npy_batch(path, &imgs).map_err(|e| e.to_string())?;
        Ok(vec![path.to_path_buf()])
    } else {
        let mut out = Vec::new();
        for (k, img) in imgs.iter().enumerate() {
            let p = numbered(path, k);
            io::write_output(&p, img).map_err(|e| e.to_string())?;
            out.push(p);
        }
        Ok(out)
    }
}

/// A finished run and its result read back (channels-last).
pub(crate) struct Driven {
    pub run: SampleRun,
    pub x: Vec<f32>,
}

/// Runs the sampler with the model's residual, a progress bar on stderr
/// (iteration, σ_t, samples still running), the trajectory and the plot.
pub(crate) fn drive(
    gpu: &Gpu,
    model: &dyn Denoiser,
    shape: Shape,
    problem: Option<Problem<'_>>,
    params: &SamplerParams,
    flags: &RunFlags,
    output: &Path,
) -> Result<Driven, String> {
    if model.channels() != shape.c {
        return Err(format!(
            "the model takes {} channel(s), the image has {}",
            model.channels(),
            shape.c
        ));
    }
    let m = model.size_multiple();
    if !shape.h.is_multiple_of(m) || !shape.w.is_multiple_of(m) {
        return Err(format!(
            "the model needs sizes that are multiples of {m}; got {}x{}",
            shape.h, shape.w
        ));
    }
    let need = shape.numel() as u64 * model.values_per_pixel().max(1) as u64 / shape.c as u64 * 4;
    if need > gpu.max_buffer_bytes {
        return Err(format!(
            "{} sample(s) of {}x{} need {:.0} MiB per layer, over this adapter's {:.0} MiB buffer limit: use fewer samples or a smaller size",
            shape.n,
            shape.h,
            shape.w,
            need as f64 / 1048576.0,
            gpu.max_buffer_bytes as f64 / 1048576.0
        ));
    }
    if flags.every == 0 {
        return Err("--every must be at least 1".into());
    }
    if let Some(dir) = &flags.trajectory {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "{}: cannot create the trajectory folder: {e}",
                dir.display()
            )
        })?;
    }
    let bar = ProgressBar::new(params.max_iters as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} it {pos} {wide_msg} [{elapsed_precise}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut history: Vec<Vec<f32>> = Vec::new();
    let mut traj_err: Option<String> = None;
    let result = pollster::block_on(sampler::run(
        gpu,
        shape,
        problem,
        params,
        |g: &Gpu, y: &Tensor, noise: Noise<'_>| model.residual(g, y, noise),
        |p| {
            history.push(p.sigmas.to_vec());
            let worst = p.sigmas.iter().copied().fold(0.0f32, f32::max);
            let measured = match params.schedule {
                Schedule::Measured => String::new(),
                _ => format!(
                    ", measured {:.4}",
                    p.measured.iter().copied().fold(0.0f32, f32::max)
                ),
            };
            bar.set_position(p.iteration as u64);
            bar.set_message(if shape.n == 1 {
                format!("σ_t {worst:.4}{measured} (σ_L {})", params.sigma_final)
            } else {
                format!(
                    "max σ_t {worst:.4}{measured} (σ_L {}), {} of {} running",
                    params.sigma_final, p.running, shape.n
                )
            });
            if let Some(dir) = &flags.trajectory {
                if p.iteration % flags.every == 0 && traj_err.is_none() {
                    let r = pollster::block_on(gpu.read(p.y))
                        .map_err(|e| e.to_string())
                        .and_then(|y| {
                            write_batch(
                                &dir.join(format!("iter_{:05}.png", p.iteration)),
                                &y,
                                shape,
                            )
                            .map(|_| ())
                        });
                    if let Err(e) = r {
                        traj_err = Some(e);
                    }
                }
            }
        },
    ));
    bar.finish_and_clear();
    if let Some(e) = traj_err {
        return Err(format!("trajectory: {e}"));
    }
    if let Some(plot) = &flags.plot {
        let series: Vec<Vec<f32>> = (0..shape.n)
            .map(|s| history.iter().map(|h| h[s]).collect())
            .collect();
        let img = super::plot::sigma_plot(&series, params.sigma_final, 640, 400);
        io::write_atomic(plot, &super::plot::encode_png(&img)?).map_err(|e| e.to_string())?;
    }
    match result {
        Ok(run) => {
            let x = pollster::block_on(gpu.read(&run.x)).map_err(|e| e.to_string())?;
            Ok(Driven { run, x })
        }
        Err(SamplerError::Diverged {
            sample,
            iteration,
            sigma,
            bound,
            last,
        }) => {
            let y = pollster::block_on(gpu.read(&last)).map_err(|e| e.to_string())?;
            let stem = output
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let keep = output.with_file_name(format!("{stem}_last_good.npy"));
            let saved = write_batch(&keep, &y, shape)
                .map(|_| format!("; the last good iterate is in {}", keep.display()));
            Err(format!(
                "the sampler diverged: sample {sample} at iteration {iteration} has σ_t = {sigma} > {bound}; try a smaller --h0 or a larger --beta{}",
                saved.unwrap_or_default()
            ))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// One JSON object with the common results (`prior_algos::sampler::summary`,
/// the keys the browser API returns too).
pub(crate) fn summary_json(
    d: &Driven,
    shape: Shape,
    params: &SamplerParams,
    adapter: &str,
) -> serde_json::Map<String, serde_json::Value> {
    sampler::summary(&d.run, shape, params, adapter)
}

/// Runs `prior sample`.
pub fn run(args: SampleArgs) -> Result<(), String> {
    let (h, w) = parse_size(&args.size)?;
    check_output(&args.output)?;
    if args.run.samples == 0 {
        return Err("--samples must be at least 1".into());
    }
    let gpu = pollster::block_on(Gpu::from_env()).map_err(|e| e.to_string())?;
    super::profile::start(&gpu, args.run.profile)?;
    let _profile = super::profile::Guard(&gpu);
    // The conv choices cached by earlier runs (`prior bench`, `prior denoise`).
    super::bench::tune_begin(&gpu)?;
    let f16 = args.precision == super::denoise::PrecisionArg::F16;
    if f16 && args.method == super::mala::Method::Mala {
        return Err(format!(
            "--precision f16 is available only for the models with f16 kernels ({}) with the coarse-to-fine sampler",
            prior_models::F16_MODELS
        ));
    }
    if args.method == super::mala::Method::Mala {
        return super::mala::run(&gpu, &args, h, w);
    }
    if is_multiscale(&args.model) {
        if args.shard.shard.is_some() {
            return Err(
                "--shard is not available with multi-scale models (their levels share one batch)"
                    .into(),
            );
        }
        return run_multiscale(&gpu, &args, h, w);
    }
    let mut model = load_model(&gpu, &args.model)?;
    super::denoise::apply_precision(&gpu, model.as_mut(), args.precision)?;
    let c = args.channels.unwrap_or(model.channels());
    let unsharded = SampleArgs {
        shard: Default::default(),
        ..args.clone()
    };
    let slice = crate::shard::SampleSlice::plan(
        &args.shard,
        args.run.samples,
        &args.output,
        &args.run,
        shard_settings(&unsharded, &args.model),
    )?;
    if slice.as_ref().is_some_and(|s| s.count == 0) {
        eprintln!("this shard's samples are all written already");
        return Ok(());
    }
    let shape = Shape::new(
        slice.as_ref().map_or(args.run.samples, |s| s.count),
        h,
        w,
        c,
    );
    let mut params = args
        .sampler
        .params(defaults::BETA_SAMPLE, model.conditioning());
    params.first_sample = slice.as_ref().map_or(0, |s| s.first);
    let d = drive(
        &gpu,
        model.as_ref(),
        shape,
        None,
        &params,
        &args.run,
        &args.output,
    )?;
    let written = match &slice {
        Some(s) => s.write(&d.x, shape)?,
        None => write_batch(&args.output, &d.x, shape)?,
    };
    if args.run.json {
        let mut m = summary_json(&d, shape, &params, &gpu.adapter.name);
        m.insert("task".into(), "synthesis".into());
        m.insert("output".into(), output_list(&written));
        println!("{}", serde_json::Value::Object(m));
    } else {
        let r = &d.run;
        for s in 0..shape.n {
            let measured = match params.schedule {
                Schedule::Measured => String::new(),
                _ => format!(" (measured {:.4})", r.final_measured[s]),
            };
            println!(
                "sample {s}: {} iterations, final σ {:.4}{measured}{}",
                r.iterations[s],
                r.final_sigma[s],
                if r.converged[s] {
                    ""
                } else {
                    " (stopped by --max-iters before σ_L)"
                }
            );
        }
        println!(
            "{:.1} s ({:.3} s per iteration); wrote {}",
            r.seconds,
            r.seconds / r.loop_iterations.max(1) as f64,
            written
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// A folder of multi-scale parts, or a blob whose architecture is `multiscale`.
fn is_multiscale(path: &Path) -> bool {
    path.is_dir()
        || prior_models::blob::WeightBlob::load(path)
            .is_ok_and(|b| b.arch().is_ok_and(|a| a == prior_models::Arch::Multiscale))
}

/// `prior sample` with a multi-scale conditional model: coarse-to-fine
/// synthesis (`prior_algos::multiscale::synthesize`): the coarsest low-pass
/// with the low model, then each detail level given the coarser image, every
/// level with the same sampler (σ₀, σ_L scaled per level).
fn run_multiscale(gpu: &Gpu, args: &SampleArgs, h: usize, w: usize) -> Result<(), String> {
    use prior_algos::multiscale::{synthesize, LevelProgress};
    if args.run.trajectory.is_some() {
        return Err("--trajectory is not available with multi-scale models (each level samples coefficients of another size)".into());
    }
    let mut model = prior_models::multiscale::MultiScale::load(gpu, &args.model)
        .map_err(|e| format!("cannot load the model: {e}"))?;
    super::denoise::apply_precision(gpu, &mut model, args.precision)?;
    if let Some(c) = args.channels {
        if c != model.channels() {
            return Err(format!(
                "--channels {c}: the model takes {}",
                model.channels()
            ));
        }
    }
    let n = args.run.samples;
    let params = args
        .sampler
        .params(defaults::BETA_SAMPLE, Conditioning::Blind);
    let bar = ProgressBar::new(params.max_iters as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} it {pos} {wide_msg} [{elapsed_precise}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut history: Vec<Vec<f32>> = Vec::new();
    let result = pollster::block_on(synthesize(
        gpu,
        &model,
        n,
        h,
        w,
        &params,
        |lp: &LevelProgress| {
            let p = lp.progress;
            history.push(p.sigmas.to_vec());
            let worst = p.sigmas.iter().copied().fold(0.0f32, f32::max);
            bar.set_position(p.iteration as u64);
            let level = lp
                .level
                .map_or("low-pass".to_string(), |j| format!("details of level {j}"));
            bar.set_message(format!(
                "{level}: max σ_t {worst:.4}, {} of {n} running",
                p.running
            ));
        },
    ));
    bar.finish_and_clear();
    let out = result.map_err(|e| e.to_string())?;
    if let Some(plot) = &args.run.plot {
        let series: Vec<Vec<f32>> = (0..n)
            .map(|s| history.iter().map(|h| h[s]).collect())
            .collect();
        let img = super::plot::sigma_plot(&series, 0.0, 640, 400);
        io::write_atomic(plot, &super::plot::encode_png(&img)?).map_err(|e| e.to_string())?;
    }
    let shape = out.image.shape();
    let x = pollster::block_on(gpu.read(&out.image)).map_err(|e| e.to_string())?;
    let written = write_batch(&args.output, &x, shape)?;
    let seconds: f64 = out.levels.iter().map(|l| l.seconds).sum();
    if args.run.json {
        let mut m = prior_algos::multiscale::summary(
            &out,
            &params,
            "synthesis",
            history.last().map(Vec::as_slice),
            &gpu.adapter.name,
        );
        m.insert("output".into(), output_list(&written));
        println!("{}", serde_json::Value::Object(m));
    } else {
        for l in &out.levels {
            let name = l
                .level
                .map_or("low-pass".to_string(), |j| format!("level {j} details"));
            println!(
                "{name} ({}x{}): iterations {:?}, {:.1} s",
                l.size.0, l.size.1, l.iterations, l.seconds
            );
        }
        println!(
            "{seconds:.1} s in all; wrote {}",
            written
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
