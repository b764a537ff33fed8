//! End-to-end tests of `prior sample` and `prior solve` on tiny images with
//! a few iterations (--max-iters), so the whole file runs in seconds on
//! lavapipe: JSON fields, outputs (batches, trajectory, plot), seeds
//! reproducing runs, and clear errors for bad tasks and parameters.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prior_cli::io::{self, Image};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared");

fn model(name: &str) -> String {
    Path::new(SHARED)
        .join(format!(
            "checkpoints/universal_inverse_problem/{name}/model.pt"
        ))
        .display()
        .to_string()
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("sample-solve-tests")
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

fn json(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().last().expect("a JSON line");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

fn err(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "unexpected success: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A 16×16 gray test image: a vertical edge and a ramp.
fn test_image(dir: &Path) -> String {
    let data: Vec<f32> = (0..256)
        .map(|i| 0.2 + 0.5 * ((i % 16) >= 8) as u8 as f32 + 0.01 * (i / 16) as f32)
        .collect();
    let p = dir.join("clean.png");
    io::write_output(&p, &Image::new(1, 16, 16, data)).unwrap();
    p.display().to_string()
}

#[test]
fn sample_writes_json_batches_trajectory_and_plot() {
    let d = scratch("sample");
    let out = d.join("s.npy");
    let traj = d.join("traj");
    let plot = d.join("sigma.png");
    let o = prior(&[
        "sample",
        "-m",
        &model("mnist_gray"),
        "--size",
        "12x12",
        "-o",
        out.to_str().unwrap(),
        "--max-iters",
        "4",
        "--samples",
        "2",
        "--trajectory",
        traj.to_str().unwrap(),
        "--every",
        "2",
        "--plot",
        plot.to_str().unwrap(),
        "--seed",
        "3",
        "--json",
    ]);
    let j = json(&o);
    assert_eq!(j["iterations"], serde_json::json!([4, 4]));
    assert_eq!(j["samples"], 2);
    assert!(j["seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(j["final_sigma"].as_array().unwrap().len(), 2);
    assert_eq!(
        j["beta"].as_f64().unwrap(),
        0.5,
        "sample defaults to the paper's synthesis β"
    );
    let arr = io::read_npy(&out).unwrap();
    assert_eq!(arr.shape, vec![2, 1, 12, 12]);
    for it in [2, 4] {
        for s in 0..2 {
            assert!(
                traj.join(format!("iter_{it:05}_{s}.png")).exists(),
                "trajectory {it} sample {s}"
            );
        }
    }
    let img = image::open(&plot).unwrap();
    assert_eq!((img.width(), img.height()), (640, 400));
    // The same seed reproduces the run bit for bit.
    let out2 = d.join("s2.npy");
    let o = prior(&[
        "sample",
        "-m",
        &model("mnist_gray"),
        "--size",
        "12x12",
        "-o",
        out2.to_str().unwrap(),
        "--max-iters",
        "4",
        "--samples",
        "2",
        "--seed",
        "3",
        "--json",
    ]);
    json(&o);
    assert_eq!(io::read_npy(&out2).unwrap().data, arr.data);
}

#[test]
fn solve_reports_psnr_for_every_task() {
    let d = scratch("solve");
    let clean = test_image(&d);
    for task in [
        vec!["inpaint", "--rect", "4,4,6,6"],
        vec!["pixels", "--fraction", "0.3"],
        vec!["superres", "--factor", "4"],
        vec!["cs", "--fraction", "0.25"],
        vec!["spectral", "--fraction", "0.3"],
    ] {
        let out = d.join(format!("{}.png", task[0]));
        let mut args = vec!["solve"];
        args.extend(&task);
        let m = model("BSD400_gray");
        args.extend([
            "-m",
            &m,
            "-i",
            &clean,
            "-o",
            out.to_str().unwrap(),
            "--max-iters",
            "3",
            "--json",
        ]);
        let j = json(&prior(&args));
        assert_eq!(j["task"], task[0]);
        assert_eq!(j["iterations"], 3);
        assert!(j["psnr_input"].as_f64().unwrap().is_finite(), "{j}");
        assert!(j["psnr"].as_f64().unwrap().is_finite(), "{j}");
        assert!(j["final_sigma"].as_f64().unwrap() > 0.0);
        assert!(out.exists());
    }
}

#[test]
fn superres_from_measurements() {
    let d = scratch("measured");
    let lo = d.join("lo.png");
    io::write_output(
        &lo,
        &Image::new(1, 4, 5, (0..20).map(|i| i as f32 / 20.0).collect()),
    )
    .unwrap();
    let out = d.join("hi.npy");
    let j = json(&prior(&[
        "solve",
        "superres",
        "--factor",
        "3",
        "--measured",
        "-m",
        &model("BSD400_gray"),
        "-i",
        lo.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--max-iters",
        "2",
        "--json",
    ]));
    assert!(j.get("psnr").is_none(), "no clean image, no PSNR");
    assert_eq!(io::read_npy(&out).unwrap().shape, vec![1, 12, 15]);
}

#[test]
fn bad_requests_are_clear_errors() {
    let d = scratch("errors");
    let clean = test_image(&d);
    let o = d.join("o.png");
    let o = o.to_str().unwrap();
    let m = model("BSD400_gray");
    let run = |extra: &[&str]| {
        let mut a = vec!["solve"];
        a.extend(extra);
        a.extend(["-m", &m, "-i", &clean, "-o", o, "--max-iters", "2"]);
        err(&prior(&a))
    };
    assert!(run(&["deblur"]).contains("invalid value"), "unknown task");
    assert!(run(&["superres", "--factor", "3"]).contains("not a multiple of the factor 3"));
    assert!(run(&["pixels"]).contains("--fraction"));
    assert!(run(&["inpaint"]).contains("--rect"));
    assert!(run(&["inpaint", "--rect", "10,10,10,10"]).contains("leaves"));
    assert!(run(&["spectral", "--fraction", "0.3", "--factor", "2"]).contains("does not apply"));
    assert!(run(&["cs", "--fraction", "0.3", "--measured"]).contains("--measured"));
    assert!(run(&["pixels", "--fraction", "0.3", "--beta", "0"]).contains("beta"));
    let e = err(&prior(&["sample", "-m", &m, "--size", "12by12", "-o", o]));
    assert!(e.contains("HxW"), "{e}");
    let e = err(&prior(&[
        "solve",
        "pixels",
        "--fraction",
        "0.3",
        "-m",
        &model("BSD300_color"),
        "-i",
        &clean,
        "-o",
        o,
    ]));
    assert!(e.contains("channel"), "{e}");
}

#[test]
fn sample_dispatches_to_the_multiscale_synthesis() {
    let d = scratch("multiscale");
    let out = d.join("ms.npy");
    let folder = Path::new(SHARED).join("checkpoints/local_probability_models/multi_scale_160_rf9");
    let j = json(&prior(&[
        "sample",
        "-m",
        folder.to_str().unwrap(),
        "--size",
        "16x16",
        "-o",
        out.to_str().unwrap(),
        "--max-iters",
        "3",
        "--json",
    ]));
    assert_eq!(j["model"], "multiscale");
    // J = 2: the low-pass, then the details of levels 1 and 0.
    let levels = j["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 3);
    assert_eq!(levels[0]["size"], serde_json::json!([4, 4]));
    assert_eq!(j["iterations"], 9);
    assert_eq!(io::read_npy(&out).unwrap().shape, vec![1, 16, 16]);
    let e = err(&prior(&[
        "sample",
        "-m",
        folder.to_str().unwrap(),
        "--size",
        "18x16",
        "-o",
        out.to_str().unwrap(),
    ]));
    assert!(e.contains("multiple"), "{e}");
}

/// `solve matrix`: identity rows of the known pixels, scaled by 2 (so not
/// orthonormal: a warning, then QR gives back the identity rows), span the
/// same measurements as inpainting that hole, so both runs give the same
/// result (same noise; the dense operator sums exact zeros). Bad matrices
/// are clear errors naming the file.
#[test]
fn solve_matrix_equals_inpaint_with_the_same_mask() {
    let d = scratch("matrix");
    let clean = test_image(&d);
    let (t, l, hh, ww) = (4usize, 5usize, 6usize, 7usize);
    let hole = |p: usize| (t..t + hh).contains(&(p / 16)) && (l..l + ww).contains(&(p % 16));
    let known: Vec<usize> = (0..256).filter(|&p| !hole(p)).collect();
    let mut rows = vec![0.0f32; known.len() * 256];
    for (k, &p) in known.iter().enumerate() {
        rows[k * 256 + p] = 2.0;
    }
    let m = d.join("m.npy");
    io::write_npy(&m, &[known.len(), 256], &rows).unwrap();
    let model = model("BSD400_gray");
    let run = |task: &[&str], out: &Path| {
        let mut args = vec!["solve"];
        args.extend(task);
        args.extend([
            "-m",
            &model,
            "-i",
            &clean,
            "-o",
            out.to_str().unwrap(),
            "--max-iters",
            "4",
            "--json",
        ]);
        prior(&args)
    };
    let (a, b) = (d.join("matrix.npy"), d.join("inpaint.npy"));
    let om = run(&["matrix", "--matrix", m.to_str().unwrap()], &a);
    assert!(
        String::from_utf8_lossy(&om.stderr).contains("not orthonormal"),
        "{}",
        String::from_utf8_lossy(&om.stderr)
    );
    let jm = json(&om);
    assert_eq!(jm["task"], "matrix");
    let rect = format!("{t},{l},{hh},{ww}");
    let ji = json(&run(&["inpaint", "--rect", &rect], &b));
    let (xa, xb) = (io::read_npy(&a).unwrap(), io::read_npy(&b).unwrap());
    let diff = xa
        .data
        .iter()
        .zip(&xb.data)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-4, "matrix vs inpaint: max |diff| {diff}");
    let (pm, pi) = (jm["psnr"].as_f64().unwrap(), ji["psnr"].as_f64().unwrap());
    assert!((pm - pi).abs() < 0.01, "psnr {pm} vs {pi}");

    // Errors: wrong D, a dependent row, a missing --matrix, --matrix elsewhere.
    let bad = d.join("bad.npy");
    io::write_npy(&bad, &[2, 255], &vec![1.0; 510]).unwrap();
    let e = err(&run(&["matrix", "--matrix", bad.to_str().unwrap()], &a));
    assert!(e.contains("bad.npy") && e.contains("256"), "{e}");
    let mut dep = vec![0.0f32; 3 * 256];
    dep[0] = 1.0;
    dep[256 + 1] = 1.0;
    dep[512] = 1.0;
    dep[512 + 1] = 1.0;
    io::write_npy(&bad, &[3, 256], &dep).unwrap();
    let e = err(&run(&["matrix", "--matrix", bad.to_str().unwrap()], &a));
    assert!(e.contains("row 2") && e.contains("rank"), "{e}");
    let e = err(&run(&["matrix"], &a));
    assert!(e.contains("--matrix"), "{e}");
    let e = err(&run(
        &[
            "pixels",
            "--fraction",
            "0.5",
            "--matrix",
            m.to_str().unwrap(),
        ],
        &a,
    ));
    assert!(e.contains("--matrix does not apply"), "{e}");
}
