//! `prior calibrate -m WEIGHTS -i IMAGES/idx --count N -o MODEL_WITH_LOGZ.safetensors`:
//! estimates the log-partition function of a dual-score-matching energy
//! model once, log Z = (d/2)·ln(2πe·t) − mean U(x + √t·z, t) at t = 10³
//! over N calibration images, and writes the model as a weight blob with
//! `prior.log_z`, `prior.log_z_t`, `prior.log_z_count` in its metadata
//! (read by `prior logp`). Noise comes from prior's counter-based generator
//! (`--seed`), so the result is reproducible on any adapter.

use std::ops::Range;
use std::path::PathBuf;

use clap::Args;
use prior_gpu::{Gpu, Shape};
use prior_models::energy::{keys, LOG_Z_T};
use prior_ops::layout::chw_to_hwc;

/// Arguments of `prior calibrate`.
#[derive(Args, Debug, Clone)]
pub struct CalibrateArgs {
    /// Energy model (`energy_unet`): the authors' checkpoint or a blob.
    #[arg(short = 'm', long = "model", value_name = "WEIGHTS")]
    pub model: PathBuf,
    /// Calibration images (files, folders, or MNIST idx files).
    #[arg(short = 'i', long = "input", value_name = "IMAGES", num_args = 1.., required = true)]
    pub inputs: Vec<PathBuf>,
    /// Digits A..B of idx inputs.
    #[arg(long, value_name = "A..B", value_parser = super::logp::parse_range)]
    pub range: Option<Range<usize>>,
    /// Use the first N images (default: all).
    #[arg(long, value_name = "N")]
    pub count: Option<usize>,
    /// Noise variance of the calibration (the authors use 10³).
    #[arg(long = "t", value_name = "T", default_value_t = LOG_Z_T)]
    pub t: f64,
    /// Seed of the calibration noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per GPU batch.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub batch: usize,
    /// Output weight blob (`.safetensors`) with the calibration in its metadata.
    #[arg(short = 'o', long = "output", value_name = "OUT.safetensors")]
    pub output: PathBuf,
}

/// Runs `prior calibrate`: checks that `--t` is positive and finite and that
/// `-o` is a `.safetensors` path other than `-m`, estimates log Z on the GPU
/// over the gathered images (all of one size; the first `--count`), and
/// writes the model's weight blob with the calibration in its metadata
/// (atomically). Every failure is returned as a message for the user.
pub fn run(args: CalibrateArgs) -> Result<(), String> {
    if !(args.t > 0.0 && args.t.is_finite()) {
        return Err(format!(
            "--t {}: the calibration noise variance must be positive",
            args.t
        ));
    }
    if args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_lowercase)
        .as_deref()
        != Some("safetensors")
    {
        return Err(format!(
            "{}: the calibrated model is written as a .safetensors weight blob",
            args.output.display()
        ));
    }
    if args.output == args.model {
        return Err(format!(
            "{}: refusing to overwrite the input model",
            args.output.display()
        ));
    }
    let gpu = pollster::block_on(Gpu::from_env()).map_err(|e| e.to_string())?;
    let (model, mut blob) = super::logp::load_energy(&gpu, &args.model)?;
    let mut images = super::logp::gather(&args.inputs, args.range.as_ref(), model.multiple())?;
    if let Some(n) = args.count {
        if n == 0 {
            return Err("--count 0: need at least one calibration image".into());
        }
        if n > images.len() {
            return Err(format!("--count {n}: only {} images given", images.len()));
        }
        images.truncate(n);
    }
    let s0 = images[0].image.shape();
    if let Some(bad) = images.iter().find(|im| im.image.shape() != s0) {
        return Err(format!(
            "{}: all calibration images must have one size ({:?}), this one is {:?}",
            bad.name,
            s0,
            bad.image.shape()
        ));
    }
    let [c, h, w] = s0;
    let mut data = Vec::with_capacity(images.len() * c * h * w);
    for im in &images {
        data.extend(chw_to_hwc(c, h, w, &im.image.data));
    }
    let s = Shape::new(images.len(), h, w, c);
    let cal = pollster::block_on(model.calibrate(&gpu, &data, s, args.t, args.seed, args.batch))
        .map_err(|e| e.to_string())?;
    blob.meta
        .insert(keys::LOG_Z.into(), format!("{}", cal.log_z));
    blob.meta.insert(keys::LOG_Z_T.into(), format!("{}", cal.t));
    blob.meta
        .insert(keys::LOG_Z_COUNT.into(), format!("{}", cal.count));
    blob.save_atomic(&args.output).map_err(|e| e.to_string())?;
    println!(
        "log Z = {:.2} ± {:.2} nats (t = {}, {} images of {}×{}×{}); written to {}",
        cal.log_z,
        cal.stderr,
        cal.t,
        cal.count,
        c,
        h,
        w,
        args.output.display()
    );
    Ok(())
}
