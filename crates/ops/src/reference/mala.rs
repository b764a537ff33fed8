//! CPU reference of the MALA kernels (`crate::mala`), channels-last, one
//! sample of `per_sample` values after another.

use super::rng::{mix, normal};
use crate::mala::{field, STATE};

/// Uniform number `i` in (0, 1) of the stream with key `key` (24 bits).
pub fn uniform(key: u32, i: u32) -> f32 {
    let h = mix(mix(i ^ key) ^ 0x68bc21eb);
    ((h >> 8) as f32 + 0.5) * 5.960_464_5e-8
}

/// `y' = y − ε·g + √(2ε)·z`, `z` in (N, C, H, W) counter order.
pub fn propose(
    y: &[f32],
    g: &[f32],
    (h, w, c): (usize, usize, usize),
    eps: f32,
    key: u32,
) -> Vec<f32> {
    let per = h * w * c;
    (0..y.len())
        .map(|j| {
            let (s, r) = (j / per, j % per);
            let (pix, ch) = (r / c, r % c);
            let counter = s * per + ch * h * w + pix;
            y[j] - eps * g[j] + (2.0 * eps).sqrt() * normal(key, counter as u32)
        })
        .collect()
}

/// log α of each sample: `U(y) − U(y') − Σ[(y − y' + ε g')² − (y' − y + ε g)²]/(4ε)`
/// (sums in f64).
pub fn log_alpha(
    u: &[f32],
    u_prop: &[f32],
    y: &[f32],
    g: &[f32],
    y_prop: &[f32],
    g_prop: &[f32],
    eps: f32,
) -> Vec<f64> {
    let n = u.len();
    let per = y.len() / n;
    (0..n)
        .map(|s| {
            let mut acc = 0.0f64;
            for k in s * per..(s + 1) * per {
                let back = (y[k] - y_prop[k] + eps * g_prop[k]) as f64;
                let fwd = (y_prop[k] - y[k] + eps * g[k]) as f64;
                acc += back * back - fwd * fwd;
            }
            u[s] as f64 - u_prop[s] as f64 - acc / (4.0 * eps as f64)
        })
        .collect()
}

/// Updates `state` like the `accept` kernel, given each sample's log α.
pub fn accept(state: &mut [f32], u_prop: &[f32], log_alpha: &[f64], key: u32) {
    for (s, la) in log_alpha.iter().enumerate() {
        let st = &mut state[s * STATE..(s + 1) * STATE];
        st[field::LOG_ALPHA] = *la as f32;
        if (uniform(key, s as u32).ln() as f64) < *la {
            st[field::ENERGY] = u_prop[s];
            st[field::ACCEPTED] += 1.0;
            st[field::LAST] = 1.0;
        } else {
            st[field::LAST] = 0.0;
        }
    }
}

/// `y ← y'`, `g ← g'` for the samples whose last proposal was accepted.
pub fn select(state: &[f32], y: &mut [f32], g: &mut [f32], y_prop: &[f32], g_prop: &[f32]) {
    let n = state.len() / STATE;
    let per = y.len() / n;
    for j in 0..y.len() {
        if state[(j / per) * STATE + field::LAST] == 1.0 {
            y[j] = y_prop[j];
            g[j] = g_prop[j];
        }
    }
}
