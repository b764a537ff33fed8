//! CPU references of the element-wise kernels.

/// `max(x, 0)`.
pub fn relu(x: &[f32]) -> Vec<f32> {
    x.iter().map(|v| v.max(0.0)).collect()
}

/// `t` where `primal > 0` (broadcast over samples), else 0.
pub fn relu_mask(t: &[f32], primal: &[f32]) -> Vec<f32> {
    t.iter()
        .enumerate()
        .map(|(i, v)| {
            if primal[i % primal.len()] > 0.0 {
                *v
            } else {
                0.0
            }
        })
        .collect()
}

/// `alpha·a + beta·b`.
pub fn axpby(alpha: f32, a: &[f32], beta: f32, b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| alpha * x + beta * y).collect()
}

/// `x·scale + shift` per channel (channels-last).
pub fn affine_c(x: &[f32], scale: &[f32], shift: &[f32]) -> Vec<f32> {
    let c = scale.len();
    x.iter()
        .enumerate()
        .map(|(i, v)| v * scale[i % c] + shift[i % c])
        .collect()
}
