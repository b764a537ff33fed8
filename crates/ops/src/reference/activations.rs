//! CPU reference of `activations`: GELU (exact erf, evaluated in f64) and
//! SiLU with their derivatives.

/// erf in f64: Taylor series for |x| < 2.5 (terms alternate; f64 keeps ~1e-14),
/// continued fraction of erfc beyond (Lentz), accurate to ~1e-14.
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 2.5 {
        // erf(x) = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1))
        let mut term = a;
        let mut sum = a;
        let x2 = a * a;
        let mut n = 0.0;
        loop {
            n += 1.0;
            term *= -x2 / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() <= 1e-17 * sum.abs() || n > 200.0 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        1.0 - erfc_cf(a)
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// erfc(x) for x ≥ 2.5 by the continued fraction
/// erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))).
fn erfc_cf(x: f64) -> f64 {
    let mut f = x;
    let tiny = 1e-300;
    let (mut c, mut d) = (x, 0.0);
    for n in 1..200 {
        let an = n as f64 / 2.0;
        d = x + an * d;
        if d.abs() < tiny {
            d = tiny;
        }
        c = x + an / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() / f
}

/// Standard normal CDF Φ(x) in f64 (through erfc for x < 0, no cancellation).
pub fn normal_cdf(x: f64) -> f64 {
    let z = x / std::f64::consts::SQRT_2;
    if z < -2.5 {
        0.5 * erfc_cf(-z)
    } else {
        0.5 * (1.0 + erf(z))
    }
}

/// Exact GELU, `x·Φ(x)`.
pub fn gelu(x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&v| (v as f64 * normal_cdf(v as f64)) as f32)
        .collect()
}

/// JVP (and VJP) of GELU at `x` on tangents `t`: `t·(Φ(x) + x·φ(x))`.
pub fn gelu_jvp(x: &[f32], t: &[f32]) -> Vec<f32> {
    x.iter()
        .zip(t)
        .map(|(&v, &t)| {
            let v = v as f64;
            let pdf = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
            (t as f64 * (normal_cdf(v) + v * pdf)) as f32
        })
        .collect()
}

/// `xt·ū·GELU''(x) + ut·GELU'(x)`: the tangent of the GELU VJP (f64).
pub fn gelu_vjp_jvp(x: &[f32], xt: &[f32], ub: &[f32], ut: &[f32]) -> Vec<f32> {
    (0..x.len())
        .map(|i| {
            let v = x[i] as f64;
            let pdf = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let d1 = normal_cdf(v) + v * pdf;
            let d2 = pdf * (2.0 - v * v);
            (xt[i] as f64 * ub[i] as f64 * d2 + ut[i] as f64 * d1) as f32
        })
        .collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// SiLU, `x·σ(x)`.
pub fn silu(x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&v| (v as f64 * sigmoid(v as f64)) as f32)
        .collect()
}

/// JVP of SiLU at `x` on tangents `t`.
pub fn silu_jvp(x: &[f32], t: &[f32]) -> Vec<f32> {
    x.iter()
        .zip(t)
        .map(|(&v, &t)| {
            let s = sigmoid(v as f64);
            (t as f64 * s * (1.0 + v as f64 * (1.0 - s))) as f32
        })
        .collect()
}
