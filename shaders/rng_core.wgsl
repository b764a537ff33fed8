// prior's counter-based Gaussian generator: the functions shared by every
// shader that draws noise (rng.wgsl, sampler.wgsl). This file is prepended
// to those shaders by crates/ops/src/shaders.rs (WGSL has no includes), so
// the generator exists once; it uses the same u32/f32 arithmetic as
// crates/ops/src/reference/rng.rs and tests/golden/make_golden.py.
//
//   mix(x): Wellons' lowbias32 hash
//   normal(key, i): Box–Muller from two hashed words of counter i, with
//   ln/cos evaluated to < 1 ulp in-shader (driver log/cos differ by adapter)

fn mix(x0: u32) -> u32 {
    var x = x0;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

// ln and cos with < 1 ulp error (fdlibm's logf, and a Cody–Waite reduction
// plus fdlibm's float kernels for cos): the builtins may be far less accurate
// (Vulkan allows an absolute error of 2^-21 for log near 1 and 2^-11 for cos,
// and lavapipe's log gives 6e-6 errors in z near u1 = 1), which would make
// the noise depend on the adapter.
fn ln_acc(x: f32) -> f32 {
    let bits = bitcast<u32>(x);
    var k = i32((bits >> 23u) & 0xffu) - 127;
    var m = bitcast<f32>((bits & 0x007fffffu) | 0x3f800000u);
    if (m > 1.4142135) {
        m = m * 0.5;
        k = k + 1;
    }
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (4.0000000596e-01 + w * (2.2222198546e-01 + w * 1.5313838422e-01));
    let t2 = z * (6.6666668653e-01 + w * (2.8571429849e-01 + w * (1.8183572590e-01 + w * 1.4798198640e-01)));
    let r = t2 + t1;
    let hfsq = 0.5 * f * f;
    let dk = f32(k);
    return dk * 6.9313812256e-01 - ((hfsq - (s * (hfsq + r) + dk * 9.0580006145e-06)) - f);
}

fn cos_kernel(x: f32) -> f32 {
    let z = x * x;
    return 1.0 - 0.5 * z + z * z * (4.1666667908e-02 + z * (-1.3888889225e-03 + z * (2.4801587642e-05
        + z * (-2.7557314297e-07 + z * (2.0875723372e-09 + z * -1.1359647598e-11)))));
}

fn sin_kernel(x: f32) -> f32 {
    let z = x * x;
    return x + x * z * (-1.6666667163e-01 + z * (8.3333337680e-03 + z * (-1.9841270114e-04
        + z * (2.7557314297e-06 + z * (-2.5050759689e-08 + z * 1.5896910177e-10)))));
}

// cos(x) for 0 ≤ x < 8.
fn cos_acc(x: f32) -> f32 {
    let q = floor(x * 0.63661975 + 0.5);
    let r = (x - q * 1.5707855225e+00) - q * 1.0804334124e-05;
    let k = u32(q) & 3u;
    if (k == 0u) { return cos_kernel(r); }
    if (k == 1u) { return -sin_kernel(r); }
    if (k == 2u) { return -cos_kernel(r); }
    return sin_kernel(r);
}

fn normal(key: u32, i: u32) -> f32 {
    let a0 = mix(i ^ key);
    let b0 = mix(a0 ^ 0x68bc21ebu);
    let c0 = mix(b0 ^ 0x02e5be93u);
    let u1 = (f32(b0 >> 8u) + 0.5) * 5.9604645e-8;
    let u2 = f32(c0 >> 8u) * 5.9604645e-8;
    return sqrt(-2.0 * ln_acc(u1)) * cos_acc(6.2831855 * u2);
}

// Noise counter of channels-last element j of an n × h × w × c batch: its
// flat (C, H, W) index within sample s, s·h·w·c + ch·h·w + row·w + x, so a
// draw depends on the image's layout-free position only (rng.wgsl,
// sampler.wgsl and mala.wgsl add their batch offset).
fn noise_counter(j: u32, h: u32, w: u32, c: u32) -> u32 {
    let ch = j % c;
    let pix = j / c;
    let x = pix % w;
    let r = pix / w;
    let row = r % h;
    let s = r / h;
    let hw = h * w;
    return s * (hw * c) + ch * hw + row * w + x;
}

// Flat invocation index of a 64-wide kernel dispatched as groups_flat(n).
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}
