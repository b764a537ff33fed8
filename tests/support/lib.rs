//! Support code for the workspace tests and benches.
