// FMA ceiling microkernel for `prior bench`: every invocation runs
// `p.iters` rounds of 16 independent vec4 fused multiply-adds (64 scalar
// FMAs, 128 flops per round) on registers only, no memory traffic inside the
// loop, then writes one value so the work cannot be optimised away.
// Launcher: crates/ops/src/peak.rs (`FMA_PEAK`).

struct Params {
    iters: u32,
    invocations: u32,
    a: f32,
    b: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn fma_peak(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.invocations) {
        return;
    }
    let s = f32(i & 1023u) * 1e-7;
    let a = vec4<f32>(p.a);
    let b = vec4<f32>(p.b);
    var x0 = vec4<f32>(s, s + 0.1, s + 0.2, s + 0.3);
    var x1 = x0 + 0.01; var x2 = x0 + 0.02; var x3 = x0 + 0.03;
    var x4 = x0 + 0.04; var x5 = x0 + 0.05; var x6 = x0 + 0.06; var x7 = x0 + 0.07;
    var x8 = x0 + 0.08; var x9 = x0 + 0.09; var x10 = x0 + 0.10; var x11 = x0 + 0.11;
    var x12 = x0 + 0.12; var x13 = x0 + 0.13; var x14 = x0 + 0.14; var x15 = x0 + 0.15;
    for (var k = 0u; k < p.iters; k++) {
        x0 = fma(x0, a, b); x1 = fma(x1, a, b); x2 = fma(x2, a, b); x3 = fma(x3, a, b);
        x4 = fma(x4, a, b); x5 = fma(x5, a, b); x6 = fma(x6, a, b); x7 = fma(x7, a, b);
        x8 = fma(x8, a, b); x9 = fma(x9, a, b); x10 = fma(x10, a, b); x11 = fma(x11, a, b);
        x12 = fma(x12, a, b); x13 = fma(x13, a, b); x14 = fma(x14, a, b); x15 = fma(x15, a, b);
    }
    let t = (x0 + x1 + x2 + x3) + (x4 + x5 + x6 + x7) + (x8 + x9 + x10 + x11) + (x12 + x13 + x14 + x15);
    out[i] = t.x + t.y + t.z + t.w;
}
