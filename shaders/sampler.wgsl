// Kernels of the stochastic coarse-to-fine sampler (Kadkhodaie & Simoncelli
// 2021; ../shared/README.md). Per iteration t, on a batch of n samples of
// N = H·W·C values each:
//
//   direction:  d = f + m ⊙ (y − f) − b   (mode 1: masking operators, M Mᵀ v = m ⊙ v)
//               d = f + pu − b            (mode 2: pu = M Mᵀ (y − f) computed by the operator)
//               (b = M x_c, and m, broadcast over the batch; synthesis uses d = f)
//   sq_partial: per-sample partial sums of d² (workgroup (g, s))
//   coeffs:     per sample: the measured level sqrt(Σd²/N); σ_t = that (mode 0, the
//               authors' schedule) or the level the recursion carries (mode 1:
//               σ_1 = σ₀, σ_{t+1} = (1 − βh_t)·σ_t, for noise-conditioned models);
//               γ_t = σ_t·sqrt((1 − βh_t)² − (1 − h_t)²), the sample's status, the
//               step coefficients (h_eff, γ_eff) the update uses ((0, 0) for samples
//               that stopped before iteration t), and the level of the next call
//   update:     y ← y − h_eff·d + γ_eff·z,  z = normal(key_t, s·N + flat (C,H,W) index)
//   variance:   the noise variance given to the model at the next call, σ_next²
//
// State per sample (STATE = 8 floats, crates/ops/src/sampler.rs):
//   [0] σ of the sample's last computed iteration  [1] status: 0 running,
//   1 converged (σ ≤ σ_L), 2 diverged (σ > σ_max or not finite)
//   [2] iterations done (updates applied)  [3] h_eff  [4] γ_eff
//   [5] σ of the last iteration whose update was applied (the last good one)
//   [6] σ_next: the noise level of the iterate the model sees next (σ₀ at
//       first; then σ_t (mode 0) or (1 − βh_t)·σ_t (mode 1))
//   [7] the measured level sqrt(Σd²/N) of the last computed iteration
// Divergence is judged on the measured level in both modes.
// The authors' loop applies the update of the iteration whose σ_t reaches
// σ_L and then stops; we do the same. A diverged iteration's update is not
// applied, so y keeps the last good iterate.
//
// The noise functions below are the same as shaders/rng.wgsl (WGSL has no
// includes); crates/ops/tests/sampler.rs checks them against the CPU generator.

struct Params {
    len: u32,
    per_sample: u32,
    n: u32,
    groups: u32,
    h: u32,
    w: u32,
    c: u32,
    key: u32,
    m_len: u32,
    b_len: u32,
    mode: u32,
    t: u32,
    h_t: f32,
    beta: f32,
    sigma_final: f32,
    sigma_max: f32,
    // Counter of this batch's first element: sample s of the batch draws
    // the noise of sample (first_sample + s) of one big run.
    offset: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> m: array<f32>;
@group(0) @binding(4) var<storage, read> e: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const STATE: u32 = 8u;

// mix(), ln_acc(), cos_acc(), normal(), noise_counter(), flat_index(): rng_core.wgsl, prepended by crates/ops/src/shaders.rs.
fn counter(j: u32) -> u32 {
    return p.offset + noise_counter(j, p.h, p.w, p.c);
}

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return flat_index(gid, nwg);
}

// a = f, b = y (mode 1) or pu (mode 2), m = mask (mode 1), e = M x_c; out = d.
@compute @workgroup_size(64)
fn direction(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = index(gid, nwg);
    if (j >= p.len) { return; }
    let f = a[j];
    let bx = e[j % p.b_len];
    if (p.mode == 1u) {
        out[j] = f + m[j % p.m_len] * (b[j] - f) - bx;
    } else {
        out[j] = f + b[j] - bx;
    }
}

var<workgroup> scratch: array<f32, 256>;

fn tree(lid: u32) {
    for (var s = 128u; s > 0u; s = s >> 1u) {
        workgroupBarrier();
        if (lid < s) { scratch[lid] += scratch[lid + s]; }
    }
}

// a = d; out[s·groups + g] = partial Σ d² of sample s. Dispatch (groups, n).
@compute @workgroup_size(256)
fn sq_partial(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let s = wid.y;
    let base = s * p.per_sample;
    var acc = 0.0;
    for (var i = wid.x * 256u + lid; i < p.per_sample; i += p.groups * 256u) {
        let v = a[base + i];
        acc += v * v;
    }
    scratch[lid] = acc;
    tree(lid);
    if (lid == 0u) { out[s * p.groups + wid.x] = scratch[0]; }
}

// a = partials; out = state. One workgroup per sample.
@compute @workgroup_size(256)
fn coeffs(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let s = wid.x;
    var acc = 0.0;
    for (var i = lid; i < p.groups; i += 256u) { acc += a[s * p.groups + i]; }
    scratch[lid] = acc;
    tree(lid);
    if (lid != 0u) { return; }
    let o = s * STATE;
    if (out[o + 1u] != 0.0) {
        out[o + 3u] = 0.0;
        out[o + 4u] = 0.0;
        return;
    }
    let measured = sqrt(scratch[0] / f32(p.per_sample));
    var sigma = measured;
    if (p.mode == 1u) { sigma = out[o + 6u]; }
    if (p.mode == 2u) { sigma = sqrt(b[s]); }
    out[o] = sigma;
    out[o + 7u] = measured;
    // `!(σ <= σ_max)` is also true for NaN.
    if (!(measured <= p.sigma_max) || !(sigma <= p.sigma_max)) {
        out[o + 1u] = 2.0;
        out[o + 3u] = 0.0;
        out[o + 4u] = 0.0;
        return;
    }
    let u = 1.0 - p.beta * p.h_t;
    let v = 1.0 - p.h_t;
    let gamma = sigma * sqrt(max(u * u - v * v, 0.0));
    out[o + 2u] = f32(p.t);
    out[o + 3u] = p.h_t;
    out[o + 4u] = gamma;
    out[o + 5u] = sigma;
    if (p.mode == 1u) { out[o + 6u] = u * sigma; } else { out[o + 6u] = sigma; }
    if (sigma <= p.sigma_final) { out[o + 1u] = 1.0; }
}

// a = state; out = t, [n] (σ_next² per sample). Dispatch (⌈n/64⌉, 1, 1).
@compute @workgroup_size(64)
fn variance(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = gid.x;
    if (s >= p.n) { return; }
    let v = a[s * STATE + 6u];
    out[s] = v * v;
}

// a = d, b = state; out = y (updated in place).
@compute @workgroup_size(64)
fn update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = index(gid, nwg);
    if (j >= p.len) { return; }
    let o = (j / p.per_sample) * STATE;
    let h = b[o + 3u];
    let g = b[o + 4u];
    if (h == 0.0 && g == 0.0) { return; }
    out[j] = out[j] - h * a[j] + g * normal(p.key, counter(j));
}
