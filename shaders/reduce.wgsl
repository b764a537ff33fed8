// Reductions. Two passes: `*_partial` reduces p.len elements to one partial
// sum per workgroup of 256 (each invocation strides over the input), then
// `sum_final` adds the partials into y[0]. Sums are in f32 with a tree
// reduction in workgroup memory (relative error ~1e-7·log2(n)).
//
//   sq_diff_partial: Σ (a − b)²   (MSE, PSNR, σ_t = ‖d‖/√N)
//   dot_partial:     Σ a · b      (inner products)

struct Params {
    len: u32,
    groups: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> scratch: array<f32, 256>;

fn tree(lid: u32) {
    for (var s = 128u; s > 0u; s = s >> 1u) {
        workgroupBarrier();
        if (lid < s) { scratch[lid] += scratch[lid + s]; }
    }
}

@compute @workgroup_size(256)
fn sq_diff_partial(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    var acc = 0.0;
    for (var i = wid.x * 256u + lid; i < p.len; i += p.groups * 256u) {
        let d = a[i] - b[i];
        acc += d * d;
    }
    scratch[lid] = acc;
    tree(lid);
    if (lid == 0u) { y[wid.x] = scratch[0]; }
}

@compute @workgroup_size(256)
fn dot_partial(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    var acc = 0.0;
    for (var i = wid.x * 256u + lid; i < p.len; i += p.groups * 256u) {
        acc += a[i] * b[i];
    }
    scratch[lid] = acc;
    tree(lid);
    if (lid == 0u) { y[wid.x] = scratch[0]; }
}

// a = partial sums (p.len of them); b unused.
@compute @workgroup_size(256)
fn sum_final(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.len; i += 256u) { acc += a[i]; }
    scratch[lid] = acc;
    tree(lid);
    if (lid == 0u) { y[0] = scratch[0]; }
}

// dot_per_sample: y[s] = Σ_{i < p.len} a[s·p.len + i]·b[s·p.len + i], one
// workgroup per sample s < p.groups (per-image inner products, e.g. the
// energy U = ½⟨y, f(y)⟩ of each image of a batch).
@compute @workgroup_size(256)
fn dot_per_sample(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let s = wid.x + wid.y * 65535u;
    if (s >= p.groups) { return; }
    let base = s * p.len;
    var acc = 0.0;
    for (var i = lid; i < p.len; i += 256u) { acc += a[base + i] * b[base + i]; }
    scratch[lid] = acc;
    tree(lid);
    if (lid == 0u) { y[s] = scratch[0]; }
}
