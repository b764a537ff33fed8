//! CPU reference of prior's counter-based Gaussian generator (the same
//! arithmetic as `shaders/rng.wgsl` and `tests/golden/make_golden.py`), so a
//! seed reproduces the same noise on the CPU, on any GPU and in PyTorch.
//!
//! `mix` is Wellons' lowbias32 hash; a (seed, stream) pair gives a key, and
//! element `i` of a stream is a Box–Muller normal from two hashed words.

/// lowbias32.
pub fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846ca68b);
    x ^= x >> 16;
    x
}

/// The key of stream `stream` under `seed`.
pub fn key(seed: u64, stream: u32) -> u32 {
    let (lo, hi) = (seed as u32, (seed >> 32) as u32);
    mix(mix(mix(lo ^ 0x9e3779b9) ^ hi) ^ stream)
}

/// Standard normal number `i` of the stream with key `key` (f32 math).
pub fn normal(key: u32, i: u32) -> f32 {
    let a = mix(i ^ key);
    let b = mix(a ^ 0x68bc21eb);
    let c = mix(b ^ 0x02e5be93);
    let u1 = ((b >> 8) as f32 + 0.5) * 5.960_464_5e-8;
    let u2 = (c >> 8) as f32 * 5.960_464_5e-8;
    (-2.0 * u1.ln()).sqrt() * (6.283_185_5 * u2).cos()
}

/// `n` normals of a stream, element indices `0..n` (flat `(C, H, W)` order
/// for images).
pub fn normals(seed: u64, stream: u32, n: usize) -> Vec<f32> {
    let k = key(seed, stream);
    (0..n as u32).map(|i| normal(k, i)).collect()
}
