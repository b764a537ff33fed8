// 2×2 average pooling (stride 2) and its adjoint, channels-last.
//
//   avg_pool2: y[b, oy, ox, c] = ¼ Σ_{dy,dx ∈ {0,1}} x[b, 2oy+dy, 2ox+dx, c]
//              with ho = ⌊h/2⌋, wo = ⌊w/2⌋ (PyTorch avg_pool2d(2, 2): an odd
//              last row/column is dropped).
//   upsample2: y[b, iy, ix, c] = scale · x[b, ⌊iy/2⌋, ⌊ix/2⌋, c] for
//              iy < 2·ho_in, ix < 2·wo_in, and 0 in an extra odd row/column
//              (h, w are the output size). With scale = ¼ this is the VJP of
//              avg_pool2 (the JVP is avg_pool2 itself: it is linear).
//
//   avg_pool2_f16: avg_pool2 on f16 storage (`--precision f16`): x and y
//              hold two f16 values per word (channels c, c + 1 of a pixel;
//              p.c counts words per pixel), averaged in f32 and rounded
//              once. An f32 load or store carries a pair's bits intact: they
//              form an f32 NaN only when the high half is itself inf or NaN.
//
// Flat kernels: one output element per invocation, index folded as
// gid.x + gid.y · 64 · num_workgroups.x.

struct Params {
    n: u32,
    // input size
    h: u32,
    w: u32,
    c: u32,
    // output size
    ho: u32,
    wo: u32,
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// The index in x of the top-left element of output element i's 2×2 block.
fn block_start(i: u32) -> u32 {
    let ch = i % p.c;
    let pix = i / p.c;
    let ox = pix % p.wo;
    let oy = (pix / p.wo) % p.ho;
    let b = pix / (p.wo * p.ho);
    return ((b * p.h + 2u * oy) * p.w + 2u * ox) * p.c + ch;
}

@compute @workgroup_size(64)
fn avg_pool2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.n * p.ho * p.wo * p.c) { return; }
    let r0 = block_start(i);
    let r1 = r0 + p.w * p.c;
    y[i] = 0.25 * ((x[r0] + x[r0 + p.c]) + (x[r1] + x[r1 + p.c]));
}

fn pair(i: u32) -> vec2<f32> {
    return unpack2x16float(bitcast<u32>(x[i]));
}

@compute @workgroup_size(64)
fn avg_pool2_f16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.n * p.ho * p.wo * p.c) { return; }
    let r0 = block_start(i);
    let r1 = r0 + p.w * p.c;
    let v = 0.25 * ((pair(r0) + pair(r0 + p.c)) + (pair(r1) + pair(r1 + p.c)));
    y[i] = bitcast<f32>(pack2x16float(v));
}

@compute @workgroup_size(64)
fn upsample2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.n * p.ho * p.wo * p.c) { return; }
    let ch = i % p.c;
    let pix = i / p.c;
    let ox = pix % p.wo;
    let oy = (pix / p.wo) % p.ho;
    let b = pix / (p.wo * p.ho);
    let iy = oy / 2u;
    let ix = ox / 2u;
    var v = 0.0;
    if (iy < p.h && ix < p.w) {
        v = p.scale * x[((b * p.h + iy) * p.w + ix) * p.c + ch];
    }
    y[i] = v;
}
