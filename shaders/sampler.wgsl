// Kernels of the stochastic coarse-to-fine sampler (Kadkhodaie & Simoncelli
// 2021; ../shared/README.md). Per iteration t, on a batch of n samples of
// N = H·W·C values each:
//
//   direction:  d = f + m ⊙ (y − f) − b   (mode 1: masking operators, M Mᵀ v = m ⊙ v)
//               d = f + pu − b            (mode 2: pu = M Mᵀ (y − f) computed by the operator)
//               (b = M x_c, and m, broadcast over the batch; synthesis uses d = f)
//   sq_partial: per-sample partial sums of d² (workgroup (g, s))
//   coeffs:     per sample: σ_t = sqrt(Σd²/N), γ_t = σ_t·sqrt((1 − βh_t)² − (1 − h_t)²),
//               the sample's status, and the step coefficients (h_eff, γ_eff) the
//               update uses ((0, 0) for samples that stopped before iteration t)
//   update:     y ← y − h_eff·d + γ_eff·z,  z = normal(key_t, s·N + flat (C,H,W) index)
//
// State per sample (STATE = 8 floats, crates/ops/src/sampler.rs):
//   [0] σ of the sample's last computed iteration  [1] status: 0 running,
//   1 converged (σ ≤ σ_L), 2 diverged (σ > σ_max or not finite)
//   [2] iterations done (updates applied)  [3] h_eff  [4] γ_eff
//   [5] σ of the last iteration whose update was applied (the last good one)
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
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> m: array<f32>;
@group(0) @binding(4) var<storage, read> e: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const STATE: u32 = 8u;

fn mix(x0: u32) -> u32 {
    var x = x0;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

// ln and cos with < 1 ulp error (fdlibm's logf, and a Cody–Waite reduction
// plus fdlibm's float kernels for cos): the builtins may be far less accurate
// (Vulkan allows an absolute error of 2^-21 for log near 1 and 2^-11 for cos,
// and lavapipe's log gives 6e-6 errors in z near u1 = 1), which would make
// the noise depend on the adapter.
fn ln_acc(x: f32) -> f32 {
    let bits = bitcast<u32>(x);
    var k = i32((bits >> 23u) & 0xffu) - 127;
    var m = bitcast<f32>((bits & 0x007fffffu) | 0x3f800000u);
    if (m > 1.4142135) {
        m = m * 0.5;
        k = k + 1;
    }
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (4.0000000596e-01 + w * (2.2222198546e-01 + w * 1.5313838422e-01));
    let t2 = z * (6.6666668653e-01 + w * (2.8571429849e-01 + w * (1.8183572590e-01 + w * 1.4798198640e-01)));
    let r = t2 + t1;
    let hfsq = 0.5 * f * f;
    let dk = f32(k);
    return dk * 6.9313812256e-01 - ((hfsq - (s * (hfsq + r) + dk * 9.0580006145e-06)) - f);
}

fn cos_kernel(x: f32) -> f32 {
    let z = x * x;
    return 1.0 - 0.5 * z + z * z * (4.1666667908e-02 + z * (-1.3888889225e-03 + z * (2.4801587642e-05
        + z * (-2.7557314297e-07 + z * (2.0875723372e-09 + z * -1.1359647598e-11)))));
}

fn sin_kernel(x: f32) -> f32 {
    let z = x * x;
    return x + x * z * (-1.6666667163e-01 + z * (8.3333337680e-03 + z * (-1.9841270114e-04
        + z * (2.7557314297e-06 + z * (-2.5050759689e-08 + z * 1.5896910177e-10)))));
}

// cos(x) for 0 ≤ x < 8.
fn cos_acc(x: f32) -> f32 {
    let q = floor(x * 0.63661975 + 0.5);
    let r = (x - q * 1.5707855225e+00) - q * 1.0804334124e-05;
    let k = u32(q) & 3u;
    if (k == 0u) { return cos_kernel(r); }
    if (k == 1u) { return -sin_kernel(r); }
    if (k == 2u) { return -cos_kernel(r); }
    return sin_kernel(r);
}

fn normal(key: u32, i: u32) -> f32 {
    let a0 = mix(i ^ key);
    let b0 = mix(a0 ^ 0x68bc21ebu);
    let c0 = mix(b0 ^ 0x02e5be93u);
    let u1 = (f32(b0 >> 8u) + 0.5) * 5.9604645e-8;
    let u2 = f32(c0 >> 8u) * 5.9604645e-8;
    return sqrt(-2.0 * ln_acc(u1)) * cos_acc(6.2831855 * u2);
}

fn counter(j: u32) -> u32 {
    let c = j % p.c;
    let pix = j / p.c;
    let x = pix % p.w;
    let r = pix / p.w;
    let row = r % p.h;
    let s = r / p.h;
    let hw = p.h * p.w;
    return s * (hw * p.c) + c * hw + row * p.w + x;
}

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
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
    let sigma = sqrt(scratch[0] / f32(p.per_sample));
    out[o] = sigma;
    // `!(σ <= σ_max)` is also true for NaN.
    if (!(sigma <= p.sigma_max)) {
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
    if (sigma <= p.sigma_final) { out[o + 1u] = 1.0; }
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
