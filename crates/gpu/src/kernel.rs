//! Kernel descriptions: a WGSL source file, its entry point and the access
//! mode of each storage binding the entry point uses. Binding 0 of group 0
//! is always the kernel's uniform parameter block (bound with a dynamic
//! offset into the stream's parameter arena); bindings 1.. are storage
//! buffers in the listed order. The pipeline's layout is made from this
//! declaration alone (natively and in the browser alike), so it must name
//! exactly the bindings the entry point uses: with feature `reflect`, which
//! every test build turns on, naga reflection compares the two
//! (`crates/gpu/src/reflect.rs`).

/// How a kernel uses one of its storage buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Bound `var<storage, read>`.
    Read,
    /// Bound `var<storage, read_write>`.
    ReadWrite,
    /// A binding of the shader file that this entry point does not use
    /// (the entry points of one file share its binding numbers): it is not
    /// in the entry point's layout, and the launch passes no buffer for it.
    /// Unused bindings after the last used one are simply not listed.
    Unused,
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
    /// Storage bindings 1..=n (those this entry point does not use below
    /// its last used one are [`Access::Unused`]).
    pub bindings: &'static [Access],
}

impl Kernel {
    /// `(binding number, access)` of each storage binding the entry point
    /// uses, in order: one buffer per item is passed to [`crate::Gpu::launch`].
    pub fn used(&self) -> impl Iterator<Item = (u32, Access)> + '_ {
        self.bindings
            .iter()
            .enumerate()
            .filter(|(_, a)| **a != Access::Unused)
            .map(|(i, a)| (i as u32 + 1, *a))
    }
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

/// The Rust twin of a WGSL uniform parameter struct: its bytes are the
/// kernel's uniform block (binding 0). Implement it with [`uniform!`]
/// (`crate::uniform`), which lists the fields; with feature `reflect` every
/// launch compares the names, byte offsets and total size with the
/// shader's struct (`crates/gpu/src/reflect.rs`).
pub trait Uniform: bytemuck::Pod {
    /// `(name, byte offset)` of each field, in declaration order.
    const FIELDS: &'static [(&'static str, usize)];
}

/// Implements [`Uniform`] for a `#[repr(C)]` `Pod` struct from its field
/// names: `prior_gpu::uniform!(Params { n, alpha });`. Every field of the
/// struct must be listed, in order (reflection compares the list with the
/// WGSL struct's members, and the total size with the struct's size).
#[macro_export]
macro_rules! uniform {
    ($t:ty { $($f:ident),* $(,)? }) => {
        impl $crate::Uniform for $t {
            const FIELDS: &'static [(&'static str, usize)] =
                &[$((stringify!($f), ::core::mem::offset_of!($t, $f))),*];
        }
    };
}

/// The workgroup grid of one launch and the workgroup size its arithmetic
/// assumes (checked against the entry point's `@workgroup_size` by
/// reflection with feature `reflect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dispatch {
    /// Workgroup counts.
    pub groups: [u32; 3],
    /// The `@workgroup_size` the counts were computed for.
    pub workgroup: [u32; 3],
}

impl Dispatch {
    /// `n` invocations of a `width`-wide 1-D workgroup, folded as
    /// `gid.x + gid.y · width · num_workgroups.x` past 65535 groups
    /// ([`crate::groups_1d`]).
    pub fn flat(n: u32, width: u32) -> Dispatch {
        Dispatch {
            groups: crate::groups_1d(n, width),
            workgroup: [width, 1, 1],
        }
    }

    /// Explicit workgroup counts computed for workgroups of `workgroup`.
    pub fn groups(groups: [u32; 3], workgroup: [u32; 3]) -> Dispatch {
        Dispatch { groups, workgroup }
    }
}

/// Raw words, with no named fields: reflection then finds every named
/// member of the shader's struct missing, so this only launches kernels
/// whose parameter struct holds padding alone or that cannot be reflected
/// (the invalid shader of `tests/faults.rs`).
impl<const N: usize> Uniform for [u32; N] {
    const FIELDS: &'static [(&'static str, usize)] = &[];
}
