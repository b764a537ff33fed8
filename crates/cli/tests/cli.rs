//! End-to-end tests of the `prior` binary: `devices`, `info` and `denoise`
//! on small crops of ../shared images (the BF-CNN on lavapipe takes about a
//! second per 256×256 image, so every input here is at most 40×48).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prior_cli::io::{self, Image};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared");

fn shared(rel: &str) -> PathBuf {
    Path::new(SHARED).join(rel)
}

fn gray_model() -> PathBuf {
    shared("checkpoints/universal_inverse_problem/BSD400_gray/model.pt")
}

/// A fresh, empty scratch directory under the target directory.
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn prior(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prior"))
        .args(args)
        .output()
        .expect("cannot run the prior binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "prior failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Asserts a clean failure (exit code 1, no panic) and returns stderr.
fn fails(o: Output) -> String {
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected exit code 1:\nstdout:\n{}\nstderr:\n{err}",
        stdout(&o)
    );
    assert!(!err.contains("panicked"), "prior panicked:\n{err}");
    assert!(err.contains("error: "), "no error message:\n{err}");
    err
}

fn crop(img: &Image, top: usize, left: usize, h: usize, w: usize) -> Image {
    let mut data = Vec::with_capacity(img.c * h * w);
    for c in 0..img.c {
        for y in top..top + h {
            let row = (c * img.h + y) * img.w;
            data.extend_from_slice(&img.data[row + left..row + left + w]);
        }
    }
    Image::new(img.c, h, w, data)
}

/// A 40×48 crop of Set12/01.png (its PNG and .npy forms hold the same values).
fn gray_crop() -> Image {
    let img = io::read_input(shared("images/gray/Set12/01.png")).unwrap();
    crop(&img, 100, 90, 40, 48)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn devices_lists_adapters() {
    let out = ok(prior(&["devices"]));
    assert!(out.contains("adapter(s):"), "{out}");
    for field in [
        "backend:",
        "type:",
        "driver:",
        "max storage buffer:",
        "subgroups:",
        "f16:",
    ] {
        assert!(out.contains(field), "missing {field}:\n{out}");
    }
    let json = ok(prior(&["devices", "--json"]));
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert!(first["max_storage_buffer_binding_size"].as_u64().unwrap() > 0);
}

// Metal exists only on Apple platforms, so elsewhere PRIOR_BACKEND=metal
// leaves no adapter.
#[cfg(not(target_vendor = "apple"))]
#[test]
fn devices_without_adapter_explains_how_to_get_one() {
    let o = Command::new(env!("CARGO_BIN_EXE_prior"))
        .arg("devices")
        .env("PRIOR_BACKEND", "metal")
        .output()
        .unwrap();
    let err = fails(o);
    assert!(err.contains("no GPU adapter found"), "{err}");
    assert!(err.contains("mesa-vulkan-drivers"), "{err}");
}

#[test]
fn info_describes_checkpoint_and_blob() {
    let out = ok(prior(&["info", "-m", s(&gray_model())]));
    assert!(out.contains("architecture:    bfcnn"), "{out}");
    assert!(out.contains("variant:         universal"), "{out}");
    assert!(out.contains("parameters:      667 008"), "{out}");
    assert!(
        out.contains("receptive field: radius 20 px, size 41×41 px"),
        "{out}"
    );
    assert!(out.contains("source:          model.pt"), "{out}");
    assert!(out.contains("(the checkpoint itself)"), "{out}");
    assert!(out.contains("norm: \"bf_sd\""), "{out}");

    // The same weights as a safetensors blob: same figures, the source's
    // SHA-256 is kept and differs from the blob's own.
    let dir = scratch("info");
    let blob_path = dir.join("bsd400.safetensors");
    prior_models::blob::WeightBlob::load(gray_model())
        .unwrap()
        .save_atomic(&blob_path)
        .unwrap();
    let json = ok(prior(&["info", "-m", s(&blob_path), "--json"]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["arch"], "bfcnn");
    assert_eq!(v["parameters"], 667_008);
    assert_eq!(v["receptive_radius"], 20);
    assert_eq!(v["receptive_size"], 41);
    assert_eq!(v["source"], "model.pt");
    assert_eq!(v["file_is_checkpoint"], false);
    assert_eq!(v["source_sha256"].as_str().unwrap().len(), 64);
    assert_ne!(v["source_sha256"], v["file_sha256"]);

    let dncnn = shared("checkpoints/bias_free_denoising/dncnn/bias_free/0-100.pt");
    let out = ok(prior(&["info", "-m", s(&dncnn)]));
    assert!(out.contains("noise range:     σ ∈ [0, 100]"), "{out}");

    // A multi-scale model is a folder of parts.
    let ms = shared("checkpoints/local_probability_models/multi_scale_160_rf9");
    let out = ok(prior(&["info", "-m", s(&ms)]));
    assert!(out.contains("architecture:    multiscale"), "{out}");
    assert!(
        out.contains("height and width must be multiples of 4"),
        "{out}"
    );
    assert!(out.contains("receptive field: radius "), "{out}");
}

#[test]
fn denoise_png_to_png() {
    let dir = scratch("png");
    let input = dir.join("crop.png");
    io::write_output(&input, &gray_crop()).unwrap();
    let output = dir.join("out.png");
    let out = ok(prior(&[
        "denoise",
        "-m",
        s(&gray_model()),
        "-i",
        s(&input),
        "-o",
        s(&output),
    ]));
    assert!(out.contains("crop.png"), "{out}");
    let den = io::read_input(&output).unwrap();
    assert_eq!(den.shape(), [1, 40, 48]);

    // One input and `-o` ending in a separator: a directory, created.
    let sub = format!("{}{}", s(&dir.join("sub")), std::path::MAIN_SEPARATOR);
    ok(prior(&[
        "denoise",
        "-m",
        s(&gray_model()),
        "-i",
        s(&input),
        "-o",
        &sub,
    ]));
    assert_eq!(
        std::fs::read(dir.join("sub/crop.png")).unwrap(),
        std::fs::read(&output).unwrap()
    );
}

/// `.npy` in and out, `--add-noise`, `--json`: the JSON line has every key,
/// the noisy PSNR is exactly that of the documented noise, denoising helps,
/// the same seed gives the same bytes and another seed does not.
#[test]
fn denoise_npy_json_and_noise_determinism() {
    let dir = scratch("npy");
    let clean = gray_crop();
    let input = dir.join("crop.npy");
    io::write_npy(&input, &[40, 48], &clean.data).unwrap();
    let run = |out: &Path, seed: &str| {
        ok(prior(&[
            "denoise",
            "-m",
            s(&gray_model()),
            "-i",
            s(&input),
            "-o",
            s(out),
            "--add-noise",
            "25",
            "--seed",
            seed,
            "--json",
        ]))
    };
    let (a, b, c) = (dir.join("a.npy"), dir.join("b.npy"), dir.join("c.npy"));
    let line = run(&a, "7");
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    for key in [
        "file",
        "output",
        "height",
        "width",
        "channels",
        "sigma",
        "psnr_input",
        "psnr_output",
        "ssim_input",
        "ssim_output",
        "seconds",
        "adapter",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {line}");
    }
    assert_eq!(v["height"], 40);
    assert_eq!(v["width"], 48);
    assert_eq!(v["channels"], 1);
    assert_eq!(v["sigma"], 25.0);
    assert_eq!(v["output"], s(&a));

    // The noise the CLI added, recomputed here: image 0, stream 25·1000 + 0.
    let mut noisy = clean.clone();
    prior_cli::cmd::denoise::add_noise(&mut noisy, 25.0, 7, 0);
    let key = prior_ops::reference::rng::key(7, 25_000);
    let z0 = prior_ops::reference::rng::normal(key, 0);
    assert_eq!(noisy.data[0], clean.data[0] + (25.0f64 / 255.0) as f32 * z0);
    let psnr_in = prior_cli::metrics::psnr(&noisy.data, &clean.data, 1.0);
    assert!(
        (v["psnr_input"].as_f64().unwrap() - psnr_in).abs() < 1e-9,
        "{line} vs {psnr_in}"
    );
    let (pi, po) = (
        v["psnr_input"].as_f64().unwrap(),
        v["psnr_output"].as_f64().unwrap(),
    );
    assert!(
        po > pi + 3.0,
        "denoising should gain several dB: {pi} → {po}"
    );
    assert!(v["ssim_output"].as_f64().unwrap() > v["ssim_input"].as_f64().unwrap());

    let den = io::read_input(&a).unwrap();
    assert_eq!(den.shape(), [1, 40, 48]);
    // Raw f32 output: PSNR of the clamped output agrees with the JSON.
    let clamped: Vec<f32> = den.data.iter().map(|v| v.clamp(0.0, 1.0)).collect();
    assert!((prior_cli::metrics::psnr(&clamped, &clean.data, 1.0) - po).abs() < 1e-9);

    run(&b, "7");
    run(&c, "8");
    let bytes = |p: &Path| std::fs::read(p).unwrap();
    assert_eq!(bytes(&a), bytes(&b), "same seed, different output");
    assert_ne!(bytes(&a), bytes(&c), "different seeds, same output");
}

/// A `.npy` batch (N, C, H, W): one output file of the same shape, one JSON
/// line per image with its index; element 0 is exactly the single-image run
/// (same noise stream from flat index 0), element 1 continues the stream at
/// index C·H·W and so gets other noise; a batch refuses a PNG output; a
/// clean reference must hold the same number of images.
#[test]
fn denoise_npy_batch() {
    let dir = scratch("batch");
    let a = gray_crop();
    let img = io::read_input(shared("images/gray/Set12/01.png")).unwrap();
    let b = crop(&img, 10, 20, 40, 48);
    let input = dir.join("batch.npy");
    io::write_npy_batch(&input, &[a.clone(), b.clone()]).unwrap();
    let single = dir.join("single.npy");
    io::write_npy(&single, &[1, 40, 48], &a.data).unwrap();
    let out = dir.join("out.npy");
    let lines = ok(prior(&[
        "denoise",
        "-m",
        s(&gray_model()),
        "-i",
        s(&input),
        "-o",
        s(&out),
        "--add-noise",
        "25",
        "--json",
    ]));
    let v: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v.len(), 2, "{lines}");
    for (k, line) in v.iter().enumerate() {
        assert_eq!(line["index"], k);
        assert!(
            line["psnr_output"].as_f64().unwrap() > line["psnr_input"].as_f64().unwrap() + 3.0,
            "{line}"
        );
    }
    let got = io::read_npy(&out).unwrap();
    assert_eq!(got.shape, vec![2, 1, 40, 48]);
    let one = dir.join("one.npy");
    ok(prior(&[
        "denoise",
        "-m",
        s(&gray_model()),
        "-i",
        s(&single),
        "-o",
        s(&one),
        "--add-noise",
        "25",
    ]));
    let one = io::read_input(&one).unwrap();
    let e = one
        .data
        .iter()
        .zip(&got.data[..40 * 48])
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(e < 1e-6, "batch element 0 vs the single-image run: {e}");
    // element 1's noise continues the stream: PSNR of its noisy input is that of offset 40·48
    let mut noisy_b = b.clone();
    let key = prior_ops::reference::rng::key(0, 25_000);
    for (i, x) in noisy_b.data.iter_mut().enumerate() {
        *x +=
            (25.0f64 / 255.0) as f32 * prior_ops::reference::rng::normal(key, (40 * 48 + i) as u32);
    }
    let want = prior_cli::metrics::psnr(&noisy_b.data, &b.data, 1.0);
    assert!((v[1]["psnr_input"].as_f64().unwrap() - want).abs() < 1e-9);

    let e = fails(prior(&[
        "denoise",
        "-m",
        s(&gray_model()),
        "-i",
        s(&input),
        "-o",
        s(&dir.join("x.png")),
    ]));
    assert!(e.contains("batch of 2 images") && e.contains(".npy"), "{e}");
    let e = fails(prior(&[
        "denoise",
        "-m",
        s(&gray_model()),
        "-i",
        s(&input),
        "-o",
        s(&dir.join("y.npy")),
        "--clean",
        s(&single),
    ]));
    assert!(e.contains("clean reference holds 1 image"), "{e}");
}

#[test]
fn denoise_directory_of_two_files() {
    let dir = scratch("dir");
    let (inp, outdir) = (dir.join("in"), dir.join("out"));
    std::fs::create_dir_all(&inp).unwrap();
    let img = io::read_input(shared("images/gray/Set12/02.png")).unwrap();
    io::write_output(inp.join("first.png"), &crop(&img, 0, 0, 24, 32)).unwrap();
    io::write_npy(
        inp.join("second.npy"),
        &[1, 32, 24],
        &crop(&img, 50, 60, 32, 24).data,
    )
    .unwrap();
    std::fs::write(inp.join("notes.txt"), "not an image").unwrap();
    // References found by stem in another format.
    let refs = dir.join("refs");
    std::fs::create_dir_all(&refs).unwrap();
    io::write_npy(
        refs.join("first.npy"),
        &[24, 32],
        &crop(&img, 0, 0, 24, 32).data,
    )
    .unwrap();
    io::write_output(refs.join("second.png"), &crop(&img, 50, 60, 32, 24)).unwrap();
    let out = ok(prior(&[
        "denoise",
        "-m",
        s(&gray_model()),
        "-i",
        s(&inp),
        "-o",
        s(&outdir),
        "--format",
        "npy",
        "--add-noise",
        "30",
        "--clean",
        s(&refs),
    ]));
    assert!(out.contains("mean PSNR over 2 images"), "{out}");
    assert!(out.contains("noise σ = 30/255"), "{out}");
    assert_eq!(
        io::read_input(outdir.join("first.npy")).unwrap().shape(),
        [1, 24, 32]
    );
    assert_eq!(
        io::read_input(outdir.join("second.npy")).unwrap().shape(),
        [1, 32, 24]
    );
    let mut names: Vec<_> = std::fs::read_dir(&outdir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    // .prior-run.json records the settings, so that a rerun resumes (prior_cli::shard).
    assert_eq!(
        names,
        [".prior-run.json", "first.npy", "second.npy"],
        "exactly one output per input, no temporary files left"
    );
}

#[test]
fn denoise_refuses_to_overwrite_its_input() {
    let dir = scratch("overwrite");
    let input = dir.join("a.png");
    io::write_output(&input, &gray_crop()).unwrap();
    let before = std::fs::read(&input).unwrap();
    let err = fails(prior(&[
        "denoise",
        "-m",
        s(&gray_model()),
        "-i",
        s(&input),
        "-o",
        s(&input),
    ]));
    assert!(
        err.contains("refusing to write the output over input file"),
        "{err}"
    );
    // Directory mode writing PNGs back into the input directory.
    let err = fails(prior(&[
        "denoise",
        "-m",
        s(&gray_model()),
        "-i",
        s(&dir),
        "-o",
        s(&dir),
    ]));
    assert!(err.contains("refusing"), "{err}");
    assert_eq!(std::fs::read(&input).unwrap(), before);
}

#[test]
fn denoise_errors_are_clear() {
    let dir = scratch("errors");
    let input = dir.join("a.png");
    io::write_output(&input, &gray_crop()).unwrap();
    let out = dir.join("out.png");

    let err = fails(prior(&[
        "denoise",
        "-m",
        s(&dir.join("missing.pt")),
        "-i",
        s(&input),
        "-o",
        s(&out),
    ]));
    assert!(err.contains("missing.pt: model file not found"), "{err}");

    let err = fails(prior(&[
        "denoise",
        "-m",
        s(&gray_model()),
        "-i",
        s(&dir.join("nope.png")),
        "-o",
        s(&out),
    ]));
    assert!(err.contains("nope.png: file not found"), "{err}");

    // An image given as the model.
    let err = fails(prior(&[
        "denoise",
        "-m",
        s(&input),
        "-i",
        s(&input),
        "-o",
        s(&out),
    ]));
    assert!(
        err.contains("cannot load the model") && err.contains("a.png"),
        "{err}"
    );

    // A gray model on a colour image.
    let rgb = io::read_input(shared("images/color/Set5/baby.png")).unwrap();
    assert_eq!(rgb.c, 3);
    let rgb_path = dir.join("rgb.png");
    io::write_output(&rgb_path, &crop(&rgb, 0, 0, 16, 16)).unwrap();
    let err = fails(prior(&[
        "denoise",
        "-m",
        s(&gray_model()),
        "-i",
        s(&rgb_path),
        "-o",
        s(&out),
    ]));
    assert!(
        err.contains("grayscale") && err.contains("colour") && err.contains("BSD300_color"),
        "{err}"
    );
    assert!(!out.exists());
}
