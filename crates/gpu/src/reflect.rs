//! Kernel metadata checked against the WGSL by naga reflection, the way
//! vello checks its shaders (feature `reflect`, which every test build of
//! the workspace turns on; without it nothing here is compiled, and naga is
//! not a dependency). A pipeline's layout is made from its launcher's
//! declaration ([`Kernel::bindings`]) on every target; reflection makes sure
//! that declaration is the entry point's own. When a pipeline is first
//! created, the kernel's source is parsed (once per source) and checked:
//!
//! - every binding the entry point uses is in group 0; binding 0 is the
//!   `var<uniform>` parameter block, bindings 1..=n are `var<storage>`
//!   buffers declared by the launcher with the same access (`read` ↔
//!   [`Access::Read`], `read_write` ↔ [`Access::ReadWrite`]);
//! - every binding the launcher declares Read or ReadWrite exists in the
//!   shader with that access and is used by the entry point (one it does
//!   not use is declared [`Access::Unused`]: nothing is bound to it, and no
//!   buffer is passed for it);
//! - at every launch, the launcher's Rust parameter struct (its
//!   [`crate::Uniform`] twin of the WGSL struct) has the shader's size and
//!   the same fields, by name and byte offset, in the same order (padding,
//!   named `_…` on both sides, is covered by the size);
//! - at every launch, the workgroup size the launcher's dispatch arithmetic
//!   assumes ([`crate::Dispatch`]) is the entry point's `@workgroup_size`;
//! - the entry point exists and is a compute entry point.
//!
//! A mismatch is a bug in prior, not bad input: it panics naming the file,
//! the entry point and the binding. [`verify`] runs the same declaration
//! checks without a GPU and returns the mismatch (`crates/ops/tests/reflect.rs`
//! runs it on every kernel prior declares).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::kernel::{Access, Kernel};

/// What reflection found for one entry point.
#[derive(Clone, Debug)]
pub(crate) struct Reflected {
    /// The uniform parameter struct, when the entry point uses binding 0.
    pub params: Option<UniformLayout>,
    /// The entry point's `@workgroup_size` (`None` when it is set by
    /// override constants).
    pub workgroup: Option<[u32; 3]>,
}

impl Reflected {
    /// Nothing known (the source does not parse): check nothing.
    fn unknown() -> Reflected {
        Reflected {
            params: None,
            workgroup: None,
        }
    }
}

/// A WGSL uniform struct's layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UniformLayout {
    /// Name of the struct type.
    pub name: String,
    /// Size in bytes.
    pub size: u32,
    /// `(name, byte offset)` of each member.
    pub fields: Vec<(String, u32)>,
}

/// Compares the launch's parameter struct and dispatch with what the shader
/// declares; panics on a mismatch (a bug in prior).
pub(crate) fn check_launch<P: crate::Uniform>(
    name: &str,
    reflected: &Reflected,
    dispatch: &crate::Dispatch,
) {
    if let Some(l) = &reflected.params {
        let rust = std::any::type_name::<P>();
        let bytes = std::mem::size_of::<P>();
        assert_eq!(
            bytes, l.size as usize,
            "{name}: the launcher's {rust} has {bytes} bytes, the shader's struct {} has {}",
            l.name, l.size
        );
        // Padding (names starting with `_`) carries nothing: it is left to
        // the size check, as Rust pads with arrays where WGSL cannot.
        let fields: Vec<(&str, u32)> = P::FIELDS
            .iter()
            .filter(|(n, _)| !n.starts_with('_'))
            .map(|(n, o)| (*n, *o as u32))
            .collect();
        let wgsl: Vec<(&str, u32)> = l
            .fields
            .iter()
            .filter(|(n, _)| !n.starts_with('_'))
            .map(|(n, o)| (n.as_str(), *o))
            .collect();
        assert_eq!(
            fields, wgsl,
            "{name}: the fields (name, byte offset) of the launcher's {rust} differ from the shader's struct {}",
            l.name
        );
    }
    if let Some(wg) = reflected.workgroup {
        assert_eq!(
            dispatch.workgroup, wg,
            "{name}: the dispatch is computed for workgroups of {:?}, the entry point's @workgroup_size is {wg:?}",
            dispatch.workgroup
        );
    }
}

type Parsed = (naga::Module, naga::valid::ModuleInfo);
/// Parsed sources by (address, length) of the `&'static str`.
type Cache = Mutex<HashMap<(usize, usize), std::sync::Arc<Parsed>>>;

/// The parsed and validated source of `kernel`, or `None` when it does not
/// parse or validate: then there is nothing to check here, and creating the
/// pipeline reports the shader's error as a GPU fault naming the kernel
/// (`tests/faults.rs`).
fn parsed(kernel: &Kernel) -> Option<std::sync::Arc<Parsed>> {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (kernel.source.as_ptr() as usize, kernel.source.len());
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap();
    if let Some(p) = cache.get(&key) {
        return Some(p.clone());
    }
    let module = naga::front::wgsl::parse_str(kernel.source).ok()?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .ok()?;
    let p = std::sync::Arc::new((module, info));
    cache.insert(key, p.clone());
    Some(p)
}

/// Reflects `kernel`'s entry point and panics on a mismatch with the
/// launcher's declaration ([`verify`]).
pub(crate) fn check(kernel: &Kernel) -> Reflected {
    match reflect(kernel) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

/// Checks `kernel`'s declaration (entry point, bindings and their access)
/// against its WGSL, without a GPU: `Err` names the file, the entry point
/// and what differs. A source that does not parse or validate passes (its
/// pipeline creation reports the shader's error).
pub fn verify(kernel: &Kernel) -> Result<(), String> {
    reflect(kernel).map(|_| ())
}

fn reflect(kernel: &Kernel) -> Result<Reflected, String> {
    let Some(p) = parsed(kernel) else {
        return Ok(Reflected::unknown());
    };
    let (module, info) = (&p.0, &p.1);
    let name = format!("{}:{}", kernel.file, kernel.entry);
    let Some((index, ep)) = module
        .entry_points
        .iter()
        .enumerate()
        .find(|(_, e)| e.name == kernel.entry)
    else {
        return Err(format!("{name}: no such entry point in the shader"));
    };
    if ep.stage != naga::ShaderStage::Compute {
        return Err(format!("{name}: not a compute entry point"));
    }
    if kernel.bindings.last() == Some(&Access::Unused) {
        return Err(format!(
            "{name}: the declaration ends with Access::Unused; leave trailing unused bindings out"
        ));
    }
    let uses = info.get_entry_point(index);
    let mut layouter = naga::proc::Layouter::default();
    if layouter.update(module.to_ctx()).is_err() {
        return Ok(Reflected::unknown());
    }
    let mut params = None;
    let mut seen = vec![false; kernel.bindings.len()];
    for (handle, var) in module.global_variables.iter() {
        let Some(rb) = var.binding else { continue };
        let used = !uses[handle].is_empty();
        if rb.group != 0 {
            if used {
                return Err(format!(
                    "{name}: uses group {} binding {}; prior binds group 0 only",
                    rb.group, rb.binding
                ));
            }
            continue;
        }
        if rb.binding == 0 {
            if !matches!(var.space, naga::AddressSpace::Uniform) {
                return Err(format!(
                    "{name}: binding 0 must be the var<uniform> parameter block"
                ));
            }
            if used {
                let ty = &module.types[var.ty];
                let fields = match &ty.inner {
                    naga::TypeInner::Struct { members, .. } => members
                        .iter()
                        .map(|m| (m.name.clone().unwrap_or_default(), m.offset))
                        .collect(),
                    _ => Vec::new(),
                };
                params = Some(UniformLayout {
                    name: ty.name.clone().unwrap_or_default(),
                    size: layouter[var.ty].size,
                    fields,
                });
            }
            continue;
        }
        let slot = rb.binding as usize - 1;
        let declared = kernel.bindings.get(slot).copied().unwrap_or(Access::Unused);
        if let Some(s) = seen.get_mut(slot) {
            *s = true;
        }
        let access = match var.space {
            naga::AddressSpace::Storage { access } => access,
            other => {
                return Err(format!(
                    "{name}: binding {} is {other:?}; prior binds storage buffers at 1..",
                    rb.binding
                ))
            }
        };
        let shader_rw = access.contains(naga::StorageAccess::STORE);
        match (used, declared) {
            (false, Access::Unused) => {}
            (true, Access::Unused) => {
                return Err(if slot >= kernel.bindings.len() {
                    format!(
                        "{name}: uses binding {} but the launcher declares only {} storage binding(s)",
                        rb.binding,
                        kernel.bindings.len()
                    )
                } else {
                    format!(
                        "{name}: uses binding {}, which the launcher declares Access::Unused",
                        rb.binding
                    )
                })
            }
            (false, a) => {
                return Err(format!(
                    "{name}: the launcher declares binding {} ({a:?}), which the entry point does not use: declare it Access::Unused (nothing is bound to it)",
                    rb.binding
                ))
            }
            (true, a) => {
                if shader_rw != (a == Access::ReadWrite) {
                    return Err(format!(
                        "{name}: binding {} is {} in the shader, the launcher declares {a:?}",
                        rb.binding,
                        if shader_rw { "read_write" } else { "read" }
                    ));
                }
            }
        }
    }
    if let Some(slot) =
        (0..kernel.bindings.len()).find(|&s| !seen[s] && kernel.bindings[s] != Access::Unused)
    {
        return Err(format!(
            "{name}: the launcher declares binding {} ({:?}), the shader has none",
            slot + 1,
            kernel.bindings[slot]
        ));
    }
    let workgroup = ep
        .workgroup_size_overrides
        .as_ref()
        .is_none_or(|o| o.iter().all(Option::is_none))
        .then_some(ep.workgroup_size);
    Ok(Reflected { params, workgroup })
}
