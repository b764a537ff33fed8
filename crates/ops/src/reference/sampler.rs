//! CPU reference of the sampler kernels (`crate::sampler`), channels-last,
//! one sample of `per_sample` values after another.

use super::rng::normal;
use crate::sampler::{field, Schedule, Step, CONVERGED, DIVERGED, RUNNING, STATE};

/// `d = f + m ⊙ (y − f) − b` (m, b broadcast by modulo).
pub fn direction_mask(f: &[f32], y: &[f32], m: &[f32], b: &[f32]) -> Vec<f32> {
    (0..f.len())
        .map(|j| f[j] + m[j % m.len()] * (y[j] - f[j]) - b[j % b.len()])
        .collect()
}

/// `d = f + pu − b`.
pub fn direction_general(f: &[f32], pu: &[f32], b: &[f32]) -> Vec<f32> {
    (0..f.len())
        .map(|j| f[j] + pu[j] - b[j % b.len()])
        .collect()
}

/// Updates `state` like the `coeffs` kernel (sums in f64).
pub fn coefficients(d: &[f32], per_sample: usize, state: &mut [f32], step: &Step) {
    for (s, chunk) in d.chunks(per_sample).enumerate() {
        let st = &mut state[s * STATE..(s + 1) * STATE];
        if st[field::STATUS] != RUNNING {
            st[field::H] = 0.0;
            st[field::GAMMA] = 0.0;
            continue;
        }
        let ss: f64 = chunk.iter().map(|v| (*v as f64) * (*v as f64)).sum();
        let measured = (ss / per_sample as f64).sqrt() as f32;
        let sigma = match step.schedule {
            Schedule::Measured => measured,
            Schedule::Recursion => st[field::SIGMA_NEXT],
            Schedule::Estimated => st[field::SIGMA_NEXT],
        };
        st[field::SIGMA] = sigma;
        st[field::MEASURED] = measured;
        if measured.is_nan()
            || measured > step.sigma_max
            || sigma.is_nan()
            || sigma > step.sigma_max
        {
            st[field::STATUS] = DIVERGED;
            st[field::H] = 0.0;
            st[field::GAMMA] = 0.0;
            continue;
        }
        let u = 1.0 - step.beta * step.h;
        let v = 1.0 - step.h;
        st[field::ITERATIONS] = step.t as f32;
        st[field::H] = step.h;
        st[field::GAMMA] = sigma * (u * u - v * v).max(0.0).sqrt();
        st[field::SIGMA_GOOD] = sigma;
        st[field::SIGMA_NEXT] = match step.schedule {
            Schedule::Measured => sigma,
            Schedule::Recursion => u * sigma,
            Schedule::Estimated => sigma,
        };
        if sigma <= step.sigma_final {
            st[field::STATUS] = CONVERGED;
        }
    }
}

/// `y ← y − h·d + γ·z` per sample, `z` in (N, C, H, W) counter order.
pub fn update(y: &mut [f32], d: &[f32], state: &[f32], (h, w, c): (usize, usize, usize), key: u32) {
    let per = h * w * c;
    for j in 0..y.len() {
        let s = j / per;
        let (hs, gs) = (state[s * STATE + field::H], state[s * STATE + field::GAMMA]);
        if hs == 0.0 && gs == 0.0 {
            continue;
        }
        let r = j % per;
        let (pix, ch) = (r / c, r % c);
        let counter = s * per + ch * h * w + pix;
        y[j] = y[j] - hs * d[j] + gs * normal(key, counter as u32);
    }
}
