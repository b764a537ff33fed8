//! `conv2d_f16.wgsl` (f16 weights and activations, f32 accumulation)
//! against CPU references on odd shapes: 1, 3, 4, 6, 8, 64 input channels, sizes
//! off the 4-pixel tile, 1×1/3×3/5×5 kernels, stride 2, dilation 2, the
//! epilogue (scale, shift, ReLU), f32 and f16 inputs and outputs; and the
//! transposed convolution (`convt_f16`) on the UNets' 2×2 stride-2 layers
//! and odd kernels, strides, paddings and dilations.
//!
//! Two bounds, per element, with A = Σ|x·w|·|scale| (the sum of the
//! magnitudes of the terms) and y the exact value:
//! - against the reference computed (in f64) on the f16-rounded inputs and
//!   weights: 1e-5·(1 + A) for f32's accumulation in another order, plus
//!   |y|·2⁻¹¹ + 2⁻²⁵ for the one rounding of an f16 output (half an ulp);
//! - against the f32 reference on the unrounded values: in addition, each
//!   input and weight rounded to f16 moves a term by ≤ 2⁻¹¹ relative, a
//!   product by ≤ 2⁻¹⁰ + 2⁻²² → A·(2⁻¹⁰ + 2⁻²²).

mod common;
use common::*;
use prior_gpu::Shape;
use prior_ops::conv2d::{Conv2d, ConvConfig, ConvVariant, Tile};
use prior_ops::conv_transpose2d::ConvTranspose2d;
use prior_ops::precision::{round_f16, Activation, HalfTensor, Precision};

struct Case {
    s: Shape,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dil: usize,
    input: Precision,
    output: Precision,
    scale: bool,
    shift: bool,
    relu: bool,
    /// A transposed convolution (PyTorch `(in, out, k, k)` weights).
    transposed: bool,
}

/// The conv of `x` (`s`, channels-last) with PyTorch-layout `w`, then
/// `· scale + shift` and ReLU, in f64; also Σ|x·w|·|scale| per output.
fn reference(
    c: &Case,
    x: &[f32],
    w: &[f32],
    scale: &[f32],
    shift: &[f32],
) -> (Shape, Vec<f64>, Vec<f64>) {
    let Shape {
        n,
        h,
        w: wd,
        c: cin,
    } = c.s;
    let eff = c.dil * (c.k - 1) + 1;
    if c.transposed {
        return reference_transposed(c, x, w, scale, shift);
    }
    let ho = (h + 2 * c.pad - eff) / c.stride + 1;
    let wo = (wd + 2 * c.pad - eff) / c.stride + 1;
    let mut y = vec![0.0f64; n * ho * wo * c.cout];
    let mut mag = vec![0.0f64; y.len()];
    for b in 0..n {
        for oy in 0..ho {
            for ox in 0..wo {
                for co in 0..c.cout {
                    let (mut acc, mut a) = (0.0f64, 0.0f64);
                    for ky in 0..c.k {
                        for kx in 0..c.k {
                            let iy = (oy * c.stride + ky * c.dil) as isize - c.pad as isize;
                            let ix = (ox * c.stride + kx * c.dil) as isize - c.pad as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                continue;
                            }
                            for ci in 0..cin {
                                let xv =
                                    x[((b * h + iy as usize) * wd + ix as usize) * cin + ci] as f64;
                                let wv = w[((co * cin + ci) * c.k + ky) * c.k + kx] as f64;
                                acc += xv * wv;
                                a += (xv * wv).abs();
                            }
                        }
                    }
                    let i = ((b * ho + oy) * wo + ox) * c.cout + co;
                    let mut v = acc * scale[co] as f64 + shift[co] as f64;
                    if c.relu {
                        v = v.max(0.0);
                    }
                    y[i] = v;
                    mag[i] = a * (scale[co] as f64).abs();
                }
            }
        }
    }
    (Shape::new(n, ho, wo, c.cout), y, mag)
}

/// [`reference`] for a transposed convolution, in scatter form: input
/// pixel (iy, ix) and tap (ky, kx) reach output (iy·s − pad + ky·d, ix·s −
/// pad + kx·d).
fn reference_transposed(
    c: &Case,
    x: &[f32],
    w: &[f32],
    scale: &[f32],
    shift: &[f32],
) -> (Shape, Vec<f64>, Vec<f64>) {
    let Shape {
        n,
        h,
        w: wd,
        c: cin,
    } = c.s;
    let eff = c.dil * (c.k - 1) + 1;
    let ho = (h - 1) * c.stride + eff - 2 * c.pad;
    let wo = (wd - 1) * c.stride + eff - 2 * c.pad;
    let mut acc = vec![0.0f64; n * ho * wo * c.cout];
    let mut mag = vec![0.0f64; acc.len()];
    for b in 0..n {
        for iy in 0..h {
            for ix in 0..wd {
                for ky in 0..c.k {
                    for kx in 0..c.k {
                        let oy = (iy * c.stride + ky * c.dil) as isize - c.pad as isize;
                        let ox = (ix * c.stride + kx * c.dil) as isize - c.pad as isize;
                        if oy < 0 || ox < 0 || oy >= ho as isize || ox >= wo as isize {
                            continue;
                        }
                        for ci in 0..cin {
                            let xv = x[((b * h + iy) * wd + ix) * cin + ci] as f64;
                            for co in 0..c.cout {
                                let wv = w[((ci * c.cout + co) * c.k + ky) * c.k + kx] as f64;
                                let i = ((b * ho + oy as usize) * wo + ox as usize) * c.cout + co;
                                acc[i] += xv * wv;
                                mag[i] += (xv * wv).abs();
                            }
                        }
                    }
                }
            }
        }
    }
    for (i, v) in acc.iter_mut().enumerate() {
        let co = i % c.cout;
        *v = *v * scale[co] as f64 + shift[co] as f64;
        if c.relu {
            *v = v.max(0.0);
        }
        mag[i] *= (scale[co] as f64).abs();
    }
    (Shape::new(n, ho, wo, c.cout), acc, mag)
}

fn check(c: Case, seed: u64) {
    let gpu = gpu();
    let cin = c.s.c;
    let x = rand_vec(c.s.numel(), seed);
    let w = rand_vec(c.cout * cin * c.k * c.k, seed + 1);
    let scale: Vec<f32> = if c.scale {
        rand_vec(c.cout, seed + 2)
            .iter()
            .map(|v| 0.5 + v.abs())
            .collect()
    } else {
        vec![1.0; c.cout]
    };
    let shift = if c.shift {
        rand_vec(c.cout, seed + 3)
    } else {
        vec![0.0; c.cout]
    };
    let cfg = ConvConfig::new(cin, c.cout, c.k, c.k)
        .stride(c.stride)
        .pad(c.pad)
        .dilation(c.dil);
    let (sc, sh) = (c.scale.then_some(&scale[..]), c.shift.then_some(&shift[..]));
    let xin = match c.input {
        Precision::F32 => Activation::F32(gpu.upload(c.s, &x)),
        Precision::F16 => Activation::F16(HalfTensor::upload(gpu, c.s, &x)),
    };
    // The fixed f16 kernel, then each tile shape of conv2d_tiled_f16.wgsl.
    let variants = std::iter::once(ConvVariant::Fixed).chain(Tile::ALL.map(ConvVariant::Tiled));
    let (out, relu) = (c.output, c.relu);
    let run: Box<dyn Fn(ConvVariant) -> Activation> = if c.transposed {
        let mut conv = ConvTranspose2d::new(gpu, &w, cfg);
        conv.set_affine(gpu, sc, sh);
        conv.enable_f16(gpu);
        Box::new(move |v| conv.forward_f16_with(gpu, &xin, out, relu, v).unwrap())
    } else {
        let mut conv = Conv2d::new(gpu, &w, cfg);
        conv.set_affine(gpu, sc, sh);
        conv.enable_f16(gpu);
        Box::new(move |v| conv.forward_f16_with(gpu, &xin, out, relu, v).unwrap())
    };
    for variant in variants {
        let y = run(variant);
        let got = match &y {
            Activation::F32(t) => pollster::block_on(gpu.read(t)).unwrap(),
            Activation::F16(h) => pollster::block_on(h.read(gpu)).unwrap(),
        };
        compare(&c, variant, &y, &got, (&x, &w), (&scale, &shift));
    }
}

/// Checks one kernel's output `got` (`y`) against both references.
fn compare(
    c: &Case,
    variant: ConvVariant,
    y: &Activation,
    got: &[f32],
    (x, w): (&[f32], &[f32]),
    (scale, shift): (&[f32], &[f32]),
) {
    let x16: Vec<f32> = match c.input {
        Precision::F32 => x.to_vec(),
        Precision::F16 => x.iter().map(|&v| round_f16(v)).collect(),
    };
    let w16: Vec<f32> = w.iter().map(|&v| round_f16(v)).collect();
    let (os, want16, mag) = reference(c, &x16, &w16, scale, shift);
    let (_, want32, _) = reference(c, x, w, scale, shift);
    assert_eq!(y.shape(), os);
    let out_round = |v: f64| match c.output {
        Precision::F16 => v.abs() * 2f64.powi(-11) + 2f64.powi(-25),
        Precision::F32 => 0.0,
    };
    let (mut worst16, mut worst32) = (0.0f64, 0.0f64);
    for i in 0..got.len() {
        let g = got[i] as f64;
        let b16 = 1e-5 * (1.0 + mag[i]) + out_round(want16[i]);
        let e16 = (g - want16[i]).abs();
        assert!(
            e16 <= b16,
            "{} {os} [{i}]: {g} vs f16-input reference {} (bound {b16:.2e})",
            variant.name(),
            want16[i]
        );
        let b32 = b16 + mag[i] * (2f64.powi(-10) + 2f64.powi(-22));
        let e32 = (g - want32[i]).abs();
        assert!(
            e32 <= b32,
            "{} {os} [{i}]: {g} vs f32 reference {} (bound {b32:.2e})",
            variant.name(),
            want32[i]
        );
        worst16 = worst16.max(e16);
        worst32 = worst32.max(e32);
    }
    eprintln!(
        "{} {} → {os}: max |f16 kernel − f16 reference| {worst16:.2e}, − f32 reference {worst32:.2e}",
        variant.name(),
        c.s
    );
}

#[test]
fn conv_f16_matches_references_on_odd_shapes() {
    let base = Case {
        s: Shape::new(1, 13, 7, 1),
        cout: 8,
        k: 3,
        stride: 1,
        pad: 1,
        dil: 1,
        input: Precision::F32,
        output: Precision::F16,
        scale: false,
        shift: true,
        relu: true,
        transposed: false,
    };
    // The first layer of a chain: f32 in, f16 out.
    check(Case { ..base }, 1);
    // 3 channels, 5×5, stride 2, two samples, f16 in and out, scale + shift.
    check(
        Case {
            s: Shape::new(2, 9, 11, 3),
            cout: 2,
            k: 5,
            stride: 2,
            pad: 2,
            input: Precision::F16,
            scale: true,
            relu: false,
            ..base
        },
        2,
    );
    // The last layer: 64 channels in (f16), one out (f32).
    check(
        Case {
            s: Shape::new(1, 10, 6, 64),
            cout: 1,
            input: Precision::F16,
            output: Precision::F32,
            relu: false,
            ..base
        },
        3,
    );
    // Dilation 2 and 1×1, cout not a multiple of 8.
    check(
        Case {
            s: Shape::new(1, 7, 5, 6),
            cout: 12,
            dil: 2,
            pad: 2,
            input: Precision::F16,
            scale: true,
            ..base
        },
        4,
    );
    // f32 input with cin a multiple of 4 (the vec4 entry's f32 path).
    check(
        Case {
            s: Shape::new(1, 6, 9, 8),
            cout: 6,
            ..base
        },
        6,
    );
    check(
        Case {
            s: Shape::new(1, 5, 9, 4),
            cout: 10,
            k: 1,
            pad: 0,
            input: Precision::F16,
            ..base
        },
        5,
    );
}

#[test]
fn convt_f16_matches_references_on_odd_shapes() {
    let base = Case {
        s: Shape::new(1, 5, 7, 64),
        cout: 32,
        k: 2,
        stride: 2,
        pad: 0,
        dil: 1,
        input: Precision::F16,
        output: Precision::F16,
        scale: false,
        shift: false,
        relu: false,
        transposed: true,
    };
    // The UNets' up-sampling: 2×2 stride 2, f16 in and out.
    check(Case { ..base }, 11);
    // f32 in and out, 3 input channels, two samples, scale, shift, ReLU.
    check(
        Case {
            s: Shape::new(2, 4, 3, 3),
            cout: 10,
            input: Precision::F32,
            output: Precision::F32,
            scale: true,
            shift: true,
            relu: true,
            ..base
        },
        12,
    );
    // The small UNet's 4×4 stride 2 padding 1, output width off the tile.
    check(
        Case {
            s: Shape::new(1, 3, 5, 8),
            cout: 6,
            k: 4,
            pad: 1,
            ..base
        },
        13,
    );
    // 3×3, stride 3, dilation 2, padding 2, one output channel in f32.
    check(
        Case {
            s: Shape::new(1, 4, 6, 2),
            cout: 1,
            k: 3,
            stride: 3,
            dil: 2,
            pad: 2,
            output: Precision::F32,
            shift: true,
            ..base
        },
        14,
    );
    // Stride 1 (a plain correlation with flipped taps), 5 channels in.
    check(
        Case {
            s: Shape::new(1, 6, 5, 5),
            cout: 4,
            k: 3,
            stride: 1,
            pad: 1,
            scale: true,
            ..base
        },
        15,
    );
}

#[test]
fn conv_f16_rejects_what_it_cannot_do() {
    let gpu = gpu();
    let s = Shape::new(1, 4, 4, 2);
    let x = Activation::F32(gpu.upload(s, &rand_vec(s.numel(), 7)));
    let mut conv = Conv2d::new(gpu, &rand_vec(3 * 2 * 9, 8), ConvConfig::same(2, 3, 3, 1));
    let e = conv
        .forward_f16(gpu, &x, Precision::F32, false)
        .unwrap_err();
    assert!(e.to_string().contains("no f16 weights"), "{e}");
    conv.enable_f16(gpu);
    // An odd channel count cannot be stored as f16 pairs per pixel.
    let e = conv
        .forward_f16(gpu, &x, Precision::F16, false)
        .unwrap_err();
    assert!(e.to_string().contains("even channel count"), "{e}");
    assert!(conv.forward_f16(gpu, &x, Precision::F32, false).is_ok());
}
