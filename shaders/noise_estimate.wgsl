// Blind noise-variance estimate per image (crates/ops/src/noise_estimate.rs):
// Donoho's robust estimator on the finest diagonal Haar details,
//
//   d = (a − b − c + e)/2 over the 2×2 blocks a b / c e of each channel,
//   σ̂ = median(|d|)/0.6745,   t̂ = σ̂²,
//
// with the median found exactly by a radix select on the bits of |d| (a
// non-negative float's bits order like the float): four passes of 8 bits,
// one workgroup per image. Pass k histograms the k-th byte of the values
// whose higher bytes equal the prefix found so far, then picks the byte
// whose bin holds the wanted rank. `state` keeps (prefix, rank) per image as
// u32; the last pass writes t̂ to `out`. The median is the element of rank
// ⌊len/2⌋ (0-based) in sorted order, as `select_nth_unstable(len/2)` in the
// CPU reference. Images with no 2×2 block give 0.

struct Params {
    n: u32,
    h: u32,
    w: u32,
    c: u32,
    pass_index: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> state: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> hist: array<atomic<u32>, 256>;

fn detail_bits(img: u32, k: u32) -> u32 {
    // k enumerates (block row, block column, channel) in that order.
    let bw = p.w / 2u;
    let ch = k % p.c;
    let blk = k / p.c;
    let bx = blk % bw;
    let by = blk / bw;
    let row = p.w * p.c;
    let base = img * p.h * row + (2u * by) * row + (2u * bx) * p.c + ch;
    let d = (y[base] - y[base + p.c] - y[base + row] + y[base + row + p.c]) * 0.5;
    return bitcast<u32>(abs(d));
}

// One workgroup per image; dispatch (n, 1, 1) once per pass_index 0..3.
@compute @workgroup_size(256)
fn mad_select(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let img = wid.x;
    if (img >= p.n) { return; }
    let len = (p.h / 2u) * (p.w / 2u) * p.c;
    atomicStore(&hist[lid], 0u);
    if (p.pass_index == 0u && lid == 0u) {
        state[2u * img] = 0u;
        state[2u * img + 1u] = len / 2u;
    }
    storageBarrier();
    workgroupBarrier();
    let shift = 24u - 8u * p.pass_index;
    let prefix = state[2u * img];
    for (var k = lid; k < len; k += 256u) {
        let bits = detail_bits(img, k);
        // Higher bytes must match the prefix (always true in pass 0).
        if (p.pass_index == 0u || (bits >> (shift + 8u)) == prefix) {
            atomicAdd(&hist[(bits >> shift) & 255u], 1u);
        }
    }
    workgroupBarrier();
    if (lid != 0u) { return; }
    if (len == 0u) {
        out[img] = 0.0;
        return;
    }
    var rank = state[2u * img + 1u];
    var bin = 0u;
    loop {
        let count = atomicLoad(&hist[bin]);
        if (rank < count || bin == 255u) { break; }
        rank -= count;
        bin += 1u;
    }
    let next = (prefix << 8u) | bin;
    state[2u * img] = next;
    state[2u * img + 1u] = rank;
    if (p.pass_index == 3u) {
        let sigma = bitcast<f32>(next) / 0.6745;
        out[img] = sigma * sigma;
    }
}
