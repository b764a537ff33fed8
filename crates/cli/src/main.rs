//! `prior`: run the image-density models of Kadkhodaie, Simoncelli, Mallat,
//! Guth et al. on any GPU.

use clap::{Parser, Subcommand};
use prior_cli::cmd;

#[derive(Parser)]
#[command(
    name = "prior",
    version,
    about = "Image priors implicit in denoisers, on any GPU (wgpu)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Each subcommand's arguments and code live in crates/cli/src/cmd/<name>.rs:
// one variant here and one match arm in `main`, calling
// `cmd::<name>::run(args) -> Result<(), String>`.
#[derive(Subcommand)]
enum Command {
    /// List the GPU adapters (name, backend, type, driver, limits, features).
    Devices(cmd::devices::DevicesArgs),
    /// Measure this adapter: an FMA ceiling, each convolution variant's GFLOP/s and every architecture's time.
    Bench(cmd::bench::BenchArgs),
    /// Describe a weight file: architecture, parameters, receptive field, source, hparams.
    Info(cmd::info::InfoArgs),
    /// Jacobian of a denoiser at a noisy image: singular values/vectors, effective dimensionality vs σ, adaptive filters.
    Jacobian(cmd::jacobian::JacobianArgs),
    /// Denoise images or .npy arrays (optionally adding noise and scoring against a clean image).
    Denoise(cmd::denoise::DenoiseArgs),
    /// Negative log-likelihood of images under an energy model (nats, bits/dim, dB/dim).
    Logp(cmd::logp::LogpArgs),
    /// Data score ∇_yU and noise score ∂U/∂t of an energy model at noise variance t.
    Score(cmd::score::ScoreArgs),
    /// Estimate log Z of an energy model once and store it in a weight blob.
    Calibrate(cmd::calibrate::CalibrateArgs),
    /// Draw images from the prior implicit in a denoiser (coarse-to-fine stochastic sampler).
    Sample(cmd::sample::SampleArgs),
    /// Solve a linear inverse problem (inpaint, pixels, superres, cs, spectral) with the prior.
    Solve(cmd::solve::SolveArgs),
    /// Learn optimal linear measurements for a denoiser prior (or the PCA / random baselines).
    LearnMeasurements(cmd::learn::LearnArgs),
}

fn main() {
    // Before any thread exists: the Vulkan driver's Wayland client prints
    // "XDG_RUNTIME_DIR is invalid or not set" on every command otherwise.
    prior_gpu::ensure_runtime_dir();
    let cli = Cli::parse();
    let result: Result<(), String> = match cli.command {
        Command::Devices(args) => cmd::devices::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Info(args) => cmd::info::run(args),
        Command::Jacobian(args) => cmd::jacobian::run(args),
        Command::Denoise(args) => cmd::denoise::run(args),
        Command::Logp(args) => cmd::logp::run(args),
        Command::Score(args) => cmd::score::run(args),
        Command::Calibrate(args) => cmd::calibrate::run(args),
        Command::Sample(args) => cmd::sample::run(args),
        Command::Solve(args) => cmd::solve::run(args),
        Command::LearnMeasurements(args) => cmd::learn::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
