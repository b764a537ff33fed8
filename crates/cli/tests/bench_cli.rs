//! `prior bench --json` on this adapter (lavapipe in CI): the ceiling and
//! each convolution's fraction of it are measured and plausible, and one
//! architecture is timed from its checkpoint. Asserts values, not speed.

use std::process::Command;

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/checkpoints");

#[test]
fn bench_json_reports_ceiling_fractions_and_models() {
    // The tuner's cache goes to a folder of the test's own, not the user's.
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-cli-tune-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let o = Command::new(env!("CARGO_BIN_EXE_prior"))
        .env("PRIOR_CACHE_DIR", &cache)
        .env("PRIOR_TUNE", "quick")
        .args([
            "bench",
            "--json",
            "--size",
            "32",
            "--reps",
            "1",
            "--checkpoints",
            SHARED,
        ])
        .output()
        .expect("cannot run prior");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "prior bench failed: {}{stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    let peak = v["fma_ceiling_gflops"].as_f64().unwrap();
    assert!(peak > 0.1 && peak.is_finite(), "ceiling {peak}");
    let convs = v["convolutions"].as_array().unwrap();
    // 4 conv shapes × (5 or 6 variants) + 2 transposed × (4 or 5).
    assert!(
        convs.len() >= 4 * 5 + 2 * 4,
        "{} convolution rows",
        convs.len()
    );
    for v in ["fixed", "tiled64x64", "tiled64x32", "tiled32x32", "naive"] {
        assert!(convs.iter().any(|c| c["variant"] == v), "no {v} row");
    }
    // With shader-f16 (lavapipe), one f16-storage row per shape.
    let f16_rows = convs.iter().filter(|c| c["variant"] == "f16").count();
    assert!(f16_rows == 0 || f16_rows == 6, "{f16_rows} f16 rows");
    // The tuner's pick per shape, timed now (the cache folder was empty),
    // one of the variants, and saved to the cache.
    let tuned = v["tuned"].as_array().unwrap();
    assert_eq!(tuned.len(), 6);
    for t in tuned {
        assert_eq!(t["source"], "timed", "{t}");
        let choice = t["choice"].as_str().unwrap();
        assert!(convs.iter().any(|c| c["variant"] == choice), "{t}");
    }
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
    for c in convs {
        let f = c["fraction_of_ceiling"].as_f64().unwrap();
        // A convolution moves memory the ceiling loop does not: below it,
        // allowing timing noise on a loaded machine.
        assert!(f > 0.0 && f < 1.5, "{}: fraction {f}", c["what"]);
        assert!(c["gflop"].as_f64().unwrap() > 0.0);
    }
    let models = v["models"].as_array().unwrap();
    let bfcnn = models
        .iter()
        .find(|m| m["architecture"] == "BF-CNN")
        .expect("a BF-CNN row");
    assert!(bfcnn["skipped"].is_null(), "{bfcnn}");
    assert!(bfcnn["seconds"].as_f64().unwrap() > 0.0);
    assert!(bfcnn["fraction_of_ceiling"].as_f64().unwrap() > 0.0);
    assert_eq!(models.len(), 6);
}

#[test]
fn bench_refuses_a_silly_size() {
    let o = Command::new(env!("CARGO_BIN_EXE_prior"))
        .args(["bench", "--size", "3", "--no-models"])
        .output()
        .expect("cannot run prior");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--size 3"));
}

/// `--profile`: the per-kernel GPU-time table after a denoise (lavapipe has
/// timestamp queries; an adapter without them gets a clear error instead).
#[test]
fn denoise_profile_prints_kernel_times() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-cli-profile");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("d.png");
    let o = Command::new(env!("CARGO_BIN_EXE_prior"))
        .args([
            "denoise",
            "-m",
            &format!("{SHARED}/universal_inverse_problem/BSD400_gray/model.pt"),
            "-i",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/images/gray/Set12/04.png"
            ),
            "--add-noise",
            "25",
            "-o",
            out.to_str().unwrap(),
            "--profile",
        ])
        .output()
        .expect("cannot run prior");
    let err = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() {
        assert!(err.contains("no timestamp queries"), "{err}");
        return;
    }
    assert!(err.contains("GPU time per kernel"), "{err}");
    // 20 conv layers: the conv kernels are there, with their call counts.
    let conv_calls: u64 = err
        .lines()
        .filter(|l| l.starts_with("conv2d"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(conv_calls, 20, "{err}");
}
