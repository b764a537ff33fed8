// The parameter block, bindings and fused epilogue shared by every
// convolution kernel (conv2d.wgsl, conv2d_subgroup.wgsl,
// conv_transpose2d.wgsl, conv_transpose2d_subgroup.wgsl, conv2d_tiled.wgsl
// with the tiled_* accesses at the end; Rust side:
// `ConvParams` and `epilogue_setup` in crates/ops/src/conv2d.rs).
// crates/ops/src/shaders.rs prepends this file to each (WGSL has no
// includes); see conv2d.wgsl for the layouts and the epilogue's definition.

struct Params {
    n: u32, h: u32, w: u32, cin: u32,
    ho: u32, wo: u32, cout: u32, kh: u32,
    kw: u32, stride: u32, pad: u32, dil: u32,
    flags: u32, mask_n: u32, tiles_w: u32, cout_p: u32,
    // transposed-conv subgroup variant only (0 elsewhere): output rows per
    // stride phase, workgroups per phase
    hh: u32, phase_groups: u32, _p0: u32, _p1: u32,
}

const FLAG_SCALE: u32 = 1u;
const FLAG_SHIFT: u32 = 2u;
const FLAG_RELU: u32 = 4u;
const FLAG_MASK: u32 = 8u;
const TP: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> wt: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> sb: array<f32>;
@group(0) @binding(4) var<storage, read> mask: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

fn epilogue(b: u32, oy: u32, ox: u32, co0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (ox >= p.wo) { return; }
    let pix = (b * p.ho + oy) * p.wo + ox;
    let mpix = ((b % max(p.mask_n, 1u)) * p.ho + oy) * p.wo + ox;
    for (var j = 0u; j < 8u; j++) {
        let co = co0 + j;
        if (co >= p.cout) { return; }
        var v = select(hi, lo, j < 4u)[j % 4u];
        if ((p.flags & FLAG_SCALE) != 0u) { v = v * sb[co]; }
        if ((p.flags & FLAG_SHIFT) != 0u) { v = v + sb[p.cout_p + co]; }
        if ((p.flags & FLAG_RELU) != 0u) { v = max(v, 0.0); }
        if ((p.flags & FLAG_MASK) != 0u) { v = select(0.0, v, mask[mpix * p.cout + co] > 0.0); }
        y[pix * p.cout + co] = v;
    }
}

// The f32 accesses of conv2d_tiled.wgsl (conv2d_tiled_f16.wgsl defines the
// f16 ones). Input channels c..c+3 of the pixel at scalar index `base`
// (0 past cin):
fn tiled_x4(base: u32, c: u32) -> vec4<f32> {
    if (p.cin % 4u == 0u) {
        return x4[(base + c) / 4u];
    }
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let i = base + c + j;
        if (c + j < p.cin) { v[j] = x4[i / 4u][i % 4u]; }
    }
    return v;
}

// Output channels 4q..4q+3 of a weight row (`[kh, kw, cin_p, cout_p]`, in vec4s).
fn tiled_w4(q: u32) -> vec4<f32> {
    return wt[q];
}

// The epilogue of one pixel's 4 channels co0..co0+3.
fn tiled_store4(b: u32, oy: u32, ox: u32, co0: u32, acc: vec4<f32>) {
    let pix = (b * p.ho + oy) * p.wo + ox;
    let mpix = ((b % max(p.mask_n, 1u)) * p.ho + oy) * p.wo + ox;
    for (var j = 0u; j < 4u; j++) {
        let co = co0 + j;
        if (co >= p.cout) { return; }
        var v = acc[j];
        if ((p.flags & FLAG_SCALE) != 0u) { v = v * sb[co]; }
        if ((p.flags & FLAG_SHIFT) != 0u) { v = v + sb[p.cout_p + co]; }
        if ((p.flags & FLAG_RELU) != 0u) { v = max(v, 0.0); }
        if ((p.flags & FLAG_MASK) != 0u) { v = select(0.0, v, mask[mpix * p.cout + co] > 0.0); }
        y[pix * p.cout + co] = v;
    }
}
