//! Support code shared by the workspace tests (`tests/*.rs`) and benches
//! (`benches/*.rs`): paths to `../shared` and the goldens, npy loading of
//! goldens, comparisons, and the PyTorch side of the benches.

pub mod bench;
pub mod golden;
pub mod paths;
