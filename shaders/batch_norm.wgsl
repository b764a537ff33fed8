// Eval-mode batch normalisation in the three conventions of the checkpoints,
// computed from the stored statistics exactly as PyTorch writes them
// (channels-last: c = i % C). `s` holds the statistics packed per channel.
//
//   bn_bf_sd:    y = x / sd[c] · gamma[c]                    s = [sd, gamma]            (BF-CNN)
//   bn_bf_var:   y = x / (sqrt(var[c]) + 1e-5) · weight[c]   s = [var, weight]          (bias-free DnCNN)
//   bn_standard: y = (x − mean[c]) / sqrt(var[c] + 1e-5) · weight[c] + bias[c]
//                                                            s = [mean, var, weight, bias]
// Set p.relu = 1 to apply a ReLU after the normalisation.

struct Params {
    len: u32,
    channels: u32,
    relu: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> s: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn finish(i: u32, v: f32) {
    y[i] = select(v, max(v, 0.0), p.relu != 0u);
}

@compute @workgroup_size(64)
fn bn_bf_sd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.len) { return; }
    let c = i % p.channels;
    finish(i, x[i] / s[c] * s[p.channels + c]);
}

@compute @workgroup_size(64)
fn bn_bf_var(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.len) { return; }
    let c = i % p.channels;
    finish(i, x[i] / (sqrt(s[c]) + 1e-5) * s[p.channels + c]);
}

@compute @workgroup_size(64)
fn bn_standard(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.len) { return; }
    let c = i % p.channels;
    let C = p.channels;
    finish(i, (x[i] - s[c]) / sqrt(s[C + c] + 1e-5) * s[2u * C + c] + s[3u * C + c]);
}
