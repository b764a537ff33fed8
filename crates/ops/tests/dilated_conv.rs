//! Dilated convolutions (the small UNet's conv5/conv6 use dilation 2 and 4
//! with 'same' padding) against the CPU reference on odd shapes, both conv
//! kernels, plus the adjoint of a dilated conv through `ConvTranspose2d`.
//! Tolerance: sums of ≤ 576 products of values in [-1, 1] in f32 → 1e-4.

mod common;
use common::*;
use prior_gpu::Shape;
use prior_ops::conv2d::{Conv2d, ConvConfig, ConvVariant, Epilogue};
use prior_ops::conv_transpose2d::ConvTranspose2d;
use prior_ops::reference;

fn check(h: usize, w: usize, cin: usize, cout: usize, dil: usize, seed: u64) {
    let gpu = gpu();
    let s = Shape::new(1, h, w, cin);
    let x = rand_vec(s.numel(), seed);
    let wt = rand_vec(cout * cin * 9, seed + 1);
    let cfg = ConvConfig::same(cin, cout, 3, dil);
    let conv = Conv2d::new(gpu, &wt, cfg);
    assert_eq!(conv.pad, dil);
    let (os, want) = reference::conv2d::conv2d(&x, s, &wt, None, cfg);
    assert_eq!((os.h, os.w), (h, w));
    let xt = gpu.upload(s, &x);
    for variant in [ConvVariant::Auto, ConvVariant::Naive] {
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
        let got = pollster::block_on(gpu.read(&y)).unwrap();
        let err = max_abs_diff(&got, &want);
        assert!(
            err < 1e-4,
            "{variant:?} {h}x{w} {cin}->{cout} d{dil}: {err}"
        );
    }
    // VJP: <conv x, u> = <x, conv^T u>.
    let u = rand_vec(os.numel(), seed + 2);
    let adj = ConvTranspose2d::adjoint_of(gpu, &conv);
    let v = pollster::block_on(
        gpu.read(
            &adj.forward_sized(gpu, &gpu.upload(os, &u), (h, w), Epilogue::default())
                .unwrap(),
        ),
    )
    .unwrap();
    let l: f64 = want
        .iter()
        .zip(&u)
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum();
    let r: f64 = x.iter().zip(&v).map(|(a, b)| *a as f64 * *b as f64).sum();
    assert!(
        (l - r).abs() <= 1e-4 * l.abs().max(1.0),
        "adjoint d{dil}: {l} vs {r}"
    );
}

#[test]
fn dilation_2_and_4_match_reference() {
    check(11, 13, 64, 64, 2, 1);
    check(9, 10, 3, 5, 2, 2);
    check(19, 21, 64, 64, 4, 3);
    check(7, 6, 4, 12, 4, 4); // dilation wider than half the image
}
