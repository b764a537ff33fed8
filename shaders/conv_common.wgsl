// The parameter block, bindings and fused epilogue shared by every
// convolution kernel (conv2d.wgsl, conv2d_subgroup.wgsl,
// conv_transpose2d.wgsl, conv_transpose2d_subgroup.wgsl; Rust side:
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
