//! `--shard I/N` and resumed runs write byte for byte what one
//! uninterrupted run writes: a run killed with SIGKILL mid-way and rerun,
//! three shards, and `logp --json -o OUT.jsonl` appended across reruns.
//! Inputs are small crops (BF-CNN) and MNIST digits (the tiny energy model)
//! so each run takes seconds on lavapipe.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use prior_cli::io::{self, Image};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared");

fn shared(rel: &str) -> PathBuf {
    Path::new(SHARED).join(rel)
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("shard-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cmd(args: &[String], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_prior"));
    c.args(args).env_remove("PRIOR_FAULT");
    for k in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "JOB_COMPLETION_INDEX",
        "PRIOR_SHARD_COUNT",
    ] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn run(args: &[String], env: &[(&str, &str)]) -> Output {
    cmd(args, env)
        .output()
        .expect("cannot run the prior binary")
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "prior failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `n` h×w crops of Set12/01.png as PNGs in `dir/in`.
fn crops(dir: &Path, n: usize, h: usize, w: usize) -> Vec<String> {
    let img = io::read_input(shared("images/gray/Set12/01.png")).unwrap();
    let d = dir.join("in");
    std::fs::create_dir_all(&d).unwrap();
    (0..n)
        .map(|k| {
            let (top, left) = (10 + 9 * k, 20 + 5 * k);
            let mut data = Vec::with_capacity(h * w);
            for y in top..top + h {
                data.extend_from_slice(&img.data[y * img.w + left..y * img.w + left + w]);
            }
            let p = d.join(format!("im{k:02}.png"));
            io::write_output(&p, &Image::new(1, h, w, data)).unwrap();
            p.display().to_string()
        })
        .collect()
}

/// Visible files of `dir` with their bytes, sorted by name.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn denoise_args(inputs: &[String], out: &Path, extra: &[&str]) -> Vec<String> {
    let m = shared("checkpoints/universal_inverse_problem/BSD400_gray/model.pt");
    let mut a: Vec<String> = [
        "denoise",
        "-m",
        m.to_str().unwrap(),
        "--add-noise",
        "25",
        "--seed",
        "3",
        "-o",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(format!("{}/", out.display()));
    a.extend(extra.iter().map(|s| s.to_string()));
    a.push("-i".into());
    a.extend(inputs.iter().cloned());
    a
}

#[test]
fn shards_together_write_what_one_run_writes() {
    let d = scratch("shards");
    let inputs = crops(&d, 7, 40, 40);
    ok(run(&denoise_args(&inputs, &d.join("whole"), &[]), &[]));
    let whole = contents(&d.join("whole"));
    assert_eq!(whole.len(), 7);
    let parts = d.join("parts");
    let mut sizes = Vec::new();
    for i in 0..3 {
        let spec = format!("{i}/3");
        ok(run(
            &denoise_args(&inputs, &parts, &["--shard", &spec]),
            &[],
        ));
        sizes.push(contents(&parts).len());
    }
    assert_eq!(sizes, [2, 4, 7], "slices [0,2), [2,4), [4,7) of 7");
    assert!(
        contents(&parts) == whole,
        "sharded outputs differ from the single run's"
    );
    // The same slices from a Slurm array (1-based ids) and a Kubernetes Indexed Job.
    let slurm = d.join("slurm");
    for id in ["1", "2", "3"] {
        let env = [
            ("SLURM_ARRAY_TASK_ID", id),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        ok(run(
            &denoise_args(&inputs, &slurm, &["--shard", "auto"]),
            &env,
        ));
    }
    assert!(contents(&slurm) == whole);
    let k8s = d.join("k8s");
    for i in ["0", "1", "2"] {
        ok(run(
            &denoise_args(&inputs, &k8s, &["--shard", "auto", "--shard-count", "3"]),
            &[("JOB_COMPLETION_INDEX", i)],
        ));
    }
    assert!(contents(&k8s) == whole);
}

#[test]
fn a_run_killed_mid_way_resumes_to_the_same_bytes() {
    let d = scratch("killed");
    let inputs = crops(&d, 12, 64, 64);
    ok(run(&denoise_args(&inputs, &d.join("whole"), &[]), &[]));
    let whole = contents(&d.join("whole"));
    assert_eq!(whole.len(), 12);

    let out = d.join("out");
    let args = denoise_args(&inputs, &out, &[]);
    let mut child = cmd(&args, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL: no cleanup) once the first outputs are there.
    let t0 = Instant::now();
    loop {
        let done = out.is_dir() && contents(&out).len() >= 2;
        if done || t0.elapsed() > Duration::from_secs(300) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = contents(&out).len();
    assert!(
        (2..12).contains(&before),
        "killed after {before} of 12 outputs"
    );
    // What was written is complete and right; a temporary file may be left
    // by the kill but is never mistaken for an output.
    for (name, bytes) in contents(&out) {
        assert!(
            whole.iter().any(|(n, b)| *n == name && *b == bytes),
            "{name} is not the uninterrupted run's"
        );
    }

    let err = ok(run(&args, &[]));
    assert!(
        err.contains(&format!("resuming: {before} output(s)")),
        "{err}"
    );
    assert!(
        contents(&out) == whole,
        "the resumed run differs from the uninterrupted one"
    );

    // Other settings (another seed) are another run: everything is recomputed.
    let mut other = args.clone();
    let seed = other.iter().position(|a| a == "--seed").unwrap() + 1;
    other[seed] = "4".into();
    let err = ok(run(&other, &[]));
    assert!(!err.contains("resuming"), "{err}");
    let changed = contents(&out);
    assert_eq!(changed.len(), 12);
    assert!(
        changed.iter().zip(&whole).all(|(a, b)| a.1 != b.1),
        "a seed-4 output equals the seed-3 one"
    );
}

fn logp_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let m = shared("checkpoints/dual_score_matching/mnist32_gray_tiny/model.pth.tar");
    let mnist = shared("images/mnist/t10k-images-idx3-ubyte.gz");
    let mut a: Vec<String> = [
        "logp",
        "-m",
        m.to_str().unwrap(),
        "-i",
        mnist.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(
        [
            "--range", "100..109", "--log-z", "3551.7", "--batch", "4", "--json", "-o",
        ]
        .map(String::from),
    );
    a.push(out.display().to_string());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn logp_jsonl_appends_skips_what_is_there_and_shards_agree() {
    let d = scratch("logp");
    let whole = d.join("whole.jsonl");
    let o = run(&logp_args(&whole, &[]), &[]);
    assert!(o.stdout.is_empty(), "with -o the records go to the file");
    ok(o);
    let want = std::fs::read_to_string(&whole).unwrap();
    let lines: Vec<&str> = want.lines().collect();
    assert_eq!(lines.len(), 9);
    assert!(
        lines[0].contains("#100\"") && lines[8].contains("#108\""),
        "{want}"
    );

    // A run killed after four records, the fifth torn: the rerun cuts the
    // torn line, skips the four and appends the rest, in order.
    let resumed = d.join("resumed.jsonl");
    let cut = lines[..4]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        + &lines[4][..20];
    std::fs::write(&resumed, cut).unwrap();
    ok(run(&logp_args(&resumed, &[]), &[]));
    assert_eq!(std::fs::read_to_string(&resumed).unwrap(), want);
    // Rerunning a finished run adds nothing.
    ok(run(&logp_args(&resumed, &[]), &[]));
    assert_eq!(std::fs::read_to_string(&resumed).unwrap(), want);

    // Three shards into one file, in shard order, give the same lines.
    let sharded = d.join("sharded.jsonl");
    for i in 0..3 {
        ok(run(
            &logp_args(&sharded, &["--shard", &format!("{i}/3")]),
            &[],
        ));
    }
    assert_eq!(std::fs::read_to_string(&sharded).unwrap(), want);

    // A file that is not a logp record file is not appended to.
    let foreign = d.join("foreign.jsonl");
    std::fs::write(&foreign, "{\"something\": 1}\n").unwrap();
    let o = run(&logp_args(&foreign, &[]), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("line 1 is not a `prior logp --json` record")
    );
    assert_eq!(
        std::fs::read_to_string(&foreign).unwrap(),
        "{\"something\": 1}\n"
    );
}

#[test]
fn score_over_a_folder_shards_and_resumes() {
    let d = scratch("score");
    // Three 32×32 digits as .npy inputs.
    let digits = prior_cli::cmd::logp::read_idx_images(
        &shared("images/mnist/t10k-images-idx3-ubyte.gz"),
        Some(0..3),
        32,
    )
    .unwrap();
    let inp = d.join("in");
    std::fs::create_dir_all(&inp).unwrap();
    for (k, im) in digits.iter().enumerate() {
        io::write_npy(inp.join(format!("d{k}.npy")), &[1, 32, 32], &im.data).unwrap();
    }
    let m = shared("checkpoints/dual_score_matching/mnist32_gray_tiny/model.pth.tar");
    let args = |out: &Path, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = vec![
            "score".into(),
            "-m".into(),
            m.display().to_string(),
            "-i".into(),
        ];
        a.push(inp.display().to_string());
        a.extend(["--t", "0.01", "--dudt-out"].map(String::from));
        a.push(out.join("dudt").display().to_string());
        a.push("-o".into());
        a.push(out.join("grad").display().to_string());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let whole = d.join("whole");
    ok(run(&args(&whole, &[]), &[]));
    assert_eq!(contents(&whole.join("grad")).len(), 3);
    let parts = d.join("parts");
    ok(run(&args(&parts, &["--shard", "1/2"]), &[]));
    assert_eq!(
        contents(&parts.join("grad"))
            .iter()
            .map(|f| f.0.clone())
            .collect::<Vec<_>>(),
        ["d1.npy", "d2.npy"]
    );
    ok(run(&args(&parts, &["--shard", "0/2"]), &[]));
    let err = ok(run(&args(&parts, &[]), &[]));
    assert!(err.contains("resuming: 3 input(s)"), "{err}");
    assert!(contents(&parts.join("grad")) == contents(&whole.join("grad")));
    assert!(contents(&parts.join("dudt")) == contents(&whole.join("dudt")));
}

#[test]
fn sample_shards_draw_the_samples_of_one_batch_run() {
    let d = scratch("sample");
    let m = shared("checkpoints/universal_inverse_problem/BSD400_gray/model.pt");
    let args = |out: &Path, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = vec!["sample".into(), "-m".into(), m.display().to_string()];
        a.extend(
            [
                "--size",
                "24x24",
                "--samples",
                "3",
                "--max-iters",
                "12",
                "--seed",
                "5",
                "-o",
            ]
            .map(String::from),
        );
        a.push(out.display().to_string());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let whole = d.join("whole.npy");
    ok(run(&args(&whole, &[]), &[]));
    let batch = io::read_npy_batch(&whole).unwrap();
    assert_eq!(batch.len(), 3);
    let part = d.join("part.npy");
    ok(run(&args(&part, &["--shard", "1/2"]), &[]));
    ok(run(&args(&part, &["--shard", "0/2"]), &[]));
    for (k, want) in batch.iter().enumerate() {
        let got = io::read_npy(d.join(format!("part_{k}.npy"))).unwrap();
        assert_eq!(got.shape, [1, 24, 24]);
        assert!(
            got.data == want.data,
            "sample {k} of the shards differs from the single run's"
        );
    }
    // Rerunning a finished shard draws nothing.
    let err = ok(run(&args(&part, &["--shard", "0/2"]), &[]));
    assert!(err.contains("already"), "{err}");
}
