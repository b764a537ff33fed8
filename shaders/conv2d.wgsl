// 2-D convolution, channels-last implicit GEMM with a fused epilogue.
//
//   y[b, oy, ox, co] = epi( Σ_{ky,kx,ci} x[b, oy*s + ky*d − pad, ox*s + kx*d − pad, ci] · W[ky, kx, ci, co] )
//   epi(v) = mask?( relu?( v · scale[co] + shift[co] ) )
//
// Layouts: x is [n, h, w, cin] (read as vec4 words), W is [kh, kw, cin_p, cout_p]
// with cin_p = cin rounded up to 4 and cout_p = cout rounded up to 8 (zero
// padding), scale/shift are `sb[0..cout_p]` and `sb[cout_p..2*cout_p]`,
// y is [n, ho, wo, cout]. `mask` ([mask_n, ho, wo, cout]) keeps an output
// only where the mask is > 0 (the ReLU derivative in JVP/VJP passes);
// sample b uses mask sample b % mask_n.
//
// Each invocation computes TP = 4 horizontally adjacent output pixels × 8
// output channels: per (tap, 4 input channels) it issues 4 input and 8 weight
// vec4 loads for 128 FMAs. Zero padding is handled per pixel with a select.
//
// Entry points: `conv_vec4` (cin a multiple of 4), `conv_scalar` (any cin),
// `conv_naive` (one output per invocation; the baseline in benches).

// Params, bindings, FLAG_*, TP and epilogue(): conv_common.wgsl, prepended by crates/ops/src/shaders.rs.

// Input column of pixel `q` of the tile for tap column kx, or -1 when padded.
fn in_col(ox: u32, kx: u32) -> i32 {
    let ix = i32(ox * p.stride + kx * p.dil) - i32(p.pad);
    return select(-1, ix, ix >= 0 && ix < i32(p.w) && ox < p.wo);
}

@compute @workgroup_size(64)
fn conv_vec4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let tile = gid.x;
    if (tile >= p.n * p.ho * p.tiles_w) { return; }
    let tx = tile % p.tiles_w;
    let t2 = tile / p.tiles_w;
    let oy = t2 % p.ho;
    let b = t2 / p.ho;
    let ox0 = tx * TP;
    let co0 = gid.y * 8u;
    let cin4 = p.cin / 4u;
    let cout4 = p.cout_p / 4u;
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.stride + ky * p.dil) - i32(p.pad);
        if (iy < 0 || iy >= i32(p.h)) { continue; }
        let row = (b * p.h + u32(iy)) * p.w;
        for (var kx = 0u; kx < p.kw; kx++) {
            let c0 = in_col(ox0, kx); let c1 = in_col(ox0 + 1u, kx);
            let c2 = in_col(ox0 + 2u, kx); let c3 = in_col(ox0 + 3u, kx);
            let x0 = (row + u32(max(c0, 0))) * cin4; let x1 = (row + u32(max(c1, 0))) * cin4;
            let x2 = (row + u32(max(c2, 0))) * cin4; let x3 = (row + u32(max(c3, 0))) * cin4;
            var wi = (ky * p.kw + kx) * p.cin * cout4 + co0 / 4u;
            for (var c = 0u; c < cin4; c++) {
                let v0 = select(vec4<f32>(0.0), x4[x0 + c], c0 >= 0);
                let v1 = select(vec4<f32>(0.0), x4[x1 + c], c1 >= 0);
                let v2 = select(vec4<f32>(0.0), x4[x2 + c], c2 >= 0);
                let v3 = select(vec4<f32>(0.0), x4[x3 + c], c3 >= 0);
                let wa0 = wt[wi]; let wb0 = wt[wi + 1u]; wi += cout4;
                let wa1 = wt[wi]; let wb1 = wt[wi + 1u]; wi += cout4;
                let wa2 = wt[wi]; let wb2 = wt[wi + 1u]; wi += cout4;
                let wa3 = wt[wi]; let wb3 = wt[wi + 1u]; wi += cout4;
                a0 += v0.x * wa0 + v0.y * wa1 + v0.z * wa2 + v0.w * wa3;
                b0 += v0.x * wb0 + v0.y * wb1 + v0.z * wb2 + v0.w * wb3;
                a1 += v1.x * wa0 + v1.y * wa1 + v1.z * wa2 + v1.w * wa3;
                b1 += v1.x * wb0 + v1.y * wb1 + v1.z * wb2 + v1.w * wb3;
                a2 += v2.x * wa0 + v2.y * wa1 + v2.z * wa2 + v2.w * wa3;
                b2 += v2.x * wb0 + v2.y * wb1 + v2.z * wb2 + v2.w * wb3;
                a3 += v3.x * wa0 + v3.y * wa1 + v3.z * wa2 + v3.w * wa3;
                b3 += v3.x * wb0 + v3.y * wb1 + v3.z * wb2 + v3.w * wb3;
            }
        }
    }
    epilogue(b, oy, ox0, co0, a0, b0);
    epilogue(b, oy, ox0 + 1u, co0, a1, b1);
    epilogue(b, oy, ox0 + 2u, co0, a2, b2);
    epilogue(b, oy, ox0 + 3u, co0, a3, b3);
}

fn x_at(i: u32) -> f32 {
    return x4[i / 4u][i % 4u];
}

@compute @workgroup_size(64)
fn conv_scalar(@builtin(global_invocation_id) gid: vec3<u32>) {
    let tile = gid.x;
    if (tile >= p.n * p.ho * p.tiles_w) { return; }
    let tx = tile % p.tiles_w;
    let t2 = tile / p.tiles_w;
    let oy = t2 % p.ho;
    let b = t2 / p.ho;
    let ox0 = tx * TP;
    let co0 = gid.y * 8u;
    let cin_p = (p.cin + 3u) / 4u * 4u;
    let cout4 = p.cout_p / 4u;
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
            var wi = (ky * p.kw + kx) * cin_p * cout4 + co0 / 4u;
            for (var c = 0u; c < p.cin; c++) {
                let v0 = select(0.0, x_at(x0 + c), c0 >= 0);
                let v1 = select(0.0, x_at(x1 + c), c1 >= 0);
                let v2 = select(0.0, x_at(x2 + c), c2 >= 0);
                let v3 = select(0.0, x_at(x3 + c), c3 >= 0);
                let wa = wt[wi]; let wb = wt[wi + 1u]; wi += cout4;
                a0 += v0 * wa; b0 += v0 * wb;
                a1 += v1 * wa; b1 += v1 * wb;
                a2 += v2 * wa; b2 += v2 * wb;
                a3 += v3 * wa; b3 += v3 * wb;
            }
        }
    }
    epilogue(b, oy, ox0, co0, a0, b0);
    epilogue(b, oy, ox0 + 1u, co0, a1, b1);
    epilogue(b, oy, ox0 + 2u, co0, a2, b2);
    epilogue(b, oy, ox0 + 3u, co0, a3, b3);
}

// One output element per invocation: the textbook kernel, kept as the
// benchmark baseline and as an independent check of the tiled kernels.
@compute @workgroup_size(64)
fn conv_naive(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.n * p.ho * p.wo * p.cout) { return; }
    let co = i % p.cout;
    let pix = i / p.cout;
    let ox = pix % p.wo;
    let oy = (pix / p.wo) % p.ho;
    let b = pix / (p.wo * p.ho);
    let cin_p = (p.cin + 3u) / 4u * 4u;
    var acc = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.stride + ky * p.dil) - i32(p.pad);
        if (iy < 0 || iy >= i32(p.h)) { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = i32(ox * p.stride + kx * p.dil) - i32(p.pad);
            if (ix < 0 || ix >= i32(p.w)) { continue; }
            let xb = ((b * p.h + u32(iy)) * p.w + u32(ix)) * p.cin;
            let wb = (ky * p.kw + kx) * cin_p;
            for (var c = 0u; c < p.cin; c++) {
                let wv = wt[((wb + c) * p.cout_p + co) / 4u][co % 4u];
                acc += x_at(xb + c) * wv;
            }
        }
    }
    var v = acc;
    if ((p.flags & FLAG_SCALE) != 0u) { v = v * sb[co]; }
    if ((p.flags & FLAG_SHIFT) != 0u) { v = v + sb[p.cout_p + co]; }
    if ((p.flags & FLAG_RELU) != 0u) { v = max(v, 0.0); }
    if ((p.flags & FLAG_MASK) != 0u) {
        let mpix = ((b % max(p.mask_n, 1u)) * p.ho + oy) * p.wo + ox;
        v = select(0.0, v, mask[mpix * p.cout + co] > 0.0);
    }
    y[i] = v;
}
