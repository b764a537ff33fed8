// The parameter block, storage bindings and helpers shared by the f16-storage
// convolutions (conv2d_f16.wgsl; conv2d_tiled_f16.wgsl), prepended to each
// by crates/ops/src/shaders.rs; each adds its weight binding (2), whose
// vector width differs. Layouts: see conv2d_f16.wgsl.

// The twin of conv_common.wgsl's (checked against `ConvParams` by reflection).
struct Params {
    n: u32, h: u32, w: u32, cin: u32,
    ho: u32, wo: u32, cout: u32, kh: u32,
    kw: u32, stride: u32, pad: u32, dil: u32,
    flags: u32, mask_n: u32, tiles_w: u32, cout_p: u32,
    hh: u32, phase_groups: u32, _p0: u32, _p1: u32,
}

const FLAG_SCALE: u32 = 1u;
const FLAG_SHIFT: u32 = 2u;
const FLAG_RELU: u32 = 4u;
const FLAG_IN_F32: u32 = 32u;
const FLAG_OUT_F32: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
// x: f16 pairs, or f32 bits with FLAG_IN_F32.
@group(0) @binding(1) var<storage, read> xs: array<u32>;
// scale (0..cout_p) and shift (cout_p..2·cout_p), f32.
@group(0) @binding(3) var<storage, read> sb: array<f32>;
// y: f16 pairs, or f32 bits with FLAG_OUT_F32.
@group(0) @binding(4) var<storage, read_write> y: array<u32>;

// Input element i as f32.
fn x_at(i: u32) -> f32 {
    if ((p.flags & FLAG_IN_F32) != 0u) { return bitcast<f32>(xs[i]); }
    return unpack2x16float(xs[i / 2u])[i % 2u];
}

// The epilogue of output channel co: scale, shift, ReLU.
fn epi(co: u32, v: f32) -> f32 {
    var r = v;
    if ((p.flags & FLAG_SCALE) != 0u) { r = r * sb[co]; }
    if ((p.flags & FLAG_SHIFT) != 0u) { r = r + sb[p.cout_p + co]; }
    if ((p.flags & FLAG_RELU) != 0u) { r = max(r, 0.0); }
    return r;
}
