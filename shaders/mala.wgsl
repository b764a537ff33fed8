// Kernels of the Metropolis-adjusted Langevin sampler (MALA) for energy
// models (crates/algos/src/mala.rs). One step at noise variance t with step
// size ε, on a batch of n chains of N = H·W·C values each, with U = U(·, t)
// and g = ∇_yU:
//
//   propose:    y' = y − ε·g + √(2ε)·z,  z = normal(key, s·N + flat (C,H,W) index)
//   mh_partial: per-sample partial sums of
//               (y − y' + ε·g')² − (y' − y + ε·g)²    (workgroup (gi, s))
//   accept:     per sample: Δ = Σ partials,
//               log α = U(y) − U(y') − Δ/(4ε)
//                     = U(y) − U(y') + log q(y | y') − log q(y' | y)
//               (q(b | a) = N(b; a − ε∇U(a), 2ε·I)); u = uniform(key_u, s);
//               accept iff ln u < log α (so a NaN or infinite U(y') or g'
//               is rejected); the state keeps U of the accepted state and
//               counts acceptances
//   select:     y ← y', g ← g' where the sample accepted (in place)
//   set_energy: the state's U ← U(y, t) (at the start of each level)
//
// State per sample (STATE = 4 floats, crates/ops/src/mala.rs):
//   [0] U of the current state  [1] acceptances so far (all levels)
//   [2] 1 if the last proposal was accepted, else 0  [3] log α of the last proposal
//
// uniform(key, s) is a 24-bit uniform in (0, 1) from the hash of
// rng_core.wgsl (prepended by crates/ops/src/shaders.rs).

struct Params {
    len: u32,
    per_sample: u32,
    n: u32,
    groups: u32,
    h: u32,
    w: u32,
    c: u32,
    key: u32,
    eps: f32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> e: array<f32>;
@group(0) @binding(4) var<storage, read> d: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> out2: array<f32>;

const STATE: u32 = 4u;

fn counter(j: u32) -> u32 {
    return noise_counter(j, p.h, p.w, p.c);
}

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return flat_index(gid, nwg);
}

fn uniform01(key: u32, i: u32) -> f32 {
    let h = mix(mix(i ^ key) ^ 0x68bc21ebu);
    return (f32(h >> 8u) + 0.5) * 5.9604645e-8;
}

// a = y, b = g; out = y'.
@compute @workgroup_size(64)
fn propose(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = index(gid, nwg);
    if (j >= p.len) { return; }
    out[j] = a[j] - p.eps * b[j] + sqrt(2.0 * p.eps) * normal(p.key, counter(j));
}

var<workgroup> scratch: array<f32, 256>;

fn tree(lid: u32) {
    for (var s = 128u; s > 0u; s = s >> 1u) {
        workgroupBarrier();
        if (lid < s) { scratch[lid] += scratch[lid + s]; }
    }
}

// a = y, b = y', e = g, d = g'; out[s·groups + gi] = partial sum. Dispatch (groups, n).
@compute @workgroup_size(256)
fn mh_partial(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let s = wid.y;
    let base = s * p.per_sample;
    var acc = 0.0;
    for (var i = wid.x * 256u + lid; i < p.per_sample; i += p.groups * 256u) {
        let k = base + i;
        let back = a[k] - b[k] + p.eps * d[k];
        let fwd = b[k] - a[k] + p.eps * e[k];
        acc += back * back - fwd * fwd;
    }
    scratch[lid] = acc;
    tree(lid);
    if (lid == 0u) { out[s * p.groups + wid.x] = scratch[0]; }
}

// a = partials, b = U(y') [n]; out = state. One workgroup per sample.
@compute @workgroup_size(256)
fn accept(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let s = wid.x;
    var acc = 0.0;
    for (var i = lid; i < p.groups; i += 256u) { acc += a[s * p.groups + i]; }
    scratch[lid] = acc;
    tree(lid);
    if (lid != 0u) { return; }
    let o = s * STATE;
    let u_prop = b[s];
    let log_alpha = out[o] - u_prop - scratch[0] / (4.0 * p.eps);
    let take = ln_acc(uniform01(p.key, s)) < log_alpha;
    out[o + 3u] = log_alpha;
    if (take) {
        out[o] = u_prop;
        out[o + 1u] = out[o + 1u] + 1.0;
        out[o + 2u] = 1.0;
    } else {
        out[o + 2u] = 0.0;
    }
}

// a = state, b = y', e = g'; out = y, out2 = g (in place).
@compute @workgroup_size(64)
fn select(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = index(gid, nwg);
    if (j >= p.len) { return; }
    if (a[(j / p.per_sample) * STATE + 2u] == 1.0) {
        out[j] = b[j];
        out2[j] = e[j];
    }
}

// a = U [n]; out = state. Dispatch (⌈n/64⌉, 1, 1).
@compute @workgroup_size(64)
fn set_energy(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = gid.x;
    if (s >= p.n) { return; }
    out[s * STATE] = a[s];
}
