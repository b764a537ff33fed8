//! Errors of the GPU runtime. Every message says what went wrong and, where
//! it can, what to do about it.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found{filter}. prior needs a Vulkan, Metal, DX12 or GL driver; \
         on Linux without a GPU install the software Vulkan driver: \
         `apt-get install mesa-vulkan-drivers libvulkan1` (then `prior devices` lists it)"
    )]
    NoAdapter { filter: String },
    #[error("could not open a device on adapter '{adapter}': {source}")]
    RequestDevice {
        adapter: String,
        #[source]
        source: wgpu::RequestDeviceError,
    },
    #[error(
        "{what} needs a buffer of {bytes} bytes but adapter '{adapter}' allows at most {limit} bytes \
         per storage buffer; use a smaller image or let the model tile it"
    )]
    TooLarge {
        what: String,
        bytes: u64,
        limit: u64,
        adapter: String,
    },
    /// The driver refused a buffer (out of memory, or over a limit the
    /// adapter did not advertise). The device is still usable: a smaller
    /// problem (tiles, fewer samples) may succeed.
    #[error("allocating {what} ({bytes} bytes) on adapter '{adapter}' failed: {detail}")]
    Alloc {
        what: String,
        bytes: u64,
        adapter: String,
        detail: String,
    },
    /// A validation or internal error of wgpu, captured by an error scope
    /// around the named operation.
    #[error("the GPU reported a {kind} error while {what}: {detail}")]
    Fault {
        what: String,
        kind: &'static str,
        detail: String,
    },
    /// The device was lost (driver reset, GPU removed, `device.destroy()`);
    /// nothing more can run on this [`crate::Gpu`].
    #[error(
        "the GPU device on adapter '{adapter}' was lost ({reason}{message}) while {what}; \
         the work in progress is lost (rerun the command: completed outputs are kept)"
    )]
    DeviceLost {
        what: String,
        adapter: String,
        reason: String,
        message: String,
    },
    #[error("reading back from the GPU failed: {0}")]
    Readback(String),
    #[error("shape mismatch in {op}: {detail}")]
    Shape { op: &'static str, detail: String },
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

pub type Result<T, E = GpuError> = std::result::Result<T, E>;
