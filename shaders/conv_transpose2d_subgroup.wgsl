// conv_transpose2d, subgroup variant of `convt_vec4` in conv_transpose2d.wgsl
// (same Params, bindings, layouts and epilogue — see that file). Compiled
// only on adapters with subgroups of at least 8 lanes (a separate module:
// a module using subgroup builtins fails to build without the feature).
//
// All lanes of a subgroup must use the same weights, so the work is ordered
// by output phase (py, px) = (oy mod s, ox mod s): workgroup g handles phase
// g / phase_groups, and every lane of it the same set of taps. Within a
// phase, tiles are (b, j, tx) with oy = py + s·j and the 4 output columns
// px + s·(4·tx + q). Lane l loads weight vec4 number l % 8 of a (tap, 4
// input channels) step and the others read it with subgroupBroadcast (1
// load + 8 broadcasts instead of 8 loads). Control flow stays uniform: no
// early return; rows/columns outside the input or output are masked.

// Params, bindings and epilogue(): conv_common.wgsl, prepended by crates/ops/src/shaders.rs.

@compute @workgroup_size(64)
fn convt_vec4_subgroup(@builtin(global_invocation_id) gid: vec3<u32>,
                       @builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(local_invocation_index) li: u32,
                       @builtin(subgroup_invocation_id) lane: u32) {
    let s = p.stride;
    let phase = wid.x / p.phase_groups;
    let py = phase / s;
    let px = phase % s;
    let total = p.n * p.hh * p.tiles_w;
    let t = (wid.x % p.phase_groups) * 64u + li;
    let tc = min(t, total - 1u);
    let tx = tc % p.tiles_w;
    let r = tc / p.tiles_w;
    let jrow = r % p.hh;
    let b = r / p.hh;
    let oy = py + s * jrow;
    let live = t < total && oy < p.ho;
    let q0 = tx * TP;
    let co0 = gid.y * 8u;
    let cin4 = p.cin / 4u;
    let cout4 = p.cout_p / 4u;
    let my = lane % 8u;
    let my_off = (my / 2u) * cout4 + (my % 2u);
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kh; ky++) {
        // Uniform: does tap row ky reach output rows of phase py?
        let ny = i32(py + p.pad) - i32(ky * p.dil);
        if (ny % i32(s) != 0) { continue; }
        let iy = ny / i32(s) + i32(jrow);
        let row_ok = live && iy >= 0 && iy < i32(p.h);
        let row = (b * p.h + u32(clamp(iy, 0, i32(p.h) - 1))) * p.w;
        for (var kx = 0u; kx < p.kw; kx++) {
            let nx = i32(px + p.pad) - i32(kx * p.dil);
            if (nx % i32(s) != 0) { continue; }
            let base = nx / i32(s) + i32(q0);
            var cq = vec4<i32>(base, base + 1, base + 2, base + 3);
            for (var q = 0u; q < 4u; q++) {
                let ox = px + s * (q0 + q);
                cq[q] = select(-1, cq[q], row_ok && cq[q] >= 0 && cq[q] < i32(p.w) && ox < p.wo);
            }
            let x0 = (row + u32(max(cq.x, 0))) * cin4; let x1 = (row + u32(max(cq.y, 0))) * cin4;
            let x2 = (row + u32(max(cq.z, 0))) * cin4; let x3 = (row + u32(max(cq.w, 0))) * cin4;
            var wi = (ky * p.kw + kx) * p.cin * cout4 + co0 / 4u + my_off;
            for (var c = 0u; c < cin4; c++) {
                let mine = wt[wi];
                wi += 4u * cout4;
                let wa0 = subgroupBroadcast(mine, 0u); let wb0 = subgroupBroadcast(mine, 1u);
                let wa1 = subgroupBroadcast(mine, 2u); let wb1 = subgroupBroadcast(mine, 3u);
                let wa2 = subgroupBroadcast(mine, 4u); let wb2 = subgroupBroadcast(mine, 5u);
                let wa3 = subgroupBroadcast(mine, 6u); let wb3 = subgroupBroadcast(mine, 7u);
                let v0 = select(vec4<f32>(0.0), x4[x0 + c], cq.x >= 0);
                let v1 = select(vec4<f32>(0.0), x4[x1 + c], cq.y >= 0);
                let v2 = select(vec4<f32>(0.0), x4[x2 + c], cq.z >= 0);
                let v3 = select(vec4<f32>(0.0), x4[x3 + c], cq.w >= 0);
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
        epilogue(b, oy, px + s * q0, co0, a0, b0);
        epilogue(b, oy, px + s * (q0 + 1u), co0, a1, b1);
        epilogue(b, oy, px + s * (q0 + 2u), co0, a2, b2);
        epilogue(b, oy, px + s * (q0 + 3u), co0, a3, b3);
    }
}
