// Element-wise kernels over flat channels-last tensors.
//
//   relu:      y = max(x, 0)
//   relu_mask: y = t where m > 0 else 0     (JVP/VJP of ReLU; m = primal output)
//   axpby:     y = alpha·a + beta·b         (residual subtraction: alpha = 1, beta = −1)
//   affine_c:  y = x·scale[c] + shift[c]    (c = channel, the fastest index)
//
// All entries take the element count in p.len and fold large dispatches
// into two dimensions (index = gid.x + gid.y · 64 · groups_x).

struct Params {
    len: u32,
    channels: u32,
    mask_len: u32,
    _pad: u32,
    alpha: f32,
    beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

// relu: a = x (b unused)
@compute @workgroup_size(64)
fn relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    y[i] = max(a[i], 0.0);
}

// relu_mask: a = tangent (len = n_t · mask_len), b = primal ReLU output (mask_len)
@compute @workgroup_size(64)
fn relu_mask(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    y[i] = select(0.0, a[i], b[i % p.mask_len] > 0.0);
}

@compute @workgroup_size(64)
fn axpby(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    y[i] = p.alpha * a[i] + p.beta * b[i];
}

// affine_c: a = x, b = [scale[0..C], shift[0..C]]
@compute @workgroup_size(64)
fn affine_c(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    let c = i % p.channels;
    y[i] = a[i] * b[c] + b[p.channels + c];
}
