//! The prior command-line tool's library: image/array I/O and metrics.

pub mod cmd;
pub mod io;
pub mod metrics;
pub mod shard;
