//! `prior sample --method mala`: annealed Metropolis-adjusted Langevin
//! sampling from an energy model (`prior_algos::mala`), with the acceptance
//! rate of every noise level printed (and in `--json`).

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use prior_algos::mala::{self, LevelReport, MalaParams};
use prior_gpu::{Gpu, Shape};
use prior_models::blob::WeightBlob;
use prior_models::energy::EnergyUNet;
use prior_models::Denoiser;

use super::sample::{check_output, write_batch, SampleArgs};

/// The sampler: the coarse-to-fine one (any denoiser) or MALA (energy models).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The stochastic coarse-to-fine sampler of Kadkhodaie & Simoncelli
    /// (flags --sigma0 … --schedule).
    CoarseToFine,
    /// Annealed Metropolis-adjusted Langevin (energy models only; flags
    /// --levels … --no-denoise).
    Mala,
}

/// MALA flags (`--method mala`). Noise variances t_l are geometric from
/// --t-max to --t-min over --levels levels, with --steps Langevin proposals
/// y' = y − ε∇U(y, t_l) + √(2ε)·z per level, each accepted with the
/// Metropolis–Hastings ratio from U; y₀ = 0.5 + √t_max·z.
#[derive(Args, Debug, Clone)]
pub struct MalaFlags {
    /// L: noise levels of the annealing schedule.
    #[arg(long, default_value_t = MalaParams::default().levels)]
    pub levels: usize,
    /// K: MALA steps per level (each costs one energy-and-gradient
    /// evaluation; each level one more).
    #[arg(long, default_value_t = MalaParams::default().steps)]
    pub steps: usize,
    /// t_1, the first (largest) noise variance (t = σ², pixels in [0, 1]).
    #[arg(long = "t-max", default_value_t = MalaParams::default().t_max)]
    pub t_max: f32,
    /// t_L, the last noise variance.
    #[arg(long = "t-min", default_value_t = MalaParams::default().t_min)]
    pub t_min: f32,
    /// c: the step size is ε_l = c_l·t_l, with c_1 = this; adapted between
    /// levels towards --target-acceptance (c ← c·exp(1.5·(a − a*)), within
    /// ×½..×2), never within a level, so each level's chain is exact.
    #[arg(long = "step-scale", default_value_t = MalaParams::default().step_scale)]
    pub step_scale: f32,
    /// a*: the acceptance rate the step adaptation aims at (0.574 is
    /// optimal for MALA on smooth targets in high dimension).
    #[arg(long = "target-acceptance", default_value_t = 0.574)]
    pub target_acceptance: f32,
    /// Keep c fixed at --step-scale (ε_l = c·t_l at every level).
    #[arg(long = "no-adapt")]
    pub no_adapt: bool,
    /// Write the last chain state y (noise variance t_L) instead of its
    /// Tweedie estimate y − t_L·∇U(y, t_L).
    #[arg(long = "no-denoise")]
    pub no_denoise: bool,
}

impl MalaFlags {
    fn params(&self, seed: u64) -> MalaParams {
        MalaParams {
            levels: self.levels,
            steps: self.steps,
            t_max: self.t_max,
            t_min: self.t_min,
            step_scale: self.step_scale,
            target_acceptance: (!self.no_adapt).then_some(self.target_acceptance),
            denoise: !self.no_denoise,
            seed,
        }
    }
}

/// Loads the energy model, or says why the model has none.
fn load_energy_model(gpu: &Gpu, args: &SampleArgs) -> Result<EnergyUNet, String> {
    let path = &args.model;
    if !path.exists() {
        return Err(format!("{}: model file not found", path.display()));
    }
    let not_energy = |what: String| {
        format!(
            "{}: {what}: --method mala needs a model with an energy U(y, t) (a dual-score-matching energy_unet); use --method coarse-to-fine for denoisers",
            path.display()
        )
    };
    if path.is_dir() {
        return Err(not_energy("a folder of multi-scale denoisers".into()));
    }
    let blob = WeightBlob::load(path).map_err(|e| format!("cannot load the model: {e}"))?;
    let arch = blob.arch().map_err(|e| e.to_string())?;
    if arch != "energy_unet" {
        return Err(not_energy(format!(
            "architecture '{arch}' is a denoiser without an energy"
        )));
    }
    EnergyUNet::from_blob(gpu, &blob).map_err(|e| format!("cannot build the model: {e}"))
}

/// Runs `prior sample --method mala`.
pub fn run(gpu: &Gpu, args: &SampleArgs, h: usize, w: usize) -> Result<(), String> {
    check_output(&args.output)?;
    if args.run.trajectory.is_some() || args.run.plot.is_some() {
        return Err("--trajectory and --plot belong to the coarse-to-fine sampler; --method mala reports the acceptance rate per level instead".into());
    }
    let model = load_energy_model(gpu, args)?;
    let c = args.channels.unwrap_or(model.channels());
    if c != model.channels() {
        return Err(format!(
            "--channels {c}: the model takes {}",
            model.channels()
        ));
    }
    let m = model.multiple();
    if !h.is_multiple_of(m) || !w.is_multiple_of(m) {
        return Err(format!(
            "the model needs sizes that are multiples of {m}; got {h}x{w}"
        ));
    }
    let shape = Shape::new(args.run.samples, h, w, c);
    let need = shape.numel() as u64 * model.values_per_pixel().max(1) as u64 / c as u64 * 4;
    if need > gpu.max_buffer_bytes {
        return Err(format!(
            "{} sample(s) of {h}x{w} need {:.0} MiB per layer, over this adapter's {:.0} MiB buffer limit: use fewer samples or a smaller size",
            shape.n,
            need as f64 / 1048576.0,
            gpu.max_buffer_bytes as f64 / 1048576.0
        ));
    }
    let params = args.mala.params(args.sampler.seed);
    let bar = ProgressBar::new(params.levels as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} level {pos}/{len} {wide_msg} [{elapsed_precise}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let result = pollster::block_on(mala::run(gpu, &model, shape, &params, |r: &LevelReport| {
        bar.set_position(r.level as u64 + 1);
        bar.set_message(format!(
            "t {:.2e}, ε {:.2e}, acceptance {:.2}",
            r.t, r.eps, r.mean_acceptance
        ));
    }));
    bar.finish_and_clear();
    let out = result.map_err(|e| e.to_string())?;
    let x = pollster::block_on(gpu.read(&out.x)).map_err(|e| e.to_string())?;
    let written = write_batch(&args.output, &x, shape)?;
    let mean_acc =
        out.levels.iter().map(|l| l.mean_acceptance).sum::<f32>() / out.levels.len() as f32;
    if args.run.json {
        let mut m = prior_algos::mala::summary(&out, shape, &params, &gpu.adapter.name);
        m.insert("output".into(), super::sample::output_list(&written));
        println!("{}", serde_json::Value::Object(m));
    } else {
        for l in &out.levels {
            println!(
                "level {:>3}: t {:.3e}, ε {:.3e}, acceptance {:.3}",
                l.level, l.t, l.eps, l.mean_acceptance
            );
        }
        println!(
            "{} levels × {} steps, mean acceptance {mean_acc:.3}; {} evaluations in {:.1} s; wrote {}",
            params.levels,
            params.steps,
            out.evaluations,
            out.seconds,
            written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}
