//! `prior denoise`: run a denoiser on images or arrays, optionally adding
//! reproducible Gaussian noise first and scoring the result against a clean
//! reference.
//!
//! Noise convention (the one of `tests/golden/set12_psnr.json`): for image
//! `k` (0-based, in input order after directories are expanded) and noise
//! level `SIGMA` on the 0–255 scale, `z_i = normal(key(seed, round(SIGMA)·1000
//! + k), i)` from [`prior_ops::reference::rng`], `i` the flat `(C, H, W)`
//! index, and `noisy = clean + f32(SIGMA/255)·z` (not clamped). A `.npy`
//! batch shaped `(N, C, H, W)` is one input: `i` runs over the flat
//! `(N, C, H, W)` index, so a batch of one has the noise of the single image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use prior_gpu::Gpu;
use prior_models::tiling::{apply_image, Apply, Planar};
use prior_models::Denoiser;
use prior_ops::reference::rng;

use crate::io::{self, Image};
use crate::metrics;
use crate::shard::{self, ShardArgs};

/// Output file format in directory mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// 8-bit PNG, values clamped to [0,1] and rounded.
    Png,
    /// Raw float32 `.npy`, shaped (C, H, W) (or (N, C, H, W) for a batch input), unclamped.
    Npy,
}

impl Format {
    fn ext(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Npy => "npy",
        }
    }
}

/// Arguments of `prior denoise`.
#[derive(Args, Debug, Clone)]
pub struct DenoiseArgs {
    /// Weight file: a `.safetensors` weight blob or a PyTorch checkpoint, or
    /// a folder holding the parts of a multi-scale model.
    #[arg(short = 'm', long = "model", value_name = "WEIGHTS")]
    pub model: PathBuf,
    /// Input images (png, jpg, tif, bmp) or `.npy` arrays shaped (H,W),
    /// (C,H,W) or batches (N,C,H,W), or directories of them. Several inputs or
    /// a directory make `-o` an output directory. A batch is written as one
    /// (N,C,H,W) `.npy` and reported image by image.
    #[arg(short = 'i', long = "input", value_name = "INPUT", num_args = 1.., required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output file (`.png` or `.npy`), or output directory (created) when
    /// there are several inputs, a directory input, or `-o` is a directory
    /// or ends with a path separator. Rerunning the same directory command
    /// skips the outputs already written (its settings are recorded in
    /// OUTPUT/.prior-run.json; other settings recompute everything).
    #[arg(short = 'o', long = "output", value_name = "OUTPUT")]
    pub output: PathBuf,
    /// Add Gaussian noise of standard deviation SIGMA_255/255 to each input
    /// first (the input is then the clean image and the default reference).
    /// The noise comes from prior's counter-based generator, stream
    /// round(SIGMA_255)·1000 + k for the k-th input, so a seed reproduces it
    /// exactly on any machine; it is not clamped.
    #[arg(long = "add-noise", value_name = "SIGMA_255")]
    pub add_noise: Option<f64>,
    /// Seed of the noise generator (with --add-noise).
    #[arg(long, value_name = "N", default_value_t = 0, requires = "add_noise")]
    pub seed: u64,
    /// Clean reference for PSNR/SSIM: a file (one input) or a directory
    /// holding a file of the same name (or stem) for each input.
    #[arg(long, value_name = "REFERENCE")]
    pub clean: Option<PathBuf>,
    /// Print one JSON object per image on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print the GPU time of each kernel at the end (timestamp queries; an
    /// error on adapters without them).
    #[arg(long)]
    pub profile: bool,
    /// Storage precision of weights and activations: f16 (with f32
    /// accumulation) runs the f16 kernels of the BF-CNN, DnCNN, RCNN, small
    /// UNet, BF-UNet and multi-scale models on adapters with shader-f16;
    /// elsewhere a warning, and f32 runs (the energy model refuses f16).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionArg,
    /// Output format in directory mode (default png). For a single output
    /// file the format is `-o`'s extension.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// `--shard I/N`: denoise only slice I of the inputs (directory mode);
    /// a rerun of the same command skips the outputs already written.
    #[command(flatten)]
    pub shard: ShardArgs,
}

/// `--precision` of `denoise` and `sample`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    /// f32 weights and activations (the default).
    F32,
    /// f16 weights and activations, f32 accumulation.
    F16,
}

/// Sets `model`'s storage precision as `--precision` asks, falling back to
/// f32 with a warning on stderr when the adapter lacks shader-f16; returns
/// the precision that runs.
pub fn apply_precision(
    gpu: &Gpu,
    model: &mut dyn Denoiser,
    wanted: PrecisionArg,
) -> Result<prior_ops::precision::Precision, String> {
    use prior_ops::precision::Precision;
    let wanted = match wanted {
        PrecisionArg::F32 => Precision::F32,
        PrecisionArg::F16 => Precision::F16,
    };
    let (p, warning) = Precision::on(gpu, wanted);
    if let Some(w) = warning {
        eprintln!("{w}");
    }
    model
        .set_precision(gpu, p)
        .map_err(|e| format!("--precision {}: {e}", p.name()))?;
    Ok(p)
}

/// One unit of work: where to read, write and what to compare with.
struct Job {
    input: PathBuf,
    output: PathBuf,
    clean: Option<PathBuf>,
}

/// The largest accepted `--add-noise` (0–255 scale); the stream index
/// `round(SIGMA)·1000 + k` must fit in 32 bits.
const MAX_SIGMA: f64 = 100_000.0;

/// Runs `prior denoise`. Every failure is returned as a message naming the
/// file and the problem; nothing is written over an input.
pub fn run(args: DenoiseArgs) -> Result<(), String> {
    if let Some(s) = args.add_noise {
        if !s.is_finite() || !(0.0..=MAX_SIGMA).contains(&s) {
            return Err(format!("--add-noise {s}: expected a noise level between 0 and {MAX_SIGMA} on the 0–255 scale"));
        }
    }
    let shard = args.shard.resolve()?;
    let (jobs, dir_mode) = plan(&args)?;
    if !args.model.exists() {
        return Err(format!("{}: model file not found", args.model.display()));
    }
    // Inputs keep their global index k (the noise stream), whatever the shard.
    let todo = shard.range(jobs.len());
    let resume = dir_mode && shard::resume_in(&args.output, &run_settings(&args))?;
    let todo: Vec<usize> = todo
        .filter(|&k| !(resume && jobs[k].output.is_file()))
        .collect();
    let skipped = shard.range(jobs.len()).len() - todo.len();
    if skipped > 0 && !args.json {
        eprintln!(
            "resuming: {skipped} output(s) of this run are already in {}",
            args.output.display()
        );
    }
    if todo.is_empty() {
        return Ok(());
    }

    let mut gpu = pollster::block_on(Gpu::from_env()).map_err(|e| e.to_string())?;
    super::profile::start(&gpu, args.profile)?;
    let mut model = prior_models::load_path(&gpu, &args.model)
        .map_err(|e| format!("cannot load the model: {e}"))?;
    apply_precision(&gpu, model.as_mut(), args.precision)?;
    // A weight the GPU refused would otherwise surface at the first image.
    pollster::block_on(gpu.check("uploading the model"))
        .map_err(|e| format!("cannot load the model: {e}"))?;
    // Cached conv choices now; shapes without one tuned after the first image.
    let tune_mode = super::bench::tune_begin(&gpu)?;

    let bar = if dir_mode {
        let pb = indicatif::ProgressBar::new(todo.len() as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} {wide_msg} [{elapsed_precise} < {eta}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(pb)
    } else {
        None
    };
    let say = |line: &str| match &bar {
        Some(pb) => pb.suspend(|| println!("{line}")),
        None => println!("{line}"),
    };

    let mut sums = (0.0f64, 0.0f64, 0usize);
    for &k in &todo {
        let job = &jobs[k];
        if let Some(pb) = &bar {
            pb.set_message(job.input.display().to_string());
        }
        for r in process(&mut gpu, &*model, &args, k, job)? {
            if let (Some(a), Some(b)) = (r.psnr_input, r.psnr_output) {
                sums.0 += a;
                sums.1 += b;
                sums.2 += 1;
            }
            if args.json {
                say(&r.json(job, &gpu.adapter.name).to_string());
            } else {
                say(&r.text(job));
            }
        }
        if let Some(pb) = &bar {
            pb.inc(1);
        }
        super::bench::tune_seen_now(&gpu, tune_mode);
    }
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    if !args.json {
        if sums.2 > 1 {
            println!(
                "mean PSNR over {} images: input {:.3} dB → output {:.3} dB",
                sums.2,
                sums.0 / sums.2 as f64,
                sums.1 / sums.2 as f64
            );
        }
        if sums.2 > 0 {
            println!(
                "(PSNR with peak 1 and SSIM against the clean image; the output is clamped to [0,1] for \
                 the metrics, the noisy input is not)"
            );
        }
    }
    super::profile::report(&gpu);
    Ok(())
}

/// What determines the outputs of a directory run (see [`shard::resume_in`]).
fn run_settings(args: &DenoiseArgs) -> serde_json::Value {
    serde_json::json!({
        "command": "denoise",
        "version": env!("CARGO_PKG_VERSION"),
        "model": shard::file_identity(&args.model),
        "add_noise": args.add_noise,
        "seed": args.seed,
        "format": args.format.map(|f| f.ext()),
        "precision": format!("{:?}", args.precision),
    })
}

/// Expands the inputs, decides file or directory mode, and checks every
/// output path and reference before any work is done.
fn plan(args: &DenoiseArgs) -> Result<(Vec<Job>, bool), String> {
    let inputs = io::collect_inputs(&args.inputs).map_err(|e| e.to_string())?;
    let trailing_slash = args
        .output
        .as_os_str()
        .to_string_lossy()
        .ends_with(std::path::MAIN_SEPARATOR);
    let dir_mode = inputs.len() > 1
        || args.inputs.iter().any(|p| p.is_dir())
        || args.output.is_dir()
        || trailing_slash;
    let mut outputs = Vec::with_capacity(inputs.len());
    if dir_mode {
        if args.output.exists() && !args.output.is_dir() {
            return Err(format!(
                "{}: is a file, but with several inputs or a directory input -o must be an output directory",
                args.output.display()
            ));
        }
        let ext = args.format.unwrap_or(Format::Png).ext();
        let mut seen: BTreeMap<PathBuf, &Path> = BTreeMap::new();
        for input in &inputs {
            let stem = input
                .file_stem()
                .ok_or_else(|| format!("{}: input has no file name", input.display()))?;
            let out = args.output.join(stem).with_extension(ext);
            if let Some(prev) = seen.insert(out.clone(), input) {
                return Err(format!(
                    "{} and {} would both be written to {}; rename one or denoise them separately",
                    prev.display(),
                    input.display(),
                    out.display()
                ));
            }
            outputs.push(out);
        }
    } else {
        let ext = args
            .output
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if !io::OUTPUT_EXTENSIONS.contains(&ext.as_str()) {
            return Err(format!(
                "{}: unsupported output file extension {ext:?} (supported: png, npy; or give a directory)",
                args.output.display()
            ));
        }
        if let Some(f) = args.format {
            if f.ext() != ext {
                return Err(format!(
                    "--format {} contradicts the output file name {}",
                    f.ext(),
                    args.output.display()
                ));
            }
        }
        if let Some(parent) = args.output.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(format!(
                    "{}: directory {} does not exist",
                    args.output.display(),
                    parent.display()
                ));
            }
        }
        outputs.push(args.output.clone());
    }

    let mut jobs = Vec::with_capacity(inputs.len());
    for (input, output) in inputs.iter().zip(outputs) {
        let clean = match &args.clean {
            None => None,
            Some(c) if c.is_dir() => Some(find_reference(c, input)?),
            Some(c) if inputs.len() == 1 => {
                if !c.exists() {
                    return Err(format!("{}: clean reference not found", c.display()));
                }
                Some(c.clone())
            }
            Some(c) => {
                return Err(format!(
                    "--clean {}: with several inputs the reference must be a directory holding a file of the \
                     same name for each input",
                    c.display()
                ))
            }
        };
        jobs.push(Job {
            input: input.clone(),
            output,
            clean,
        });
    }

    // Never write over anything we read.
    let mut protected: Vec<PathBuf> = inputs.clone();
    protected.push(args.model.clone());
    protected.extend(jobs.iter().filter_map(|j| j.clean.clone()));
    for j in &jobs {
        io::ensure_not_input(&j.output, &protected).map_err(|e| e.to_string())?;
    }
    if dir_mode {
        std::fs::create_dir_all(&args.output).map_err(|e| {
            format!(
                "{}: cannot create the output directory: {e}",
                args.output.display()
            )
        })?;
    }
    Ok((jobs, dir_mode))
}

/// The reference for `input` in directory `dir`: the same file name, or
/// else the same stem with any supported extension.
fn find_reference(dir: &Path, input: &Path) -> Result<PathBuf, String> {
    if let Some(name) = input.file_name() {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    if let Some(stem) = input.file_stem() {
        for ext in io::INPUT_EXTENSIONS {
            let p = dir.join(stem).with_extension(ext);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(format!(
        "--clean {}: no reference for {} (looked for a file of the same name or stem)",
        dir.display(),
        input.display()
    ))
}

/// Adds the documented noise to `img` in place (image index `k`).
pub fn add_noise(img: &mut Image, sigma255: f64, seed: u64, k: usize) {
    add_noise_at(img, sigma255, seed, k, 0);
}

/// The noise of input `k` from flat index `offset` on (element `b` of a
/// batch starts at `b·C·H·W`).
fn add_noise_at(img: &mut Image, sigma255: f64, seed: u64, k: usize, offset: usize) {
    let stream = (sigma255.round() as u32)
        .wrapping_mul(1000)
        .wrapping_add(k as u32);
    let key = rng::key(seed, stream);
    let s = (sigma255 / 255.0) as f32;
    for (i, v) in img.data.iter_mut().enumerate() {
        *v += s * rng::normal(key, (offset + i) as u32);
    }
}

/// The images of one input: a 4-D `.npy` is a batch (`true`), anything
/// else one image.
fn read_images(path: &Path) -> Result<(Vec<Image>, bool), String> {
    let is_npy = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy {
        let arr = io::read_npy(path).map_err(|e| e.to_string())?;
        if arr.shape.len() == 4 {
            return Ok((io::read_npy_batch(path).map_err(|e| e.to_string())?, true));
        }
    }
    Ok((
        vec![io::read_input(path).map_err(|e| e.to_string())?],
        false,
    ))
}

struct Report {
    /// Position in an (N, C, H, W) batch.
    index: Option<usize>,
    h: usize,
    w: usize,
    c: usize,
    sigma: Option<f64>,
    psnr_input: Option<f64>,
    psnr_output: Option<f64>,
    ssim_input: Option<f64>,
    ssim_output: Option<f64>,
    seconds: f64,
}

fn channel_mismatch(file: &Path, model: usize, image: usize) -> String {
    let f = file.display();
    match (model, image) {
        (1, 3) => format!(
            "{f}: the model is grayscale (1 channel) but the image is colour (3 channels); convert the image \
             to grayscale first, or use a colour model (e.g. universal_inverse_problem/BSD300_color/model.pt)"
        ),
        (3, 1) => format!(
            "{f}: the model is colour (3 channels) but the image is grayscale (1 channel); use a grayscale \
             model (e.g. universal_inverse_problem/BSD400_gray/model.pt)"
        ),
        (m, i) => format!("{f}: the model takes {m} channel(s) but the input has {i}"),
    }
}

fn process(
    gpu: &mut Gpu,
    model: &dyn Denoiser,
    args: &DenoiseArgs,
    k: usize,
    job: &Job,
) -> Result<Vec<Report>, String> {
    let (mut imgs, batch) = read_images(&job.input)?;
    let npy_out = job
        .output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    // (1, C, H, W) may still go to a PNG, as one image
    let batch = batch && (npy_out || imgs.len() > 1);
    if batch && !npy_out {
        return Err(format!(
            "{}: a batch of {} images (N, C, H, W) is written as one .npy: give -o OUT.npy (or --format npy with a directory)",
            job.input.display(),
            imgs.len()
        ));
    }
    for img in &imgs {
        if img.c != model.channels() {
            return Err(channel_mismatch(&job.input, model.channels(), img.c));
        }
    }
    let clean = match (&job.clean, args.add_noise) {
        (Some(p), _) => {
            let (c, _) = read_images(p)?;
            let shapes = |v: &[Image]| v.iter().map(|i| i.shape()).collect::<Vec<_>>();
            if shapes(&c) != shapes(&imgs) {
                return Err(format!(
                    "{}: clean reference holds {} image(s) shaped {:?} (C, H, W) but {} holds {} shaped {:?}",
                    p.display(),
                    c.len(),
                    c[0].shape(),
                    job.input.display(),
                    imgs.len(),
                    imgs[0].shape()
                ));
            }
            Some(c)
        }
        (None, Some(_)) => Some(imgs.clone()),
        (None, None) => None,
    };
    if let Some(s) = args.add_noise {
        let mut offset = 0;
        for img in imgs.iter_mut() {
            add_noise_at(img, s, args.seed, k, offset);
            offset += img.len();
        }
    }
    let mut outs = Vec::with_capacity(imgs.len());
    let mut reports = Vec::with_capacity(imgs.len());
    for (b, img) in imgs.iter().enumerate() {
        let t0 = Instant::now();
        let planar = Planar {
            c: img.c,
            h: img.h,
            w: img.w,
            data: &img.data,
        };
        let out = apply_with_fallback(gpu, model, planar, Apply::Denoise)
            .map_err(|e| format!("{}: {e}", job.input.display()))?;
        let seconds = t0.elapsed().as_secs_f64();
        let out = Image::new(img.c, img.h, img.w, out);
        let mut r = Report {
            index: batch.then_some(b),
            h: img.h,
            w: img.w,
            c: img.c,
            sigma: args.add_noise,
            psnr_input: None,
            psnr_output: None,
            ssim_input: None,
            ssim_output: None,
            seconds,
        };
        if let Some(clean) = clean.as_ref().map(|c| &c[b]) {
            let clamped = Image::new(
                out.c,
                out.h,
                out.w,
                out.data.iter().map(|v| v.clamp(0.0, 1.0)).collect(),
            );
            r.psnr_input = Some(metrics::psnr(&img.data, &clean.data, 1.0));
            r.psnr_output = Some(metrics::psnr(&clamped.data, &clean.data, 1.0));
            r.ssim_input = Some(metrics::ssim(img, clean)).filter(|v| v.is_finite());
            r.ssim_output = Some(metrics::ssim(&clamped, clean)).filter(|v| v.is_finite());
        }
        outs.push(out);
        reports.push(r);
    }
    if batch {
        io::write_npy_batch(&job.output, &outs).map_err(|e| e.to_string())?;
    } else {
        io::write_output(&job.output, &outs[0]).map_err(|e| e.to_string())?;
    }
    Ok(reports)
}

/// [`apply_image`], and when the GPU refuses an allocation (out of memory
/// although within the advertised limits) again with a buffer limit half
/// the failed allocation's size, so the image is cut into smaller tiles;
/// the lowered limit stays for the following images. Gives up when the
/// tiles would be smaller than the model's receptive field allows.
pub fn apply_with_fallback(
    gpu: &mut Gpu,
    model: &dyn Denoiser,
    img: Planar<'_>,
    what: Apply,
) -> Result<Vec<f32>, String> {
    let mut first_failure: Option<String> = None;
    loop {
        match pollster::block_on(apply_image(gpu, model, img.clone(), what, None)) {
            Err(prior_models::ModelError::Gpu(e)) if e.is_allocation_failure() => {
                let failed = e.failed_allocation_bytes().unwrap_or(gpu.max_buffer_bytes);
                let lower = (failed / 2).min(gpu.max_buffer_bytes / 2);
                if lower < 4096 {
                    return Err(e.to_string());
                }
                eprintln!("note: {e}; retrying in tiles with buffers of at most {lower} bytes");
                first_failure.get_or_insert_with(|| e.to_string());
                gpu.max_buffer_bytes = lower;
                gpu.trim_pool();
                // A plan that cannot tile that small reports TooLarge, which ends the loop.
            }
            Err(e) => {
                return Err(match &first_failure {
                    Some(f) => format!("{f}; tiling did not help: {e}"),
                    None => e.to_string(),
                })
            }
            Ok(v) => return Ok(v),
        }
    }
}

impl Report {
    fn json(&self, job: &Job, adapter: &str) -> serde_json::Value {
        // Non-finite numbers (PSNR of identical images) become null.
        let num = |v: Option<f64>| v.filter(|x| x.is_finite());
        serde_json::json!({
            "file": job.input.display().to_string(),
            "index": self.index,
            "output": job.output.display().to_string(),
            "height": self.h,
            "width": self.w,
            "channels": self.c,
            "sigma": self.sigma,
            "psnr_input": num(self.psnr_input),
            "psnr_output": num(self.psnr_output),
            "ssim_input": num(self.ssim_input),
            "ssim_output": num(self.ssim_output),
            "seconds": self.seconds,
            "adapter": adapter,
        })
    }

    fn text(&self, job: &Job) -> String {
        let at = self.index.map(|b| format!("[{b}]")).unwrap_or_default();
        let mut s = format!(
            "{}{at} → {}{at}  ({}×{}×{}",
            job.input.display(),
            job.output.display(),
            self.c,
            self.h,
            self.w
        );
        if let Some(sigma) = self.sigma {
            s += &format!(", noise σ = {sigma}/255");
        }
        s += &format!(", {:.2} s)", self.seconds);
        if let (Some(a), Some(b)) = (self.psnr_input, self.psnr_output) {
            s += &format!("  PSNR {a:.3} → {b:.3} dB");
            let f = |v: Option<f64>| v.map_or("n/a".to_string(), |x| format!("{x:.4}"));
            s += &format!(", SSIM {} → {}", f(self.ssim_input), f(self.ssim_output));
        }
        s
    }
}
