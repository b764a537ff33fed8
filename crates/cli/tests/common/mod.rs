//! Helpers shared by the CLI tests: where `../shared` is, a fresh scratch
//! folder, and running the `prior` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `rel` in `../shared` beside the checkout, or in `PRIOR_SHARED` (a git
/// worktree has no `../shared` of its own).
pub fn shared(rel: &str) -> PathBuf {
    match std::env::var_os("PRIOR_SHARED") {
        Some(d) => PathBuf::from(d).join(rel),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared")
            .join(rel),
    }
}

/// An empty folder `group/name` under the test target's temp dir.
pub fn scratch(group: &str, name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(group)
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `prior ARGS...`.
pub fn prior<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prior"))
        .args(args)
        .output()
        .expect("cannot run the prior binary")
}
