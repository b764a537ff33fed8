//! Errors of the GPU runtime. Every message says what went wrong and, where
//! it can, what to do about it.

use thiserror::Error;

/// An error of the GPU runtime.
#[derive(Debug, Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found{filter}. prior needs a Vulkan, Metal, DX12 or GL driver; \
         on Linux without a GPU install the software Vulkan driver: \
         `apt-get install mesa-vulkan-drivers libvulkan1` (then `prior devices` lists it)"
    )]
    /// No adapter matched (or none exists).
    NoAdapter {
        /// What restricted the search (`PRIOR_ADAPTER`, `PRIOR_BACKEND`), as
        /// a phrase for the message; empty when nothing did.
        filter: String,
    },
    #[error("could not open a device on adapter '{adapter}': {source}")]
    /// The adapter refused to open a device.
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// wgpu's reason.
        #[source]
        source: wgpu::RequestDeviceError,
    },
    #[error(
        "{what} needs a buffer of {bytes} bytes but adapter '{adapter}' allows at most {limit} bytes \
         per storage buffer; use a smaller image or let the model tile it"
    )]
    /// A buffer would exceed the device's per-buffer limit (checked before
    /// asking the driver).
    TooLarge {
        /// What the buffer is for.
        what: String,
        /// Bytes asked for.
        bytes: u64,
        /// The limit, bytes (`Gpu::max_buffer_bytes`).
        limit: u64,
        /// Adapter name.
        adapter: String,
    },
    /// The driver refused a buffer (out of memory, or over a limit the
    /// adapter did not advertise). The device is still usable: a smaller
    /// problem (tiles, fewer samples) may succeed.
    #[error("allocating {what} ({bytes} bytes) on adapter '{adapter}' failed: {detail}")]
    Alloc {
        /// What the buffer is for.
        what: String,
        /// Bytes asked for.
        bytes: u64,
        /// Adapter name.
        adapter: String,
        /// wgpu's message.
        detail: String,
    },
    /// A validation or internal error of wgpu, captured by an error scope
    /// around the named operation.
    #[error("the GPU reported a {kind} error while {what}: {detail}")]
    Fault {
        /// The operation in progress.
        what: String,
        /// `validation` or `internal`.
        kind: &'static str,
        /// wgpu's message.
        detail: String,
    },
    /// The device was lost (driver reset, GPU removed, `device.destroy()`);
    /// nothing more can run on this [`crate::Gpu`].
    #[error(
        "the GPU device on adapter '{adapter}' was lost ({reason}{message}) while {what}; \
         the work in progress is lost (rerun the command: completed outputs are kept)"
    )]
    DeviceLost {
        /// The operation in progress.
        what: String,
        /// Adapter name.
        adapter: String,
        /// wgpu's loss reason.
        reason: String,
        /// The driver's message (with a leading separator), possibly empty.
        message: String,
    },
    /// Mapping a buffer to read it back failed.
    #[error("reading back from the GPU failed: {0}")]
    Readback(String),
    /// An op was given tensors of shapes it cannot combine.
    #[error("shape mismatch in {op}: {detail}")]
    Shape {
        /// The op.
        op: &'static str,
        /// The shapes and what was expected of them.
        detail: String,
    },
    /// Any other error of the device or its options (e.g. an unreadable
    /// `PRIOR_FAULT`).
    #[error("the GPU reported an error: {0}")]
    Device(String),
}

impl GpuError {
    /// True when a buffer could not be allocated: the same work in smaller
    /// pieces (tiles, smaller batches) may still succeed on this device.
    pub fn is_allocation_failure(&self) -> bool {
        matches!(self, GpuError::Alloc { .. })
    }

    /// True when the device is gone and a new [`crate::Gpu`] is needed.
    pub fn is_device_lost(&self) -> bool {
        matches!(self, GpuError::DeviceLost { .. })
    }

    /// Bytes of the allocation that failed ([`GpuError::Alloc`]).
    pub fn failed_allocation_bytes(&self) -> Option<u64> {
        match self {
            GpuError::Alloc { bytes, .. } => Some(*bytes),
            _ => None,
        }
    }
}

/// Result with [`GpuError`] as the default error.
pub type Result<T, E = GpuError> = std::result::Result<T, E>;
