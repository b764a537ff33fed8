//! Kernel metadata checked against the WGSL (`prior_gpu`'s `reflect`
//! feature, on in every test build): a launcher whose bindings, parameter
//! struct (size, field names and offsets) or dispatch workgroup size
//! disagree with its shader fails at once, naming the kernel and what
//! differs, instead of a wgpu validation dump or a silent misread. The real
//! kernels pass the same check in every other test, and every kernel of
//! `prior_ops::KERNELS` is checked here without a GPU.

mod common;
use common::*;
use prior_gpu::{Access, Dispatch, Kernel, Shape, Uniform};

/// The Rust twin of haar.wgsl's `Params` (8 words).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct HaarParams {
    len: u32,
    h2: u32,
    w2: u32,
    c: u32,
    scale: f32,
    _p: [u32; 3],
}
prior_gpu::uniform!(HaarParams {
    len,
    h2,
    w2,
    c,
    scale,
    _p
});

/// The same words with two fields swapped.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Swapped {
    len: u32,
    w2: u32,
    h2: u32,
    c: u32,
    scale: f32,
    _p: [u32; 3],
}
prior_gpu::uniform!(Swapped {
    len,
    w2,
    h2,
    c,
    scale,
    _p
});

/// Four words short.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Short {
    len: u32,
    h2: u32,
    w2: u32,
    c: u32,
}
prior_gpu::uniform!(Short { len, h2, w2, c });

fn zeroed<P: Uniform>() -> P {
    bytemuck::Zeroable::zeroed()
}

fn launch_with<P: Uniform>(kernel: &Kernel, params: P, buffers: usize, dispatch: Dispatch) {
    let gpu = gpu();
    let t: Vec<_> = (0..buffers)
        .map(|_| gpu.zeros(Shape::new(1, 4, 4, 1)))
        .collect();
    let refs: Vec<_> = t.iter().collect();
    gpu.launch(kernel, &[], &params, &refs, dispatch);
}

fn launch(kernel: &Kernel, buffers: usize) {
    launch_with(
        kernel,
        zeroed::<HaarParams>(),
        buffers,
        Dispatch::flat(1, 64),
    );
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
    let m = panic_message(|| launch(&k, 2));
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
    let m = panic_message(|| launch(&k, 1));
    assert!(m.contains("uses binding 2"), "{m}");
}

#[test]
fn an_extra_binding_is_caught() {
    let k = Kernel {
        bindings: &[Access::Read, Access::ReadWrite, Access::Read],
        ..HAAR
    };
    let m = panic_message(|| launch(&k, 3));
    assert!(m.contains("declares binding 3"), "{m}");
}

#[test]
fn the_right_declaration_passes() {
    launch(&HAAR, 2);
}

#[test]
fn a_wrong_parameter_size_is_caught() {
    // haar's Params is 8 words (32 bytes).
    let m = panic_message(|| launch_with(&HAAR, zeroed::<Short>(), 2, Dispatch::flat(1, 64)));
    assert!(
        m.contains("haar.wgsl:analysis") && m.contains("has 16 bytes") && m.contains("has 32"),
        "{m}"
    );
}

#[test]
fn swapped_parameter_fields_are_caught() {
    let m = panic_message(|| launch_with(&HAAR, zeroed::<Swapped>(), 2, Dispatch::flat(1, 64)));
    assert!(
        m.contains("haar.wgsl:analysis") && m.contains("fields") && m.contains("Swapped"),
        "{m}"
    );
}

#[test]
fn a_dispatch_for_another_workgroup_size_is_caught() {
    // analysis is @workgroup_size(64); a dispatch computed for 256 lanes
    // would leave three quarters of the image untouched.
    let m = panic_message(|| launch_with(&HAAR, zeroed::<HaarParams>(), 2, Dispatch::flat(1, 256)));
    assert!(
        m.contains("haar.wgsl:analysis") && m.contains("[256, 1, 1]") && m.contains("[64, 1, 1]"),
        "{m}"
    );
}

#[test]
fn a_wrong_entry_point_is_caught() {
    let k = Kernel {
        entry: "analysys",
        ..HAAR
    };
    let m = panic_message(|| launch(&k, 2));
    assert!(m.contains("no such entry point"), "{m}");
}

#[test]
fn every_kernel_declaration_matches_its_shader() {
    let errors: Vec<String> = prior_ops::KERNELS
        .iter()
        .filter_map(|k| prior_gpu::verify(k).err())
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn every_entry_point_has_a_declared_kernel() {
    let shaders = prior_ops::shaders::ALL
        .iter()
        .chain(prior_ops::shaders::SPECIALISED);
    let mut missing = Vec::new();
    let mut entries = 0;
    for (file, src) in shaders {
        let module = naga::front::wgsl::parse_str(src).expect(file);
        for ep in &module.entry_points {
            entries += 1;
            let declared = prior_ops::KERNELS
                .iter()
                .any(|k| k.file == *file && k.entry == ep.name && std::ptr::eq(k.source, *src));
            if !declared {
                missing.push(format!("{file}:{}", ep.name));
            }
        }
    }
    assert!(entries > 60, "{entries} entry points");
    assert!(missing.is_empty(), "no kernel declares {missing:?}");
}

#[test]
fn a_declared_binding_the_entry_point_does_not_use_is_caught() {
    // relu reads x (binding 1) and writes y (3); binding 2 is the file's.
    let k = Kernel {
        bindings: &[Access::Read, Access::Read, Access::ReadWrite],
        ..prior_ops::elementwise::RELU
    };
    let m = prior_gpu::verify(&k).unwrap_err();
    assert!(
        m.contains("elementwise.wgsl:relu")
            && m.contains("declares binding 2")
            && m.contains("does not use"),
        "{m}"
    );
    // And the right declaration gets a layout without it: the launch binds
    // two buffers.
    let gpu = gpu();
    let x = gpu.upload(Shape::vector(4), &[-1.0, 2.0, -3.0, 4.0]);
    let y = prior_ops::elementwise::relu(gpu, &x);
    assert_eq!(
        pollster::block_on(gpu.read(&y)).unwrap(),
        vec![0.0, 2.0, 0.0, 4.0]
    );
}

#[test]
fn a_used_binding_declared_unused_is_caught() {
    let k = Kernel {
        bindings: &[Access::Read, Access::Unused, Access::ReadWrite],
        ..prior_ops::elementwise::AXPBY
    };
    let m = prior_gpu::verify(&k).unwrap_err();
    assert!(
        m.contains("elementwise.wgsl:axpby")
            && m.contains("uses binding 2")
            && m.contains("Unused"),
        "{m}"
    );
    let k = Kernel {
        bindings: &[
            Access::Read,
            Access::Unused,
            Access::ReadWrite,
            Access::Unused,
        ],
        ..prior_ops::elementwise::RELU
    };
    let m = prior_gpu::verify(&k).unwrap_err();
    assert!(m.contains("ends with Access::Unused"), "{m}");
}
