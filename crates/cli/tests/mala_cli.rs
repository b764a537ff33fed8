//! `prior sample --method mala` end to end on the MNIST energy fixture
//! (tiny runs: 2 samples of 16×16, a few levels, so they stay fast on
//! lavapipe), its refusal of models without an energy, and its `--help`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared");

fn energy_model() -> PathBuf {
    Path::new(SHARED).join("checkpoints/dual_score_matching/mnist32_gray_tiny/model.pth.tar")
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("mala-cli-tests")
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

#[test]
fn mala_writes_samples_and_reports_the_acceptance_per_level() {
    let dir = scratch("json");
    let out = dir.join("s.npy");
    let m = energy_model();
    let args = [
        "sample",
        "-m",
        m.to_str().unwrap(),
        "--method",
        "mala",
        "--size",
        "16x16",
        "--samples",
        "2",
        "--levels",
        "3",
        "--steps",
        "2",
        "--t-min",
        "0.01",
        "-o",
        out.to_str().unwrap(),
        "--json",
    ];
    let o = prior(&args);
    assert!(
        o.status.success(),
        "prior failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert_eq!(v["method"], "mala");
    assert_eq!(v["samples"], 2);
    assert_eq!(v["evaluations"], 3 * 3);
    let levels = v["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 3);
    let ts: Vec<f64> = levels.iter().map(|l| l["t"].as_f64().unwrap()).collect();
    // geometric from 1 to 0.01: 1, 0.1, 0.01 (f32)
    for (t, want) in ts.iter().zip([1.0, 0.1, 0.01]) {
        assert!((t - want).abs() <= 1e-6 * want, "{ts:?}");
    }
    for l in levels {
        let a = l["acceptance"].as_f64().unwrap();
        assert!(
            (0.0..=1.0).contains(&a) && (a * 4.0).fract() == 0.0,
            "2 chains × 2 steps: a multiple of 1/4, got {a}"
        );
        assert!(l["eps"].as_f64().unwrap() > 0.0);
    }
    // (N, C, H, W) = (2, 1, 16, 16) float32 .npy: header + 512 values, finite.
    let bytes = std::fs::read(&out).unwrap();
    assert!(bytes.starts_with(b"\x93NUMPY"));
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + header_len]);
    assert!(header.contains("(2, 1, 16, 16)"), "{header}");
    let data = &bytes[10 + header_len..];
    assert_eq!(data.len(), 2 * 16 * 16 * 4);
    assert!(data
        .chunks(4)
        .all(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite()));

    // The same seed gives the same file.
    let again = dir.join("s2.npy");
    let mut args2 = args;
    args2[args2.len() - 2] = again.to_str().unwrap();
    assert!(prior(&args2).status.success());
    assert_eq!(std::fs::read(&again).unwrap(), bytes);
}

#[test]
fn mala_refuses_a_denoiser_without_an_energy() {
    let dir = scratch("refuse");
    let bf = Path::new(SHARED).join("checkpoints/universal_inverse_problem/mnist_gray/model.pt");
    let out = dir.join("x.png");
    let o = prior(&[
        "sample",
        "-m",
        bf.to_str().unwrap(),
        "--method",
        "mala",
        "--size",
        "32x32",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("--method mala needs a model with an energy"),
        "{e}"
    );
    assert!(
        e.contains("mnist_gray/model.pt"),
        "the message names the file: {e}"
    );
    assert!(!out.exists());
}

#[test]
fn sample_help_documents_mala() {
    let o = prior(&["sample", "--help"]);
    let h = String::from_utf8_lossy(&o.stdout);
    for k in [
        "--method",
        "mala",
        "--levels",
        "--steps",
        "--t-max",
        "--t-min",
        "--step-scale",
        "--target-acceptance",
        "ε_l = c_l·t_l",
    ] {
        assert!(h.contains(k), "--help lacks {k}");
    }
}
