// Linear measurement operators of the inverse problems (Kadkhodaie &
// Simoncelli 2021): M (measurements → image) and Mᵀ (image → measurements).
// Tensors are channels-last [n, h, w, c]; index folding as elementwise.wgsl.
//
//   mask_mul:   y = x ⊙ m                       (inpainting, random pixels; m broadcast)
//   block_down: y[n,i,j,c] = Σ_{a,b<s} x[n, i·s+a, j·s+b, c] / s    (super-resolution Mᵀ)
//   block_up:   y[n,h,w,c] = x[n, h/s, w/s, c] / s                  (super-resolution M)
//   matvec:     y[s, r] = Σ_k A[r, k] · x[s, k]     (A rows × cols, row-major)
//   matvec_t:   y[s, k] = Σ_r A[r, k] · x[s, r]     (random basis: M = U·, Mᵀ = Uᵀ·)
//   dft:        one axis of an orthonormal 2-D DFT (spectral super-resolution):
//               y[.., k, ..] = scale · Σ_j x[.., j, ..] · e^{sign·2πi·kj/L},
//               complex values as interleaved (re, im) channel pairs; the
//               input may be real, the output may keep the real part only,
//               and a frequency mask m[h, w] may multiply the output.

struct Params {
    len: u32,
    n: u32,
    h: u32,
    w: u32,
    c: u32,
    s: u32,
    rows: u32,
    cols: u32,
    m_len: u32,
    axis: u32,
    in_complex: u32,
    out_real: u32,
    use_mask: u32,
    _p0: u32,
    sign: f32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

// a = x, b = mask
@compute @workgroup_size(64)
fn mask_mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = index(gid, nwg);
    if (j >= p.len) { return; }
    y[j] = a[j] * b[j % p.m_len];
}

// p.h, p.w = output (low-resolution) size; a = x of size (h·s, w·s).
@compute @workgroup_size(64)
fn block_down(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = index(gid, nwg);
    if (j >= p.len) { return; }
    let c = j % p.c;
    let px = j / p.c;
    let x = px % p.w;
    let r = px / p.w;
    let row = r % p.h;
    let n = r / p.h;
    let W = p.w * p.s;
    let H = p.h * p.s;
    var acc = 0.0;
    for (var u = 0u; u < p.s; u++) {
        let base = ((n * H + row * p.s + u) * W + x * p.s) * p.c + c;
        for (var v = 0u; v < p.s; v++) {
            acc += a[base + v * p.c];
        }
    }
    y[j] = acc / f32(p.s);
}

// p.h, p.w = output (high-resolution) size; a = x of size (h/s, w/s).
@compute @workgroup_size(64)
fn block_up(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = index(gid, nwg);
    if (j >= p.len) { return; }
    let c = j % p.c;
    let px = j / p.c;
    let x = px % p.w;
    let r = px / p.w;
    let row = r % p.h;
    let n = r / p.h;
    let ws = p.w / p.s;
    let hs = p.h / p.s;
    y[j] = a[((n * hs + row / p.s) * ws + x / p.s) * p.c + c] / f32(p.s);
}

// Both mat-vecs give each invocation one row (column) of A for up to four
// samples at once (p.n samples, p.len = ceil(n/4)·rows (cols) invocations):
// A, the large operand, is read once per four samples instead of once per
// sample. Lanes past the last sample reuse its data and write nothing.
fn sample_bases(s0: u32, stride: u32) -> vec4<u32> {
    let last = p.n - 1u;
    return vec4<u32>(s0, min(s0 + 1u, last), min(s0 + 2u, last), min(s0 + 3u, last)) * stride;
}

fn store4(acc: vec4<f32>, s0: u32, width: u32, i: u32) {
    for (var q = 0u; q < 4u; q++) {
        if (s0 + q < p.n) { y[(s0 + q) * width + i] = acc[q]; }
    }
}

// a = A (rows × cols), b = x (n × cols); y (n × rows).
@compute @workgroup_size(64)
fn matvec(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = index(gid, nwg);
    if (j >= p.len) { return; }
    let r = j % p.rows;
    let s0 = (j / p.rows) * 4u;
    let xb = sample_bases(s0, p.cols);
    let ra = r * p.cols;
    var acc = vec4<f32>(0.0);
    if (s0 + 1u == p.n) {
        // a lone sample: the scalar loop (no wasted lanes)
        for (var k = 0u; k < p.cols; k++) { acc.x += a[ra + k] * b[xb.x + k]; }
    } else {
        for (var k = 0u; k < p.cols; k++) {
            acc += a[ra + k] * vec4<f32>(b[xb.x + k], b[xb.y + k], b[xb.z + k], b[xb.w + k]);
        }
    }
    store4(acc, s0, p.rows, r);
}

// a = A (rows × cols), b = x (n × rows); y (n × cols).
@compute @workgroup_size(64)
fn matvec_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = index(gid, nwg);
    if (j >= p.len) { return; }
    let k = j % p.cols;
    let s0 = (j / p.cols) * 4u;
    let xb = sample_bases(s0, p.rows);
    var acc = vec4<f32>(0.0);
    if (s0 + 1u == p.n) {
        for (var r = 0u; r < p.rows; r++) { acc.x += a[r * p.cols + k] * b[xb.x + r]; }
    } else {
        for (var r = 0u; r < p.rows; r++) {
            acc += a[r * p.cols + k] * vec4<f32>(b[xb.x + r], b[xb.y + r], b[xb.z + r], b[xb.w + r]);
        }
    }
    store4(acc, s0, p.cols, k);
}

// a = x ([n, h, w, C] real or [n, h, w, 2C] complex), b = twiddles of the
// axis length L: (cos, sin)(2π·t/L) for t < L, m = mask [h, w] (use_mask).
// One invocation per output value pair (n, h, w, channel) → (re, im), or re only.
@compute @workgroup_size(64)
fn dft(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = index(gid, nwg);
    if (j >= p.len) { return; }
    let c = j % p.c;
    let px = j / p.c;
    let x = px % p.w;
    let r = px / p.w;
    let row = r % p.h;
    let n = r / p.h;
    var k: u32;
    var len: u32;
    var stride: u32;
    var first: u32;
    let cin = select(p.c, 2u * p.c, p.in_complex == 1u);
    if (p.axis == 0u) {
        k = row;
        len = p.h;
        stride = p.w * cin;
        first = (n * p.h * p.w + x) * cin;
    } else {
        k = x;
        len = p.w;
        stride = cin;
        first = (n * p.h + row) * p.w * cin;
    }
    var re = 0.0;
    var im = 0.0;
    var t = 0u;
    for (var i = 0u; i < len; i++) {
        let cs = b[2u * t];
        let sn = p.sign * b[2u * t + 1u];
        let o = first + i * stride;
        if (p.in_complex == 1u) {
            let xr = a[o + 2u * c];
            let xi = a[o + 2u * c + 1u];
            re += xr * cs - xi * sn;
            im += xr * sn + xi * cs;
        } else {
            let xr = a[o + c];
            re += xr * cs;
            im += xr * sn;
        }
        t += k;
        if (t >= len) { t -= len; }
    }
    var g = p.scale;
    if (p.use_mask == 1u) { g *= m[row * p.w + x]; }
    if (p.out_real == 1u) {
        y[j] = g * re;
    } else {
        y[2u * j] = g * re;
        y[2u * j + 1u] = g * im;
    }
}
