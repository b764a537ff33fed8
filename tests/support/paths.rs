//! Where the shared data and goldens are.

use std::path::PathBuf;

/// The repository root (override with `PRIOR_REPO`: bench binaries built
/// here and run in a copy of the tree elsewhere, see `benches/device.sh`).
pub fn repo() -> PathBuf {
    std::env::var_os("PRIOR_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// `../shared` beside the checkout (override with `PRIOR_SHARED`).
pub fn shared() -> PathBuf {
    std::env::var_os("PRIOR_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared"))
}

/// `tests/golden`.
pub fn golden() -> PathBuf {
    repo().join("tests/golden")
}
