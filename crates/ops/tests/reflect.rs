//! Kernel metadata checked against the WGSL (`prior_gpu`'s `reflect`
//! feature, on in every test build): a launcher whose bindings or
//! parameter size disagree with its shader fails at once, naming the
//! kernel and the binding, instead of a wgpu validation dump or a silent
//! misread. The real kernels pass the same check in every other test.

mod common;
use common::*;
use prior_gpu::{Access, Kernel, Shape};

fn launch(kernel: &Kernel, params: &[u8], buffers: usize) {
    let gpu = gpu();
    let t: Vec<_> = (0..buffers)
        .map(|_| gpu.zeros(Shape::new(1, 4, 4, 1)))
        .collect();
    let refs: Vec<_> = t.iter().collect();
    gpu.launch(kernel, &[], params, &refs, [1, 1, 1]);
}

fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let e = std::panic::catch_unwind(f).expect_err("the mismatch must be caught");
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

const HAAR: Kernel = prior_ops::haar::ANALYSIS;

#[test]
fn a_wrong_access_is_caught() {
    let k = Kernel {
        bindings: &[Access::ReadWrite, Access::ReadWrite],
        ..HAAR
    };
    let m = panic_message(|| launch(&k, &[0; 32], 2));
    assert!(
        m.contains("haar.wgsl:analysis") && m.contains("binding 1 is read in the shader"),
        "{m}"
    );
}

#[test]
fn a_missing_binding_is_caught() {
    let k = Kernel {
        bindings: &[Access::Read],
        ..HAAR
    };
    let m = panic_message(|| launch(&k, &[0; 32], 1));
    assert!(m.contains("uses binding 2"), "{m}");
}

#[test]
fn an_extra_binding_is_caught() {
    let k = Kernel {
        bindings: &[Access::Read, Access::ReadWrite, Access::Read],
        ..HAAR
    };
    let m = panic_message(|| launch(&k, &[0; 32], 3));
    assert!(m.contains("declares binding 3"), "{m}");
}

#[test]
fn a_wrong_parameter_size_is_caught() {
    // haar's Params is 8 words (32 bytes).
    let m = panic_message(|| launch(&HAAR, &[0; 16], 2));
    assert!(
        m.contains("16 parameter bytes") && m.contains("has 32"),
        "{m}"
    );
}

#[test]
fn a_wrong_entry_point_is_caught() {
    let k = Kernel {
        entry: "analysys",
        ..HAAR
    };
    let m = panic_message(|| launch(&k, &[0; 32], 2));
    assert!(m.contains("no such entry point"), "{m}");
}
