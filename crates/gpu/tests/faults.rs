//! GPU faults reach the caller as errors naming what was being done, never
//! as panics: a refused allocation (an impossible buffer, a device opened
//! with a lowered limit), a shader that does not validate, an error outside
//! any scope, and a device destroyed mid-run. After an allocation or
//! validation error the same `Gpu` keeps working.

use pollster::block_on;
use prior_gpu::{Access, Dispatch, FaultInjection, Gpu, GpuError, GpuOptions, Kernel, Shape};

fn gpu_with(fault: FaultInjection) -> Gpu {
    block_on(Gpu::new(GpuOptions {
        fault,
        ..GpuOptions::from_env()
    }))
    .expect("a GPU adapter (lavapipe on CI)")
}

/// Uploads and reads back a small tensor: the device still works.
fn round_trip(gpu: &Gpu) {
    let data: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5).collect();
    let t = gpu.upload(Shape::vector(data.len()), &data);
    let u = gpu.duplicate(&t);
    assert_eq!(
        block_on(gpu.read(&u)).expect("a small read after the fault"),
        data
    );
}

#[test]
fn an_impossible_buffer_is_an_error_naming_the_tensor() {
    let gpu = gpu_with(FaultInjection::default());
    // Over the device's max_buffer_size (2 GiB on lavapipe, 4 GiB or so elsewhere) on every adapter.
    let n = (gpu.limits.max_buffer_size / 4 + 1024) as usize;
    let t = gpu.empty(Shape::vector(n));
    let err =
        block_on(gpu.read(&t)).expect_err("a buffer over max_buffer_size cannot be allocated");
    assert!(err.is_allocation_failure(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("a tensor [n=1, h=1, w=1, c={n}]")),
        "{msg}"
    );
    assert!(
        msg.starts_with("allocating") && msg.contains("greater than the maximum buffer size"),
        "{msg}"
    );
    drop(t);
    round_trip(&gpu);
}

#[test]
fn a_lowered_device_limit_makes_allocations_fail_and_the_device_recovers() {
    let limit = 1 << 20;
    let gpu = gpu_with(FaultInjection {
        alloc_limit: Some(limit),
        ..Default::default()
    });
    // Planning still uses the adapter's limit: the failure is the driver's.
    assert!(gpu.max_buffer_bytes > limit);
    let data = vec![1.0f32; (limit / 4 + 1) as usize];
    let t = gpu.upload(Shape::vector(data.len()), &data);
    let err =
        block_on(gpu.read(&t)).expect_err("a 1 MiB + 4 B tensor on a device limited to 1 MiB");
    assert!(err.is_allocation_failure(), "{err}");
    assert_eq!(
        err.failed_allocation_bytes().map(|b| b > limit),
        Some(true),
        "{err:?}"
    );
    // The error is cleared once returned and the refused buffer is not pooled.
    drop(t);
    round_trip(&gpu);
    block_on(gpu.check("after the round trip")).expect("no error left");
}

#[test]
fn a_shader_that_does_not_validate_is_an_error_naming_the_kernel() {
    static BAD: Kernel = Kernel {
        file: "broken.wgsl",
        source: "struct P { n: u32 }\n@group(0) @binding(0) var<uniform> p: P;\n\
                 @group(0) @binding(1) var<storage, read_write> out: array<f32>;\n\
                 @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) { out[g.x] = undefined_name; }",
        entry: "main",
        bindings: &[Access::ReadWrite],
    };
    let gpu = gpu_with(FaultInjection::default());
    let y = gpu.zeros(Shape::vector(64));
    gpu.launch(&BAD, &[], &[0u32; 4], &[&y], Dispatch::flat(64, 64));
    let err = block_on(gpu.read(&y)).expect_err("the kernel does not compile");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            GpuError::Fault {
                kind: "validation",
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("compiling kernel broken.wgsl (entry point main)")
            && msg.contains("undefined_name"),
        "{msg}"
    );
    round_trip(&gpu);
}

#[test]
fn an_error_outside_any_scope_is_recorded_not_a_panic() {
    let gpu = gpu_with(FaultInjection::default());
    // Straight on the device, bypassing prior's scopes: wgpu's default handler would panic here.
    let _b = gpu
        .device
        .create_buffer(&prior_gpu::wgpu::BufferDescriptor {
            label: Some("unchecked"),
            size: gpu.limits.max_buffer_size + 4096,
            usage: prior_gpu::wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
    let err = block_on(gpu.check("checking")).expect_err("the uncaptured error is kept");
    assert!(
        err.to_string().contains("outside prior's checked calls"),
        "{err}"
    );
    block_on(gpu.check("checking again")).expect("cleared once returned");
}

#[test]
fn a_device_destroyed_mid_run_is_a_lost_device_error_from_then_on() {
    let gpu = gpu_with(FaultInjection::default());
    round_trip(&gpu);
    let t = gpu.upload(Shape::vector(256), &[2.0; 256]);
    gpu.device.destroy();
    let err = block_on(gpu.read(&t)).expect_err("the device is gone");
    assert!(err.is_device_lost(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("was lost") && msg.contains("reading back a tensor [n=1, h=1, w=1, c=256]"),
        "{msg}"
    );
    assert!(gpu.is_lost());
    // Every later call says the same, without hanging.
    let u = gpu.zeros(Shape::vector(16));
    assert!(block_on(gpu.read(&u))
        .expect_err("still lost")
        .is_device_lost());
    assert!(block_on(gpu.check("after"))
        .expect_err("still lost")
        .is_device_lost());
}

#[test]
fn injected_device_loss_strikes_at_the_chosen_submission() {
    let gpu = gpu_with(FaultInjection {
        lose_device_at_submit: Some(2),
        ..Default::default()
    });
    round_trip(&gpu); // submission 1
    let t = gpu.upload(Shape::vector(8), &[1.0; 8]);
    let err = block_on(gpu.read(&t)).expect_err("submission 2 loses the device");
    assert!(err.is_device_lost(), "{err}");
}

#[test]
fn fault_injection_is_parsed_and_bad_values_are_refused() {
    assert_eq!(
        FaultInjection::parse("alloc-limit=4096, lose-device=3").unwrap(),
        FaultInjection {
            alloc_limit: Some(4096),
            lose_device_at_submit: Some(3)
        }
    );
    assert_eq!(
        FaultInjection::parse("").unwrap(),
        FaultInjection::default()
    );
    assert!(FaultInjection::parse("lose-device")
        .unwrap_err()
        .contains("KEY=VALUE"));
    assert!(FaultInjection::parse("explode=1")
        .unwrap_err()
        .contains("unknown fault"));
    assert!(FaultInjection::parse("alloc-limit=lots")
        .unwrap_err()
        .contains("not a number"));
}
