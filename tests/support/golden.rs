//! Golden cases written by `tests/golden/make_golden.py` (PyTorch).

use std::path::PathBuf;

use prior_cli::io::{read_npy, NpyArray};

/// One folder of `tests/golden`.
pub struct Case {
    /// The folder's name.
    pub name: String,
    /// The folder, `tests/golden/<name>`.
    pub dir: PathBuf,
    /// The case's `meta.json`.
    pub meta: serde_json::Value,
}

impl Case {
    /// Reads the case `name`; panics when its `meta.json` is missing or unreadable.
    pub fn open(name: &str) -> Case {
        let dir = crate::paths::golden().join(name);
        let text = std::fs::read_to_string(dir.join("meta.json"))
            .unwrap_or_else(|e| panic!("golden {name}: meta.json: {e}"));
        Case {
            name: name.to_string(),
            meta: serde_json::from_str(&text).unwrap(),
            dir,
        }
    }
    /// An array of the case (`input`, `output`, `net`, ...).
    pub fn npy(&self, file: &str) -> NpyArray {
        read_npy(self.dir.join(format!("{file}.npy")))
            .unwrap_or_else(|e| panic!("golden {}: {e}", self.name))
    }
    /// The checkpoint the case was made with, in `../shared/checkpoints`.
    pub fn checkpoint(&self) -> PathBuf {
        let rel = self.meta["checkpoint"].as_str().expect("meta.checkpoint");
        crate::paths::shared().join("checkpoints").join(rel)
    }
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
