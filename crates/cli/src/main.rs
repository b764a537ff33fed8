//! `prior`: run the image-density models of Kadkhodaie, Simoncelli, Mallat,
//! Guth et al. on any GPU.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "prior", version, about = "Image priors implicit in denoisers, on any GPU (wgpu)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    // Each subcommand's arguments and code live in crates/cli/src/cmd/<name>.rs.
}

fn main() {
    let cli = Cli::parse();
    let result: Result<(), String> = match cli.command {};
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
