//! conv2d against its CPU reference on odd shapes: 1, 3, 4, 64 input
//! channels, sizes that are not multiples of the 4-pixel tile or the
//! 64-invocation workgroup, 1×1/3×3/5×5 kernels, stride 2, dilation 2,
//! and the fused epilogue (affine, ReLU, mask).
//! Tolerance: sums of ≤ 576 products of values in [-1, 1] in f32 → 1e-4 absolute.

mod common;
use common::*;
use prior_gpu::Shape;
use prior_ops::conv2d::{Conv2d, ConvConfig, ConvVariant, Epilogue};
use prior_ops::reference;

/// Input of shape `s` (`cin = s.c`), `cout` outputs, `k × k` kernel.
fn check(s: Shape, cout: usize, k: usize, stride: usize, pad: usize, dil: usize, seed: u64) {
    let gpu = gpu();
    let Shape { n, h, w, c: cin } = s;
    let x = rand_vec(s.numel(), seed);
    let wt = rand_vec(cout * cin * k * k, seed + 1);
    let cfg = ConvConfig::new(cin, cout, k, k)
        .stride(stride)
        .pad(pad)
        .dilation(dil);
    let conv = Conv2d::new(gpu, &wt, cfg);
    let (os, want) = reference::conv2d::conv2d(&x, s, &wt, None, cfg);
    let xt = gpu.upload(s, &x);
    for variant in [ConvVariant::Auto, ConvVariant::Plain, ConvVariant::Naive] {
        let y = conv
            .forward(
                gpu,
                &xt,
                Epilogue {
                    variant,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(y.shape(), os);
        let got = pollster::block_on(gpu.read(&y)).unwrap();
        let err = max_abs_diff(&got, &want);
        assert!(
            err < 1e-4,
            "{variant:?} n{n} {h}x{w} {cin}->{cout} k{k} s{stride} p{pad} d{dil}: max err {err}"
        );
    }
}

#[test]
fn conv_matches_reference_on_odd_shapes() {
    check(Shape::new(1, 7, 9, 1), 64, 3, 1, 1, 1, 1);
    check(Shape::new(2, 13, 11, 3), 5, 3, 1, 1, 1, 2);
    check(Shape::new(1, 37, 41, 64), 64, 3, 1, 1, 1, 3);
    check(Shape::new(1, 10, 10, 64), 1, 3, 1, 1, 1, 4);
    check(Shape::new(1, 9, 17, 4), 12, 1, 1, 0, 1, 5);
    check(Shape::new(1, 11, 13, 8), 8, 5, 1, 2, 1, 6);
    check(Shape::new(2, 12, 14, 8), 16, 3, 2, 1, 1, 7);
    check(Shape::new(1, 15, 15, 4), 8, 2, 2, 0, 1, 8);
    check(Shape::new(1, 17, 19, 8), 8, 3, 1, 2, 2, 9);
    check(Shape::new(1, 16, 16, 2), 64, 3, 1, 1, 1, 10);
}

#[test]
fn conv_epilogue_affine_relu_mask() {
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
    for variant in [ConvVariant::Auto, ConvVariant::Plain, ConvVariant::Naive] {
        let y = conv
            .forward(
                gpu,
                &xt,
                Epilogue {
                    relu: true,
                    mask: Some(&mask),
                    variant,
                    no_shift: false,
                },
            )
            .unwrap();
        let got = pollster::block_on(gpu.read(&y)).unwrap();
        assert!(max_abs_diff(&got, &want) < 1e-4, "{variant:?}");
    }
    // Wrong input channel count is a clear error, not a panic.
    let bad = gpu.upload(Shape::new(1, h, w, 3), &rand_vec(h * w * 3, 1));
    let e = conv
        .forward(gpu, &bad, Epilogue::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 channels"), "{e}");
}
