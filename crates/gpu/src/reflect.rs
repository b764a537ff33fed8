//! Kernel metadata checked against the WGSL by naga reflection (feature
//! `reflect`, which every test build of the workspace turns on), the way
//! vello checks its shaders: when a pipeline is first created, the kernel's
//! source is parsed (once per source) and its entry point's use of each
//! binding compared with what the launcher declares in [`Kernel`]:
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

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::kernel::{Access, Kernel};

/// What reflection found for one entry point.
#[derive(Clone, Debug)]
pub(crate) struct Reflected {
    /// Size in bytes of the uniform parameter struct, when the entry point
    /// uses binding 0.
    pub params_size: Option<u32>,
}

type Parsed = (naga::Module, naga::valid::ModuleInfo);
/// Parsed sources by (address, length) of the `&'static str`.
type Cache = Mutex<HashMap<(usize, usize), std::sync::Arc<Parsed>>>;

/// The parsed and validated source of `kernel`, or `None` when it does not
/// parse or validate: then there is nothing to check here, and creating the
/// pipeline reports the shader's error as a GPU fault naming the kernel
/// (`tests/faults.rs`), as without this feature.
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

/// Checks `kernel` against its WGSL; panics on a mismatch.
pub(crate) fn check(kernel: &Kernel) -> Reflected {
    let Some(p) = parsed(kernel) else {
        return Reflected { params_size: None };
    };
    let (module, info) = (&p.0, &p.1);
    let name = format!("{}:{}", kernel.file, kernel.entry);
    let (index, ep) = module
        .entry_points
        .iter()
        .enumerate()
        .find(|(_, e)| e.name == kernel.entry)
        .unwrap_or_else(|| panic!("{name}: no such entry point in the shader"));
    assert!(
        ep.stage == naga::ShaderStage::Compute,
        "{name}: not a compute entry point"
    );
    let uses = info.get_entry_point(index);
    let mut layouter = naga::proc::Layouter::default();
    layouter
        .update(module.to_ctx())
        .unwrap_or_else(|e| panic!("{name}: layout: {e:?}"));
    let mut params_size = None;
    let mut seen = vec![false; kernel.bindings.len()];
    for (handle, var) in module.global_variables.iter() {
        let Some(rb) = var.binding else { continue };
        let used = !uses[handle].is_empty();
        if rb.group != 0 {
            assert!(
                !used,
                "{name}: uses group {} binding {}; prior binds group 0 only",
                rb.group, rb.binding
            );
            continue;
        }
        if rb.binding == 0 {
            assert!(
                matches!(var.space, naga::AddressSpace::Uniform),
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
            other => panic!(
                "{name}: binding {} is {other:?}; prior binds storage buffers at 1..",
                rb.binding
            ),
        };
        let shader_rw = access.contains(naga::StorageAccess::STORE);
        match declared {
            None => assert!(
                !used,
                "{name}: uses binding {} but the launcher declares only {} storage buffer(s)",
                rb.binding,
                kernel.bindings.len()
            ),
            Some(a) => {
                seen[slot] = true;
                let launcher_rw = *a == Access::ReadWrite;
                assert_eq!(
                    shader_rw,
                    launcher_rw,
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
        panic!(
            "{name}: the launcher declares binding {} ({:?}), the shader has none",
            slot + 1,
            kernel.bindings[slot]
        );
    }
    Reflected { params_size }
}
