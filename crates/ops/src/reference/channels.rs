//! CPU references of the channel slice/concat kernels (channels-last).

use prior_gpu::Shape;

/// Channels `[start, start + len)` of `x` (shape `s`).
pub fn slice_channels(x: &[f32], s: Shape, start: usize, len: usize) -> Vec<f32> {
    assert!(start + len <= s.c);
    x.chunks(s.c)
        .flat_map(|px| px[start..start + len].iter().copied())
        .collect()
}

/// Parts (each `(data, channels)`, same number of pixels) side by side.
pub fn concat_channels(parts: &[(&[f32], usize)]) -> Vec<f32> {
    let pixels = parts[0].0.len() / parts[0].1;
    let mut out = Vec::new();
    for p in 0..pixels {
        for (data, c) in parts {
            out.extend_from_slice(&data[p * c..(p + 1) * c]);
        }
    }
    out
}
