//! `prior info -m WEIGHTS`: what a weight file holds.

use std::path::PathBuf;

use clap::Args;
use prior_gpu::Gpu;
use prior_models::blob::{keys, WeightBlob};

/// Arguments of `prior info`.
#[derive(Args, Debug, Clone)]
pub struct InfoArgs {
    /// Weight file: a `.safetensors` weight blob or one of the authors'
    /// PyTorch checkpoints (`.pt`, `.pth`, `.pth.tar`; read as data), or a
    /// folder holding the parts of a multi-scale model.
    #[arg(short = 'm', long = "model", value_name = "WEIGHTS")]
    pub model: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The receptive field and parameter count of a model built on the GPU, or
/// why it could not be built.
struct Built {
    parameters: usize,
    radius: Option<usize>,
    channels: Option<usize>,
    size_multiple: Option<usize>,
    describe: Option<String>,
    adapter: Option<String>,
    note: Option<String>,
}

/// Receptive radii at least this large mean "the whole image" (models whose
/// normalisations use whole-image statistics report `1 << 20`).
const GLOBAL_RADIUS: usize = 1 << 20;

/// Prints architecture, variant, parameter count, receptive field, source
/// file and its SHA-256, training noise range and hyper-parameters.
///
/// The receptive field is the running model's own figure, so the model is
/// built on the GPU; without an adapter (or for an architecture that is
/// imported but not runnable yet) everything else is still printed and the
/// receptive field is reported as unknown, with the reason. A multi-scale
/// model folder can only be read by building it, so it needs an adapter.
pub fn run(args: InfoArgs) -> Result<(), String> {
    let path = &args.model;
    if !path.exists() {
        return Err(format!("{}: model file not found", path.display()));
    }
    let (blob, file_sha, built) = if path.is_dir() {
        let gpu = pollster::block_on(Gpu::from_env()).map_err(|e| {
            format!(
                "{}: a multi-scale model folder is read by building it on the GPU, and: {e}",
                path.display()
            )
        })?;
        let ms = prior_models::multiscale::MultiScale::from_dir(&gpu, path)
            .map_err(|e| e.to_string())?;
        let blob = ms.to_blob();
        let mut built = Built::empty(blob.param_count());
        built.fill(&ms, &gpu);
        (blob, None, built)
    } else {
        let bytes =
            std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let file_sha = prior_models::import::sha256_hex(&bytes);
        drop(bytes);
        let blob = WeightBlob::load(path).map_err(|e| {
            format!(
                "{e}\n(is {} a prior weight blob or a PyTorch checkpoint?)",
                path.display()
            )
        })?;
        let built = build(&blob);
        (blob, Some(file_sha), built)
    };
    let arch = blob.arch().map_err(|e| e.to_string())?;
    let hparams = blob.hparams().map_err(|e| e.to_string())?.to_json();
    let noise_range = blob.noise_range().map_err(|e| e.to_string())?;
    let args_ns = blob.args().map_err(|e| e.to_string())?;

    let source = blob.meta(keys::SOURCE).map(str::to_string);
    let source_sha = blob.meta(keys::SOURCE_SHA256).map(str::to_string);
    let is_source = file_sha.is_some() && source_sha == file_sha;
    let global = built.radius.is_some_and(|r| r >= GLOBAL_RADIUS);
    let radius = built.radius.filter(|_| !global);

    if args.json {
        let v = serde_json::json!({
            "file": path.display().to_string(),
            "file_sha256": file_sha,
            "file_is_checkpoint": is_source,
            "arch": arch,
            "variant": blob.variant(),
            "parameters": built.parameters,
            "tensors": blob.tensors.len(),
            "channels": built.channels,
            "receptive_radius": radius,
            "receptive_size": radius.map(|r| 2 * r + 1),
            "receptive_global": built.radius.map(|_| global),
            "size_multiple": built.size_multiple,
            "source": source,
            "source_sha256": source_sha,
            "noise_range": noise_range.map(|(a, b)| [a, b]),
            "hparams": hparams,
            "args": args_ns,
            "adapter": built.adapter,
            "note": built.note,
        });
        println!("{v}");
        return Ok(());
    }

    println!("file:            {}", path.display());
    match &file_sha {
        Some(sha) => println!(
            "  sha256:        {sha}{}",
            if is_source {
                " (the checkpoint itself)"
            } else {
                ""
            }
        ),
        None => {
            println!("  (a folder of multi-scale parts; their files are listed in hparams.parts)")
        }
    }
    println!("architecture:    {arch}");
    println!("variant:         {}", blob.variant().unwrap_or("-"));
    if let Some(d) = &built.describe {
        println!("model:           {d}");
    }
    println!(
        "parameters:      {} ({} tensors)",
        group_digits(built.parameters),
        blob.tensors.len()
    );
    if let Some(c) = built.channels {
        match c {
            1 => println!("channels:        1 (grayscale)"),
            3 => println!("channels:        3 (colour)"),
            c => println!("channels:        {c}"),
        }
    }
    match radius {
        Some(r) => println!("receptive field: radius {r} px, size {0}×{0} px", 2 * r + 1),
        None if global => {
            println!("receptive field: the whole image (normalisations use whole-image statistics)")
        }
        None => println!(
            "receptive field: unknown ({})",
            built.note.as_deref().unwrap_or("model not built")
        ),
    }
    if let Some(m) = built.size_multiple.filter(|&m| m > 1) {
        println!("image size:      height and width must be multiples of {m}");
    }
    println!(
        "source:          {}",
        source
            .as_deref()
            .unwrap_or("unknown (not recorded in the blob)")
    );
    if let Some(s) = &source_sha {
        println!("  sha256:        {s}");
    }
    match noise_range {
        Some((a, b)) => println!("noise range:     σ ∈ [{a}, {b}] on the 0–255 scale (training)"),
        None => println!("noise range:     unknown (not recorded in the checkpoint)"),
    }
    match &hparams {
        serde_json::Value::Object(map) if !map.is_empty() => {
            println!("hparams:");
            for (k, v) in map {
                println!("  {k}: {v}");
            }
        }
        other => println!("hparams:         {other}"),
    }
    if let Some(a) = &args_ns {
        println!("args:            {a}");
    }
    if let Some(a) = &built.adapter {
        println!("(receptive field from the model built on {a})");
    }
    Ok(())
}

impl Built {
    fn empty(parameters: usize) -> Built {
        Built {
            parameters,
            radius: None,
            channels: None,
            size_multiple: None,
            describe: None,
            adapter: None,
            note: None,
        }
    }

    fn fill(&mut self, m: &dyn prior_models::Denoiser, gpu: &Gpu) {
        self.parameters = m.parameters();
        self.radius = Some(m.receptive_radius());
        self.channels = Some(m.channels());
        self.size_multiple = Some(m.size_multiple());
        self.describe = Some(m.describe());
        self.adapter = Some(gpu.adapter.name.clone());
    }
}

fn build(blob: &WeightBlob) -> Built {
    let mut b = Built::empty(blob.param_count());
    let gpu = match pollster::block_on(Gpu::from_env()) {
        Ok(g) => g,
        Err(e) => {
            b.note = Some(format!(
                "the model is built on the GPU to measure it, and: {e}"
            ));
            return b;
        }
    };
    match prior_models::load(&gpu, blob) {
        Ok(m) => b.fill(&*m, &gpu),
        Err(e) => b.note = Some(e.to_string()),
    }
    b
}

/// `668352` → `668 352`.
fn group_digits(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}
