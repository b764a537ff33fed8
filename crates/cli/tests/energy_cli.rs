//! End-to-end tests of `prior logp`, `prior calibrate`, `prior score` and
//! `prior denoise` with the dual-score-matching energy model (the width-16
//! MNIST checkpoint), on a few 32×32 digits so they stay fast on lavapipe.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared");
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/golden");

fn model() -> PathBuf {
    Path::new(SHARED).join("checkpoints/dual_score_matching/mnist32_gray_tiny/model.pth.tar")
}

fn mnist() -> String {
    Path::new(SHARED)
        .join("images/mnist/t10k-images-idx3-ubyte.gz")
        .display()
        .to_string()
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("energy-cli-tests")
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

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "prior failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected a failure, got: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn logp_json_matches_pytorch_bits_per_dim() {
    let m = model();
    let out = ok(&prior(&[
        "logp",
        "-m",
        m.to_str().unwrap(),
        "-i",
        &mnist(),
        "--range",
        "9000..9002",
        "--log-z",
        "3551.7",
        "--json",
    ]));
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    // PyTorch float64 (tests/golden/energy_trained_t0/meta.json)
    for (v, want) in lines.iter().zip([4.871842, 5.663094]) {
        for k in ["file", "energy", "nats", "bits_per_dim", "db_per_dim"] {
            assert!(v.get(k).is_some(), "missing key {k} in {v}");
        }
        let b = v["bits_per_dim"].as_f64().unwrap();
        assert!((b - want).abs() < 0.01, "{b} vs {want}");
        let db = v["db_per_dim"].as_f64().unwrap();
        assert!((db - 10.0 * 2f64.log10() * b).abs() < 1e-9);
    }
    assert!(lines[0]["file"].as_str().unwrap().ends_with("#9000"));
}

/// An (N, C, H, W) `.npy` batch (what `prior sample --samples N -o x.npy`
/// writes) is scored image by image, named `file#k`, with the same values
/// as the digits themselves.
#[test]
fn logp_reads_an_npy_batch() {
    let d = scratch("logp_batch");
    let digits =
        prior_cli::cmd::logp::read_idx_images(Path::new(&mnist()), Some(9000..9002), 8).unwrap();
    let batch = d.join("two.npy");
    prior_cli::io::write_npy_batch(&batch, &digits).unwrap();
    let m = model();
    let out = ok(&prior(&[
        "logp",
        "-m",
        m.to_str().unwrap(),
        "-i",
        batch.to_str().unwrap(),
        "--log-z",
        "3551.7",
        "--json",
    ]));
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for (k, (v, want)) in lines.iter().zip([4.871842, 5.663094]).enumerate() {
        assert!(
            v["file"]
                .as_str()
                .unwrap()
                .ends_with(&format!("two.npy#{k}")),
            "{v}"
        );
        let b = v["bits_per_dim"].as_f64().unwrap();
        assert!((b - want).abs() < 0.01, "{b} vs {want}");
    }
}

#[test]
fn logp_without_log_z_says_how_to_calibrate() {
    let m = model();
    let e = err(&prior(&[
        "logp",
        "-m",
        m.to_str().unwrap(),
        "-i",
        &mnist(),
        "--range",
        "9000..9001",
    ]));
    assert!(
        e.contains("prior calibrate") && e.contains("--log-z"),
        "{e}"
    );
    let bf = Path::new(SHARED).join("checkpoints/universal_inverse_problem/mnist_gray/model.pt");
    let e = err(&prior(&[
        "logp",
        "-m",
        bf.to_str().unwrap(),
        "-i",
        &mnist(),
        "--log-z",
        "1",
    ]));
    assert!(e.contains("energy_unet"), "{e}");
    let e = err(&prior(&[
        "logp",
        "-m",
        m.to_str().unwrap(),
        "-i",
        &mnist(),
        "--range",
        "9990..10010",
        "--log-z",
        "1",
    ]));
    assert!(e.contains("beyond"), "{e}");
}

#[test]
fn calibrate_then_logp_with_histogram() {
    let d = scratch("calibrate");
    let m = model();
    let cal = d.join("cal.safetensors");
    let out = ok(&prior(&[
        "calibrate",
        "-m",
        m.to_str().unwrap(),
        "-i",
        &mnist(),
        "--range",
        "9000..9100",
        "--count",
        "8",
        "-o",
        cal.to_str().unwrap(),
    ]));
    assert!(out.contains("log Z ="), "{out}");
    let hist = d.join("hist.png");
    let out = ok(&prior(&[
        "logp",
        "-m",
        cal.to_str().unwrap(),
        "-i",
        &mnist(),
        "--range",
        "9000..9006",
        "--histogram",
        hist.to_str().unwrap(),
    ]));
    assert!(out.contains("6 images: mean"), "{out}");
    let img = image::open(&hist).unwrap();
    assert!(img.width() > 100 && img.height() > 100);
    let blob = prior_models::blob::WeightBlob::load(&cal).unwrap();
    assert_eq!(blob.meta("prior.log_z_count"), Some("8"));
    assert_eq!(blob.meta("prior.log_z_t"), Some("1000"));
}

#[test]
fn score_matches_golden_gradient_and_denoises() {
    let d = scratch("score");
    let m = model();
    // the first golden digit at t = 0.01 as a (1, 32, 32) .npy
    let input =
        prior_cli::io::read_npy(Path::new(GOLDEN).join("energy_trained_t0.01/input.npy")).unwrap();
    let grad =
        prior_cli::io::read_npy(Path::new(GOLDEN).join("energy_trained_t0.01/grad_y.npy")).unwrap();
    let dudt =
        prior_cli::io::read_npy(Path::new(GOLDEN).join("energy_trained_t0.01/dudt.npy")).unwrap();
    let y = d.join("y.npy");
    prior_cli::io::write_npy(&y, &[1, 32, 32], &input.data[..1024]).unwrap();
    let g = d.join("g.npy");
    let dd = d.join("dudt.npy");
    let den = d.join("den.npy");
    let out = ok(&prior(&[
        "score",
        "-m",
        m.to_str().unwrap(),
        "-i",
        y.to_str().unwrap(),
        "--t",
        "0.01",
        "-o",
        g.to_str().unwrap(),
        "--dudt-out",
        dd.to_str().unwrap(),
        "--denoised",
        den.to_str().unwrap(),
    ]));
    assert!(out.contains("∂U/∂t"), "{out}");
    let got = prior_cli::io::read_npy(&g).unwrap();
    assert_eq!(got.shape, vec![1, 32, 32]);
    let want = &grad.data[..1024];
    let scale = want.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let e = got
        .data
        .iter()
        .zip(want)
        .fold(0.0f32, |a, (x, y)| a.max((x - y).abs()))
        / scale;
    assert!(e < 1e-4, "grad_y relative error {e}");
    let dg = prior_cli::io::read_npy(&dd).unwrap().data[0];
    assert!(
        (dg - dudt.data[0]).abs() < 1e-4 * dudt.data[0].abs(),
        "{dg} vs {}",
        dudt.data[0]
    );
    let out_img = prior_cli::io::read_npy(&den).unwrap();
    for i in 0..1024 {
        assert!((out_img.data[i] - (input.data[i] - 0.01 * got.data[i])).abs() < 1e-5);
    }
    let e = err(&prior(&[
        "score",
        "-m",
        m.to_str().unwrap(),
        "-i",
        y.to_str().unwrap(),
        "--t",
        "-1",
        "-o",
        g.to_str().unwrap(),
    ]));
    assert!(e.contains("--t"), "{e}");
}

#[test]
fn denoise_accepts_the_energy_model() {
    let d = scratch("denoise");
    let m = model();
    let input =
        prior_cli::io::read_npy(Path::new(GOLDEN).join("energy_trained_t0.01/input.npy")).unwrap();
    let y = d.join("y.npy");
    prior_cli::io::write_npy(&y, &[1, 32, 32], &input.data[..1024]).unwrap();
    let o = d.join("x.npy");
    ok(&prior(&[
        "denoise",
        "-m",
        m.to_str().unwrap(),
        "-i",
        y.to_str().unwrap(),
        "-o",
        o.to_str().unwrap(),
    ]));
    let x = prior_cli::io::read_npy(&o).unwrap();
    // closer to the clean digit than the noisy input is
    let clean =
        prior_cli::io::read_npy(Path::new(GOLDEN).join("energy_trained_t0/input.npy")).unwrap();
    let mse = |a: &[f32]| {
        a.iter()
            .zip(&clean.data[..1024])
            .map(|(p, q)| (p - q).powi(2))
            .sum::<f32>()
            / 1024.0
    };
    let (before, after) = (mse(&input.data[..1024]), mse(&x.data));
    assert!(after < before / 2.0, "MSE {before} -> {after}");
}

/// `prior jacobian` on the energy model (J = I − t·∇²U at t = 0.01, the
/// golden digit): the adaptive filters at two pixels are rows 300 and 528 of
/// PyTorch's Jacobian (tests/golden/jac_energy_trained: sums and norms to
/// 1e-4), Hutchinson's trace is within 4 standard errors of PyTorch's
/// 145.2074, and the top singular value is s₁ = 1.8916 within 2 %.
#[test]
fn jacobian_of_the_energy_denoiser_matches_pytorch() {
    let m = model();
    let case = Path::new(GOLDEN).join("jac_energy_trained");
    let input = case.join("input.npy");
    let d = scratch("jacobian");
    let png = d.join("filters.png");
    let out = ok(&prior(&[
        "jacobian",
        "-m",
        m.to_str().unwrap(),
        "-i",
        input.to_str().unwrap(),
        "--t",
        "0.01",
        "--pixels",
        "9,12;16,16",
        "--filters",
        png.to_str().unwrap(),
        "--probes",
        "16",
        "--top-k",
        "2",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        v["model"].as_str().unwrap().contains("t = 0.01"),
        "{}",
        v["model"]
    );
    let rows = prior_cli::io::read_npy(case.join("rows.npy")).unwrap().data; // rows 0, 300, 528, 1023
    for (k, slot) in [(0usize, 1usize), (1, 2)] {
        let row = &rows[slot * 1024..(slot + 1) * 1024];
        let sum: f64 = row.iter().map(|v| *v as f64).sum();
        let norm: f64 = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        let f = &v["filters"][k];
        assert!(
            (f["sum"].as_f64().unwrap() - sum).abs() < 1e-4,
            "filter {k}: {f} vs sum {sum}"
        );
        assert!(
            (f["norm"].as_f64().unwrap() - norm).abs() < 1e-4,
            "filter {k}: {f} vs norm {norm}"
        );
    }
    let (tr, se) = (
        v["trace"].as_f64().unwrap(),
        v["trace_se"].as_f64().unwrap(),
    );
    assert!(
        (tr - 145.2074).abs() < 4.0 * se + 1e-3,
        "Hutchinson trace {tr} ± {se}"
    );
    let s1 = v["top_singular_values"][0].as_f64().unwrap();
    assert!((s1 - 1.8916).abs() < 0.02 * 1.8916, "s1 = {s1}");
    assert!(std::fs::metadata(&png).unwrap().len() > 0);
    // a negative noise variance is refused with a clear message
    let e = err(&prior(&[
        "jacobian",
        "-m",
        m.to_str().unwrap(),
        "-i",
        input.to_str().unwrap(),
        "--t=-1",
    ]));
    assert!(e.contains("--t -1"), "{e}");
}
