// 2-D convolution with f16 storage and f32 accumulation (`prior denoise
// --precision f16`; launcher: `Conv2d::forward_f16` in crates/ops/src/conv2d.rs).
//
//   y[b, oy, ox, co] = relu?( Σ x[b, iy, ix, ci] · W[ky, kx, ci, co] · scale[co] + shift[co] )
//
// Same geometry and `Params` as conv2d.wgsl (the struct below is the twin of
// conv_common.wgsl's, checked against `ConvParams` by reflection). Storage:
// - W: f16, layout [kh, kw, cin_p, cout_p] (cin_p = cin rounded up to 4,
//   cout_p to 8), two halves per u32 word, so the 8 output channels of one
//   (tap, input channel) are one vec4<u32>;
// - x: [n, h, w, cin] flattened, element i in half i % 2 of word i / 2, or
//   plain f32 bits when FLAG_IN_F32 (the chain's first layer: the f32 → f16
//   conversion is fused into it);
// - y: [n, ho, wo, cout] flattened, f16 pairs as x (cout must be even, so the
//   pair of an element is written by the same invocation), or f32 bits when
//   FLAG_OUT_F32 (the chain's last layer: the f16 → f32 conversion);
// - scale/shift (`sb`) stay f32.
// The halves are packed with the core-WGSL pack2x16float/unpack2x16float, so
// the shader needs no `enable f16;`. Products and sums are f32; an output
// is rounded to f16 once, when stored.
//
// Each invocation computes 4 horizontally adjacent pixels × 8 channels;
// `conv_f16` takes one input channel per step, `conv_f16_vec4` (cin a
// multiple of 4) four. `convt_f16` is the transposed convolution (launcher:
// `ConvTranspose2d::forward_f16` in crates/ops/src/conv_transpose2d.rs), in
// the gather form and stride-phase tiling of conv_transpose2d.wgsl, one
// input channel per step.

// Params, flags, bindings 0, 1, 3, 4, x_at and epi: conv_f16_common.wgsl,
// prepended by crates/ops/src/shaders.rs.

const TP: u32 = 4u;

// W: 8 output channels of one (tap, input channel) per vec4 of words.
@group(0) @binding(2) var<storage, read> wt: array<vec4<u32>>;

fn in_col(ox: u32, kx: u32) -> i32 {
    let ix = i32(ox * p.stride + kx * p.dil) - i32(p.pad);
    return select(-1, ix, ix >= 0 && ix < i32(p.w) && ox < p.wo);
}


fn store(b: u32, oy: u32, ox: u32, co0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (ox >= p.wo) { return; }
    let base = ((b * p.ho + oy) * p.wo + ox) * p.cout;
    let v = array<f32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
    if ((p.flags & FLAG_OUT_F32) != 0u) {
        for (var j = 0u; j < 8u; j++) {
            let co = co0 + j;
            if (co >= p.cout) { return; }
            y[base + co] = bitcast<u32>(epi(co, v[j]));
        }
        return;
    }
    // cout even and co0 a multiple of 8: (co, co + 1) share a word.
    for (var j = 0u; j < 8u; j += 2u) {
        let co = co0 + j;
        if (co >= p.cout) { return; }
        let pair = vec2<f32>(epi(co, v[j]), epi(co + 1u, v[j + 1u]));
        y[(base + co) / 2u] = pack2x16float(pair);
    }
}

fn w8(i: u32) -> array<vec4<f32>, 2> {
    let q = wt[i];
    let a = unpack2x16float(q.x);
    let b = unpack2x16float(q.y);
    let c = unpack2x16float(q.z);
    let d = unpack2x16float(q.w);
    return array<vec4<f32>, 2>(vec4<f32>(a, b), vec4<f32>(c, d));
}

@compute @workgroup_size(64)
fn conv_f16(@builtin(global_invocation_id) gid: vec3<u32>) {
    let tile = gid.x;
    if (tile >= p.n * p.ho * p.tiles_w) { return; }
    let tx = tile % p.tiles_w;
    let t2 = tile / p.tiles_w;
    let oy = t2 % p.ho;
    let b = t2 / p.ho;
    let ox0 = tx * TP;
    let co0 = gid.y * 8u;
    let cin_p = (p.cin + 3u) / 4u * 4u;
    let cout8 = p.cout_p / 8u;
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.stride + ky * p.dil) - i32(p.pad);
        if (iy < 0 || iy >= i32(p.h)) { continue; }
        let row = (b * p.h + u32(iy)) * p.w;
        for (var kx = 0u; kx < p.kw; kx++) {
            let c0 = in_col(ox0, kx); let c1 = in_col(ox0 + 1u, kx);
            let c2 = in_col(ox0 + 2u, kx); let c3 = in_col(ox0 + 3u, kx);
            let x0 = (row + u32(max(c0, 0))) * p.cin; let x1 = (row + u32(max(c1, 0))) * p.cin;
            let x2 = (row + u32(max(c2, 0))) * p.cin; let x3 = (row + u32(max(c3, 0))) * p.cin;
            var wi = (ky * p.kw + kx) * cin_p * cout8 + gid.y;
            for (var c = 0u; c < p.cin; c++) {
                let v0 = select(0.0, x_at(x0 + c), c0 >= 0);
                let v1 = select(0.0, x_at(x1 + c), c1 >= 0);
                let v2 = select(0.0, x_at(x2 + c), c2 >= 0);
                let v3 = select(0.0, x_at(x3 + c), c3 >= 0);
                let w = w8(wi); wi += cout8;
                a0 += v0 * w[0]; b0 += v0 * w[1];
                a1 += v1 * w[0]; b1 += v1 * w[1];
                a2 += v2 * w[0]; b2 += v2 * w[1];
                a3 += v3 * w[0]; b3 += v3 * w[1];
            }
        }
    }
    store(b, oy, ox0, co0, a0, b0);
    store(b, oy, ox0 + 1u, co0, a1, b1);
    store(b, oy, ox0 + 2u, co0, a2, b2);
    store(b, oy, ox0 + 3u, co0, a3, b3);
}

// Four input channels from element i (a multiple of 4): one vec2 of words in f16.
fn x4_at(i: u32) -> vec4<f32> {
    if ((p.flags & FLAG_IN_F32) != 0u) {
        return bitcast<vec4<f32>>(vec4<u32>(xs[i], xs[i + 1u], xs[i + 2u], xs[i + 3u]));
    }
    let j = i / 2u;
    return vec4<f32>(unpack2x16float(xs[j]), unpack2x16float(xs[j + 1u]));
}

// `conv_f16` for cin a multiple of 4: four input channels per step.
@compute @workgroup_size(64)
fn conv_f16_vec4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let tile = gid.x;
    if (tile >= p.n * p.ho * p.tiles_w) { return; }
    let tx = tile % p.tiles_w;
    let t2 = tile / p.tiles_w;
    let oy = t2 % p.ho;
    let b = t2 / p.ho;
    let ox0 = tx * TP;
    let co0 = gid.y * 8u;
    let cout8 = p.cout_p / 8u;
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.stride + ky * p.dil) - i32(p.pad);
        if (iy < 0 || iy >= i32(p.h)) { continue; }
        let row = (b * p.h + u32(iy)) * p.w;
        for (var kx = 0u; kx < p.kw; kx++) {
            let c0 = in_col(ox0, kx); let c1 = in_col(ox0 + 1u, kx);
            let c2 = in_col(ox0 + 2u, kx); let c3 = in_col(ox0 + 3u, kx);
            let x0 = (row + u32(max(c0, 0))) * p.cin; let x1 = (row + u32(max(c1, 0))) * p.cin;
            let x2 = (row + u32(max(c2, 0))) * p.cin; let x3 = (row + u32(max(c3, 0))) * p.cin;
            var wi = (ky * p.kw + kx) * p.cin * cout8 + gid.y;
            for (var c = 0u; c < p.cin; c += 4u) {
                let v0 = select(vec4<f32>(0.0), x4_at(x0 + c), c0 >= 0);
                let v1 = select(vec4<f32>(0.0), x4_at(x1 + c), c1 >= 0);
                let v2 = select(vec4<f32>(0.0), x4_at(x2 + c), c2 >= 0);
                let v3 = select(vec4<f32>(0.0), x4_at(x3 + c), c3 >= 0);
                let w0 = w8(wi); wi += cout8;
                let w1 = w8(wi); wi += cout8;
                let w2 = w8(wi); wi += cout8;
                let w3 = w8(wi); wi += cout8;
                a0 += v0.x * w0[0] + v0.y * w1[0] + v0.z * w2[0] + v0.w * w3[0];
                b0 += v0.x * w0[1] + v0.y * w1[1] + v0.z * w2[1] + v0.w * w3[1];
                a1 += v1.x * w0[0] + v1.y * w1[0] + v1.z * w2[0] + v1.w * w3[0];
                b1 += v1.x * w0[1] + v1.y * w1[1] + v1.z * w2[1] + v1.w * w3[1];
                a2 += v2.x * w0[0] + v2.y * w1[0] + v2.z * w2[0] + v2.w * w3[0];
                b2 += v2.x * w0[1] + v2.y * w1[1] + v2.z * w2[1] + v2.w * w3[1];
                a3 += v3.x * w0[0] + v3.y * w1[0] + v3.z * w2[0] + v3.w * w3[0];
                b3 += v3.x * w0[1] + v3.y * w1[1] + v3.z * w2[1] + v3.w * w3[1];
            }
        }
    }
    store(b, oy, ox0, co0, a0, b0);
    store(b, oy, ox0 + 1u, co0, a1, b1);
    store(b, oy, ox0 + 2u, co0, a2, b2);
    store(b, oy, ox0 + 3u, co0, a3, b3);
}

// ---- Transposed convolution, PyTorch ConvTranspose2d:
//   y[b, oy, ox, co] = epi( Σ x[b, iy, ix, ci] · W[ky, kx, ci, co] )
//     over oy = iy·s − pad + ky·d, ox = ix·s − pad + kx·d
// W as above ([kh, kw, cin_p, cout_p], the (in, out, kh, kw) weights
// transposed). Output columns are split into s phases ox ≡ px (mod s); the 4
// pixels of a tile, ox = px + s·(q0 + q), share their contributing taps and
// read 4 consecutive input columns per tap (p.tiles_w tiles per phase row).

// Input row for tap ky, or -1 when no input row maps to output row oy.
fn t_in_row(oy: u32, ky: u32) -> i32 {
    let num = i32(oy + p.pad) - i32(ky * p.dil);
    if (num < 0 || num % i32(p.stride) != 0) { return -1; }
    let iy = num / i32(p.stride);
    return select(-1, iy, iy < i32(p.h));
}

// Column base (px + pad − kx·d)/s of tap kx, or a huge negative value when
// kx does not contribute to phase px.
fn t_col_base(px: u32, kx: u32) -> i32 {
    let num = i32(px + p.pad) - i32(kx * p.dil);
    if (num % i32(p.stride) != 0) { return -1000000000; }
    return num / i32(p.stride);
}

// Input column of tile column q (output column px + s·q), or -1 outside.
fn t_in_col(px: u32, base: i32, q: u32) -> i32 {
    let ix = base + i32(q);
    let ox = px + p.stride * q;
    return select(-1, ix, ix >= 0 && ix < i32(p.w) && ox < p.wo);
}

@compute @workgroup_size(64)
fn convt_f16(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n * p.ho * p.stride * p.tiles_w) { return; }
    let q0 = (gid.x % p.tiles_w) * TP;
    let t2 = gid.x / p.tiles_w;
    let px = t2 % p.stride;
    let t3 = t2 / p.stride;
    let oy = t3 % p.ho;
    let b = t3 / p.ho;
    let co0 = gid.y * 8u;
    let cin_p = (p.cin + 3u) / 4u * 4u;
    let cout8 = p.cout_p / 8u;
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = t_in_row(oy, ky);
        if (iy < 0) { continue; }
        let row = (b * p.h + u32(iy)) * p.w;
        for (var kx = 0u; kx < p.kw; kx++) {
            let base = t_col_base(px, kx);
            if (base < -100000000) { continue; }
            let c0 = t_in_col(px, base, q0); let c1 = t_in_col(px, base, q0 + 1u);
            let c2 = t_in_col(px, base, q0 + 2u); let c3 = t_in_col(px, base, q0 + 3u);
            let x0 = (row + u32(max(c0, 0))) * p.cin; let x1 = (row + u32(max(c1, 0))) * p.cin;
            let x2 = (row + u32(max(c2, 0))) * p.cin; let x3 = (row + u32(max(c3, 0))) * p.cin;
            var wi = (ky * p.kw + kx) * cin_p * cout8 + gid.y;
            for (var c = 0u; c < p.cin; c++) {
                let v0 = select(0.0, x_at(x0 + c), c0 >= 0);
                let v1 = select(0.0, x_at(x1 + c), c1 >= 0);
                let v2 = select(0.0, x_at(x2 + c), c2 >= 0);
                let v3 = select(0.0, x_at(x3 + c), c3 >= 0);
                let w = w8(wi); wi += cout8;
                a0 += v0 * w[0]; b0 += v0 * w[1];
                a1 += v1 * w[0]; b1 += v1 * w[1];
                a2 += v2 * w[0]; b2 += v2 * w[1];
                a3 += v3 * w[0]; b3 += v3 * w[1];
            }
        }
    }
    let s = p.stride;
    store(b, oy, px + s * q0, co0, a0, b0);
    store(b, oy, px + s * (q0 + 1u), co0, a1, b1);
    store(b, oy, px + s * (q0 + 2u), co0, a2, b2);
    store(b, oy, px + s * (q0 + 3u), co0, a3, b3);
}
