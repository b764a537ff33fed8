//! Kernel metadata read from the WGSL by naga reflection, the way vello
//! checks its shaders. When a pipeline is first created, the kernel's
//! source is parsed (once per source) and its entry point's use of each
//! binding read: the pipeline's layout holds only the storage bindings that
//! entry point uses, and nothing is bound to the others (the kernels of one
//! file share a binding list in their launchers; each entry point gets the
//! layout it uses). Not on wasm32 (the parser would grow the bundle by 83 %,
//! measured): there every pipeline binds its launcher's whole list, as a
//! reflection failure does. With feature `reflect` (which every test build of the
//! workspace turns on) the use is also compared with what the launcher
//! declares in [`Kernel`]:
//!
//! - every binding the entry point uses is in group 0; binding 0 is the
//!   `var<uniform>` parameter block, bindings 1..=n are `var<storage>`
//!   buffers declared by the launcher with the same access (`read` ↔
//!   [`Access::Read`], `read_write` ↔ [`Access::ReadWrite`]);
//! - every binding the launcher declares exists in the shader with that
//!   type and access (a binding the entry point does not use is recorded
//!   in [`unused_bindings`]);
//! - at every launch, the launcher's Rust parameter struct (its
//!   [`crate::Uniform`] twin of the WGSL struct) has the shader's size and
//!   the same fields, by name and byte offset, in the same order (padding,
//!   named `_…` on both sides, is covered by the size);
//! - at every launch, the workgroup size the launcher's dispatch arithmetic
//!   assumes ([`crate::Dispatch`]) is the entry point's `@workgroup_size`;
//! - the entry point exists and is a compute entry point.
//!
//! A mismatch is a bug in prior, not bad input: it panics naming the file,
//! the entry point and the binding.

#[cfg(not(target_arch = "wasm32"))]
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

#[cfg(not(target_arch = "wasm32"))]
use crate::kernel::Access;
use crate::kernel::Kernel;

/// What reflection found for one entry point.
#[derive(Clone, Debug)]
pub(crate) struct Reflected {
    /// Per declared storage binding (1..=n): whether the entry point uses it
    /// (`None`: the source could not be reflected; bind everything).
    pub used: Option<Vec<bool>>,
    /// The uniform parameter struct, when the entry point uses binding 0.
    #[cfg_attr(
        not(feature = "reflect"),
        allow(dead_code, reason = "checked at launch with feature reflect only")
    )]
    pub params: Option<UniformLayout>,
    /// The entry point's `@workgroup_size` (`None` when it is set by
    /// override constants).
    #[cfg_attr(
        not(feature = "reflect"),
        allow(dead_code, reason = "checked at launch with feature reflect only")
    )]
    pub workgroup: Option<[u32; 3]>,
}

impl Reflected {
    /// Nothing known: bind everything, check nothing.
    fn unknown() -> Reflected {
        Reflected {
            used: None,
            params: None,
            workgroup: None,
        }
    }
}

/// A WGSL uniform struct's layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UniformLayout {
    /// Name of the struct type.
    #[cfg_attr(
        not(feature = "reflect"),
        allow(dead_code, reason = "checked at launch with feature reflect only")
    )]
    pub name: String,
    /// Size in bytes.
    pub size: u32,
    /// `(name, byte offset)` of each member.
    #[cfg_attr(
        not(feature = "reflect"),
        allow(dead_code, reason = "checked at launch with feature reflect only")
    )]
    pub fields: Vec<(String, u32)>,
}

/// Compares the launch's parameter struct and dispatch with what the shader
/// declares; panics on a mismatch (a bug in prior).
#[cfg(feature = "reflect")]
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

#[cfg(not(target_arch = "wasm32"))]
type Parsed = (naga::Module, naga::valid::ModuleInfo);
/// Parsed sources by (address, length) of the `&'static str`.
#[cfg(not(target_arch = "wasm32"))]
type Cache = Mutex<HashMap<(usize, usize), std::sync::Arc<Parsed>>>;

/// The parsed and validated source of `kernel`, or `None` when it does not
/// parse or validate: then there is nothing to check here, and creating the
/// pipeline reports the shader's error as a GPU fault naming the kernel
/// (`tests/faults.rs`), as without this feature.
#[cfg(not(target_arch = "wasm32"))]
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

fn unused_log() -> &'static Mutex<Vec<String>> {
    static LOG: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    LOG.get_or_init(Default::default)
}

/// `file:entry binding b` for every declared binding an entry point does
/// not use, over the kernels checked so far in this process.
pub fn unused_bindings() -> Vec<String> {
    let mut v = unused_log().lock().unwrap().clone();
    v.sort();
    v.dedup();
    v
}

/// On wasm32 nothing is reflected: every declared binding is bound.
#[cfg(target_arch = "wasm32")]
pub(crate) fn check(_kernel: &Kernel) -> Reflected {
    Reflected::unknown()
}

/// Reflects `kernel`'s entry point; with feature `reflect`, checks it
/// against the launcher's declaration and panics on a mismatch.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn check(kernel: &Kernel) -> Reflected {
    let Some(p) = parsed(kernel) else {
        return Reflected::unknown();
    };
    let strict = cfg!(feature = "reflect");
    let (module, info) = (&p.0, &p.1);
    let name = format!("{}:{}", kernel.file, kernel.entry);
    let Some((index, ep)) = module
        .entry_points
        .iter()
        .enumerate()
        .find(|(_, e)| e.name == kernel.entry)
    else {
        // Without the feature, pipeline creation reports it.
        assert!(!strict, "{name}: no such entry point in the shader");
        return Reflected::unknown();
    };
    assert!(
        !strict || ep.stage == naga::ShaderStage::Compute,
        "{name}: not a compute entry point"
    );
    let uses = info.get_entry_point(index);
    let mut layouter = naga::proc::Layouter::default();
    if layouter.update(module.to_ctx()).is_err() {
        return Reflected::unknown();
    }
    let mut params = None;
    let mut seen = vec![false; kernel.bindings.len()];
    let mut used_slots = vec![false; kernel.bindings.len()];
    for (handle, var) in module.global_variables.iter() {
        let Some(rb) = var.binding else { continue };
        let used = !uses[handle].is_empty();
        if rb.group != 0 {
            assert!(
                !strict || !used,
                "{name}: uses group {} binding {}; prior binds group 0 only",
                rb.group,
                rb.binding
            );
            continue;
        }
        if rb.binding == 0 {
            assert!(
                !strict || matches!(var.space, naga::AddressSpace::Uniform),
                "{name}: binding 0 must be the var<uniform> parameter block"
            );
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
        let declared = kernel.bindings.get(slot);
        let access = match var.space {
            naga::AddressSpace::Storage { access } => access,
            other => {
                assert!(
                    !strict,
                    "{name}: binding {} is {other:?}; prior binds storage buffers at 1..",
                    rb.binding
                );
                naga::StorageAccess::all()
            }
        };
        let shader_rw = access.contains(naga::StorageAccess::STORE);
        match declared {
            None => assert!(
                !strict || !used,
                "{name}: uses binding {} but the launcher declares only {} storage buffer(s)",
                rb.binding,
                kernel.bindings.len()
            ),
            Some(a) => {
                seen[slot] = true;
                used_slots[slot] = used;
                let launcher_rw = *a == Access::ReadWrite;
                assert!(
                    !strict || shader_rw == launcher_rw,
                    "{name}: binding {} is {} in the shader, the launcher declares {a:?}",
                    rb.binding,
                    if shader_rw { "read_write" } else { "read" }
                );
                if !used {
                    unused_log()
                        .lock()
                        .unwrap()
                        .push(format!("{name} binding {}", rb.binding));
                }
            }
        }
    }
    if let Some(slot) = seen.iter().position(|s| !s) {
        assert!(
            !strict,
            "{name}: the launcher declares binding {} ({:?}), the shader has none",
            slot + 1,
            kernel.bindings[slot]
        );
    }
    let workgroup = ep
        .workgroup_size_overrides
        .as_ref()
        .is_none_or(|o| o.iter().all(Option::is_none))
        .then_some(ep.workgroup_size);
    Reflected {
        used: Some(used_slots),
        params,
        workgroup,
    }
}
