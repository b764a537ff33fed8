// Noise-conditioned group normalisation of the dual-score-matching energy
// UNet (Guth, Kadkhodaie, Simoncelli 2025), per sample b and per group g of
// `gs` consecutive channels, over the group's channels and all H×W pixels
// (n = gs·H·W values), channels-last x[b, pixel, c]:
//
//   μ_g = mean(x),  v_g = mean((x − μ_g)²),  v̄ = mean over the G groups of v_g
//   fac_g = sqrt(v̄ / (v_g + eps) + eps)
//   z = (x − μ_g)·fac_g·gain[b, c],   gain[b, c] = weight_c·(1 + Linear_c(emb_b))
//
// Entries (launch order of one pass):
//   gains        gain[b, j] = w[j]·(1 + lin[b, j])  (or w[j]·lin[b, j] for the
//                tangent: flags & 1), for every normalisation at once (j runs
//                over the concatenated channels of all layers).
//   chunk_fwd    one invocation per (b, g, chunk k) of `chunk_px` pixels:
//                part[(bg·K + k)·2 + 0, 1] = chunk mean, chunk Σ(x − mean)² (two passes)
//   merge_fwd    one invocation per (b, g): Chan's merge of the K chunks,
//                st[(b·G + g)·4 + 0, 1] = μ, v.
//   finalize_fwd one invocation per (b, g): st[.. + 2] = fac_g.
//   apply_fwd    z (above).
// Tangents / cotangents (x' = tangent of x for the JVP, z̄ = cotangent of z
// for the VJP; d = x − μ; sums over the group):
//   chunk_tan    per (b, g, k): partial s1 = Σ u, s2 = Σ u·d, where u = z̄·gain
//                (VJP, flags & 1) or u = x' (JVP), into part[(bg·K + k)·2 + 0, 1];
//   merge_tan    per (b, g): st2[(b·G + g)·4 + 0, 1] = Σ_k of the partials.
//   finalize_jvp m = s1/n;  δv_g = 2·s2/n;  δv̄ = mean δv;
//                k_g = δfac_g = (δv̄/(v_g + eps) − v̄·δv_g/(v_g + eps)²)/(2·fac_g)
//   apply_jvp    z' = gain·(fac·(x' − m) + k·d) + fac·d·gain'   (gain' = tangent of gain;
//                flags & 2: add the gain' term, flags & 4: x' = 0, skip the first term)
//   finalize_vjp m = s1/n;  A = Σ_g s2_g/(2·fac_g·(v_g + eps));
//                k_g = (2/n)·(A/G − s2_g·v̄/(2·fac_g·(v_g + eps)²))
//   apply_vjp    x̄ = fac·(z̄·gain − m) + k·d
// (st2 slots 2, 3 hold m, k.)
// Forward over reverse (tangent of the VJP, for Hessian-vector products):
// the primal input h moves along h' and the cotangent z̄ along z̄'; with
// u = z̄·gain, a = z̄'·gain, d = h − μ, per group:
//   chunk_vjp_jvp  per (b, g, k): 8 partial sums into part[(bg·K + k)·8 + j]:
//                  Σh', Σd·h', Σu, Σu·d, Σa, Σa·d, Σu·h', 0
//   merge_sum8     per (b, g): the K partials summed into sums[bg·8 + j]
//   finalize_vjp_jvp per (b, g), with μ' = Σh'/n, δv = 2Σd·h'/n, δv̄ = mean δv,
//                  δfac (as finalize_jvp), S1 = Σu, S2 = Σu·d, S1' = Σa,
//                  S2' = Σa·d + Σu·h' − μ'·S1, B_g = S2_g/(2·fac_g·ve_g),
//                  A = Σ_g B_g, A' = Σ_g (S2'_g/(2·fac_g·ve_g) − B_g·(δfac_g/fac_g + δv_g/ve_g)),
//                  C = S2·v̄/(2·fac·ve²), C' = (S2'·v̄ + S2·δv̄)/(2·fac·ve²) − C·(δfac/fac + 2·δv/ve),
//                  k = (2/n)(A/G − C), k' = (2/n)(A'/G − C'):
//                  coef[bg·8 + 0..6] = δfac, m = S1/n, m' = S1'/n, k, k', μ'
//   apply_vjp_jvp  x̄' = δfac·(u − m) + fac·(a − m') + k'·d + k·(h' − μ')
// (bindings: 1 z̄ / partials, 4 sums / coef, 6 z̄', 8 h'.)
// Statistics are f32 sums over chunks of at most
// `chunk_px` pixels, merged per group (no workgroup memory or barriers: those
// are slow on CPU drivers such as lavapipe, and chunking keeps enough
// parallelism for few large groups on GPUs).
//
// Bindings (all entries; unused ones get any buffer):
//   1 x: the input (chunk_fwd, apply_fwd) / the tangent or cotangent (chunk_tan, apply_*)
//        / the chunk partials (merge_*)
//   2 h: the primal input of the normalisation (tangent entries)
//   3 st: primal statistics (tangent entries)
//   4 st2: tangent statistics (apply_jvp, apply_vjp)
//   5 gain: [n, L] gains of all layers (apply, chunk_tan)  — or w (gains entry)
//   6 dgain: [n, L] tangent gains (apply_jvp)               — or lin (gains entry)
//   7 out

struct Params {
    n: u32,
    hw: u32,
    c: u32,
    gs: u32,
    groups: u32,
    flags: u32,
    gain_off: u32,
    gain_len: u32,
    eps: f32,
    chunks: u32,
    chunk_px: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> h: array<f32>;
@group(0) @binding(3) var<storage, read> st: array<f32>;
@group(0) @binding(4) var<storage, read> st2: array<f32>;
@group(0) @binding(5) var<storage, read> gain: array<f32>;
@group(0) @binding(6) var<storage, read> dgain: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;
// the *_vjp_jvp entries only: the tangent h' of the primal input
@group(0) @binding(8) var<storage, read> ht: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

@compute @workgroup_size(64)
fn gains(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n * p.gain_len) { return; }
    let j = i % p.gain_len;
    if ((p.flags & 1u) != 0u) {
        out[i] = gain[j] * dgain[i];
    } else {
        out[i] = gain[j] * (1.0 + dgain[i]);
    }
}

// pixel range [p0, p1) of chunk k
fn chunk_range(k: u32) -> vec2<u32> {
    let p0 = k * p.chunk_px;
    return vec2<u32>(p0, min(p0 + p.chunk_px, p.hw));
}

@compute @workgroup_size(64)
fn chunk_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n * p.groups * p.chunks) { return; }
    let bg = i / p.chunks;
    let k = i % p.chunks;
    let b = bg / p.groups;
    let c0 = (bg % p.groups) * p.gs;
    let r = chunk_range(k);
    let cnt = f32((r.y - r.x) * p.gs);
    var acc = 0.0;
    for (var px = r.x; px < r.y; px++) {
        let e = (b * p.hw + px) * p.c + c0;
        for (var j = 0u; j < p.gs; j++) { acc += x[e + j]; }
    }
    let m = acc / cnt;
    var m2 = 0.0;
    for (var px = r.x; px < r.y; px++) {
        let e = (b * p.hw + px) * p.c + c0;
        for (var j = 0u; j < p.gs; j++) {
            let d = x[e + j] - m;
            m2 += d * d;
        }
    }
    out[i * 2u] = m;
    out[i * 2u + 1u] = m2;
}

// x = chunk partials (mean, M2); Chan et al.'s pairwise merge in one sweep:
// μ = Σ n_k m_k / n, M2 = Σ M2_k + Σ n_k (m_k − μ)².
@compute @workgroup_size(64)
fn merge_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let bg = index(gid, nwg);
    if (bg >= p.n * p.groups) { return; }
    var s = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        let r = chunk_range(k);
        s += f32((r.y - r.x) * p.gs) * x[(bg * p.chunks + k) * 2u];
    }
    let n = f32(p.hw * p.gs);
    let mu = s / n;
    var m2 = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        let r = chunk_range(k);
        let q = (bg * p.chunks + k) * 2u;
        let dm = x[q] - mu;
        m2 += x[q + 1u] + f32((r.y - r.x) * p.gs) * dm * dm;
    }
    out[bg * 4u] = mu;
    out[bg * 4u + 1u] = m2 / n;
}

@compute @workgroup_size(64)
fn finalize_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let bg = index(gid, nwg);
    if (bg >= p.n * p.groups) { return; }
    let b = bg / p.groups;
    var vbar = 0.0;
    for (var g = 0u; g < p.groups; g++) { vbar += out[(b * p.groups + g) * 4u + 1u]; }
    vbar = vbar / f32(p.groups);
    out[bg * 4u + 2u] = sqrt(vbar / (out[bg * 4u + 1u] + p.eps) + p.eps);
}

@compute @workgroup_size(64)
fn apply_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n * p.hw * p.c) { return; }
    let ch = i % p.c;
    let b = i / (p.hw * p.c);
    let bg = b * p.groups + ch / p.gs;
    out[i] = (x[i] - st[bg * 4u]) * st[bg * 4u + 2u] * gain[b * p.gain_len + p.gain_off + ch];
}

@compute @workgroup_size(64)
fn chunk_tan(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n * p.groups * p.chunks) { return; }
    let bg = i / p.chunks;
    let k = i % p.chunks;
    let b = bg / p.groups;
    let c0 = (bg % p.groups) * p.gs;
    let r = chunk_range(k);
    let mu = st[bg * 4u];
    let use_gain = (p.flags & 1u) != 0u;
    var s1 = 0.0;
    var s2 = 0.0;
    for (var px = r.x; px < r.y; px++) {
        let e0 = (b * p.hw + px) * p.c + c0;
        for (var j = 0u; j < p.gs; j++) {
            let e = e0 + j;
            var u = x[e];
            if (use_gain) { u = u * gain[b * p.gain_len + p.gain_off + c0 + j]; }
            s1 += u;
            s2 += u * (h[e] - mu);
        }
    }
    out[i * 2u] = s1;
    out[i * 2u + 1u] = s2;
}

// x = chunk partials (s1, s2)
@compute @workgroup_size(64)
fn merge_tan(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let bg = index(gid, nwg);
    if (bg >= p.n * p.groups) { return; }
    var s1 = 0.0;
    var s2 = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        s1 += x[(bg * p.chunks + k) * 2u];
        s2 += x[(bg * p.chunks + k) * 2u + 1u];
    }
    out[bg * 4u] = s1;
    out[bg * 4u + 1u] = s2;
}

fn vbar_of(b: u32) -> f32 {
    var vbar = 0.0;
    for (var g = 0u; g < p.groups; g++) { vbar += st[(b * p.groups + g) * 4u + 1u]; }
    return vbar / f32(p.groups);
}

@compute @workgroup_size(64)
fn finalize_jvp(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let bg = index(gid, nwg);
    if (bg >= p.n * p.groups) { return; }
    let b = bg / p.groups;
    let cnt = f32(p.gs * p.hw);
    let vbar = vbar_of(b);
    var dvbar = 0.0;
    for (var g = 0u; g < p.groups; g++) { dvbar += 2.0 * out[(b * p.groups + g) * 4u + 1u] / cnt; }
    dvbar = dvbar / f32(p.groups);
    let ve = st[bg * 4u + 1u] + p.eps;
    let fac = st[bg * 4u + 2u];
    let dv = 2.0 * out[bg * 4u + 1u] / cnt;
    let m = out[bg * 4u] / cnt;
    let k = (dvbar / ve - vbar * dv / (ve * ve)) / (2.0 * fac);
    // Every invocation reads slot 1 of all groups of its sample above; write
    // only slots 2 and 3 so no invocation sees another's result.
    out[bg * 4u + 2u] = m;
    out[bg * 4u + 3u] = k;
}

@compute @workgroup_size(64)
fn finalize_vjp(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let bg = index(gid, nwg);
    if (bg >= p.n * p.groups) { return; }
    let b = bg / p.groups;
    let cnt = f32(p.gs * p.hw);
    let vbar = vbar_of(b);
    var a = 0.0;
    for (var g = 0u; g < p.groups; g++) {
        let q = (b * p.groups + g) * 4u;
        a += out[q + 1u] / (2.0 * st[q + 2u] * (st[q + 1u] + p.eps));
    }
    let ve = st[bg * 4u + 1u] + p.eps;
    let fac = st[bg * 4u + 2u];
    let s2 = out[bg * 4u + 1u];
    let k = (2.0 / cnt) * (a / f32(p.groups) - s2 * vbar / (2.0 * fac * ve * ve));
    out[bg * 4u + 2u] = out[bg * 4u] / cnt;
    out[bg * 4u + 3u] = k;
}

@compute @workgroup_size(64)
fn apply_jvp(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n * p.hw * p.c) { return; }
    let ch = i % p.c;
    let b = i / (p.hw * p.c);
    let bg = b * p.groups + ch / p.gs;
    let d = h[i] - st[bg * 4u];
    let fac = st[bg * 4u + 2u];
    let gi = b * p.gain_len + p.gain_off + ch;
    var r = 0.0;
    if ((p.flags & 4u) == 0u) { r = gain[gi] * (fac * (x[i] - st2[bg * 4u + 2u]) + st2[bg * 4u + 3u] * d); }
    if ((p.flags & 2u) != 0u) { r += fac * d * dgain[gi]; }
    out[i] = r;
}

@compute @workgroup_size(64)
fn apply_vjp(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n * p.hw * p.c) { return; }
    let ch = i % p.c;
    let b = i / (p.hw * p.c);
    let bg = b * p.groups + ch / p.gs;
    let d = h[i] - st[bg * 4u];
    let fac = st[bg * 4u + 2u];
    let u = x[i] * gain[b * p.gain_len + p.gain_off + ch];
    out[i] = fac * (u - st2[bg * 4u + 2u]) + st2[bg * 4u + 3u] * d;
}

@compute @workgroup_size(64)
fn chunk_vjp_jvp(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n * p.groups * p.chunks) { return; }
    let bg = i / p.chunks;
    let k = i % p.chunks;
    let b = bg / p.groups;
    let c0 = (bg % p.groups) * p.gs;
    let r = chunk_range(k);
    let mu = st[bg * 4u];
    var s: array<f32, 7>;
    for (var j = 0u; j < 7u; j++) { s[j] = 0.0; }
    for (var px = r.x; px < r.y; px++) {
        let e0 = (b * p.hw + px) * p.c + c0;
        for (var j = 0u; j < p.gs; j++) {
            let e = e0 + j;
            let g = gain[b * p.gain_len + p.gain_off + c0 + j];
            let d = h[e] - mu;
            let u = x[e] * g;
            let a = dgain[e] * g;
            let t = ht[e];
            s[0] += t;
            s[1] += d * t;
            s[2] += u;
            s[3] += u * d;
            s[4] += a;
            s[5] += a * d;
            s[6] += u * t;
        }
    }
    for (var j = 0u; j < 7u; j++) { out[i * 8u + j] = s[j]; }
    out[i * 8u + 7u] = 0.0;
}

// x = chunk partials, 8 per chunk
@compute @workgroup_size(64)
fn merge_sum8(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let bg = index(gid, nwg);
    if (bg >= p.n * p.groups) { return; }
    for (var j = 0u; j < 8u; j++) {
        var acc = 0.0;
        for (var k = 0u; k < p.chunks; k++) { acc += x[(bg * p.chunks + k) * 8u + j]; }
        out[bg * 8u + j] = acc;
    }
}

// δv_g and δfac_g of group q (sums in st2, 8 per group)
fn dv_of(q: u32, cnt: f32) -> f32 {
    return 2.0 * st2[q * 8u + 1u] / cnt;
}

@compute @workgroup_size(64)
fn finalize_vjp_jvp(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let bg = index(gid, nwg);
    if (bg >= p.n * p.groups) { return; }
    let b = bg / p.groups;
    let cnt = f32(p.gs * p.hw);
    let ng = f32(p.groups);
    let vbar = vbar_of(b);
    var dvbar = 0.0;
    for (var g = 0u; g < p.groups; g++) { dvbar += dv_of(b * p.groups + g, cnt); }
    dvbar = dvbar / ng;
    var a = 0.0;
    var at = 0.0;
    for (var g = 0u; g < p.groups; g++) {
        let q = b * p.groups + g;
        let ve = st[q * 4u + 1u] + p.eps;
        let fac = st[q * 4u + 2u];
        let dv = dv_of(q, cnt);
        let dfac = (dvbar / ve - vbar * dv / (ve * ve)) / (2.0 * fac);
        let s1 = st2[q * 8u + 2u];
        let s2 = st2[q * 8u + 3u];
        let s2t = st2[q * 8u + 5u] + st2[q * 8u + 6u] - st2[q * 8u] / cnt * s1;
        let bq = s2 / (2.0 * fac * ve);
        a += bq;
        at += s2t / (2.0 * fac * ve) - bq * (dfac / fac + dv / ve);
    }
    let ve = st[bg * 4u + 1u] + p.eps;
    let fac = st[bg * 4u + 2u];
    let dv = dv_of(bg, cnt);
    let dfac = (dvbar / ve - vbar * dv / (ve * ve)) / (2.0 * fac);
    let dmu = st2[bg * 8u] / cnt;
    let s1 = st2[bg * 8u + 2u];
    let s2 = st2[bg * 8u + 3u];
    let s2t = st2[bg * 8u + 5u] + st2[bg * 8u + 6u] - dmu * s1;
    let c = s2 * vbar / (2.0 * fac * ve * ve);
    let ct = (s2t * vbar + s2 * dvbar) / (2.0 * fac * ve * ve) - c * (dfac / fac + 2.0 * dv / ve);
    out[bg * 8u + 0u] = dfac;
    out[bg * 8u + 1u] = s1 / cnt;
    out[bg * 8u + 2u] = st2[bg * 8u + 4u] / cnt;
    out[bg * 8u + 3u] = (2.0 / cnt) * (a / ng - c);
    out[bg * 8u + 4u] = (2.0 / cnt) * (at / ng - ct);
    out[bg * 8u + 5u] = dmu;
    out[bg * 8u + 6u] = 0.0;
    out[bg * 8u + 7u] = 0.0;
}

@compute @workgroup_size(64)
fn apply_vjp_jvp(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n * p.hw * p.c) { return; }
    let ch = i % p.c;
    let b = i / (p.hw * p.c);
    let bg = b * p.groups + ch / p.gs;
    let d = h[i] - st[bg * 4u];
    let fac = st[bg * 4u + 2u];
    let g = gain[b * p.gain_len + p.gain_off + ch];
    let q = bg * 8u;
    out[i] = st2[q] * (x[i] * g - st2[q + 1u]) + fac * (dgain[i] * g - st2[q + 2u]) + st2[q + 4u] * d
        + st2[q + 3u] * (ht[i] - st2[q + 5u]);
}
