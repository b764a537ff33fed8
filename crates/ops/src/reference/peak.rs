//! CPU reference of [`crate::peak`]: the value one invocation of the FMA
//! ceiling loop writes.

use crate::peak::{A, B};

/// Output of invocation `i` after `iters` rounds (f32 FMAs, as the shader).
pub fn fma_peak(i: u32, iters: u32) -> f32 {
    let s = (i & 1023) as f32 * 1e-7;
    let mut lanes = [0.0f32; 64];
    for (v, lane) in lanes.iter_mut().enumerate() {
        let (chain, component) = (v / 4, v % 4);
        *lane = s + 0.1 * component as f32 + 0.01 * chain as f32;
    }
    for _ in 0..iters {
        for x in lanes.iter_mut() {
            *x = x.mul_add(A, B);
        }
    }
    lanes.iter().map(|&x| x as f64).sum::<f64>() as f32
}
