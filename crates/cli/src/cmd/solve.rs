//! `prior solve TASK`: linear inverse problems with the prior implicit in a
//! denoiser (Kadkhodaie & Simoncelli 2021): the coarse-to-fine sampler
//! constrained by measurements x_c = Mᵀ x of a clean image (or measurements
//! given directly with `--measured`). Operators and their conventions are in
//! `prior_algos::measure`.
//!
//! Tasks: `inpaint --rect TOP,LEFT,HEIGHT,WIDTH | --mask MASK.png` (mask:
//! white = known, black = missing), `pixels --fraction P`, `superres
//! --factor S`, `cs --fraction P` (random orthonormal basis), `spectral
//! --fraction P`, `matrix --matrix M.npy` (any n × C·H·W measurement
//! matrix, orthonormalised). The random tasks draw their operator from `--seed`.
//! With a clean input, the JSON line reports `psnr_input` (the naive
//! reconstruction M x_c against the clean image) and `psnr` (the result).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use prior_algos::measure::{self, Task};
use prior_algos::sampler::Problem;
use prior_gpu::{Gpu, Shape};

use super::sample::{
    check_output, drive, load_model, summary_json, to_channels_last, write_batch, RunFlags,
    SamplerFlags,
};
use crate::io;

/// The inverse problems of the paper.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TaskName {
    /// Fill a missing rectangle (--rect) or the black area of a mask (--mask).
    Inpaint,
    /// Random missing values: keep a fraction (--fraction) of them.
    Pixels,
    /// Super-resolution by s×s block averaging (--factor).
    Superres,
    /// Compressive sensing with a random orthonormal basis (--fraction of the dimensions).
    Cs,
    /// Spectral super-resolution: keep the lowest DFT frequencies (--fraction).
    Spectral,
    /// Any linear measurement: the rows of --matrix M.npy (n × C·H·W).
    Matrix,
}

/// Arguments of `prior solve`.
#[derive(Args, Debug, Clone)]
pub struct SolveArgs {
    /// The inverse problem.
    #[arg(value_enum)]
    pub task: TaskName,
    /// Weight file: a `.safetensors` weight blob or a PyTorch checkpoint.
    #[arg(short = 'm', long = "model", value_name = "WEIGHTS")]
    pub model: PathBuf,
    /// The clean image (measured with the task's operator, and the reference
    /// for PSNR), or with --measured the measurements themselves.
    #[arg(short = 'i', long = "input", value_name = "INPUT")]
    pub input: PathBuf,
    /// Output image (.png clamped to [0,1], or .npy unclamped).
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: PathBuf,
    /// inpaint: the missing rectangle TOP,LEFT,HEIGHT,WIDTH (0-based pixels).
    #[arg(long, value_name = "T,L,H,W")]
    pub rect: Option<String>,
    /// inpaint: a mask image of the input's size; white (> 0.5) = known,
    /// black = missing (gray or one channel per image channel).
    #[arg(long, value_name = "MASK")]
    pub mask: Option<PathBuf>,
    /// pixels, cs, spectral: the fraction p ∈ (0, 1] of values, dimensions
    /// or frequencies kept.
    #[arg(long)]
    pub fraction: Option<f64>,
    /// superres: the block size s (the output is s times larger than the
    /// measurements).
    #[arg(long)]
    pub factor: Option<usize>,
    /// matrix: an n × D `.npy` (float32 or float64; a 1-D array is one row),
    /// D = C·H·W of the input, each row in (C, H, W) order (for a gray
    /// image: the pixels in row-major order). Rows that are not
    /// orthonormal are orthonormalised (QR), with a warning.
    #[arg(long, value_name = "M.npy")]
    pub matrix: Option<PathBuf>,
    /// The input holds the measurements, not a clean image: for superres
    /// the low-resolution image (block means), for inpaint the corrupted
    /// image (its missing area is ignored). No PSNR is reported.
    #[arg(long)]
    pub measured: bool,
    /// Also write the naive reconstruction M x_c (the corrupted image).
    #[arg(long, value_name = "FILE")]
    pub save_input: Option<PathBuf>,
    /// The sampler's flags (β defaults to 0.01 here).
    #[command(flatten)]
    pub sampler: SamplerFlags,
    /// Output flags (`--samples`, `--trajectory`, `--plot`, `--json`, ...).
    #[command(flatten)]
    pub run: RunFlags,
    /// `--shard I/N`: draw only slice I of the --samples indices, written
    /// as OUT_k.EXT with the global index k; a rerun skips those written.
    #[command(flatten)]
    pub shard: crate::shard::ShardArgs,
}

fn parse_rect(s: &str) -> Result<(usize, usize, usize, usize), String> {
    let v: Vec<usize> = s
        .split(',')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            format!("--rect {s}: expected TOP,LEFT,HEIGHT,WIDTH as four non-negative integers")
        })?;
    match v[..] {
        [t, l, h, w] => Ok((t, l, h, w)),
        _ => Err(format!(
            "--rect {s}: expected TOP,LEFT,HEIGHT,WIDTH (four numbers), got {}",
            v.len()
        )),
    }
}

/// Builds the task from the flags, checking that only its own flags are given.
fn task_of(args: &SolveArgs, (h, w, c): (usize, usize, usize)) -> Result<Task, String> {
    let name = format!("{:?}", args.task).to_lowercase();
    let extra = |flag: &str| Err(format!("{flag} does not apply to `{name}`"));
    if args.matrix.is_some() && args.task != TaskName::Matrix {
        return extra("--matrix");
    }
    let need_fraction = || {
        args.fraction
            .ok_or_else(|| format!("`{name}` needs --fraction P"))
    };
    if args.measured && !matches!(args.task, TaskName::Superres | TaskName::Inpaint) {
        return Err(format!("--measured applies to superres and inpaint, not `{name}` (its measurements are not an image)"));
    }
    match args.task {
        TaskName::Inpaint => {
            if args.fraction.is_some() {
                return extra("--fraction");
            }
            if args.factor.is_some() {
                return extra("--factor");
            }
            match (&args.rect, &args.mask) {
                (Some(r), None) => {
                    let (top, left, height, width) = parse_rect(r)?;
                    Ok(Task::InpaintRect {
                        top,
                        left,
                        height,
                        width,
                    })
                }
                (None, Some(m)) => {
                    let img = io::read_input(m).map_err(|e| e.to_string())?;
                    if (img.h, img.w) != (h, w) {
                        return Err(format!(
                            "{}: the mask is {}x{}, the image {h}x{w}",
                            m.display(),
                            img.h,
                            img.w
                        ));
                    }
                    Ok(Task::InpaintMask {
                        channels: img.c,
                        mask: to_channels_last(&img),
                    })
                }
                (Some(_), Some(_)) => Err("inpaint: give either --rect or --mask, not both".into()),
                (None, None) => {
                    Err("inpaint needs --rect TOP,LEFT,HEIGHT,WIDTH or --mask MASK.png".into())
                }
            }
        }
        TaskName::Pixels | TaskName::Cs | TaskName::Spectral => {
            if args.rect.is_some() || args.mask.is_some() {
                return extra("--rect/--mask");
            }
            if args.factor.is_some() {
                return extra("--factor");
            }
            let p = need_fraction()?;
            Ok(match args.task {
                TaskName::Pixels => Task::Pixels { fraction: p },
                TaskName::Cs => Task::RandomBasis { fraction: p },
                _ => Task::Spectral { fraction: p },
            })
        }
        TaskName::Matrix => {
            if args.rect.is_some() || args.mask.is_some() {
                return extra("--rect/--mask");
            }
            if args.fraction.is_some() {
                return extra("--fraction");
            }
            if args.factor.is_some() {
                return extra("--factor");
            }
            let path = args.matrix.as_ref().ok_or("matrix needs --matrix M.npy")?;
            matrix_task(path, (h, w, c))
        }
        TaskName::Superres => {
            if args.rect.is_some() || args.mask.is_some() {
                return extra("--rect/--mask");
            }
            if args.fraction.is_some() {
                return extra("--fraction");
            }
            let s = args.factor.ok_or("superres needs --factor S")?;
            if s == 0 {
                return Err("--factor must be at least 1".into());
            }
            Ok(Task::SuperRes { factor: s })
        }
    }
}

/// Reads `--matrix`: an n × D array whose D must be the image's C·H·W;
/// warns when its rows are not orthonormal (they are orthonormalised by
/// [`measure::DenseBasis::from_rows`]).
fn matrix_task(path: &std::path::Path, (h, w, c): (usize, usize, usize)) -> Result<Task, String> {
    let arr = io::read_npy(path).map_err(|e| e.to_string())?;
    let d = h * w * c;
    let (n, cols) = match arr.shape[..] {
        [cols] => (1, cols),
        [n, cols] => (n, cols),
        _ => {
            return Err(format!(
                "{}: a measurement matrix must be 2-D (n × {d}), got shape {:?}",
                path.display(),
                arr.shape
            ))
        }
    };
    if cols != d {
        return Err(format!(
            "{}: {n}×{cols} matrix, but the image is {h}x{w}x{c}: each row needs D = C·H·W = {d} values",
            path.display()
        ));
    }
    if n == 0 || n > d {
        return Err(format!(
            "{}: {n} rows: need between 1 and D = {d} measurements",
            path.display()
        ));
    }
    if let Some(i) = arr.data.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "{}: value {i} (row {}, column {}) is not finite",
            path.display(),
            i / d,
            i % d
        ));
    }
    let rows: Vec<f64> = arr.data.iter().map(|&v| v as f64).collect();
    let err = measure::orthonormality_error(&rows, n, d);
    // float32 storage of orthonormal rows: |M Mᵀ − I| ~ 1e-7·√D.
    if err > 1e-4 {
        eprintln!(
            "warning: {}: the rows are not orthonormal (max |M Mᵀ − I| = {err:.2e}); using an orthonormal basis of their span (QR), so M Mᵀ is a projection",
            path.display()
        );
    }
    Ok(Task::Matrix {
        rows,
        count: n,
        source: path.display().to_string(),
    })
}

/// Runs `prior solve`.
pub fn run(args: SolveArgs) -> Result<(), String> {
    check_output(&args.output)?;
    if let Some(p) = &args.save_input {
        check_output(p)?;
    }
    if args.run.samples == 0 {
        return Err("--samples must be at least 1".into());
    }
    io::ensure_not_input(&args.output, &[&args.input]).map_err(|e| e.to_string())?;
    let input = io::read_input(&args.input).map_err(|e| e.to_string())?;
    let gpu = pollster::block_on(Gpu::from_env()).map_err(|e| e.to_string())?;
    super::profile::start(&gpu, args.run.profile)?;
    let _profile = super::profile::Guard(&gpu);
    let model = load_model(&gpu, &args.model)?;
    if input.c != model.channels() {
        return Err(format!(
            "{}: the image has {} channel(s), the model takes {}",
            args.input.display(),
            input.c,
            model.channels()
        ));
    }
    // Image size: the input's, or s times the measurements' for superres --measured.
    let (h, w, c) = match (args.measured, args.task, args.factor) {
        (true, TaskName::Superres, Some(s)) => (input.h * s, input.w * s, input.c),
        _ => (input.h, input.w, input.c),
    };
    let task = task_of(&args, (h, w, c))?;
    let op =
        measure::build(&gpu, &task, (h, w, c), args.sampler.seed).map_err(|e| e.to_string())?;
    let data = to_channels_last(&input);
    let (x_c, clean) = if args.measured {
        let xc = match task {
            // Mᵀ x = s · block mean: the low-resolution image times s.
            Task::SuperRes { factor } => {
                let v: Vec<f32> = data.iter().map(|v| v * factor as f32).collect();
                gpu.upload(Shape::new(1, input.h, input.w, c), &v)
            }
            _ => op
                .mt(&gpu, &gpu.upload(Shape::new(1, h, w, c), &data))
                .map_err(|e| e.to_string())?,
        };
        (xc, None)
    } else {
        let x = gpu.upload(Shape::new(1, h, w, c), &data);
        (op.mt(&gpu, &x).map_err(|e| e.to_string())?, Some(data))
    };
    let naive = pollster::block_on(gpu.read(&op.m(&gpu, &x_c).map_err(|e| e.to_string())?))
        .map_err(|e| e.to_string())?;
    let one = Shape::new(1, h, w, c);
    if let Some(p) = &args.save_input {
        write_batch(p, &naive, one)?;
    }
    let unsharded = SolveArgs {
        shard: Default::default(),
        ..args.clone()
    };
    let settings = super::sample::shard_settings(
        &(unsharded, crate::shard::file_identity(&args.input)),
        &args.model,
    );
    let slice = crate::shard::SampleSlice::plan(
        &args.shard,
        args.run.samples,
        &args.output,
        &args.run,
        settings,
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
    let mut params = args.sampler.params(
        prior_algos::sampler::defaults::BETA_SOLVE,
        model.conditioning(),
    );
    params.first_sample = slice.as_ref().map_or(0, |s| s.first);
    let d = drive(
        &gpu,
        model.as_ref(),
        shape,
        Some(Problem {
            op: op.as_ref(),
            x_c: &x_c,
        }),
        &params,
        &args.run,
        &args.output,
    )?;
    let written = match &slice {
        Some(s) => s.write(&d.x, shape)?,
        None => write_batch(&args.output, &d.x, shape)?,
    };
    let per = one.numel();
    let psnr = |a: &[f32], b: &[f32]| crate::metrics::psnr(a, b, 1.0);
    let (p_in, p_out): (Option<f64>, Vec<f64>) = match &clean {
        Some(cl) => (
            Some(psnr(&naive, cl)),
            (0..shape.n)
                .map(|s| psnr(&d.x[s * per..(s + 1) * per], cl))
                .collect(),
        ),
        None => (None, Vec::new()),
    };
    if args.run.json {
        use serde_json::json;
        let mut m = summary_json(&d, shape, &params, &gpu.adapter.name);
        m.insert("task".into(), json!(task.name()));
        m.insert("operator".into(), json!(op.describe()));
        m.insert("measurements".into(), json!(op.dimensions()));
        if let Some(p) = p_in {
            m.insert("psnr_input".into(), json!(p));
            m.insert(
                "psnr".into(),
                if shape.n == 1 {
                    json!(p_out[0])
                } else {
                    json!(p_out)
                },
            );
        }
        m.insert("output".into(), super::sample::output_list(&written));
        println!("{}", serde_json::Value::Object(m));
    } else {
        println!("{}", op.describe());
        let r = &d.run;
        for s in 0..shape.n {
            let q = match (p_in, p_out.get(s)) {
                (Some(a), Some(b)) => format!(", PSNR {a:.2} dB (M x_c) → {b:.2} dB"),
                _ => String::new(),
            };
            println!(
                "sample {s}: {} iterations, final σ {:.4}{q}{}",
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
