// The f16 storage of conv2d_tiled.wgsl (`--precision f16` where the tuner
// runs a tiled kernel for the layer's shape; launchers:
// `Conv2d::forward_f16` and `ConvTranspose2d::forward_f16`). Prepended by
// crates/ops/src/shaders.rs to conv2d_tiled.wgsl (after the tile-shape
// header and conv_f16_common.wgsl) in place of conv_common.wgsl, with the
// layouts of conv2d_f16.wgsl:
// - x: [n, h, w, cin], element i in half i % 2 of word i / 2, or plain f32
//   bits when FLAG_IN_F32;
// - W: f16 [kh, kw, cin_p, cout_p], two halves per word, so 4 output
//   channels are one vec2<u32>;
// - y: [n, ho, wo, cout], f16 pairs as x (cout even: a pair is stored by
//   one invocation), or f32 bits when FLAG_OUT_F32;
// - scale/shift (`sb`) f32; no mask (Jacobian passes run f32).
// Every product and sum is f32; an output is rounded to f16 once.

// W: 4 output channels of one (tap, input channel) per vec2 of words.
@group(0) @binding(2) var<storage, read> wt: array<vec2<u32>>;

// Input channels c..c+3 of the pixel at scalar index `base` (0 past cin).
fn tiled_x4(base: u32, c: u32) -> vec4<f32> {
    if (p.cin % 4u == 0u) {
        let i = base + c;
        if ((p.flags & FLAG_IN_F32) != 0u) {
            return bitcast<vec4<f32>>(vec4<u32>(xs[i], xs[i + 1u], xs[i + 2u], xs[i + 3u]));
        }
        return vec4<f32>(unpack2x16float(xs[i / 2u]), unpack2x16float(xs[i / 2u + 1u]));
    }
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (c + j < p.cin) { v[j] = x_at(base + c + j); }
    }
    return v;
}

// Output channels 4q..4q+3 of a weight row.
fn tiled_w4(q: u32) -> vec4<f32> {
    let w = wt[q];
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}

// The epilogue of one pixel's 4 channels co0..co0+3 (co0 a multiple of 4).
fn tiled_store4(b: u32, oy: u32, ox: u32, co0: u32, acc: vec4<f32>) {
    let base = ((b * p.ho + oy) * p.wo + ox) * p.cout;
    if ((p.flags & FLAG_OUT_F32) != 0u) {
        for (var j = 0u; j < 4u; j++) {
            let co = co0 + j;
            if (co >= p.cout) { return; }
            y[base + co] = bitcast<u32>(epi(co, acc[j]));
        }
        return;
    }
    // cout even: (co, co + 1) share a word.
    for (var j = 0u; j < 4u; j += 2u) {
        let co = co0 + j;
        if (co >= p.cout) { return; }
        y[(base + co) / 2u] = pack2x16float(vec2<f32>(epi(co, acc[j]), epi(co + 1u, acc[j + 1u])));
    }
}
