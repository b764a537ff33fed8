//! `prior learn-measurements -m W --train IMAGES... --count n -o M.npy`:
//! learned optimal linear measurements (Zhang, Kadkhodaie, Simoncelli &
//! Brainard, TMLR 2025; `prior_algos::olm`), or the PCA / random baselines.
//!
//! `--method learned` (default) trains n orthonormal rows by Adam through
//! the unrolled coarse-to-fine sampler; `pca` writes the top-n principal
//! components of the training images; `random` a random orthonormal matrix
//! (the learned method's initialisation under the same `--seed`). The
//! output is an n × D float32 `.npy` (D = C·H·W, planar row-major pixel
//! order, what `prior solve matrix --matrix M.npy` reads) and a JSON sidecar
//! `M.json` (settings, loss curve, evaluation); the learned run rewrites
//! both atomically after every step, so a killed run keeps its last M and
//! `--resume M.npy` continues from it (the Adam moments start afresh).
//!
//! `--eval A..B` reconstructs digits A..B of the idx inputs (or of the
//! images at `--eval-input`) from their measurements with the sampler at the
//! evaluation settings (β 0.1, up to 100 steps, each run stopped when σ_t ≤
//! 0.01, `--eval-average` runs averaged) and reports the mean PSNR.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use prior_algos::olm::{self, Adam, Rows, Setup, Unroll};
use prior_gpu::Gpu;
use prior_models::Denoiser;
use prior_ops::reference::rng;
use serde_json::json;

use super::logp::{gather, parse_range};
use super::sample::load_model;
use crate::io;

/// How the measurement rows are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// Trained through the unrolled sampler (the paper's method).
    Learned,
    /// The top-n principal components of the training images.
    Pca,
    /// A random orthonormal matrix (from --seed).
    Random,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Learned => "learned",
            Method::Pca => "pca",
            Method::Random => "random",
        }
    }
}

/// Arguments of `prior learn-measurements`.
#[derive(Args, Debug, Clone)]
pub struct LearnArgs {
    /// The denoiser (its VJP is used): a weight file or checkpoint.
    #[arg(short = 'm', long = "model", value_name = "WEIGHTS")]
    pub model: PathBuf,
    /// Training images (png/jpg/npy), folders of them, or MNIST idx files.
    #[arg(long = "train", value_name = "IMAGES", num_args = 1.., required = true)]
    pub train: Vec<PathBuf>,
    /// Digits A..B (0-based, B excluded) of idx training inputs; default all.
    #[arg(long, value_name = "A..B", value_parser = parse_range)]
    pub range: Option<Range<usize>>,
    /// n, the number of measurements (rows of M).
    #[arg(long, value_name = "N")]
    pub count: usize,
    /// learned, pca or random.
    #[arg(long, value_enum, default_value_t = Method::Learned)]
    pub method: Method,
    /// Optimisation (Adam) steps.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub steps: usize,
    /// Training images per step (the authors' run script: 32).
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub batch: usize,
    /// Adam learning rate (the authors: 5e-4).
    #[arg(long, value_name = "LR", default_value_t = 5e-4)]
    pub lr: f64,
    /// Learning-rate factor after every epoch (one pass over the training set).
    #[arg(long, value_name = "F", default_value_t = 0.9)]
    pub decay: f64,
    /// Sampler steps unrolled while training (the authors: at most 100).
    #[arg(long, value_name = "T", default_value_t = 100)]
    pub unroll: usize,
    /// Reconstructions averaged per training image (the authors: 5).
    #[arg(long, value_name = "A", default_value_t = 5)]
    pub average: usize,
    /// h₀ of the sampler (training and evaluation).
    #[arg(long, value_name = "H", default_value_t = 0.1)]
    pub h0: f64,
    /// β of the sampler while training.
    #[arg(long, value_name = "B", default_value_t = 0.2)]
    pub beta: f64,
    /// Seed of the initial matrix, the batch order and the sampler noise.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Start from this n × D matrix (.npy) instead of a random one.
    #[arg(long, value_name = "M.npy")]
    pub resume: Option<PathBuf>,
    /// Evaluate on digits A..B of the idx inputs (or of --eval-input): mean PSNR.
    #[arg(long, value_name = "A..B", value_parser = parse_range)]
    pub eval: Option<Range<usize>>,
    /// Held-out images for --eval (default: the --train inputs).
    #[arg(long = "eval-input", value_name = "IMAGES", num_args = 1..)]
    pub eval_input: Vec<PathBuf>,
    /// Reconstructions averaged per image when evaluating.
    #[arg(long, value_name = "A", default_value_t = 8)]
    pub eval_average: usize,
    /// β when evaluating.
    #[arg(long, value_name = "B", default_value_t = 0.1)]
    pub eval_beta: f64,
    /// Most sampler steps when evaluating.
    #[arg(long, value_name = "T", default_value_t = 100)]
    pub eval_unroll: usize,
    /// Images per evaluation batch.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub eval_batch: usize,
    /// Output matrix (.npy); the sidecar is the same path with `.json`.
    #[arg(short = 'o', long = "output", value_name = "M.npy")]
    pub output: PathBuf,
}

fn sidecar(out: &Path) -> PathBuf {
    out.with_extension("json")
}

fn save(out: &Path, m: &Rows, meta: &serde_json::Value) -> Result<(), String> {
    let npy = io::encode_npy(&[m.n, m.dim], &m.to_f32());
    io::write_atomic(out, &npy).map_err(|e| e.to_string())?;
    let text = serde_json::to_string_pretty(meta).map_err(|e| e.to_string())? + "\n";
    io::write_atomic(sidecar(out), text.as_bytes()).map_err(|e| e.to_string())
}

/// Images (planar values) and their `(C, H, W)`.
type Loaded = (Vec<Vec<f32>>, (usize, usize, usize));

fn load_images(
    inputs: &[PathBuf],
    range: Option<&Range<usize>>,
    what: &str,
) -> Result<Loaded, String> {
    let named = gather(inputs, range, 1)?;
    let [c, h, w] = named[0].image.shape();
    let mut out = Vec::with_capacity(named.len());
    for n in &named {
        if n.image.shape() != [c, h, w] {
            return Err(format!(
                "{what} image {} is {:?} (C, H, W), the first is {:?}: all must have one size",
                n.name,
                n.image.shape(),
                [c, h, w]
            ));
        }
        out.push(n.image.data.clone());
    }
    Ok((out, (c, h, w)))
}

/// A permutation of 0..n drawn from `seed` and `epoch`.
fn order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let k = rng::key(seed, 0x01e0_0000u32.wrapping_add(epoch as u32));
    let mut v: Vec<(u32, usize)> = (0..n).map(|i| (rng::mix(i as u32 ^ k), i)).collect();
    v.sort_unstable();
    v.into_iter().map(|(_, i)| i).collect()
}

struct Eval {
    psnr: Vec<f64>,
    seconds: f64,
}

fn evaluate(
    gpu: &Gpu,
    setup: &Setup<'_>,
    m: &Rows,
    images: &[Vec<f32>],
    args: &LearnArgs,
) -> Result<Eval, String> {
    let cfg = Unroll {
        h0: args.h0,
        beta: args.eval_beta,
        steps: args.eval_unroll,
        average: args.eval_average,
        ..Unroll::default()
    };
    let start = Instant::now();
    let bar = ProgressBar::new(images.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("eval {bar:30} {pos}/{len} {wide_msg} [{elapsed_precise}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut psnr = Vec::with_capacity(images.len());
    for (k, chunk) in images.chunks(args.eval_batch.max(1)).enumerate() {
        // Evaluation noise: its own seeds, away from the training steps'.
        let seed = olm::noise_seed(args.seed ^ 0xe7a1_0000, k as u64);
        let p = pollster::block_on(olm::reconstruct(gpu, setup, m, chunk, &cfg, seed))
            .map_err(|e| e.to_string())?;
        for (r, x) in p.recon.iter().zip(chunk) {
            psnr.push(prior_algos::metrics::psnr(r, x, 1.0));
        }
        bar.inc(chunk.len() as u64);
        bar.set_message(format!(
            "mean PSNR {:.2} dB",
            psnr.iter().sum::<f64>() / psnr.len() as f64
        ));
    }
    bar.finish_and_clear();
    Ok(Eval {
        psnr,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn check(args: &LearnArgs) -> Result<(), String> {
    let ext = args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    if ext.as_deref() != Some("npy") {
        return Err(format!(
            "{}: the output must be a .npy file",
            args.output.display()
        ));
    }
    if args.count == 0 {
        return Err("--count must be at least 1".into());
    }
    if args.batch == 0 || args.average == 0 || args.unroll == 0 {
        return Err("--batch, --average and --unroll must be at least 1".into());
    }
    if args.eval_average == 0 || args.eval_unroll == 0 {
        return Err("--eval-average and --eval-unroll must be at least 1".into());
    }
    if !(args.lr > 0.0 && args.lr.is_finite() && args.decay > 0.0 && args.decay <= 1.0) {
        return Err(format!(
            "--lr must be positive and --decay in (0, 1], got {} and {}",
            args.lr, args.decay
        ));
    }
    if args.resume.is_some() && args.method != Method::Learned {
        return Err("--resume goes with --method learned".into());
    }
    let mut inputs = args.train.clone();
    inputs.extend(args.eval_input.iter().cloned());
    inputs.extend(args.resume.iter().cloned());
    io::ensure_not_input(&args.output, &inputs).map_err(|e| e.to_string())?;
    io::ensure_not_input(&sidecar(&args.output), &inputs).map_err(|e| e.to_string())
}

fn resume(path: &Path, n: usize, dim: usize) -> Result<Rows, String> {
    let a = io::read_npy(path).map_err(|e| e.to_string())?;
    if a.shape.len() != 2 || a.shape[0] != n || a.shape[1] != dim {
        return Err(format!(
            "{}: shape {:?}, expected [{n}, {dim}] (--count {n} rows of the training images' C·H·W = {dim})",
            path.display(),
            a.shape
        ));
    }
    Rows::new(n, dim, a.data.iter().map(|&v| v as f64).collect())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs `prior learn-measurements`.
pub fn run(args: LearnArgs) -> Result<(), String> {
    check(&args)?;
    let (train, (c, h, w)) = load_images(&args.train, args.range.as_ref(), "training")?;
    let dim = c * h * w;
    if args.count > dim {
        return Err(format!(
            "--count {} exceeds the {dim} values of a {c}×{h}×{w} training image",
            args.count
        ));
    }
    let eval_images = match &args.eval {
        None => None,
        Some(r) => {
            let src = if args.eval_input.is_empty() {
                &args.train
            } else {
                &args.eval_input
            };
            let (imgs, dims) = load_images(src, Some(r), "evaluation")?;
            if dims != (c, h, w) {
                return Err(format!(
                    "evaluation images are {dims:?} (C, H, W), training images {:?}",
                    (c, h, w)
                ));
            }
            Some(imgs)
        }
    };
    let gpu = pollster::block_on(Gpu::from_env()).map_err(|e| e.to_string())?;
    let model: Box<dyn Denoiser> = load_model(&gpu, &args.model)?;
    let mean = olm::mean_image(&train).map_err(|e| e.to_string())?;
    let setup = Setup {
        model: model.as_ref(),
        dims: (c, h, w),
        mean: &mean,
    };
    let mut settings = json!({
        "method": args.method.name(),
        "model": args.model.display().to_string(),
        "train": args.train.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "range": args.range.as_ref().map(|r| format!("{}..{}", r.start, r.end)),
        "train_images": train.len(),
        "image": [c, h, w],
        "count": args.count,
        "seed": args.seed,
        "pixel_order": "planar (C, H, W), row-major",
    });
    let mut m = match args.method {
        Method::Pca => olm::pca(&train, args.count).map_err(|e| e.to_string())?,
        Method::Random => Rows::random(args.count, dim, args.seed).map_err(|e| e.to_string())?,
        Method::Learned => match &args.resume {
            Some(p) => resume(p, args.count, dim)?,
            None => Rows::random(args.count, dim, args.seed).map_err(|e| e.to_string())?,
        },
    };
    let mut curve = Vec::new();
    if args.method == Method::Learned {
        let cfg = Unroll {
            h0: args.h0,
            beta: args.beta,
            steps: args.unroll,
            average: args.average,
            ..Unroll::default()
        };
        let s = settings.as_object_mut().expect("an object");
        for (k, v) in [
            ("steps", json!(args.steps)),
            ("batch", json!(args.batch)),
            ("lr", json!(args.lr)),
            ("decay_per_epoch", json!(args.decay)),
            ("unroll", json!(args.unroll)),
            ("average", json!(args.average)),
            ("h0", json!(args.h0)),
            ("beta", json!(args.beta)),
            ("sigma0", json!(cfg.sigma0)),
            (
                "resume",
                json!(args.resume.as_ref().map(|p| p.display().to_string())),
            ),
        ] {
            s.insert(k.into(), v);
        }
        let mut adam = Adam::new(args.lr, args.count * dim);
        let per_epoch = train.len().div_ceil(args.batch);
        let bar = ProgressBar::new(args.steps as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} step {pos}/{len} {wide_msg} [{elapsed_precise} < {eta}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let mut perm = order(train.len(), args.seed, 0);
        for step in 0..args.steps {
            let epoch = step / per_epoch;
            let within = step % per_epoch;
            if within == 0 && step > 0 {
                perm = order(train.len(), args.seed, epoch as u64);
                adam.lr *= args.decay;
            }
            let idx = &perm[within * args.batch..((within + 1) * args.batch).min(train.len())];
            let batch: Vec<Vec<f32>> = idx.iter().map(|&i| train[i].clone()).collect();
            let t0 = Instant::now();
            let seed = olm::noise_seed(args.seed, step as u64);
            let p = pollster::block_on(olm::loss_and_grad(&gpu, &setup, &m, &batch, &cfg, seed))
                .map_err(|e| format!("step {}: {e}", step + 1))?;
            let grad = p.grad.as_ref().expect("the reverse pass ran");
            adam.step(&mut m, grad).map_err(|e| e.to_string())?;
            let secs = t0.elapsed().as_secs_f64();
            // From the loss's MSE (the same formula as metrics::psnr, peak 1).
            let psnr = 10.0 * (1.0 / p.mse).log10();
            curve.push(json!({
                "step": step + 1, "epoch": epoch, "loss": p.loss, "mse": p.mse,
                "psnr": psnr, "lr": adam.lr, "seconds": secs,
                "orthonormality": m.orthonormality_error(),
            }));
            bar.set_position(step as u64 + 1);
            bar.set_message(format!(
                "loss {:.3} ({psnr:.2} dB, {secs:.1} s/step)",
                p.loss
            ));
            let mut meta = settings.clone();
            meta["loss_curve"] = json!(curve);
            save(&args.output, &m, &meta)?;
        }
        bar.finish_and_clear();
        if let Some(last) = curve.last() {
            eprintln!(
                "trained {} steps: last batch loss {:.4} ({:.2} dB)",
                args.steps, last["loss"], last["psnr"]
            );
        }
    }
    let mut meta = settings;
    meta["loss_curve"] = json!(curve);
    if let Some(images) = &eval_images {
        let e = evaluate(&gpu, &setup, &m, images, &args)?;
        let n = e.psnr.len() as f64;
        let mean = e.psnr.iter().sum::<f64>() / n;
        let sd =
            (e.psnr.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
        let r = args.eval.as_ref().expect("eval range");
        println!(
            "{} n={}: mean PSNR {mean:.2} dB (± {:.2} s.e.) over {} held-out images {}..{} ({:.0} s)",
            args.method.name(),
            args.count,
            sd / n.sqrt(),
            e.psnr.len(),
            r.start,
            r.end,
            e.seconds
        );
        meta["eval"] = json!({
            "range": format!("{}..{}", r.start, r.end),
            "images": e.psnr.len(),
            "mean_psnr": mean,
            "se_psnr": sd / n.sqrt(),
            "psnr": e.psnr,
            "h0": args.h0, "beta": args.eval_beta, "max_steps": args.eval_unroll,
            "sigma_final": 0.01, "average": args.eval_average,
            "seconds": e.seconds,
        });
    }
    save(&args.output, &m, &meta)?;
    eprintln!(
        "wrote {} ({}×{dim}) and {}",
        args.output.display(),
        args.count,
        sidecar(&args.output).display()
    );
    Ok(())
}
