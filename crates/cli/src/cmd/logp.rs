//! `prior logp -m WEIGHTS -i IMAGES... [--json] [--histogram OUT.png]`:
//! the negative log-likelihood of images under a dual-score-matching energy
//! model, −log p(x) = U(x, 0) + log Z, in nats, bits/dim and dB/dim.
//!
//! Units (d = C·H·W, pixels in [0, 1]):
//! * nats: −log p(x) of the continuous density on [0, 1]^d;
//! * bits/dim: 8 + (−log p)/(d·ln 2), the code length per pixel of the 8-bit
//!   image (density times the bin volume 256^−d), the unit of the paper;
//! * dB/dim: 10·log10(2)·bits/dim = −(10/d)·log10 P(8-bit image), the same
//!   probability in decibels per dimension.
//!
//! log Z comes from the blob's calibration metadata (`prior calibrate`) or
//! `--log-z`. Inputs are image/.npy files, folders of them, or MNIST idx
//! files (`*-idx3-ubyte`, optionally gzipped), whose digits are zero-padded
//! (centred) to the next multiple of the model's size multiple (28 → 32).

use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use clap::Args;
use prior_gpu::{Gpu, Shape};
use prior_models::blob::WeightBlob;
use prior_models::energy::{EnergyUNet, Likelihood};
use prior_models::Arch;

use crate::io::{self, Image};
use crate::shard::ShardArgs;

/// Arguments of `prior logp`.
#[derive(Args, Debug, Clone)]
pub struct LogpArgs {
    /// Energy model: a calibrated `.safetensors` blob (`prior calibrate`) or
    /// the authors' checkpoint with `--log-z`.
    #[arg(short = 'm', long = "model", value_name = "WEIGHTS")]
    pub model: PathBuf,
    /// Images (png/jpg/tif/bmp/npy), folders of them, or MNIST idx files.
    #[arg(short = 'i', long = "input", value_name = "IMAGES", num_args = 1.., required = true)]
    pub inputs: Vec<PathBuf>,
    /// Digits A..B (0-based, B excluded) of idx inputs; default all.
    #[arg(long, value_name = "A..B", value_parser = parse_range)]
    pub range: Option<Range<usize>>,
    /// log Z in nats (overrides the blob's `prior.log_z`).
    #[arg(long = "log-z", value_name = "NATS")]
    pub log_z: Option<f64>,
    /// One JSON object per image: file, energy, nats, bits_per_dim, db_per_dim.
    #[arg(long)]
    pub json: bool,
    /// Write a PNG histogram of −log p in bits/dim over all inputs (the range
    /// of image probabilities).
    #[arg(long, value_name = "OUT.png")]
    pub histogram: Option<PathBuf>,
    /// Images per GPU batch.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub batch: usize,
    /// With --json: append the records to this JSON-lines file instead of
    /// stdout, one line written and flushed per image. Images already
    /// recorded there (same `file` name) are skipped, so rerunning a killed
    /// run finishes it; a torn last line is dropped first.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "OUT.jsonl",
        requires = "json"
    )]
    pub output: Option<PathBuf>,
    /// `--shard I/N`: only slice I of the images (after idx files and
    /// folders are expanded and --range applied).
    #[command(flatten)]
    pub shard: ShardArgs,
}

/// Parses `A..B`.
pub fn parse_range(s: &str) -> Result<Range<usize>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("{s:?}: expected A..B, e.g. 9000..10000"))?;
    let a: usize = a
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: {a:?} is not a number"))?;
    let b: usize = b
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: {b:?} is not a number"))?;
    if a >= b {
        return Err(format!("{s:?}: empty range"));
    }
    Ok(a..b)
}

/// Whether `path` names an idx image file (`*idx3-ubyte`, `*.idx`, optionally `.gz`).
pub fn is_idx(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    name.ends_with("idx3-ubyte") || name.ends_with(".idx3") || name.ends_with(".idx")
}

/// Reads the images of an idx3 file (MNIST format; gzip-compressed or not),
/// `range` of them (all when `None`), as [0, 1] values (byte/255), each
/// zero-padded, centred, to a multiple of `multiple` in height and width.
pub fn read_idx_images(
    path: &Path,
    range: Option<Range<usize>>,
    multiple: usize,
) -> Result<Vec<Image>, String> {
    let raw = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| format!("{}: not a valid gzip file: {e}", path.display()))?;
        out
    } else {
        raw
    };
    if bytes.len() < 16 || bytes[0..4] != [0, 0, 8, 3] {
        return Err(format!(
            "{}: not an idx3 unsigned-byte image file (magic 0x00000803)",
            path.display()
        ));
    }
    let be = |i: usize| {
        u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize
    };
    let (n, h, w) = (be(4), be(8), be(12));
    if h == 0 || w == 0 || bytes.len() < 16 + n * h * w {
        return Err(format!(
            "{}: header says {n} images of {h}×{w} but the file holds {} bytes",
            path.display(),
            bytes.len()
        ));
    }
    let range = range.unwrap_or(0..n);
    if range.end > n {
        return Err(format!(
            "{}: range {}..{} is beyond its {n} images",
            path.display(),
            range.start,
            range.end
        ));
    }
    let m = multiple.max(1);
    let (hp, wp) = (h.div_ceil(m) * m, w.div_ceil(m) * m);
    let (top, left) = ((hp - h) / 2, (wp - w) / 2);
    Ok(range
        .map(|k| {
            let src = &bytes[16 + k * h * w..16 + (k + 1) * h * w];
            let mut data = vec![0.0f32; hp * wp];
            for y in 0..h {
                for x in 0..w {
                    data[(y + top) * wp + x + left] = src[y * w + x] as f32 / 255.0;
                }
            }
            Image::new(1, hp, wp, data)
        })
        .collect())
}

/// Whether `path` holds a 4-dimensional `.npy` array (judged by content:
/// the NumPy magic and a header whose shape has four entries).
fn is_npy_batch(path: &std::path::Path) -> bool {
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    let head = &head[..n];
    if !head.starts_with(b"\x93NUMPY") {
        return false;
    }
    let text = String::from_utf8_lossy(head);
    let Some(shape) = text
        .split("'shape':")
        .nth(1)
        .and_then(|r| r.split(')').next())
    else {
        return false;
    };
    shape
        .split(',')
        .filter(|d| !d.trim().trim_start_matches('(').is_empty())
        .count()
        == 4
}

/// One named input image.
pub struct Named {
    /// The file's path as given, with `#k` appended for the k-th image of
    /// an idx file (k counted from 0 over the whole file, not the range) or
    /// of an `(N, C, H, W)` `.npy` batch.
    pub name: String,
    /// The image, `(C, H, W)` values as read (idx digits padded).
    pub image: Image,
}

/// Expands the inputs: idx files into their (ranged, padded) digits named
/// `file#k`, other paths through [`io::collect_inputs`].
pub fn gather(
    inputs: &[PathBuf],
    range: Option<&Range<usize>>,
    multiple: usize,
) -> Result<Vec<Named>, String> {
    let mut out = Vec::new();
    let mut plain = Vec::new();
    let flush = |plain: &mut Vec<PathBuf>, out: &mut Vec<Named>| -> Result<(), String> {
        for p in io::collect_inputs(plain).map_err(|e| e.to_string())? {
            // An (N, C, H, W) `.npy` batch (what `prior sample -o x.npy
            // --samples N` writes) gives its images as `file#k`.
            if is_npy_batch(&p) {
                for (k, image) in io::read_npy_batch(&p)
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .enumerate()
                {
                    out.push(Named {
                        name: format!("{}#{k}", p.display()),
                        image,
                    });
                }
                continue;
            }
            let image = io::read_input(&p).map_err(|e| e.to_string())?;
            out.push(Named {
                name: p.display().to_string(),
                image,
            });
        }
        plain.clear();
        Ok(())
    };
    for p in inputs {
        if is_idx(p) {
            flush(&mut plain, &mut out)?;
            let start = range.map_or(0, |r| r.start);
            for (k, image) in read_idx_images(p, range.cloned(), multiple)?
                .into_iter()
                .enumerate()
            {
                out.push(Named {
                    name: format!("{}#{}", p.display(), start + k),
                    image,
                });
            }
        } else {
            plain.push(p.clone());
        }
    }
    flush(&mut plain, &mut out)?;
    if out.is_empty() {
        return Err("no input images".into());
    }
    Ok(out)
}

/// Loads an energy model and its blob (for the calibration metadata).
pub fn load_energy(gpu: &Gpu, path: &Path) -> Result<(EnergyUNet, WeightBlob), String> {
    if !path.exists() {
        return Err(format!("{}: model file not found", path.display()));
    }
    let blob = WeightBlob::load(path).map_err(|e| format!("cannot load the model: {e}"))?;
    let arch = blob.arch().map_err(|e| e.to_string())?;
    if arch != Arch::EnergyUnet {
        return Err(format!(
            "{}: architecture '{arch}' is a denoiser without a normalised energy; log-likelihoods need a dual-score-matching energy model ({})",
            path.display(),
            Arch::EnergyUnet
        ));
    }
    let model =
        EnergyUNet::from_blob(gpu, &blob).map_err(|e| format!("cannot build the model: {e}"))?;
    pollster::block_on(gpu.check("uploading the model"))
        .map_err(|e| format!("cannot load the model: {e}"))?;
    Ok((model, blob))
}

/// U(x, 0) of every image, batched by image size (channels-last upload).
pub fn energies_at_zero(
    gpu: &Gpu,
    model: &EnergyUNet,
    images: &[Named],
    batch: usize,
) -> Result<Vec<f64>, String> {
    use prior_models::Denoiser;
    let m = model.multiple();
    for im in images {
        let i = &im.image;
        if i.c != model.channels() {
            return Err(format!(
                "{}: {} channel(s), the model takes {}",
                im.name,
                i.c,
                model.channels()
            ));
        }
        if i.h % m != 0 || i.w % m != 0 {
            return Err(format!(
                "{}: {}×{} is not a multiple of {m} in height and width (the density is defined on the model's input size; pad or crop first)",
                im.name, i.h, i.w
            ));
        }
    }
    let mut out = vec![0.0; images.len()];
    // group consecutive runs of equal size into batches
    let mut k = 0;
    while k < images.len() {
        let (c, h, w) = (images[k].image.c, images[k].image.h, images[k].image.w);
        let mut end = k + 1;
        while end < images.len() && end - k < batch.max(1) && images[end].image.shape() == [c, h, w]
        {
            end += 1;
        }
        let mut data = Vec::with_capacity((end - k) * c * h * w);
        for im in &images[k..end] {
            data.extend(prior_ops::layout::chw_to_hwc(c, h, w, &im.image.data));
        }
        let y = gpu.upload(Shape::new(end - k, h, w, c), &data);
        let t = gpu.zeros(Shape::new(end - k, 1, 1, 1));
        let u = pollster::block_on(model.energies(gpu, &y, &t)).map_err(|e| e.to_string())?;
        out[k..end].copy_from_slice(&u);
        k = end;
    }
    Ok(out)
}

/// Runs `prior logp`: for each image of this shard prints −log p in nats,
/// bits/dim and dB/dim (with `--json` one record per image, appended to
/// `--output` when given, skipping images it already holds), using log Z
/// from `--log-z` or the blob's calibration (an error when there is
/// neither), then writes the `--histogram` PNG. Every failure is returned
/// as a message for the user.
pub fn run(args: LogpArgs) -> Result<(), String> {
    let gpu = pollster::block_on(Gpu::from_env()).map_err(|e| e.to_string())?;
    let (model, _) = load_energy(&gpu, &args.model)?;
    let log_z = match (args.log_z, model.log_z) {
        (Some(v), _) => v,
        (None, Some(c)) => c.log_z,
        (None, None) => {
            return Err(format!(
                "{}: no log Z in this weight file: run `prior calibrate -m {} -i CALIBRATION_IMAGES -o CALIBRATED.safetensors` once, or pass --log-z NATS",
                args.model.display(),
                args.model.display()
            ))
        }
    };
    if !log_z.is_finite() {
        return Err(format!("--log-z {log_z}: not a finite number"));
    }
    let shard = args.shard.resolve()?;
    let images = gather(&args.inputs, args.range.as_ref(), model.multiple())?;
    let mut bpd = Vec::new();
    let mut sink = match &args.output {
        Some(path) => {
            io::ensure_not_input(path, &args.inputs).map_err(|e| e.to_string())?;
            let (file, done) = Jsonl::open(path)?;
            bpd.extend(done.values().copied());
            Some((file, done))
        }
        None => None,
    };
    let todo: Vec<usize> = shard
        .range(images.len())
        .filter(|&k| {
            sink.as_ref()
                .is_none_or(|(_, done)| !done.contains_key(&images[k].name))
        })
        .collect();
    if !args.json {
        println!(
            "{:>12} {:>10} {:>9}  file",
            "-log p nats", "bits/dim", "dB/dim"
        );
    }
    // Batches start at global multiples of --batch, so a shard or a resumed
    // run batches each image with the same neighbours as a single run.
    let batch = args.batch.max(1);
    let mut at = 0;
    while at < todo.len() {
        let mut end = at + 1;
        while end < todo.len() && todo[end] == todo[end - 1] + 1 && !todo[end].is_multiple_of(batch)
        {
            end += 1;
        }
        let (a, b) = (todo[at], todo[end - 1] + 1);
        let u = energies_at_zero(&gpu, &model, &images[a..b], batch)?;
        for (im, &e) in images[a..b].iter().zip(&u) {
            let l = Likelihood::new(e, log_z, im.image.len());
            bpd.push(l.bits_per_dim);
            if args.json {
                let v = serde_json::json!({
                    "file": im.name, "energy": l.energy, "nats": l.nats,
                    "bits_per_dim": l.bits_per_dim, "db_per_dim": l.db_per_dim,
                });
                match &mut sink {
                    Some((file, _)) => file.append(&v)?,
                    None => println!("{v}"),
                }
            } else {
                println!(
                    "{:>12.2} {:>10.4} {:>9.3}  {}",
                    l.nats, l.bits_per_dim, l.db_per_dim, im.name
                );
            }
        }
        at = end;
    }
    if !args.json && bpd.len() > 1 {
        let mean = bpd.iter().sum::<f64>() / bpd.len() as f64;
        let (lo, hi) = bpd
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        println!("{} images: mean {mean:.4} bits/dim (min {lo:.4}, max {hi:.4}), log Z = {log_z:.2} nats", bpd.len());
    }
    if let Some(out) = &args.histogram {
        let png = histogram_png(&bpd, "BITS/DIM");
        io::write_atomic(out, &png).map_err(|e| e.to_string())?;
        if !args.json {
            println!("histogram: {}", out.display());
        }
    }
    Ok(())
}

/// An append-only JSON-lines file of `logp` records.
struct Jsonl {
    path: PathBuf,
    file: std::fs::File,
}

impl Jsonl {
    /// Opens `path` for appending (created if missing) and returns the
    /// bits/dim of the images it already records, by file name. A last
    /// line without its newline (a run killed while writing) is cut off.
    fn open(path: &Path) -> Result<(Jsonl, std::collections::HashMap<String, f64>), String> {
        let p = path.display();
        let mut done = std::collections::HashMap::new();
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("{p}: cannot read: {e}")),
        };
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for (n, line) in text[..complete].split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let v: Option<serde_json::Value> = serde_json::from_slice(line).ok();
            let rec = v
                .as_ref()
                .and_then(|v| Some((v.get("file")?.as_str()?, v.get("bits_per_dim")?.as_f64()?)));
            let Some((file, b)) = rec else {
                return Err(format!(
                    "{p}: line {} is not a `prior logp --json` record; refusing to append to it (move it away)",
                    n + 1
                ));
            };
            done.insert(file.to_string(), b);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{p}: cannot open for appending: {e}"))?;
        if complete < text.len() {
            file.set_len(complete as u64)
                .map_err(|e| format!("{p}: cannot cut its torn last line: {e}"))?;
        }
        Ok((
            Jsonl {
                path: path.to_path_buf(),
                file,
            },
            done,
        ))
    }

    /// Appends one record as one write (so concurrent appenders on a local
    /// file system never interleave within a line) and flushes it.
    fn append(&mut self, v: &serde_json::Value) -> Result<(), String> {
        use std::io::Write;
        let mut line = v.to_string();
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| format!("{}: cannot append: {e}", self.path.display()))
    }
}

/// A PNG histogram of `values` (bins of equal width between the extremes,
/// rounded out to tenths), with axis ticks and labels.
pub fn histogram_png(values: &[f64], xlabel: &str) -> Vec<u8> {
    use prior_algos::plot::{draw_line, draw_text, encode_png, fill_rect, text_width, PALETTE};
    let (w, h) = (720u32, 420u32);
    let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let (l, r, t, b) = (70i64, 40i64, 30i64, 60i64);
    let (pw, ph) = ((w as i64 - l - r) as f64, (h as i64 - t - b) as f64);
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (mut lo, mut hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, c), &v| {
            (a.min(v), c.max(v))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    lo = (lo * 10.0).floor() / 10.0;
    hi = (hi * 10.0).ceil() / 10.0;
    if hi <= lo {
        hi = lo + 0.1;
    }
    let bins = ((finite.len() as f64).sqrt().ceil() as usize).clamp(5, 60);
    let mut counts = vec![0usize; bins];
    for v in &finite {
        let k = (((v - lo) / (hi - lo)) * bins as f64).floor() as usize;
        counts[k.min(bins - 1)] += 1;
    }
    let cmax = counts.iter().copied().max().unwrap_or(1).max(1);
    let black = [0, 0, 0];
    for (k, &c) in counts.iter().enumerate() {
        let x0 = l as f64 + pw * k as f64 / bins as f64;
        let x1 = l as f64 + pw * (k + 1) as f64 / bins as f64;
        let bh = ph * c as f64 / cmax as f64;
        fill_rect(
            &mut img,
            x0 as i64 + 1,
            (t as f64 + ph - bh) as i64,
            ((x1 - x0) as u32).saturating_sub(1).max(1),
            bh as u32,
            PALETTE[0],
        );
    }
    draw_line(
        &mut img,
        (l as f64, t as f64 + ph),
        (l as f64 + pw, t as f64 + ph),
        1,
        black,
    );
    draw_line(
        &mut img,
        (l as f64, t as f64),
        (l as f64, t as f64 + ph),
        1,
        black,
    );
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let x = l as f64 + pw * k as f64 / 4.0;
        draw_line(
            &mut img,
            (x, t as f64 + ph),
            (x, t as f64 + ph + 5.0),
            1,
            black,
        );
        let s = format!("{v:.2}");
        draw_text(
            &mut img,
            x as i64 - text_width(&s, 2) as i64 / 2,
            t + ph as i64 + 10,
            &s,
            2,
            black,
        );
        let c = cmax * k / 4;
        let y = t as f64 + ph - ph * k as f64 / 4.0;
        draw_line(&mut img, (l as f64 - 5.0, y), (l as f64, y), 1, black);
        let s = format!("{c}");
        draw_text(
            &mut img,
            l - 10 - text_width(&s, 2) as i64,
            y as i64 - 7,
            &s,
            2,
            black,
        );
    }
    draw_text(
        &mut img,
        l + pw as i64 / 2 - text_width(xlabel, 2) as i64 / 2,
        h as i64 - 25,
        xlabel,
        2,
        black,
    );
    let title = format!("{} IMAGES", finite.len());
    draw_text(&mut img, l + 5, 8, &title, 2, black);
    encode_png(&img)
}
