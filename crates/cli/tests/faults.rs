//! GPU faults seen from the `prior` binary: an allocation the driver
//! refuses falls back to tiling, a hopeless one and a device lost mid-run
//! exit with code 1 and a clear message, never a panic, and leave no
//! partial output (only complete files of the images finished before).
//! Faults are provoked with `PRIOR_FAULT` (prior_gpu::FaultInjection).
//! Inputs are 40×48 crops so each BF-CNN pass takes a fraction of a second
//! on lavapipe.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prior_cli::io::{self, Image};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared");

fn gray_model() -> PathBuf {
    Path::new(SHARED).join("checkpoints/universal_inverse_problem/BSD400_gray/model.pt")
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fault-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn prior(fault: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_prior"));
    c.args(args);
    match fault {
        Some(f) => c.env("PRIOR_FAULT", f),
        None => c.env_remove("PRIOR_FAULT"),
    };
    c.output().expect("cannot run the prior binary")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "prior failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code 1, an `error:` line, no panic; returns stderr.
fn fails(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected exit code 1, stderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "prior panicked:\n{err}");
    assert!(err.contains("error: "), "no error message:\n{err}");
    err
}

/// `n` 40×48 crops of Set12/01.png, written as PNGs into `dir`.
fn crops(dir: &Path, n: usize) -> Vec<PathBuf> {
    crops_of(dir, n, 40, 48)
}

fn crops_of(dir: &Path, n: usize, h: usize, w: usize) -> Vec<PathBuf> {
    let img = io::read_input(Path::new(SHARED).join("images/gray/Set12/01.png")).unwrap();
    (0..n)
        .map(|k| {
            let (top, left) = (60 + 12 * k, 90);
            let mut data = Vec::with_capacity(h * w);
            for y in top..top + h {
                data.extend_from_slice(&img.data[y * img.w + left..y * img.w + left + w]);
            }
            let p = dir.join(format!("in{k}.png"));
            io::write_output(&p, &Image::new(1, h, w, data)).unwrap();
            p
        })
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_refused_allocation_falls_back_to_tiles_with_the_same_result() {
    let d = scratch("fallback");
    let input = crops_of(&d, 1, 96, 96).remove(0);
    let (want, got) = (d.join("want.npy"), d.join("got.npy"));
    let m = gray_model();
    ok(&prior(
        None,
        &["denoise", "-m", s(&m), "-i", s(&input), "-o", s(&want)],
    ));
    // One 96×96×64 activation is 2 359 296 bytes; the device refuses buffers over 2 000 000
    // (a tile needs 41×41 px with the BF-CNN's 20 px halo, 430 336 bytes).
    let err = ok(&prior(
        Some("alloc-limit=2000000"),
        &["denoise", "-m", s(&m), "-i", s(&input), "-o", s(&got)],
    ));
    assert!(err.contains("retrying in tiles"), "{err}");
    let (a, b) = (io::read_npy(&want).unwrap(), io::read_npy(&got).unwrap());
    assert_eq!(a.shape, b.shape);
    // Tiles overlap by the receptive field, so each output pixel sees the
    // same inputs; only the summation order of the convolutions may change.
    let worst = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "tiled result differs by {worst}");
}

#[test]
fn a_hopeless_allocation_is_a_clear_error_and_writes_nothing() {
    let d = scratch("hopeless");
    let input = crops(&d, 1).remove(0);
    let out = d.join("out.png");
    let m = gray_model();
    // The weights fit (the largest, 64×64×3×3, is 147 456 bytes), a 40×48×64
    // activation (491 520) does not, and the smallest tile (41×41 px with
    // the 20 px halo, 430 336 bytes) does not either.
    let err = fails(&prior(
        Some("alloc-limit=200000"),
        &["denoise", "-m", s(&m), "-i", s(&input), "-o", s(&out)],
    ));
    assert!(
        err.contains("in0.png: allocating a tensor [n=1, h=40, w=48, c=64]"),
        "names input and tensor: {err}"
    );
    assert!(err.contains("tiling did not help"), "{err}");
    assert_eq!(listing(&d), ["in0.png"], "no output, no temporary file");
    // Weights the device refuses are a model-loading error, before any image.
    let err = fails(&prior(
        Some("alloc-limit=2000"),
        &["denoise", "-m", s(&m), "-i", s(&input), "-o", s(&out)],
    ));
    assert!(err.contains("cannot load the model: allocating"), "{err}");
    assert_eq!(listing(&d), ["in0.png"]);
}

#[test]
fn a_device_lost_mid_run_stops_with_a_clear_error_and_no_partial_output() {
    let d = scratch("lost");
    let inputs = crops(&d, 4);
    let out = d.join("out");
    let m = gray_model();
    let mut args = vec!["denoise", "-m", s(&m), "--add-noise", "25", "-o"];
    args.push(s(&out));
    args.push("-i");
    args.extend(inputs.iter().map(|p| s(p)));
    // The whole run, for comparison.
    let full = d.join("full");
    let mut full_args = args.clone();
    full_args[6] = s(&full);
    ok(&prior(None, &full_args));
    assert_eq!(
        listing(&full)
            .iter()
            .filter(|n| n.ends_with(".png"))
            .count(),
        4
    );
    // Model upload, then one submission per image: the device goes at the third image.
    let err = fails(&prior(Some("lose-device=4"), &args));
    assert!(err.contains("was lost") && err.contains("in"), "{err}");
    let written: Vec<String> = listing(&out)
        .into_iter()
        .filter(|n| !n.starts_with(".prior-run"))
        .collect();
    assert!(written.len() < 4, "the run stopped early: {written:?}");
    for name in &written {
        assert!(
            !name.starts_with('.'),
            "a temporary file was left behind: {name}"
        );
        let a = std::fs::read(out.join(name)).unwrap();
        let b = std::fs::read(full.join(name)).unwrap();
        assert!(a == b, "{name} differs from the uninterrupted run's");
    }
}

#[test]
fn a_bad_fault_spec_is_refused() {
    let d = scratch("badspec");
    let input = crops(&d, 1).remove(0);
    let m = gray_model();
    let err = fails(&prior(
        Some("melt=1"),
        &[
            "denoise",
            "-m",
            s(&m),
            "-i",
            s(&input),
            "-o",
            s(&d.join("o.png")),
        ],
    ));
    assert!(
        err.contains("PRIOR_FAULT") && err.contains("unknown fault"),
        "{err}"
    );
}

#[test]
fn no_xdg_runtime_dir_noise_on_stderr() {
    for value in [None, Some(""), Some("relative/dir")] {
        let mut c = Command::new(env!("CARGO_BIN_EXE_prior"));
        c.arg("devices");
        match value {
            Some(v) => c.env("XDG_RUNTIME_DIR", v),
            None => c.env_remove("XDG_RUNTIME_DIR"),
        };
        let o = c.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(
            !err.contains("XDG_RUNTIME_DIR"),
            "XDG_RUNTIME_DIR={value:?}: {err}"
        );
    }
}
