//! prior's GPU runtime on wgpu.
//!
//! * [`Gpu`]: adapter selection (env `PRIOR_BACKEND`, `PRIOR_ADAPTER`), the
//!   device with its limits and features, a pipeline cache keyed by shader and
//!   specialisation constants, a bind-group cache, a buffer pool.
//! * [`Tensor`]: an f32 array on the GPU, channels-last `[n, h, w, c]`.
//! * The **stream**: every launch, upload and copy is appended to one ordered
//!   list of commands; [`Gpu::flush`] encodes the whole list into one command
//!   encoder and submits it; [`Gpu::read`] flushes and maps the result. A model
//!   call therefore costs one submission and one readback, and buffers can be
//!   recycled mid-call because the stream executes in order.
//!
//! The crate is async at its core (buffer mapping is asynchronous on the web)
//! and compiles for `wasm32-unknown-unknown`; native callers block with
//! `pollster`.

mod context;
mod error;
mod kernel;
mod stream;
mod tensor;

pub use context::{AdapterSummary, Gpu, GpuOptions};
pub use error::{GpuError, Result};
pub use kernel::{Access, Kernel};
pub use tensor::{Shape, Tensor};
pub use wgpu;

/// Rounds `n` up to a multiple of `m`.
pub fn round_up(n: u32, m: u32) -> u32 {
    n.div_ceil(m) * m
}

/// Workgroup counts for `n` invocations in groups of `size`, folded into two
/// dimensions when `n / size` exceeds the 65535 per-dimension limit.
/// Kernels recover the linear group index as `gid.x + gid.y * 65535 * size`
/// style arithmetic through the `groups_x` they receive (see `shaders/common`).
pub fn groups_1d(n: u32, size: u32) -> [u32; 3] {
    let g = n.div_ceil(size).max(1);
    if g <= 65535 {
        [g, 1, 1]
    } else {
        [65535, g.div_ceil(65535), 1]
    }
}
