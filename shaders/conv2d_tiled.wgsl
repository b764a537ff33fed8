// Tiled implicit-GEMM convolution and transposed convolution for GPUs
// (no subgroup operations), with the fused epilogue of conv2d.wgsl.
//
//   GEMM view: M = output pixels, N = output channels, K = taps × cin.
//   y[m, co] = epi( Σ_{tap, ci} x[pixel of m at tap, ci] · W[tap, ci, co] )
//
// Layouts and epilogue as in conv2d.wgsl (x [n, h, w, cin], W [kh, kw, cin_p,
// cout_p], y [n, ho, wo, cout]); the transposed form's geometry is that of
// conv_transpose2d.wgsl (gather form, one stride phase per dispatch layer).
//
// Each workgroup computes an output tile of BM = 4·WG_M pixels × BN = 8·WG_N
// channels. Per tap it walks the input channels in slabs of BK = 16: the
// workgroup stages the slab's input values (BK × BM, gathered with zero
// padding) and weights (BK × BN, vec4 loads along cout) in workgroup memory,
// then each invocation accumulates a 4 × 8 register tile (4 consecutive
// pixels × 8 consecutive channels, 8 vec4 accumulators): per k, one vec4 of
// pixels and two vec4 of weights from workgroup memory for 32 FMAs. Input
// loads are vec4 (4 channels) when cin is a multiple of 4, scalar otherwise.
//
// Conv: the dispatch is [ceil(n·ho·wo / BM), ceil(cout / BN), 1] and
//   iy = oy·s + ky·d − pad.
// Transposed (flag FLAG_TRANSPOSED): the dispatch is
//   [ceil(n·hh·wh / BM), ceil(cout / BN), s·s] with hh = p.hh = ceil(ho/s),
//   wh = p.tiles_w = ceil(wo/s); layer z is the output phase
//   (py, px) = (z / s, z % s), pixel (qy, qx) of the phase is output
//   (py + s·qy, px + s·qx), and tap ky contributes iff
//   (py + pad − ky·d) ≡ 0 (mod s), from input row iy = qy + (py + pad − ky·d)/s.
//   The tap test is uniform over the workgroup, so skipped taps cost nothing.
//
// Prepended by crates/ops/src/shaders.rs: a variant header defining WG_M and
// WG_N (the tile shape; WG_N ∈ {4, 8, 16} so the input slab's vec4 loads
// divide evenly among the invocations), then the storage: conv_common.wgsl
// (Params, f32 bindings, flags) or, for `--precision f16`,
// conv2d_tiled_f16.wgsl (the same Params, f16 storage). Either defines the
// three accesses this file makes: tiled_x4 (4 input channels of a pixel),
// tiled_w4 (4 output channels of one weight row) and tiled_store4 (the
// epilogue of one pixel's 4 channels).

const TM: u32 = 4u;
const TN: u32 = 8u;
const BK: u32 = 16u;
const BM: u32 = WG_M * TM;
const BN: u32 = WG_N * TN;
const BN4: u32 = BN / 4u;
const WG: u32 = WG_M * WG_N;
// Invocations per input pixel of the slab, and the 4-channel groups each loads.
const LOADERS: u32 = WG / BM;
const QUADS_PER: u32 = (BK / 4u) / LOADERS;
const FLAG_TRANSPOSED: u32 = 16u;

// Input slab: a_s[k·WG_M + pixel / 4][pixel % 4]; weight slab:
// b_s[k·BN4 + channel quad].
var<workgroup> a_s: array<vec4<f32>, BK * WG_M>;
var<workgroup> b_s: array<vec4<f32>, BK * BN4>;

// Input coordinate of output coordinate `q` (oy for a conv, qy for a
// transposed conv's phase) at tap `k`, phase `ph`; `ok` false when the tap
// does not contribute to the phase (transposed only).
struct TapMap {
    mul: u32,
    off: i32,
    ok: bool,
}

fn tap_map(transposed: bool, k: u32, ph: u32) -> TapMap {
    if (transposed) {
        let num = i32(ph + p.pad) - i32(k * p.dil);
        let s = i32(p.stride);
        return TapMap(1u, num / s, num % s == 0);
    }
    return TapMap(p.stride, i32(k * p.dil) - i32(p.pad), true);
}

@compute @workgroup_size(WG)
fn conv_tiled(@builtin(local_invocation_index) lidx: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let transposed = (p.flags & FLAG_TRANSPOSED) != 0u;
    var gh = p.ho;
    var gw = p.wo;
    var py = 0u;
    var px = 0u;
    if (transposed) {
        gh = p.hh;
        gw = p.tiles_w;
        py = wid.z / p.stride;
        px = wid.z % p.stride;
    }
    let m_total = p.n * gh * gw;
    let m0 = wid.x * BM;
    let co0 = wid.y * BN;
    let cin_p = (p.cin + 3u) / 4u * 4u;
    let cout4 = p.cout_p / 4u;

    // The slab pixel this invocation loads, and its first channel group.
    let lm = lidx % BM;
    let lq = lidx / BM;
    let ml = m0 + lm;
    let lx = ml % gw;
    let ly = (ml / gw) % gh;
    let lb = ml / (gw * gh);
    let l_ok = ml < m_total;

    // This invocation's register tile: pixels m0 + 4·tm + i, channels co0 + 8·tn + j.
    let tn = lidx % WG_N;
    let tm = lidx / WG_N;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);

    for (var ky = 0u; ky < p.kh; ky++) {
        let my = tap_map(transposed, ky, py);
        if (!my.ok) { continue; }
        let iy = i32(ly * my.mul) + my.off;
        for (var kx = 0u; kx < p.kw; kx++) {
            let mx = tap_map(transposed, kx, px);
            if (!mx.ok) { continue; }
            let ix = i32(lx * mx.mul) + mx.off;
            let inside = l_ok && iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w);
            let xbase = ((lb * p.h + u32(max(iy, 0))) * p.w + u32(max(ix, 0))) * p.cin;
            let wrow = (ky * p.kw + kx) * cin_p;
            for (var ci0 = 0u; ci0 < p.cin; ci0 += BK) {
                for (var j = 0u; j < QUADS_PER; j++) {
                    let k4 = 4u * (lq + j * LOADERS);
                    var v = vec4<f32>(0.0);
                    if (inside && ci0 + k4 < p.cin) { v = tiled_x4(xbase, ci0 + k4); }
                    let at = k4 * WG_M + lm / 4u;
                    let c = lm % 4u;
                    a_s[at][c] = v.x;
                    a_s[at + WG_M][c] = v.y;
                    a_s[at + 2u * WG_M][c] = v.z;
                    a_s[at + 3u * WG_M][c] = v.w;
                }
                for (var i = lidx; i < BK * BN4; i += WG) {
                    let ci = ci0 + i / BN4;
                    let cq = co0 / 4u + i % BN4;
                    var wv = vec4<f32>(0.0);
                    if (ci < p.cin && cq < cout4) { wv = tiled_w4((wrow + ci) * cout4 + cq); }
                    b_s[i] = wv;
                }
                workgroupBarrier();
                for (var k = 0u; k < BK; k++) {
                    let av = a_s[k * WG_M + tm];
                    let b0 = b_s[k * BN4 + 2u * tn];
                    let b1 = b_s[k * BN4 + 2u * tn + 1u];
                    acc0 += av.x * b0;
                    acc1 += av.y * b0;
                    acc2 += av.z * b0;
                    acc3 += av.w * b0;
                    acc4 += av.x * b1;
                    acc5 += av.y * b1;
                    acc6 += av.z * b1;
                    acc7 += av.w * b1;
                }
                workgroupBarrier();
            }
        }
    }

    for (var i = 0u; i < TM; i++) {
        let m = m0 + TM * tm + i;
        if (m >= m_total) { break; }
        var oy = (m / gw) % gh;
        var ox = m % gw;
        if (transposed) {
            oy = py + p.stride * oy;
            ox = px + p.stride * ox;
            if (oy >= p.ho || ox >= p.wo) { continue; }
        }
        var lo = acc0;
        var hi = acc4;
        if (i == 1u) { lo = acc1; hi = acc5; }
        if (i == 2u) { lo = acc2; hi = acc6; }
        if (i == 3u) { lo = acc3; hi = acc7; }
        tiled_store4(m / (gw * gh), oy, ox, co0 + TN * tn, lo);
        tiled_store4(m / (gw * gh), oy, ox, co0 + TN * tn + 4u, hi);
    }
}
