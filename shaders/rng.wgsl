// prior's counter-based Gaussian generator (same u32/f32 arithmetic as
// crates/ops/src/reference/rng.rs and tests/golden/make_golden.py).
//
//   mix(x): Wellons' lowbias32 hash
//   normal(key, i): Box–Muller from two hashed words of counter i
//
// The key (from seed and stream) is computed on the CPU and passed in p.key.
// Element index i of a channels-last value at (s, h, w, c) is the flat
// (C, H, W) index of the sample plus the sample offset:
//   i = p.offset + s·C·H·W + c·H·W + h·W + w
// so a seed gives the same numbers whatever the storage layout or adapter.
//
//   normal:     y = z
//   axpy_normal: y = a + p.scale · z      (e.g. y₀ = base + σ₀ z)

struct Params {
    len: u32,
    key: u32,
    offset: u32,
    h: u32,
    w: u32,
    c: u32,
    a_len: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// mix(), ln_acc(), cos_acc(), normal(), noise_counter(), flat_index(): rng_core.wgsl, prepended by crates/ops/src/shaders.rs.
// Counter of channels-last element j.
fn counter(j: u32) -> u32 {
    return p.offset + noise_counter(j, p.h, p.w, p.c);
}

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return flat_index(gid, nwg);
}

@compute @workgroup_size(64)
fn normal_fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = index(gid, nwg);
    if (j >= p.len) { return; }
    y[j] = normal(p.key, counter(j));
}

// a is broadcast over samples when it holds fewer values (a_len divides len).
@compute @workgroup_size(64)
fn axpy_normal(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = index(gid, nwg);
    if (j >= p.len) { return; }
    y[j] = a[j % p.a_len] + p.scale * normal(p.key, counter(j));
}
