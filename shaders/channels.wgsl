// Channel copies between channels-last tensors of the same n·h·w pixels:
//   dst[px, dst_start + j] = src[px, src_start + j]   for j < len
// (slice: dst is new with len channels; concat: one launch per part into a
// shared destination, each writing its own channel range; the VJP of
// either is the other). Channels outside the range are left untouched.
//
// One invocation per (pixel, j): i = px·len + j, folded as
// gid.x + gid.y · 64 · num_workgroups.x.

struct Params {
    count: u32,     // pixels · len
    len: u32,
    src_c: u32,
    src_start: u32,
    dst_c: u32,
    dst_start: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn copy_channels(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.count) { return; }
    let px = i / p.len;
    let j = i % p.len;
    dst[px * p.dst_c + p.dst_start + j] = src[px * p.src_c + p.src_start + j];
}
