//! CPU reference of `group_norm` (f64 internally): forward, JVP and VJP of
//! the noise-conditioned group normalisation. `gain` is `[n, c]` (the
//! layer's slice of the gains), `dgain` its tangent.

use prior_gpu::Shape;

use crate::group_norm::Dual;

struct Stats {
    mu: Vec<f64>,
    v: Vec<f64>,
    fac: Vec<f64>,
    vbar: Vec<f64>,
}

fn stats(x: &[f64], s: Shape, gs: usize, eps: f64) -> Stats {
    let g = s.c / gs;
    let cnt = (gs * s.pixels()) as f64;
    let (mut mu, mut v) = (vec![0.0; s.n * g], vec![0.0; s.n * g]);
    for b in 0..s.n {
        for p in 0..s.pixels() {
            for c in 0..s.c {
                mu[b * g + c / gs] += x[(b * s.pixels() + p) * s.c + c] / cnt;
            }
        }
        for p in 0..s.pixels() {
            for c in 0..s.c {
                let d = x[(b * s.pixels() + p) * s.c + c] - mu[b * g + c / gs];
                v[b * g + c / gs] += d * d / cnt;
            }
        }
    }
    let vbar: Vec<f64> = (0..s.n)
        .map(|b| v[b * g..(b + 1) * g].iter().sum::<f64>() / g as f64)
        .collect();
    let fac = (0..s.n * g)
        .map(|i| (vbar[i / g] / (v[i] + eps) + eps).sqrt())
        .collect();
    Stats { mu, v, fac, vbar }
}

fn f64v(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// `z = (x − μ_g)·fac_g·gain[b, c]`.
pub fn forward(x: &[f32], s: Shape, gs: usize, eps: f32, gain: &[f32]) -> Vec<f32> {
    forward_f64(&f64v(x), s, gs, eps as f64, &f64v(gain))
        .iter()
        .map(|&v| v as f32)
        .collect()
}

/// f64 forward (for finite-difference checks of the derivatives).
pub fn forward_f64(x: &[f64], s: Shape, gs: usize, eps: f64, gain: &[f64]) -> Vec<f64> {
    let st = stats(x, s, gs, eps);
    let g = s.c / gs;
    (0..x.len())
        .map(|i| {
            let c = i % s.c;
            let b = i / (s.pixels() * s.c);
            let q = b * g + c / gs;
            (x[i] - st.mu[q]) * st.fac[q] * gain[b * s.c + c]
        })
        .collect()
}

/// JVP: `z'` at `x` for tangents `xt` of the input and `dgain` of the gains.
pub fn jvp(
    x: &[f32],
    xt: &[f32],
    s: Shape,
    gs: usize,
    eps: f32,
    gain: &[f32],
    dgain: &[f32],
) -> Vec<f32> {
    let (x, xt, gain, dgain) = (f64v(x), f64v(xt), f64v(gain), f64v(dgain));
    let eps = eps as f64;
    let st = stats(&x, s, gs, eps);
    let g = s.c / gs;
    let cnt = (gs * s.pixels()) as f64;
    let (mut m, mut dv) = (vec![0.0; s.n * g], vec![0.0; s.n * g]);
    for i in 0..x.len() {
        let c = i % s.c;
        let b = i / (s.pixels() * s.c);
        let q = b * g + c / gs;
        m[q] += xt[i] / cnt;
        dv[q] += 2.0 * xt[i] * (x[i] - st.mu[q]) / cnt;
    }
    let dvbar: Vec<f64> = (0..s.n)
        .map(|b| dv[b * g..(b + 1) * g].iter().sum::<f64>() / g as f64)
        .collect();
    (0..x.len())
        .map(|i| {
            let c = i % s.c;
            let b = i / (s.pixels() * s.c);
            let q = b * g + c / gs;
            let ve = st.v[q] + eps;
            let dfac = (dvbar[b] / ve - st.vbar[b] * dv[q] / (ve * ve)) / (2.0 * st.fac[q]);
            let d = x[i] - st.mu[q];
            let dxh = st.fac[q] * (xt[i] - m[q]) + dfac * d;
            (dxh * gain[b * s.c + c] + d * st.fac[q] * dgain[b * s.c + c]) as f32
        })
        .collect()
}

/// VJP with respect to the input: `x̄` at `x` for a cotangent `zb`.
pub fn vjp(x: &[f32], zb: &[f32], s: Shape, gs: usize, eps: f32, gain: &[f32]) -> Vec<f32> {
    vjp_f64(&f64v(x), &f64v(zb), s, gs, eps as f64, &f64v(gain))
        .iter()
        .map(|&v| v as f32)
        .collect()
}

/// f64 VJP (for finite-difference checks of [`vjp_jvp`]).
pub fn vjp_f64(x: &[f64], zb: &[f64], s: Shape, gs: usize, eps: f64, gain: &[f64]) -> Vec<f64> {
    let st = stats(x, s, gs, eps);
    let g = s.c / gs;
    let cnt = (gs * s.pixels()) as f64;
    let u: Vec<f64> = (0..x.len())
        .map(|i| zb[i] * gain[(i / (s.pixels() * s.c)) * s.c + i % s.c])
        .collect();
    let (mut m, mut s2) = (vec![0.0; s.n * g], vec![0.0; s.n * g]);
    for i in 0..x.len() {
        let c = i % s.c;
        let b = i / (s.pixels() * s.c);
        let q = b * g + c / gs;
        m[q] += u[i] / cnt;
        s2[q] += u[i] * (x[i] - st.mu[q]);
    }
    // Σ_g S_g δfac_g with δfac_g = (δv̄/(v_g+eps) − v̄ δv_g/(v_g+eps)²)/(2 fac_g),
    // δv̄ = mean δv, δv_g = (2/n) Σ d δx.
    let a: Vec<f64> = (0..s.n)
        .map(|b| {
            (0..g)
                .map(|j| s2[b * g + j] / (2.0 * st.fac[b * g + j] * (st.v[b * g + j] + eps)))
                .sum()
        })
        .collect();
    (0..x.len())
        .map(|i| {
            let c = i % s.c;
            let b = i / (s.pixels() * s.c);
            let q = b * g + c / gs;
            let ve = st.v[q] + eps;
            let k =
                (2.0 / cnt) * (a[b] / g as f64 - s2[q] * st.vbar[b] / (2.0 * st.fac[q] * ve * ve));
            st.fac[q] * (u[i] - m[q]) + k * (x[i] - st.mu[q])
        })
        .collect()
}

/// Forward over reverse: the tangent of [`vjp`]'s `x̄(zb, x)` when the
/// cotangent moves along `zb.tangent` and the input along `x.tangent` (gains
/// constant), differentiated by hand term by term (f64).
pub fn vjp_jvp(
    x: Dual<[f32]>,
    zb: Dual<[f32]>,
    s: Shape,
    gs: usize,
    eps: f32,
    gain: &[f32],
) -> Vec<f32> {
    let (x, xt) = (f64v(x.value), f64v(x.tangent));
    let (zb, zbt, gain) = (f64v(zb.value), f64v(zb.tangent), f64v(gain));
    let eps = eps as f64;
    let st = stats(&x, s, gs, eps);
    let g = s.c / gs;
    let cnt = (gs * s.pixels()) as f64;
    let at = |i: usize| {
        (
            (i / (s.pixels() * s.c)) * g + (i % s.c) / gs,
            gain[(i / (s.pixels() * s.c)) * s.c + i % s.c],
        )
    };
    // per group: μ', δv, S1, S2, S1', S2'
    let (mut dmu, mut dv, mut s1, mut s2, mut s1t, mut s2t) = (
        vec![0.0; s.n * g],
        vec![0.0; s.n * g],
        vec![0.0; s.n * g],
        vec![0.0; s.n * g],
        vec![0.0; s.n * g],
        vec![0.0; s.n * g],
    );
    for i in 0..x.len() {
        let (q, gn) = at(i);
        let d = x[i] - st.mu[q];
        dmu[q] += xt[i] / cnt;
        dv[q] += 2.0 * d * xt[i] / cnt;
        s1[q] += zb[i] * gn;
        s2[q] += zb[i] * gn * d;
        s1t[q] += zbt[i] * gn;
    }
    for i in 0..x.len() {
        let (q, gn) = at(i);
        let (d, dd) = (x[i] - st.mu[q], xt[i] - dmu[q]);
        s2t[q] += zbt[i] * gn * d + zb[i] * gn * dd;
    }
    let dvbar: Vec<f64> = (0..s.n)
        .map(|b| dv[b * g..(b + 1) * g].iter().sum::<f64>() / g as f64)
        .collect();
    let ve = |q: usize| st.v[q] + eps;
    let dfac = |q: usize| {
        (dvbar[q / g] / ve(q) - st.vbar[q / g] * dv[q] / (ve(q) * ve(q))) / (2.0 * st.fac[q])
    };
    let bq = |q: usize| s2[q] / (2.0 * st.fac[q] * ve(q));
    let bqt = |q: usize| {
        let (f, v) = (st.fac[q], ve(q));
        s2t[q] / (2.0 * f * v) - s2[q] * (dfac(q) * v + f * dv[q]) / (2.0 * f * f * v * v)
    };
    let k = |q: usize| {
        let b = q / g;
        let a: f64 = (0..g).map(|j| bq(b * g + j)).sum();
        (2.0 / cnt) * (a / g as f64 - s2[q] * st.vbar[b] / (2.0 * st.fac[q] * ve(q) * ve(q)))
    };
    let kt = |q: usize| {
        let b = q / g;
        let (f, v, vb) = (st.fac[q], ve(q), st.vbar[b]);
        let at: f64 = (0..g).map(|j| bqt(b * g + j)).sum();
        // C = S2·v̄/(2·fac·ve²): quotient rule on each factor
        let c = s2[q] * vb / (2.0 * f * v * v);
        let ct = (s2t[q] * vb + s2[q] * dvbar[b]) / (2.0 * f * v * v)
            - c * (dfac(q) / f + 2.0 * dv[q] / v);
        (2.0 / cnt) * (at / g as f64 - ct)
    };
    (0..x.len())
        .map(|i| {
            let (q, gn) = at(i);
            let d = x[i] - st.mu[q];
            let (u, a) = (zb[i] * gn, zbt[i] * gn);
            (dfac(q) * (u - s1[q] / cnt)
                + st.fac[q] * (a - s1t[q] / cnt)
                + kt(q) * d
                + k(q) * (xt[i] - dmu[q])) as f32
        })
        .collect()
}
