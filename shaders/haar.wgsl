// One level of the ½-scaled orthonormal Haar transform on channels-last
// tensors (see crates/ops/src/haar.rs for the layout).
//
// On each 2×2 block   a b   (a = (2y, 2x), b = (2y, 2x+1),
//                      c d    c = (2y+1, 2x), d = (2y+1, 2x+1)) of channel ch:
//   analysis:  L = (a+b+c+d)/4, H = (a+b−c−d)/4, V = (a−b+c−d)/4, D = (a−b−c+d)/4
//   synthesis: a = L+H+V+D, b = L+H−V−D, c = L−H+V−D, d = L−H−V+D
// Coefficient tensors have 4·C channels in band-major blocks
// [L(0..C), H(0..C), V(0..C), D(0..C)]: band k of channel ch is k·C + ch.
//
// `p.scale` multiplies the result: analysis uses 0.25·scale (scale 1: the
// transform, 4: the VJP of synthesis); synthesis uses scale (1: the inverse,
// 0.25: the VJP of analysis). Powers of two, so results are exact and the
// CPU reference (same operation order) matches bit for bit.
//
// One invocation per (sample, coarse pixel, channel): index i = ((b·h2 + y)·w2 + x)·C + ch,
// folded as gid.x + gid.y · 64 · num_workgroups.x.

struct Params {
    len: u32,   // n · h2 · w2 · C
    h2: u32,
    w2: u32,
    c: u32,
    scale: f32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

struct Site {
    fine: u32,   // index of `a` in the fine tensor
    row: u32,    // stride of one fine row (2·w2·C)
    coarse: u32, // index of L in the coefficient tensor
}

fn site(i: u32) -> Site {
    let ch = i % p.c;
    let px = i / p.c;
    let x = px % p.w2;
    let rest = px / p.w2;
    let y = rest % p.h2;
    let b = rest / p.h2;
    let w = 2u * p.w2;
    var s: Site;
    s.row = w * p.c;
    s.fine = ((b * 2u * p.h2 + 2u * y) * w + 2u * x) * p.c + ch;
    s.coarse = px * 4u * p.c + ch;
    return s;
}

@compute @workgroup_size(64)
fn analysis(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.len) { return; }
    let s = site(i);
    let a = src[s.fine];
    let b = src[s.fine + p.c];
    let c = src[s.fine + s.row];
    let d = src[s.fine + s.row + p.c];
    let q = 0.25 * p.scale;
    let s0 = a + b;
    let s1 = c + d;
    let d0 = a - b;
    let d1 = c - d;
    dst[s.coarse] = (s0 + s1) * q;
    dst[s.coarse + p.c] = (s0 - s1) * q;
    dst[s.coarse + 2u * p.c] = (d0 + d1) * q;
    dst[s.coarse + 3u * p.c] = (d0 - d1) * q;
}

@compute @workgroup_size(64)
fn synthesis(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.len) { return; }
    let s = site(i);
    let l = src[s.coarse];
    let h = src[s.coarse + p.c];
    let v = src[s.coarse + 2u * p.c];
    let dd = src[s.coarse + 3u * p.c];
    let lp = l + h;
    let lm = l - h;
    let vp = v + dd;
    let vm = v - dd;
    dst[s.fine] = (lp + vp) * p.scale;
    dst[s.fine + p.c] = (lp - vp) * p.scale;
    dst[s.fine + s.row] = (lm + vm) * p.scale;
    dst[s.fine + s.row + p.c] = (lm - vm) * p.scale;
}
