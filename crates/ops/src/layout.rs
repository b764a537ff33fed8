//! Conversions between planar `(C, H, W)` arrays (images, `.npy`, PyTorch)
//! and the channels-last `[H, W, C]` layout of GPU tensors.

/// `(C, H, W)` → `(H, W, C)`.
pub fn chw_to_hwc(c: usize, h: usize, w: usize, src: &[f32]) -> Vec<f32> {
    assert_eq!(src.len(), c * h * w);
    let mut out = vec![0.0; src.len()];
    for ci in 0..c {
        for i in 0..h * w {
            out[i * c + ci] = src[ci * h * w + i];
        }
    }
    out
}

/// `(H, W, C)` → `(C, H, W)`.
pub fn hwc_to_chw(c: usize, h: usize, w: usize, src: &[f32]) -> Vec<f32> {
    assert_eq!(src.len(), c * h * w);
    let mut out = vec![0.0; src.len()];
    for ci in 0..c {
        for i in 0..h * w {
            out[ci * h * w + i] = src[i * c + ci];
        }
    }
    out
}
