// Smooth activations of the energy UNet and its embedding MLP, with their
// derivatives for tangent (JVP) and cotangent (VJP) passes. Both are
// element-wise, so the JVP and the VJP are the same product t·φ'(x).
//
//   gelu:     y = x·Φ(x)              (exact form, Φ = standard normal CDF)
//   gelu_jvp: y = t·(Φ(x) + x·ϕ(x))   (ϕ = standard normal density)
//   gelu_vjp_jvp: y = x'·ū·GELU''(x) + u̇·GELU'(x), GELU''(x) = ϕ(x)·(2 − x²):
//             the tangent of the VJP ū·GELU'(x) when the primal input x
//             moves along x' and the cotangent ū along u̇ (forward over
//             reverse, for Hessian-vector products); a = x, b = x', c = ū, d = u̇
//   silu:     y = x·σ(x)              (σ = logistic sigmoid)
//   silu_jvp: y = t·σ(x)·(1 + x·(1 − σ(x)))
//
// WGSL has no erf. Φ(x) = ½·erfc(−x/√2) with erfc from the Chebyshev-fitted
// formula of Numerical Recipes (erfcc): erfc(z) = t·exp(−z² + P(t)),
// t = 1/(1 + z/2), z ≥ 0, whose RELATIVE error is below 1.2e-7 for every
// z ≥ 0 (erfc(−z) = 2 − erfc(z) has an absolute error below 1.2e-7·erfc(z)).
// A relative error on erfc is what GELU needs: for x < 0, x·Φ(x) is small and
// an absolute-error erf (Abramowitz–Stegun 7.1.26, 1.5e-7 absolute) loses all
// relative accuracy once Φ(x) < 1e-3 (x < −3), while here GELU keeps ~1.2e-7
// relative accuracy down to the f32 underflow of exp. The exponent −z² is
// split exactly (z² = zz + e with e = fma(z, z, −zz)) so the rounding of z²
// (up to 2⁻²⁴·z², i.e. 3e-6 at z = 6) does not reach exp's argument.
//
// All entries: a = x (the primal input), b = t (tangent or cotangent, unused
// by the forward entries), y = result; p.len elements; the flat index folds
// as gid.x + gid.y·64·num_workgroups.x.

struct Params {
    len: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
// gelu_vjp_jvp only
@group(0) @binding(4) var<storage, read> c: array<f32>;
@group(0) @binding(5) var<storage, read> d: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

// erfc(z) for z ≥ 0 (Numerical Recipes erfcc), relative error < 1.2e-7.
fn erfc_pos(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let zz = z * z;
    let e = fma(z, z, -zz);          // z² = zz + e exactly
    return t * exp(poly - zz) * (1.0 - e);
}

// Φ(x) = ½·erfc(−x/√2).
fn normal_cdf(x: f32) -> f32 {
    let z = x * 0.70710678118654752;
    if (z <= 0.0) {
        return 0.5 * erfc_pos(-z);
    }
    return 1.0 - 0.5 * erfc_pos(z);
}

fn normal_pdf(x: f32) -> f32 {
    return 0.39894228040143268 * exp(-0.5 * x * x);
}

fn sigmoid(x: f32) -> f32 {
    // exp of a non-positive argument only (no overflow).
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

@compute @workgroup_size(64)
fn gelu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    let x = a[i];
    y[i] = x * normal_cdf(x);
}

@compute @workgroup_size(64)
fn gelu_jvp(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    let x = a[i];
    y[i] = b[i] * (normal_cdf(x) + x * normal_pdf(x));
}

@compute @workgroup_size(64)
fn gelu_vjp_jvp(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    let x = a[i];
    let pdf = normal_pdf(x);
    y[i] = b[i] * c[i] * pdf * (2.0 - x * x) + d[i] * (normal_cdf(x) + x * pdf);
}

@compute @workgroup_size(64)
fn silu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    let x = a[i];
    y[i] = x * sigmoid(x);
}

@compute @workgroup_size(64)
fn silu_jvp(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    let x = a[i];
    let s = sigmoid(x);
    y[i] = b[i] * s * (1.0 + x * (1.0 - s));
}
