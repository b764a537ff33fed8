//! `prior score -m WEIGHTS -i IMAGE --t T -o GRAD.npy [--dudt] [--denoised OUT]`:
//! the scores of a dual-score-matching energy model at noise variance t —
//! the data score ∇_yU(y, t) (an array of the image's shape, `(C, H, W)`
//! `.npy`) and, with `--dudt`, the noise score ∂U/∂t (printed; also written
//! as a one-element `.npy` beside GRAD when `--dudt-out` is given).
//! `--denoised` writes the Tweedie estimate y − t·∇_yU.
//!
//! Several inputs (or a folder) make `-o`, `--denoised` and `--dudt-out`
//! directories holding `STEM.npy` per input; `--shard I/N` runs a slice of
//! them, and rerunning the same command skips inputs already done.

use std::path::{Path, PathBuf};

use clap::Args;
use prior_gpu::{Gpu, Shape};
use prior_ops::layout::{chw_to_hwc, hwc_to_chw};

use crate::io::{self, Image};
use crate::shard::{self, ShardArgs};

/// Arguments of `prior score`.
#[derive(Args, Debug, Clone)]
pub struct ScoreArgs {
    /// Energy model (`energy_unet`): checkpoint or blob.
    #[arg(short = 'm', long = "model", value_name = "WEIGHTS")]
    pub model: PathBuf,
    /// Images (png/jpg/tif/bmp) or `.npy` arrays `(C, H, W)` / `(H, W)`,
    /// values in [0, 1], or folders of them. More than one input makes the
    /// outputs directories.
    #[arg(short = 'i', long = "input", value_name = "IMAGE", num_args = 1.., required = true)]
    pub inputs: Vec<PathBuf>,
    /// Noise variance t of the input (per pixel, [0, 1] scale; σ = √t).
    #[arg(long = "t", value_name = "T")]
    pub t: f32,
    /// Where to write ∇_yU as `.npy` `(C, H, W)` float32 (a directory, created,
    /// for several inputs: `STEM.npy` each).
    #[arg(short = 'o', long = "output", value_name = "GRAD.npy")]
    pub output: PathBuf,
    /// Also compute the noise score ∂U/∂t (one forward-mode pass more).
    #[arg(long)]
    pub dudt: bool,
    /// Write ∂U/∂t as a one-element `.npy` here (implies --dudt; a directory
    /// for several inputs).
    #[arg(long = "dudt-out", value_name = "DUDT.npy")]
    pub dudt_out: Option<PathBuf>,
    /// Write the denoised image y − t·∇_yU (png or npy; a directory of
    /// `STEM.npy` for several inputs).
    #[arg(long, value_name = "OUT")]
    pub denoised: Option<PathBuf>,
    /// `--shard I/N`: only slice I of the inputs (several inputs).
    #[command(flatten)]
    pub shard: ShardArgs,
}

/// Where one input's results go.
struct Job {
    input: PathBuf,
    grad: PathBuf,
    dudt: Option<PathBuf>,
    denoised: Option<PathBuf>,
    /// Prefix of the printed lines (`FILE: ` with several inputs).
    label: String,
}

/// Runs `prior score`: for each input of this shard writes ∇_yU(y, t) as
/// `.npy`, and ∂U/∂t and the Tweedie estimate when asked. A directory run
/// repeated with the same settings skips the inputs whose gradient is
/// already written. Every failure is returned as a message for the user.
pub fn run(args: ScoreArgs) -> Result<(), String> {
    if !args.t.is_finite() || args.t < 0.0 {
        return Err(format!(
            "--t {}: the noise variance must be a finite number ≥ 0",
            args.t
        ));
    }
    let shard = args.shard.resolve()?;
    let inputs = io::collect_inputs(&args.inputs).map_err(|e| e.to_string())?;
    let dir_mode =
        inputs.len() > 1 || args.inputs.iter().any(|p| p.is_dir()) || args.output.is_dir();
    let jobs = plan(&args, &inputs, dir_mode)?;
    let todo = shard.range(jobs.len());
    let resume = dir_mode && shard::resume_in(&args.output, &run_settings(&args))?;
    // The gradient is written last: when it exists the input is done.
    let todo: Vec<usize> = todo
        .filter(|&k| !(resume && jobs[k].grad.is_file()))
        .collect();
    let skipped = shard.range(jobs.len()).len() - todo.len();
    if skipped > 0 {
        eprintln!(
            "resuming: {skipped} input(s) of this run are already in {}",
            args.output.display()
        );
    }
    if todo.is_empty() {
        return Ok(());
    }
    let gpu = pollster::block_on(Gpu::from_env()).map_err(|e| e.to_string())?;
    let (model, _) = super::logp::load_energy(&gpu, &args.model)?;
    for k in todo {
        score_one(&gpu, &model, &args, &jobs[k])?;
    }
    Ok(())
}

/// What determines the outputs of a directory run.
fn run_settings(args: &ScoreArgs) -> serde_json::Value {
    serde_json::json!({
        "command": "score",
        "version": env!("CARGO_PKG_VERSION"),
        "model": shard::file_identity(&args.model),
        "t": args.t,
        "dudt": args.dudt || args.dudt_out.is_some(),
        "dudt_out": args.dudt_out,
        "denoised": args.denoised,
    })
}

/// Checks the output paths and names each input's outputs.
fn plan(args: &ScoreArgs, inputs: &[PathBuf], dir_mode: bool) -> Result<Vec<Job>, String> {
    let mut protected: Vec<PathBuf> = inputs.to_vec();
    protected.push(args.model.clone());
    if !dir_mode {
        if args
            .output
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_lowercase)
            .as_deref()
            != Some("npy")
        {
            return Err(format!(
                "{}: the gradient is written as .npy",
                args.output.display()
            ));
        }
        let job = Job {
            input: inputs[0].clone(),
            grad: args.output.clone(),
            dudt: args.dudt_out.clone(),
            denoised: args.denoised.clone(),
            label: String::new(),
        };
        for out in [Some(&job.grad), job.dudt.as_ref(), job.denoised.as_ref()]
            .into_iter()
            .flatten()
        {
            io::ensure_not_input(out, &protected).map_err(|e| e.to_string())?;
        }
        return Ok(vec![job]);
    }
    let dirs = [
        Some(&args.output),
        args.dudt_out.as_ref(),
        args.denoised.as_ref(),
    ];
    for dir in dirs.into_iter().flatten() {
        if dir.exists() && !dir.is_dir() {
            return Err(format!(
                "{}: is a file, but with several inputs or a folder the outputs are directories (STEM.npy per input)",
                dir.display()
            ));
        }
    }
    let mut seen = std::collections::BTreeMap::new();
    let mut jobs = Vec::with_capacity(inputs.len());
    for input in inputs {
        let stem = input
            .file_stem()
            .ok_or_else(|| format!("{}: input has no file name", input.display()))?;
        let name = Path::new(stem).with_extension("npy");
        if let Some(prev) = seen.insert(name.clone(), input) {
            return Err(format!(
                "{} and {} would both be written as {}; rename one",
                prev.display(),
                input.display(),
                name.display()
            ));
        }
        let job = Job {
            input: input.clone(),
            grad: args.output.join(&name),
            dudt: args.dudt_out.as_ref().map(|d| d.join(&name)),
            denoised: args.denoised.as_ref().map(|d| d.join(&name)),
            label: format!("{}: ", input.display()),
        };
        for out in [Some(&job.grad), job.dudt.as_ref(), job.denoised.as_ref()]
            .into_iter()
            .flatten()
        {
            io::ensure_not_input(out, &protected).map_err(|e| e.to_string())?;
        }
        jobs.push(job);
    }
    for dir in dirs.into_iter().flatten() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("{}: cannot create the directory: {e}", dir.display()))?;
    }
    Ok(jobs)
}

fn score_one(
    gpu: &Gpu,
    model: &prior_models::energy::EnergyUNet,
    args: &ScoreArgs,
    job: &Job,
) -> Result<(), String> {
    use prior_models::Denoiser;
    let img = io::read_input(&job.input).map_err(|e| e.to_string())?;
    if img.c != model.channels() {
        return Err(format!(
            "{}: {} channel(s), the model takes {}",
            job.input.display(),
            img.c,
            model.channels()
        ));
    }
    let (c, h, w) = (img.c, img.h, img.w);
    let y = gpu.upload(Shape::new(1, h, w, c), &chw_to_hwc(c, h, w, &img.data));
    let want_dudt = args.dudt || args.dudt_out.is_some();
    let at = |e: String| format!("{}: {e}", job.input.display());
    let t = gpu.upload(Shape::new(1, 1, 1, 1), &[args.t]);
    let e = model
        .evaluate(gpu, &y, &t, true, want_dudt)
        .map_err(|e| at(e.to_string()))?;
    let grad = pollster::block_on(gpu.read(e.grad.as_ref().expect("asked for")))
        .map_err(|e| at(e.to_string()))?;
    let energy = pollster::block_on(gpu.read(&e.energy)).map_err(|e| at(e.to_string()))?[0];
    let dudt = match &e.dudt {
        Some(t) => Some(pollster::block_on(gpu.read(t)).map_err(|e| at(e.to_string()))?[0]),
        None => None,
    };
    let grad_chw = hwc_to_chw(c, h, w, &grad);
    let name = &job.label;
    if let (Some(d), Some(p)) = (dudt, &job.dudt) {
        io::write_npy(p, &[1], &[d]).map_err(|e| e.to_string())?;
    }
    if let Some(out) = &job.denoised {
        let den: Vec<f32> = img
            .data
            .iter()
            .zip(&grad_chw)
            .map(|(y, g)| y - args.t * g)
            .collect();
        io::write_output(out, &Image::new(c, h, w, den)).map_err(|e| e.to_string())?;
    }
    io::write_npy(&job.grad, &[c, h, w], &grad_chw).map_err(|e| e.to_string())?;
    println!(
        "{name}U(y, t={}) = {energy:.6} nats; ∇_yU written to {}",
        args.t,
        job.grad.display()
    );
    if let Some(d) = dudt {
        println!("{name}∂U/∂t = {d:.6}");
    }
    if let Some(out) = &job.denoised {
        println!("{name}denoised (y − t·∇_yU) written to {}", out.display());
    }
    Ok(())
}
