//! `prior learn-measurements` end to end: a few steps with the tiny
//! random-weight BF-CNN of `tests/golden/olm/grad_random` on MNIST digits
//! (28×28, so each step stays around a second on lavapipe), the PCA and
//! random baselines, resuming, the evaluation path, and clear errors.

mod common;
use common::{prior, shared};

use std::path::Path;
use std::process::Output;

fn mnist() -> String {
    shared("images/mnist/t10k-images-idx3-ubyte.gz")
        .display()
        .to_string()
}

fn model() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden/olm/grad_random/weights.safetensors")
        .display()
        .to_string()
}

fn scratch(name: &str) -> std::path::PathBuf {
    common::scratch("learn-cli-tests", name)
}

/// `prior learn-measurements -m md --train mn ARGS...`.
fn learn(md: &str, mn: &str, args: &[&str]) -> Output {
    let mut all = vec!["learn-measurements", "-m", md, "--train", mn];
    all.extend_from_slice(args);
    prior(&all)
}

/// Reads an f32 `.npy` written by prior: (shape, values).
fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let a = prior_cli::io::read_npy(path).unwrap();
    (a.shape, a.data)
}

fn max_gram_error(n: usize, d: usize, m: &[f32]) -> f64 {
    let mut e: f64 = 0.0;
    for i in 0..n {
        for j in 0..n {
            let s: f64 = (0..d)
                .map(|k| m[i * d + k] as f64 * m[j * d + k] as f64)
                .sum();
            e = e.max((s - if i == j { 1.0 } else { 0.0 }).abs());
        }
    }
    e
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn learns_resumes_and_evaluates() {
    let dir = scratch("learn");
    let out = dir.join("m.npy");
    let (mn, md) = (mnist(), model());
    let base = [
        "learn-measurements",
        "-m",
        &md,
        "--train",
        &mn,
        "--range",
        "0..8",
        "--count",
        "4",
        "--batch",
        "2",
        "--average",
        "2",
        "--unroll",
        "3",
        "--lr",
        "0.01",
        "-o",
        out.to_str().unwrap(),
    ];
    let mut args = base.to_vec();
    args.extend(["--steps", "3"]);
    let o = prior(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (shape, m1) = npy(&out);
    assert_eq!(shape, vec![4, 784]);
    // f32 rows, orthonormalised in f64: ~1e-7 off.
    assert!(max_gram_error(4, 784, &m1) <= 1e-5);
    let meta = json(&dir.join("m.json"));
    let curve = meta["loss_curve"].as_array().unwrap();
    assert_eq!(curve.len(), 3);
    assert!(curve.iter().all(|c| c["loss"].as_f64().unwrap() > 0.0));
    assert_eq!(meta["method"], "learned");
    assert_eq!(meta["unroll"], 3);

    // The random initialisation under the same seed is where it started,
    // and three steps at lr 0.01 moved it.
    let rnd = dir.join("r.npy");
    let o = learn(
        &md,
        &mn,
        &[
            "--range",
            "0..8",
            "--count",
            "4",
            "--method",
            "random",
            "-o",
            rnd.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (_, r) = npy(&rnd);
    let moved = r
        .iter()
        .zip(&m1)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(moved > 1e-3, "training did not move M ({moved})");

    // Resume for one more step, then evaluate without training.
    let out2 = dir.join("m2.npy");
    let o = learn(
        &md,
        &mn,
        &[
            "--range",
            "0..8",
            "--count",
            "4",
            "--steps",
            "0",
            "--resume",
            out.to_str().unwrap(),
            "--eval",
            "9000..9002",
            "--eval-average",
            "1",
            "--eval-unroll",
            "3",
            "-o",
            out2.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("mean PSNR"), "{stdout}");
    let (_, m2) = npy(&out2);
    let same = m1
        .iter()
        .zip(&m2)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(same < 1e-6, "resume with 0 steps changed M by {same}");
    let e = &json(&dir.join("m2.json"))["eval"];
    assert_eq!(e["images"], 2);
    // A random-weight network reconstructs nothing useful: the PSNR is
    // only checked to be a number (the README table uses the real model).
    let p = e["mean_psnr"].as_f64().unwrap();
    assert!(p.is_finite(), "{p}");
    assert_eq!(e["psnr"].as_array().unwrap().len(), 2);
}

#[test]
fn pca_rows_are_the_leading_components() {
    let dir = scratch("pca");
    let out = dir.join("p.npy");
    let (mn, md) = (mnist(), model());
    let o = learn(
        &md,
        &mn,
        &[
            "--range",
            "0..200",
            "--count",
            "3",
            "--method",
            "pca",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (shape, p) = npy(&out);
    assert_eq!(shape, vec![3, 784]);
    assert!(max_gram_error(3, 784, &p) <= 1e-5);
    // The variance of the digits along each row decreases.
    let digits = prior_cli::cmd::logp::read_idx_images(Path::new(&mn), Some(0..200), 1).unwrap();
    let var: Vec<f64> = (0..3)
        .map(|k| {
            let proj: Vec<f64> = digits
                .iter()
                .map(|im| {
                    im.data
                        .iter()
                        .zip(&p[k * 784..(k + 1) * 784])
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum()
                })
                .collect();
            let m = proj.iter().sum::<f64>() / proj.len() as f64;
            proj.iter().map(|v| (v - m).powi(2)).sum::<f64>() / proj.len() as f64
        })
        .collect();
    assert!(var[0] > var[1] && var[1] > var[2], "{var:?}");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = scratch("errors");
    let (mn, md) = (mnist(), model());
    let out = dir.join("m.npy");
    // A --resume matrix of the wrong width names the file and both shapes.
    let wrong = dir.join("wrong.npy");
    std::fs::write(
        &wrong,
        prior_cli::io::encode_npy(&[4, 100], &vec![0.1; 400]),
    )
    .unwrap();
    let o = learn(
        &md,
        &mn,
        &[
            "--range",
            "0..8",
            "--count",
            "4",
            "--resume",
            wrong.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("wrong.npy") && e.contains("[4, 784]"), "{e}");
    // More measurements than pixels.
    let o = learn(
        &md,
        &mn,
        &[
            "--range",
            "0..8",
            "--count",
            "785",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("785") && e.contains("784"), "{e}");
    // Not a .npy output.
    let o = learn(
        &md,
        &mn,
        &["--count", "4", "-o", dir.join("m.png").to_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(".npy"));
    assert!(!out.exists());
}
