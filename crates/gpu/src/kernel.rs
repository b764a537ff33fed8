//! Kernel descriptions: a WGSL source file, its entry point and the access
//! mode of each storage binding. Binding 0 of group 0 is always the kernel's
//! uniform parameter block (bound with a dynamic offset into the stream's
//! parameter arena); bindings 1.. are storage buffers in the listed order.

/// How a kernel uses one of its storage buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Bound `var<storage, read>`.
    Read,
    /// Bound `var<storage, read_write>`.
    ReadWrite,
}

/// A compute kernel: one entry point of one shader file.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// Shader file name (for messages and the cache key), e.g. `conv2d.wgsl`.
    pub file: &'static str,
    /// WGSL source (usually `include_str!` of the file in `shaders/`).
    pub source: &'static str,
    /// Entry point.
    pub entry: &'static str,
    /// Storage bindings 1..=n.
    pub bindings: &'static [Access],
}

/// Cache key of a pipeline: kernel + entry + specialisation constants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    pub file: &'static str,
    pub entry: &'static str,
    pub source_ptr: usize,
    pub bindings: &'static [Access],
    pub constants: Vec<(&'static str, u64)>,
}
