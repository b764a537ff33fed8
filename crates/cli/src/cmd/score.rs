//! `prior score -m WEIGHTS -i IMAGE --t T -o GRAD.npy [--dudt] [--denoised OUT]`:
//! the scores of a dual-score-matching energy model at noise variance t —
//! the data score ∇_yU(y, t) (an array of the image's shape, `(C, H, W)`
//! `.npy`) and, with `--dudt`, the noise score ∂U/∂t (printed; also written
//! as a one-element `.npy` beside GRAD when `--dudt-out` is given).
//! `--denoised` writes the Tweedie estimate y − t·∇_yU.

use std::path::PathBuf;

use clap::Args;
use prior_gpu::{Gpu, Shape};
use prior_ops::layout::{chw_to_hwc, hwc_to_chw};

use crate::io::{self, Image};

/// Arguments of `prior score`.
#[derive(Args, Debug, Clone)]
pub struct ScoreArgs {
    /// Energy model (`energy_unet`): checkpoint or blob.
    #[arg(short = 'm', long = "model", value_name = "WEIGHTS")]
    pub model: PathBuf,
    /// One image (png/jpg/tif/bmp) or `.npy` array `(C, H, W)` / `(H, W)`, values in [0, 1].
    #[arg(short = 'i', long = "input", value_name = "IMAGE")]
    pub input: PathBuf,
    /// Noise variance t of the input (per pixel, [0, 1] scale; σ = √t).
    #[arg(long = "t", value_name = "T")]
    pub t: f32,
    /// Where to write ∇_yU as `.npy` `(C, H, W)` float32.
    #[arg(short = 'o', long = "output", value_name = "GRAD.npy")]
    pub output: PathBuf,
    /// Also compute the noise score ∂U/∂t (one forward-mode pass more).
    #[arg(long)]
    pub dudt: bool,
    /// Write ∂U/∂t as a one-element `.npy` here (implies --dudt).
    #[arg(long = "dudt-out", value_name = "DUDT.npy")]
    pub dudt_out: Option<PathBuf>,
    /// Write the denoised image y − t·∇_yU (png or npy).
    #[arg(long, value_name = "OUT")]
    pub denoised: Option<PathBuf>,
}

pub fn run(args: ScoreArgs) -> Result<(), String> {
    if !args.t.is_finite() || args.t < 0.0 {
        return Err(format!("--t {}: the noise variance must be a finite number ≥ 0", args.t));
    }
    if args.output.extension().and_then(|e| e.to_str()).map(str::to_lowercase).as_deref() != Some("npy") {
        return Err(format!("{}: the gradient is written as .npy", args.output.display()));
    }
    io::ensure_not_input(&args.output, std::slice::from_ref(&args.input)).map_err(|e| e.to_string())?;
    let img = io::read_input(&args.input).map_err(|e| e.to_string())?;
    let gpu = pollster::block_on(Gpu::from_env()).map_err(|e| e.to_string())?;
    let (model, _) = super::logp::load_energy(&gpu, &args.model)?;
    use prior_models::Denoiser;
    if img.c != model.channels() {
        return Err(format!("{}: {} channel(s), the model takes {}", args.input.display(), img.c, model.channels()));
    }
    let (c, h, w) = (img.c, img.h, img.w);
    let y = gpu.upload(Shape::new(1, h, w, c), &chw_to_hwc(c, h, w, &img.data));
    let want_dudt = args.dudt || args.dudt_out.is_some();
    let t = gpu.upload(Shape::new(1, 1, 1, 1), &[args.t]);
    let e = model.evaluate(&gpu, &y, &t, true, want_dudt).map_err(|e| e.to_string())?;
    let grad = pollster::block_on(gpu.read(e.grad.as_ref().expect("asked for"))).map_err(|e| e.to_string())?;
    let energy = pollster::block_on(gpu.read(&e.energy)).map_err(|e| e.to_string())?[0];
    let grad_chw = hwc_to_chw(c, h, w, &grad);
    io::write_npy(&args.output, &[c, h, w], &grad_chw).map_err(|e| e.to_string())?;
    println!("U(y, t={}) = {energy:.6} nats; ∇_yU written to {}", args.t, args.output.display());
    if let Some(t) = &e.dudt {
        let d = pollster::block_on(gpu.read(t)).map_err(|e| e.to_string())?[0];
        println!("∂U/∂t = {d:.6}");
        if let Some(p) = &args.dudt_out {
            io::write_npy(p, &[1], &[d]).map_err(|e| e.to_string())?;
        }
    }
    if let Some(out) = &args.denoised {
        let den: Vec<f32> = img.data.iter().zip(&grad_chw).map(|(y, g)| y - args.t * g).collect();
        io::write_output(out, &Image::new(c, h, w, den)).map_err(|e| e.to_string())?;
        println!("denoised (y − t·∇_yU) written to {}", out.display());
    }
    Ok(())
}
