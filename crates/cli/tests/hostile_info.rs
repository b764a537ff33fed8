//! `prior info -m FILE` on every file of picklescan's test corpus
//! (`../shared/reference/picklescan`, recursive): each run must fail with a
//! message that names the file and its real format, must not panic, and must
//! write nothing (it runs in an empty temporary working directory, checked
//! afterwards). The same files through the library: crates/models/tests/hostile_files.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if !matches!(
                p.file_name().and_then(|n| n.to_str()),
                Some("LICENSE" | "README.md")
            ) {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/picklescan");
    let mut out = Vec::new();
    walk(
        &root.canonicalize().expect("../shared/reference/picklescan"),
        &mut out,
    );
    out
}

/// The phrase naming each file's real format (as in the library test).
fn expected_phrase(name: &str) -> &'static str {
    match name {
        "bad_pytorch.pt" => "a PNG image",
        "benign_password_protected.zip" | "malicious1_0x1.zip" => "password-protected",
        "malicious1.7z" => "a 7z archive",
        "malicious1.zip" | "malicious1_central_directory.zip" => "unsupported pickle global",
        "new_pytorch_model.bin" => "no state_dict found: the checkpoint holds a tensor",
        "pytorch_model.bin" => "cannot determine the architecture",
        "malicious1_crc.zip" => "CRC-32 checksum does not match",
        "malicious1_wrong_ext.zip" | "malicious1_0x20.zip" | "malicious1_0x40.zip" => {
            "zip archive without a <folder>/data.pkl"
        }
        "not_a_pickle.bin" => "no known file signature",
        n if n.ends_with(".npy") => "a NumPy .npy array",
        n if n.ends_with(".npz") => "a NumPy .npz archive",
        _ => "a bare pickle stream",
    }
}

#[test]
fn prior_info_refuses_every_picklescan_file_and_writes_nothing() {
    let files = corpus_files();
    assert!(files.len() >= 109, "only {} corpus files", files.len());
    let cwd = std::env::temp_dir().join(format!("prior-hostile-info-{}", std::process::id()));
    std::fs::create_dir_all(&cwd).unwrap();
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_prior"))
            .current_dir(&cwd)
            .args(["info", "-m"])
            .arg(path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let want = expected_phrase(name);
        if out.status.success() {
            failures.push(format!("{name}: prior info succeeded"));
        } else if out.status.code() != Some(1) && out.status.code() != Some(2) {
            failures.push(format!(
                "{name}: exit status {:?} (a crash?): {stderr}",
                out.status
            ));
        }
        if stderr.contains("panicked") {
            failures.push(format!("{name}: panicked: {stderr}"));
        }
        if !stderr.contains(&path.display().to_string()) || !stderr.contains(want) {
            failures.push(format!(
                "{name}: expected the path and {want:?} in: {stderr}"
            ));
        }
    }
    let left: Vec<_> = std::fs::read_dir(&cwd)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    std::fs::remove_dir_all(&cwd).unwrap();
    assert!(left.is_empty(), "prior info wrote {left:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!(
        "prior info refused all {} picklescan files, wrote nothing",
        files.len()
    );
}
