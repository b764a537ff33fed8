//! Every backend compiles every shader: each module of
//! `prior_ops::shaders::ALL` and of `prior_ops::shaders::SPECIALISED` (the
//! other tile shapes of `conv2d_tiled.wgsl`), and each of its compute entry
//! points (prior specialises kernels by entry point and by generated module,
//! not by `override` constants: no shader declares one), is translated by naga's SPIR-V
//! (Vulkan), MSL (Metal), HLSL (DX12) and GLSL ES 3.10 (wgpu's GL backend)
//! writers, after validation with exactly the capabilities that backend
//! supports. So a Metal or DX12 user never meets a kernel that fails to
//! translate, and a kernel that needs a capability a backend lacks fails here
//! by name.
//!
//! The subgroup kernels translate too (naga's GLSL writer emits
//! `GL_KHR_shader_subgroup`); the engine only picks them where the adapter
//! reports `wgpu::Features::SUBGROUP` (`Gpu::use_subgroups`), and the second
//! test checks that they are exactly the modules that need
//! `Capabilities::SUBGROUP` to validate.
//!
//! This checks translation, not the platform compilers (no Metal, DXC or GL
//! driver here): naga's output is what wgpu hands those compilers.

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{Module, ShaderStage};

/// The modules that need subgroup operations (chosen only on adapters
/// reporting them).
const SUBGROUP_MODULES: &[&str] = &["conv2d_subgroup.wgsl", "conv_transpose2d_subgroup.wgsl"];

fn parse(name: &str, src: &str) -> Module {
    naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)))
}

fn validate(module: &Module, caps: Capabilities) -> Result<ModuleInfo, String> {
    Validator::new(ValidationFlags::all(), caps)
        .validate(module)
        .map_err(|e| format!("{e:?}"))
}

fn compute_entries(module: &Module) -> Vec<String> {
    module
        .entry_points
        .iter()
        .filter(|e| e.stage == ShaderStage::Compute)
        .map(|e| e.name.clone())
        .collect()
}

/// Every (group, binding) the module declares, in declaration order.
fn bindings(module: &Module) -> Vec<naga::ResourceBinding> {
    module
        .global_variables
        .iter()
        .filter_map(|(_, g)| g.binding)
        .collect()
}

fn spirv(module: &Module, info: &ModuleInfo, entry: &str) -> Result<usize, String> {
    let options = spv::Options {
        lang_version: (1, 3),
        ..Default::default()
    };
    let pipeline = spv::PipelineOptions {
        shader_stage: ShaderStage::Compute,
        entry_point: entry.to_string(),
    };
    spv::write_vec(module, info, &options, Some(&pipeline))
        .map(|words| words.len())
        .map_err(|e| format!("{e:?}"))
}

fn metal(module: &Module, info: &ModuleInfo) -> Result<usize, String> {
    // MSL 2.1 (macOS 10.14 / iOS 12), what wgpu's Metal backend needs for
    // compute with simdgroup operations; explicit resource slots per entry
    // point, as wgpu assigns them (no faked bindings).
    let mut map = msl::EntryPointResourceMap::default();
    for entry in compute_entries(module) {
        let mut resources = msl::EntryPointResources::default();
        for (slot, b) in bindings(module).into_iter().enumerate() {
            resources.resources.insert(
                b,
                msl::BindTarget {
                    buffer: Some(slot as u8),
                    ..Default::default()
                },
            );
        }
        resources.sizes_buffer = Some(30);
        map.insert(entry, resources);
    }
    let options = msl::Options {
        lang_version: (2, 1),
        per_entry_point_map: map,
        fake_missing_bindings: false,
        ..Default::default()
    };
    msl::write_string(module, info, &options, &msl::PipelineOptions::default())
        .map(|(s, _)| s.len())
        .map_err(|e| format!("{e:?}"))
}

fn hlsl(module: &Module, info: &ModuleInfo) -> Result<usize, String> {
    // Shader model 6.0: DX12 with wave (subgroup) intrinsics, as wgpu's
    // DX12 backend compiles with DXC.
    let mut binding_map = hlsl::BindingMap::default();
    for (slot, b) in bindings(module).into_iter().enumerate() {
        binding_map.insert(
            b,
            hlsl::BindTarget {
                space: 0,
                register: slot as u32,
                ..Default::default()
            },
        );
    }
    let options = hlsl::Options {
        shader_model: hlsl::ShaderModel::V6_0,
        binding_map,
        fake_missing_bindings: false,
        ..Default::default()
    };
    let pipeline = hlsl::PipelineOptions::default();
    let mut out = String::new();
    let mut w = hlsl::Writer::new(&mut out, &options, &pipeline);
    w.write(module, info, None).map_err(|e| format!("{e:?}"))?;
    Ok(out.len())
}

fn gles(module: &Module, info: &ModuleInfo, entry: &str) -> Result<usize, String> {
    let mut binding_map = glsl::BindingMap::default();
    for (slot, b) in bindings(module).into_iter().enumerate() {
        binding_map.insert(b, slot as u8);
    }
    let options = glsl::Options {
        version: glsl::Version::Embedded {
            version: 310,
            is_webgl: false,
        },
        binding_map,
        ..Default::default()
    };
    let pipeline = glsl::PipelineOptions {
        shader_stage: ShaderStage::Compute,
        entry_point: entry.to_string(),
        multiview: None,
    };
    let mut out = String::new();
    let mut w = glsl::Writer::new(
        &mut out,
        module,
        info,
        &options,
        &pipeline,
        naga::proc::BoundsCheckPolicies::default(),
    )
    .map_err(|e| format!("{e:?}"))?;
    w.write().map_err(|e| format!("{e:?}"))?;
    Ok(out.len())
}

#[test]
fn every_shader_translates_for_vulkan_metal_dx12_and_gl() {
    let mut failures = Vec::new();
    let mut translated = 0;
    let specialised = prior_ops::shaders::SPECIALISED;
    for (name, src) in prior_ops::shaders::ALL.iter().chain(specialised) {
        let module = parse(name, src);
        let entries = compute_entries(&module);
        if entries.is_empty() {
            // A prelude (conv_common.wgsl, rng_core.wgsl): compiled as part
            // of the modules that include it.
            continue;
        }
        // SPIR-V, one module per entry point (wgpu's Vulkan path).
        match validate(&module, spv::supported_capabilities()) {
            Ok(info) => {
                for e in &entries {
                    match spirv(&module, &info, e) {
                        Ok(_) => translated += 1,
                        Err(err) => failures.push(format!("{name} `{e}` SPIR-V: {err}")),
                    }
                }
            }
            Err(err) => failures.push(format!("{name} SPIR-V validation: {err}")),
        }
        // MSL and HLSL, the whole module at once.
        match validate(&module, msl::supported_capabilities()) {
            Ok(info) => match metal(&module, &info) {
                Ok(_) => translated += 1,
                Err(err) => failures.push(format!("{name} MSL: {err}")),
            },
            Err(err) => failures.push(format!("{name} MSL validation: {err}")),
        }
        match validate(&module, hlsl::supported_capabilities()) {
            Ok(info) => match hlsl(&module, &info) {
                Ok(_) => translated += 1,
                Err(err) => failures.push(format!("{name} HLSL: {err}")),
            },
            Err(err) => failures.push(format!("{name} HLSL validation: {err}")),
        }
        // GLSL ES 3.10, one entry point at a time (wgpu's GL backend).
        match validate(&module, glsl::supported_capabilities()) {
            Ok(info) => {
                for e in &entries {
                    match gles(&module, &info, e) {
                        Ok(_) => translated += 1,
                        Err(err) => failures.push(format!("{name} `{e}` GLSL: {err}")),
                    }
                }
            }
            Err(err) => failures.push(format!("{name} GLSL validation: {err}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!(
        "{translated} translations (SPIR-V and GLSL per entry point, MSL and HLSL per module)"
    );
    assert!(translated > 100, "only {translated} translations ran");
}

#[test]
fn subgroup_modules_are_exactly_those_needing_subgroups() {
    let mut needing = Vec::new();
    for (name, src) in prior_ops::shaders::ALL {
        let module = parse(name, src);
        let without = Capabilities::all() - Capabilities::SUBGROUP - Capabilities::SUBGROUP_BARRIER;
        if validate(&module, without).is_err() {
            assert!(
                validate(&module, Capabilities::all()).is_ok(),
                "{name} fails validation for another reason"
            );
            needing.push(*name);
        }
    }
    assert_eq!(
        needing, SUBGROUP_MODULES,
        "the modules that need subgroups must be the ones only picked on adapters reporting them"
    );
}
