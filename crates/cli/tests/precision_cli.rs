//! `prior denoise --precision f16` against f32 on a 64×64 crop of Set12
//! 04.png at σ = 25 (the BSD400 BF-CNN), the bounds: PSNR within
//! 0.05 dB and max |f16 − f32| ≤ 1e-2 on the raw (.npy) outputs. (Measured
//! on lavapipe: see README "f16 storage"; all of Set12 is measured there.)

use std::path::Path;

mod common;
use common::{prior, scratch, shared};

use prior_cli::io;

/// Runs `prior denoise` with `--precision p`; returns its JSON line and stderr.
fn denoise(input: &Path, output: &Path, p: &str) -> (serde_json::Value, String) {
    let model = shared("checkpoints/universal_inverse_problem/BSD400_gray/model.pt");
    let (m, i, out) = (
        model.display().to_string(),
        input.display().to_string(),
        output.display().to_string(),
    );
    let o = prior(&[
        "denoise",
        "-m",
        &m,
        "-i",
        &i,
        "-o",
        &out,
        "--add-noise",
        "25",
        "--seed",
        "0",
        "--json",
        "--precision",
        p,
    ]);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "prior failed:\n{out}\n{err}");
    let line = out.lines().last().expect("a JSON line");
    (serde_json::from_str(line).unwrap(), err)
}

#[test]
fn f16_denoise_is_within_the_bounds_of_f32() {
    let dir = scratch("precision-cli", "f16");
    let img = io::read_input(shared("images/gray/Set12/04.png")).unwrap();
    let (top, left, n) = (96, 96, 64);
    let data: Vec<f32> = (top..top + n)
        .flat_map(|y| img.data[y * img.w + left..y * img.w + left + n].to_vec())
        .collect();
    let input = dir.join("crop.npy");
    io::write_npy(&input, &[n, n], &data).unwrap();

    let (a, b) = (dir.join("f32.npy"), dir.join("f16.npy"));
    let (ja, _) = denoise(&input, &a, "f32");
    let (jb, err) = denoise(&input, &b, "f16");
    // lavapipe reports shader-f16; elsewhere the run must say it fell back.
    let fell_back = err.contains("lacks the shader-f16 feature");
    let ya = io::read_npy(&a).unwrap().data;
    let yb = io::read_npy(&b).unwrap().data;
    assert_eq!(ya.len(), n * n);
    let max = ya
        .iter()
        .zip(&yb)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    let (pa, pb) = (
        ja["psnr_output"].as_f64().unwrap(),
        jb["psnr_output"].as_f64().unwrap(),
    );
    eprintln!("64×64 crop, σ = 25: PSNR f32 {pa:.4} f16 {pb:.4} dB, max |f16 − f32| {max:.2e} (fell back: {fell_back})");
    if fell_back {
        assert_eq!(max, 0.0, "an f32 fallback must give the f32 result");
    }
    assert!(max <= 1e-2, "max |f16 − f32| = {max}");
    assert!((pa - pb).abs() <= 0.05, "PSNR f32 {pa} vs f16 {pb}");
}

#[test]
fn f16_is_refused_where_there_is_no_f16_path() {
    let dir = scratch("precision-cli", "mala");
    let model = shared("checkpoints/universal_inverse_problem/mnist_gray/model.pt");
    let (m, out) = (
        model.display().to_string(),
        dir.join("s.png").display().to_string(),
    );
    let o = prior(&[
        "sample",
        "-m",
        &m,
        "--size",
        "8x8",
        "--method",
        "mala",
        "--precision",
        "f16",
        "-o",
        &out,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("--precision f16 is available only for"),
        "{err}"
    );
}
