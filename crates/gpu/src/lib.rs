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
mod fault;
mod kernel;
mod profile;
#[cfg(feature = "reflect")]
mod reflect;
mod stream;
mod tensor;

pub use context::{AdapterSummary, Gpu, GpuOptions};
pub use error::{GpuError, Result};
pub use fault::FaultInjection;
pub use kernel::{Access, Dispatch, Kernel, Uniform};
pub use profile::KernelTime;
#[cfg(feature = "reflect")]
pub use reflect::verify;
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

/// Gives the process a valid `XDG_RUNTIME_DIR` when it has none.
///
/// Creating a Vulkan instance loads the window-system parts of the driver,
/// whose Wayland client prints `error: XDG_RUNTIME_DIR is invalid or not set
/// in the environment.` whenever that variable is unset or not an absolute
/// path (as in containers, cron jobs, `sudo` and Slurm batch jobs), on every
/// command. prior draws nothing on screen, so it points the variable at a
/// private directory (`$TMPDIR/prior-runtime-UID`, mode 0700, created when
/// missing) before the first instance is made. A valid existing value is
/// left alone. Call it at the start of `main`, before any thread is
/// spawned (it sets an environment variable); the CLI does.
pub fn ensure_runtime_dir() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        let valid = std::env::var_os("XDG_RUNTIME_DIR")
            .is_some_and(|v| std::path::Path::new(&v).is_absolute());
        if valid {
            return;
        }
        // Our uid, without libc: the owner of /proc/self.
        let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
        let private = |p: &std::path::Path| {
            std::fs::symlink_metadata(p).is_ok_and(|m| {
                m.is_dir() && Some(m.uid()) == uid && m.permissions().mode() & 0o077 == 0
            })
        };
        let base = std::env::temp_dir();
        let mut candidates = Vec::new();
        if let Some(u) = uid {
            candidates.push(base.join(format!("prior-runtime-{u}")));
        }
        candidates.push(base.join(format!("prior-runtime-{}", std::process::id())));
        for dir in candidates {
            let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
            if private(&dir) && dir.is_absolute() {
                std::env::set_var("XDG_RUNTIME_DIR", &dir);
                return;
            }
        }
    }
}
