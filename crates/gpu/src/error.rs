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
    TooLarge { what: String, bytes: u64, limit: u64, adapter: String },
    #[error("reading back from the GPU failed: {0}")]
    Readback(String),
    #[error("shape mismatch in {op}: {detail}")]
    Shape { op: &'static str, detail: String },
    #[error("the GPU reported an error: {0}")]
    Device(String),
}

pub type Result<T, E = GpuError> = std::result::Result<T, E>;
