// 2-D transposed convolution (PyTorch ConvTranspose2d), channels-last, gather
// form, with the fused epilogue of conv2d.wgsl.
//
//   y[b, oy, ox, co] = epi( Σ x[b, iy, ix, ci] · W[ky, kx, ci, co] )
//     over ky, kx, ci with oy = iy*s − pad + ky*d and ox = ix*s − pad + kx*d
//   epi(v) = mask?( relu?( v · scale[co] + shift[co] ) )
//
// This is also the VJP (adjoint) of a strided conv2d with the same s, pad, d
// and the same weights read as (cout, cin, kh, kw).
//
// Layouts: x is [n, h, w, cin], W is [kh, kw, cin_p, cout_p] (cin_p = cin
// rounded up to 4, cout_p = cout rounded up to 8, zero padded), scale/shift
// are sb[0..cout_p] and sb[cout_p..2*cout_p], y is [n, ho, wo, cout]; mask
// ([mask_n, ho, wo, cout]) keeps an output only where it is > 0 (sample b
// uses mask sample b % mask_n).
//
// Tiling: output columns are split into s phases ox ≡ px (mod s). The TP = 4
// pixels of a tile are ox = px + s·(4·tx + q), q = 0..3: they share the set of
// contributing taps, and for each tap they read 4 consecutive input columns.
// Each invocation computes those 4 pixels × 8 output channels.
//
// Entry points: `convt_vec4` (cin a multiple of 4), `convt_scalar` (any cin);
// `convt_vec4_subgroup` in conv_transpose2d_subgroup.wgsl shares weights
// across lanes with subgroupBroadcast.

// Params, bindings and epilogue(): conv_common.wgsl, prepended by crates/ops/src/shaders.rs.

struct Tile {
    b: u32,
    oy: u32,
    px: u32,
    // first tile column index (4·tx) within the phase
    q0: u32,
}

fn tile_of(t: u32) -> Tile {
    let tx = t % p.tiles_w;
    let t2 = t / p.tiles_w;
    let px = t2 % p.stride;
    let t3 = t2 / p.stride;
    return Tile(t3 / p.ho, t3 % p.ho, px, tx * TP);
}

// Input column for pixel q of the tile (output column px + s·(q0 + q)) and tap
// base `base` = (px + pad − kx·d)/s, or -1 when outside the input / output.
fn in_col(t: Tile, base: i32, q: u32) -> i32 {
    let ix = base + i32(t.q0 + q);
    let ox = t.px + p.stride * (t.q0 + q);
    return select(-1, ix, ix >= 0 && ix < i32(p.w) && ox < p.wo);
}

// Input row for tap ky, or -1 when no input row maps to output row oy.
fn in_row(oy: u32, ky: u32) -> i32 {
    let num = i32(oy + p.pad) - i32(ky * p.dil);
    if (num < 0 || num % i32(p.stride) != 0) { return -1; }
    let iy = num / i32(p.stride);
    return select(-1, iy, iy < i32(p.h));
}

// Column tap base for tap kx, or a huge negative value when kx does not
// contribute to this phase.
fn col_base(px: u32, kx: u32) -> i32 {
    let num = i32(px + p.pad) - i32(kx * p.dil);
    if (num % i32(p.stride) != 0) { return -1000000000; }
    return num / i32(p.stride);
}

@compute @workgroup_size(64)
fn convt_vec4(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n * p.ho * p.stride * p.tiles_w) { return; }
    let t = tile_of(gid.x);
    let co0 = gid.y * 8u;
    let cin4 = p.cin / 4u;
    let cout4 = p.cout_p / 4u;
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = in_row(t.oy, ky);
        if (iy < 0) { continue; }
        let row = (t.b * p.h + u32(iy)) * p.w;
        for (var kx = 0u; kx < p.kw; kx++) {
            let base = col_base(t.px, kx);
            if (base < -100000000) { continue; }
            let c0 = in_col(t, base, 0u); let c1 = in_col(t, base, 1u);
            let c2 = in_col(t, base, 2u); let c3 = in_col(t, base, 3u);
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
    let s = p.stride;
    epilogue(t.b, t.oy, t.px + s * t.q0, co0, a0, b0);
    epilogue(t.b, t.oy, t.px + s * (t.q0 + 1u), co0, a1, b1);
    epilogue(t.b, t.oy, t.px + s * (t.q0 + 2u), co0, a2, b2);
    epilogue(t.b, t.oy, t.px + s * (t.q0 + 3u), co0, a3, b3);
}

fn x_at(i: u32) -> f32 {
    return x4[i / 4u][i % 4u];
}

@compute @workgroup_size(64)
fn convt_scalar(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n * p.ho * p.stride * p.tiles_w) { return; }
    let t = tile_of(gid.x);
    let co0 = gid.y * 8u;
    let cin_p = (p.cin + 3u) / 4u * 4u;
    let cout4 = p.cout_p / 4u;
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = in_row(t.oy, ky);
        if (iy < 0) { continue; }
        let row = (t.b * p.h + u32(iy)) * p.w;
        for (var kx = 0u; kx < p.kw; kx++) {
            let base = col_base(t.px, kx);
            if (base < -100000000) { continue; }
            let c0 = in_col(t, base, 0u); let c1 = in_col(t, base, 1u);
            let c2 = in_col(t, base, 2u); let c3 = in_col(t, base, 3u);
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
    let s = p.stride;
    epilogue(t.b, t.oy, t.px + s * t.q0, co0, a0, b0);
    epilogue(t.b, t.oy, t.px + s * (t.q0 + 1u), co0, a1, b1);
    epilogue(t.b, t.oy, t.px + s * (t.q0 + 2u), co0, a2, b2);
    epilogue(t.b, t.oy, t.px + s * (t.q0 + 3u), co0, a3, b3);
}
