//! Developer tasks of prior: `cargo xtask <task>` (alias in .cargo/config.toml).
//!
//! `cargo xtask import-weights <checkpoint> [-o OUT]` converts one of the
//! authors' PyTorch checkpoints (zip or legacy `torch.save`) into a weight
//! blob (`weights/README.md`); `cargo xtask import-weights --all` converts
//! every checkpoint under `../shared/checkpoints`.
//!
//! `cargo xtask web [--serve] [--port N]` builds the browser bundle of
//! `crates/web` (wasm32 + wasm-bindgen) next to its page under
//! `target/web/www`, and with `--serve` serves it with the test data
//! (see `web.rs`).

mod web;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use prior_models::blob::WeightBlob;
use prior_models::import::{default_blob_name, import_checkpoint};

#[derive(Parser)]
#[command(name = "xtask", about = "Developer tasks of prior")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Convert PyTorch checkpoints (zip or legacy torch.save) into safetensors weight blobs.
    ImportWeights(ImportArgs),
    /// Build the browser bundle and demo page (crates/web) under target/web/www; --serve serves it.
    Web(WebArgs),
}

#[derive(Args)]
struct WebArgs {
    /// After building, serve the page, tests/golden and ../shared on 127.0.0.1.
    #[arg(long)]
    serve: bool,

    /// Port for --serve.
    #[arg(long, default_value_t = 8000, requires = "serve")]
    port: u16,
}

#[derive(Args)]
struct ImportArgs {
    /// The checkpoint to convert (.pt, .pth, .pth.tar).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    checkpoint: Option<PathBuf>,

    /// Output file [default: <out-dir>/<name derived from the path>.safetensors].
    #[arg(short, long, conflicts_with = "all")]
    output: Option<PathBuf>,

    /// Convert every checkpoint found under the checkpoints folder (see --from).
    #[arg(long)]
    all: bool,

    /// With --all: the folder to search [default: $PRIOR_SHARED/checkpoints or ../shared/checkpoints].
    #[arg(long, requires = "all")]
    from: Option<PathBuf>,

    /// Folder for the blobs [default: the workspace's weights/].
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn default_checkpoints_dir() -> PathBuf {
    match std::env::var_os("PRIOR_SHARED") {
        Some(shared) => PathBuf::from(shared).join("checkpoints"),
        None => workspace_root().join("../shared/checkpoints"),
    }
}

fn is_checkpoint_name(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    [".pt", ".pth", ".pth.tar", ".tar"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Every checkpoint file under `dir`, sorted.
fn find_checkpoints(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).map_err(|e| format!("cannot list {}: {e}", d.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", d.display()))?;
            let path = entry.path();
            let ft = entry
                .file_type()
                .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
            if ft.is_dir() {
                stack.push(path);
            } else if is_checkpoint_name(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Imports `checkpoint` and writes the blob to `output`; returns the summary line.
fn import_one(checkpoint: &Path, output: &Path) -> Result<String, String> {
    if same_file(checkpoint, output) {
        return Err(format!(
            "refusing to overwrite the input checkpoint {} with its blob",
            checkpoint.display()
        ));
    }
    let blob: WeightBlob = import_checkpoint(checkpoint).map_err(|e| e.to_string())?;
    blob.save_atomic(output).map_err(|e| e.to_string())?;
    let arch = blob.arch().map_err(|e| e.to_string())?;
    let variant = blob.variant().unwrap_or("?");
    Ok(format!(
        "{arch} ({variant}): {} tensors, {} parameters -> {}",
        blob.tensors.len(),
        thousands(blob.param_count()),
        output.display()
    ))
}

fn run_import(args: ImportArgs) -> Result<(), String> {
    let out_dir = args
        .out_dir
        .unwrap_or_else(|| workspace_root().join("weights"));
    if !args.all {
        let checkpoint = args
            .checkpoint
            .expect("clap requires a checkpoint without --all");
        let output = args.output.unwrap_or_else(|| {
            out_dir.join(format!("{}.safetensors", default_blob_name(&checkpoint)))
        });
        println!("{}", import_one(&checkpoint, &output)?);
        return Ok(());
    }

    let from = args.from.unwrap_or_else(default_checkpoints_dir);
    let checkpoints = find_checkpoints(&from)?;
    if checkpoints.is_empty() {
        return Err(format!(
            "no checkpoints (.pt, .pth, .pth.tar, .tar) under {}",
            from.display()
        ));
    }
    // Names relative to the searched folder, so that they stay unique.
    let mut planned: BTreeMap<String, PathBuf> = BTreeMap::new();
    for c in &checkpoints {
        let rel = c.strip_prefix(&from).unwrap_or(c);
        let name = default_blob_name(&Path::new("checkpoints").join(rel));
        if let Some(other) = planned.insert(name.clone(), c.clone()) {
            return Err(format!(
                "{} and {} would both be written as {name}.safetensors",
                other.display(),
                c.display()
            ));
        }
    }
    let mut failures = 0usize;
    for (name, c) in &planned {
        let output = out_dir.join(format!("{name}.safetensors"));
        match import_one(c, &output) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                failures += 1;
                eprintln!("error: {e}");
            }
        }
    }
    if failures > 0 {
        return Err(format!(
            "{failures} of {} checkpoints failed to import",
            planned.len()
        ));
    }
    Ok(())
}

fn run_web(args: WebArgs) -> Result<(), String> {
    let root = workspace_root();
    let www = web::build(&root)?;
    if !args.serve {
        println!("{}", www.display());
        println!("serve it with: cargo xtask web --serve   (the page loads its defaults from /shared/... and /golden/...)");
        return Ok(());
    }
    let server = web::Server::start(
        www,
        root.join("tests/golden"),
        web::shared_dir(&root),
        args.port,
    )?;
    println!(
        "serving http://127.0.0.1:{}/  (golden check: http://127.0.0.1:{}/?test=1); Ctrl-C stops",
        server.port, server.port
    );
    while let Ok(web::Posted::Result(json)) = server.posted.recv() {
        println!("result: {json}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::ImportWeights(args) => run_import(args),
        Task::Web(args) => run_web(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
