//! The GPU-shaped tiled kernels (`shaders/conv2d_tiled.wgsl`, every tile
//! shape) against the CPU references and against the fixed kernels, on odd
//! shapes: 13×17 and other sizes that fill no tile, 1, 3, 6, 20, 64 input
//! channels (the scalar and vec4 input paths, partial 16-channel slabs),
//! output channel counts that are not multiples of 4 or exceed one tile,
//! batch 2, 1×1/2×2/3×3/5×5 kernels, stride 2, dilation 2, the fused
//! epilogue; transposed: 2×2 stride 2, 4×4 stride 2 padding 1, stride 3,
//! dilation and `output_padding` sizes.
//!
//! Bounds. Against the reference: sums of ≤ 1600 products of values in
//! [-1, 1] in f32 → 2e-4 absolute (the existing tests' 1e-4 for ≤ 1024).
//! Against the fixed kernel (same products, another summation order): per
//! output, |tiled − fixed| ≤ 1e-5 · Σ|x|·|w| over its products (f32's
//! worst-case reordering error is 2·K·2⁻²⁴·Σ|x||w| ≈ 1e-4·Σ for K = 900
//! products, its typical one √K·2⁻²⁴·Σ ≈ 2e-6·Σ; the largest ratio measured
//! is printed). Run on lavapipe, and on SwiftShader with
//! `VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json`; each test
//! prints the adapter it ran on.

mod common;
use common::*;
use prior_gpu::Shape;
use prior_ops::conv2d::{Conv2d, ConvConfig, ConvVariant, Epilogue, Tile};
use prior_ops::conv_transpose2d::ConvTranspose2d;
use prior_ops::reference;

const REF_TOL: f32 = 2e-4;
const FIXED_REL: f32 = 1e-5;

fn adapter() -> String {
    let a = &gpu().adapter;
    format!("{} ({})", a.name, a.driver)
}

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

/// Largest |a − b| / max(Σ|x||w|, 1e-6) over the outputs.
fn rel_to_magnitude(a: &[f32], b: &[f32], mag: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .zip(mag)
        .map(|((x, y), m)| (x - y).abs() / m.max(1e-6))
        .fold(0.0, f32::max)
}

/// Runs `f(variant)` for the fixed kernel and every tile; checks each
/// against `want` and the tiles against the fixed kernel's output.
fn compare(
    what: &str,
    want: &[f32],
    mag: &[f32],
    mut f: impl FnMut(ConvVariant) -> Vec<f32>,
) -> f32 {
    let fixed = f(ConvVariant::Fixed);
    let err = max_abs_diff(&fixed, want);
    assert!(
        err < REF_TOL,
        "{what} fixed on {}: max err {err}",
        adapter()
    );
    let mut worst = 0.0f32;
    for tile in Tile::ALL {
        let got = f(ConvVariant::Tiled(tile));
        let err = max_abs_diff(&got, want);
        assert!(
            err < REF_TOL,
            "{what} {tile:?} on {}: max err {err} vs the reference",
            adapter()
        );
        let rel = rel_to_magnitude(&got, &fixed, mag);
        assert!(
            rel <= FIXED_REL,
            "{what} {tile:?} on {}: |tiled − fixed| / Σ|x||w| = {rel:e}",
            adapter()
        );
        worst = worst.max(rel);
    }
    worst
}

fn conv_case(s: Shape, cout: usize, k: usize, [stride, pad, dil]: [usize; 3], seed: u64) -> f32 {
    let gpu = gpu();
    let x = rand_vec(s.numel(), seed);
    let wt = rand_vec(cout * s.c * k * k, seed + 1);
    let cfg = ConvConfig::new(s.c, cout, k, k)
        .stride(stride)
        .pad(pad)
        .dilation(dil);
    let conv = Conv2d::new(gpu, &wt, cfg);
    let (os, want) = reference::conv2d::conv2d(&x, s, &wt, None, cfg);
    let (_, mag) = reference::conv2d::conv2d(&abs(&x), s, &abs(&wt), None, cfg);
    let xt = gpu.upload(s, &x);
    let what = format!("conv {s} -> {cout} k{k} s{stride} p{pad} d{dil}");
    compare(&what, &want, &mag, |variant| {
        let epi = Epilogue {
            variant,
            ..Default::default()
        };
        let y = conv.forward(gpu, &xt, epi).unwrap();
        assert_eq!(y.shape(), os);
        pollster::block_on(gpu.read(&y)).unwrap()
    })
}

#[test]
fn tiled_conv_matches_reference_and_fixed_kernel() {
    println!("adapter: {}", adapter());
    let cases: &[(Shape, usize, usize, [usize; 3])] = &[
        (Shape::new(2, 13, 17, 3), 5, 3, [1, 1, 1]),
        (Shape::new(1, 13, 17, 64), 64, 3, [1, 1, 1]),
        (Shape::new(1, 7, 9, 1), 64, 3, [1, 1, 1]),
        (Shape::new(1, 10, 10, 64), 1, 3, [1, 1, 1]),
        (Shape::new(1, 9, 11, 20), 12, 1, [1, 0, 1]),
        (Shape::new(2, 12, 14, 8), 16, 3, [2, 1, 1]),
        (Shape::new(1, 15, 15, 4), 8, 2, [2, 0, 1]),
        (Shape::new(1, 17, 19, 8), 8, 3, [1, 2, 2]),
        (Shape::new(1, 11, 13, 6), 70, 5, [1, 2, 1]),
        (Shape::new(2, 13, 17, 36), 33, 3, [1, 1, 1]),
    ];
    let mut worst = 0.0f32;
    for (i, &(s, cout, k, g)) in cases.iter().enumerate() {
        worst = worst.max(conv_case(s, cout, k, g, 100 + i as u64));
    }
    println!("largest |tiled − fixed| / Σ|x||w|: {worst:e} (bound {FIXED_REL:e})");
}

#[test]
fn tiled_conv_epilogue_affine_relu_mask() {
    let gpu = gpu();
    let (h, w, cin, cout) = (9, 11, 8, 12);
    let s = Shape::new(2, h, w, cin);
    let x = rand_vec(s.numel(), 11);
    let wt = rand_vec(cout * cin * 9, 12);
    let scale = rand_vec(cout, 13);
    let shift = rand_vec(cout, 14);
    let maskv = rand_vec(h * w * cout, 15);
    let cfg = ConvConfig::same(cin, cout, 3, 1);
    let mut conv = Conv2d::new(gpu, &wt, cfg);
    conv.set_affine(gpu, Some(&scale), Some(&shift));
    let (_, raw) = reference::conv2d::conv2d(&x, s, &wt, None, cfg);
    let aff = reference::elementwise::affine_c(&raw, &scale, &shift);
    let want = reference::elementwise::relu_mask(&reference::elementwise::relu(&aff), &maskv);
    let mask = gpu.upload(Shape::new(1, h, w, cout), &maskv);
    let xt = gpu.upload(s, &x);
    for tile in Tile::ALL {
        let epi = Epilogue {
            relu: true,
            mask: Some(&mask),
            variant: ConvVariant::Tiled(tile),
            ..Default::default()
        };
        let y = conv.forward(gpu, &xt, epi).unwrap();
        let got = pollster::block_on(gpu.read(&y)).unwrap();
        let err = max_abs_diff(&got, &want);
        assert!(err < REF_TOL, "{tile:?} on {}: max err {err}", adapter());
    }
}

fn convt_case(
    n: usize,
    h: usize,
    w: usize,
    [cin, cout, k, stride, pad, dil]: [usize; 6],
    extra: usize,
    seed: u64,
) -> f32 {
    let gpu = gpu();
    let s = Shape::new(n, h, w, cin);
    let x = rand_vec(s.numel(), seed);
    let wt = rand_vec(cin * cout * k * k, seed + 1);
    let cfg = ConvConfig::new(cin, cout, k, k)
        .stride(stride)
        .pad(pad)
        .dilation(dil);
    let layer = ConvTranspose2d::new(gpu, &wt, cfg);
    let (dh, dw) = layer.out_size(h, w).unwrap();
    let out = (dh + extra, dw + extra);
    let (os, want) = reference::conv_transpose2d::conv_transpose2d(&x, s, &wt, None, cfg, out);
    let (_, mag) =
        reference::conv_transpose2d::conv_transpose2d(&abs(&x), s, &abs(&wt), None, cfg, out);
    let xt = gpu.upload(s, &x);
    let what = format!("convT n{n} {h}x{w} {cin}->{cout} k{k} s{stride} p{pad} d{dil} +{extra}");
    compare(&what, &want, &mag, |variant| {
        let epi = Epilogue {
            variant,
            ..Default::default()
        };
        let y = layer.forward_sized(gpu, &xt, out, epi).unwrap();
        assert_eq!(y.shape(), os);
        pollster::block_on(gpu.read(&y)).unwrap()
    })
}

#[test]
fn tiled_conv_transpose_matches_reference_and_fixed_kernel() {
    println!("adapter: {}", adapter());
    let cases: &[(usize, usize, usize, [usize; 6], usize)] = &[
        (1, 5, 7, [16, 8, 2, 2, 0, 1], 0),
        (2, 3, 9, [64, 32, 2, 2, 0, 1], 0),
        (1, 6, 5, [3, 5, 2, 2, 0, 1], 0),
        (1, 13, 17, [64, 64, 4, 2, 1, 1], 0),
        (2, 4, 7, [1, 3, 4, 2, 1, 1], 0),
        (1, 9, 10, [4, 8, 3, 1, 1, 1], 0),
        (1, 5, 6, [8, 9, 3, 3, 1, 1], 0),
        (1, 7, 8, [4, 4, 3, 1, 2, 2], 0),
        (1, 7, 9, [8, 8, 3, 2, 1, 1], 1),
        (1, 5, 7, [3, 2, 5, 3, 2, 1], 2),
    ];
    let mut worst = 0.0f32;
    for (i, &(n, h, w, g, extra)) in cases.iter().enumerate() {
        worst = worst.max(convt_case(n, h, w, g, extra, 200 + i as u64));
    }
    println!("largest |tiled − fixed| / Σ|x||w|: {worst:e} (bound {FIXED_REL:e})");
}
