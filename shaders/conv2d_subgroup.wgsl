// conv2d, subgroup variant of `conv_vec4` in conv2d.wgsl (same Params, same
// bindings, same layouts and epilogue — see that file for the definitions).
// Compiled only on adapters with subgroups of at least 8 lanes (a separate
// module, because a module using subgroup builtins fails to build on
// devices without the feature).
//
// All lanes of a subgroup compute the same 8 output channels, so they need
// the same weights. Instead of every lane loading the 8 weight vec4s of a
// (tap, 4 input channels) step, lane l loads vec4 number l % 8 and the
// others read it with subgroupBroadcast: 1 load + 8 broadcasts instead of 8
// loads (on lavapipe a storage load costs tens of cycles, a broadcast a few).
// Control flow is kept uniform (no early return, padded taps masked by
// select) as the collective operations require.

// Params, bindings, FLAG_*, TP and epilogue(): conv_common.wgsl, prepended by crates/ops/src/shaders.rs.

// Input column of tile pixel at output column ox for tap column kx, or −1.
fn in_col(ox: u32, kx: u32, row_ok: bool) -> i32 {
    let ix = i32(ox * p.stride + kx * p.dil) - i32(p.pad);
    return select(-1, ix, row_ok && ix >= 0 && ix < i32(p.w) && ox < p.wo);
}

@compute @workgroup_size(64)
fn conv_vec4_subgroup(@builtin(global_invocation_id) gid: vec3<u32>,
                      @builtin(subgroup_invocation_id) lane: u32) {
    let total = p.n * p.ho * p.tiles_w;
    let live = gid.x < total;
    let tile = min(gid.x, total - 1u);
    let tx = tile % p.tiles_w;
    let t2 = tile / p.tiles_w;
    let oy = t2 % p.ho;
    let b = t2 / p.ho;
    let ox0 = tx * TP;
    let co0 = gid.y * 8u;
    let cin4 = p.cin / 4u;
    let cout4 = p.cout_p / 4u;
    // Lane l fetches weight vec4 l % 8: input channel (l % 8) / 2, half l % 2.
    let my = lane % 8u;
    let my_off = (my / 2u) * cout4 + (my % 2u);
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.stride + ky * p.dil) - i32(p.pad);
        let row_ok = iy >= 0 && iy < i32(p.h);
        let row = (b * p.h + u32(clamp(iy, 0, i32(p.h) - 1))) * p.w;
        for (var kx = 0u; kx < p.kw; kx++) {
            let c0 = in_col(ox0, kx, row_ok); let c1 = in_col(ox0 + 1u, kx, row_ok);
            let c2 = in_col(ox0 + 2u, kx, row_ok); let c3 = in_col(ox0 + 3u, kx, row_ok);
            let x0 = (row + u32(max(c0, 0))) * cin4; let x1 = (row + u32(max(c1, 0))) * cin4;
            let x2 = (row + u32(max(c2, 0))) * cin4; let x3 = (row + u32(max(c3, 0))) * cin4;
            var wi = (ky * p.kw + kx) * p.cin * cout4 + co0 / 4u + my_off;
            for (var c = 0u; c < cin4; c++) {
                let mine = wt[wi];
                wi += 4u * cout4;
                let wa0 = subgroupBroadcast(mine, 0u); let wb0 = subgroupBroadcast(mine, 1u);
                let wa1 = subgroupBroadcast(mine, 2u); let wb1 = subgroupBroadcast(mine, 3u);
                let wa2 = subgroupBroadcast(mine, 4u); let wb2 = subgroupBroadcast(mine, 5u);
                let wa3 = subgroupBroadcast(mine, 6u); let wb3 = subgroupBroadcast(mine, 7u);
                let v0 = select(vec4<f32>(0.0), x4[x0 + c], c0 >= 0);
                let v1 = select(vec4<f32>(0.0), x4[x1 + c], c1 >= 0);
                let v2 = select(vec4<f32>(0.0), x4[x2 + c], c2 >= 0);
                let v3 = select(vec4<f32>(0.0), x4[x3 + c], c3 >= 0);
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
    if (live) {
        epilogue(b, oy, ox0, co0, a0, b0);
        epilogue(b, oy, ox0 + 1u, co0, a1, b1);
        epilogue(b, oy, ox0 + 2u, co0, a2, b2);
        epilogue(b, oy, ox0 + 3u, co0, a3, b3);
    }
}
