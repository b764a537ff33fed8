// Fully connected layers on small batches of vectors (the noise-level
// embedding MLP and the per-normalisation conditioning layers of the energy
// UNet): one invocation per output value, f32 accumulation.
//
//   linear:   y[b, o] = Σ_i W[o, i]·x[b, i] (+ bias[o] when flags & 1)
//             (PyTorch nn.Linear, W is (rows = out, cols = in), row-major)
//   linear_t: y[b, i] = Σ_o W[o, i]·x[b, o]   (the VJP: Wᵀ·x, no bias)
//
// The JVP of a linear layer is `linear` without the bias.

struct Params {
    n: u32,
    rows: u32,
    cols: u32,
    flags: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

@compute @workgroup_size(64)
fn linear(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = index(gid, nwg);
    if (k >= p.n * p.rows) { return; }
    let b = k / p.rows;
    let o = k % p.rows;
    var acc = 0.0;
    if ((p.flags & 1u) != 0u) { acc = bias[o]; }
    let xo = b * p.cols;
    let wo = o * p.cols;
    for (var i = 0u; i < p.cols; i++) {
        acc += wt[wo + i] * x[xo + i];
    }
    y[k] = acc;
}

@compute @workgroup_size(64)
fn linear_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = index(gid, nwg);
    if (k >= p.n * p.cols) { return; }
    let b = k / p.cols;
    let i = k % p.cols;
    var acc = 0.0;
    let xo = b * p.rows;
    for (var o = 0u; o < p.rows; o++) {
        acc += wt[o * p.cols + i] * x[xo + o];
    }
    y[k] = acc;
}

// sample_axpy: y[k] = x[k] + a[k / per]·v[k] (a per-sample scalar times a
// tensor, e.g. x̂ = y − t_b·∇U); x = binding 1, a = binding 2, v = binding 3,
// p.n = total element count, p.cols = per-sample element count.
@compute @workgroup_size(64)
fn sample_axpy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = index(gid, nwg);
    if (k >= p.n) { return; }
    y[k] = x[k] + wt[k / p.cols] * bias[k];
}
