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
//! - at every launch, the parameter bytes the launcher passes are exactly the
//!   size of the shader's uniform struct (the Rust `Params` twin of each
//!   WGSL `Params`, by size);
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
    /// Size in bytes of the uniform parameter struct, when the entry point
    /// uses binding 0.
    #[cfg_attr(
        not(feature = "reflect"),
        allow(dead_code, reason = "checked at launch with feature reflect only")
    )]
    pub params_size: Option<u32>,
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
    Reflected {
        used: None,
        params_size: None,
    }
}

/// Reflects `kernel`'s entry point; with feature `reflect`, checks it
/// against the launcher's declaration and panics on a mismatch.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn check(kernel: &Kernel) -> Reflected {
    let Some(p) = parsed(kernel) else {
        return Reflected {
            used: None,
            params_size: None,
        };
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
        return Reflected {
            used: None,
            params_size: None,
        };
    };
    assert!(
        !strict || ep.stage == naga::ShaderStage::Compute,
        "{name}: not a compute entry point"
    );
    let uses = info.get_entry_point(index);
    let mut layouter = naga::proc::Layouter::default();
    if layouter.update(module.to_ctx()).is_err() {
        return Reflected {
            used: None,
            params_size: None,
        };
    }
    let mut params_size = None;
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
                params_size = Some(layouter[var.ty].size);
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
    Reflected {
        used: Some(used_slots),
        params_size,
    }
}
