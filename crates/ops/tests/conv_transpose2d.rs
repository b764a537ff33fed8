//! conv_transpose2d against its CPU reference (scatter form) on odd shapes:
//! the cases the models use (2×2 stride 2; 4×4 stride 2 padding 1), 1, 3, 4,
//! 64 input channels, output channel counts that are not multiples of 8,
//! widths that are not multiples of the 4-pixel tile, stride 1 and 3,
//! dilation, `output_padding` sizes, bias + ReLU + mask epilogue; and the
//! adjoint identities ⟨conv(x), u⟩ = ⟨x, convT(u)⟩ that make it the VJP of a
//! strided conv (and a conv the VJP of it). Both the subgroup kernel (where
//! the adapter has subgroups, as lavapipe does) and the plain one are run.
//! Tolerance: sums of ≤ 1024 products of values in [-1, 1] in f32 → 1e-4
//! absolute; inner products over ~10⁴ terms → 1e-4 relative.

mod common;
use common::*;
use prior_gpu::Shape;
use prior_ops::conv2d::{Conv2d, ConvConfig, ConvVariant, Epilogue};
use prior_ops::conv_transpose2d::ConvTranspose2d;
use prior_ops::reference;

/// `n × h × w` input, `[cin, cout, k, stride, pad, dilation]`, `extra`
/// output rows/columns (`output_padding`).
fn check(
    n: usize,
    h: usize,
    w: usize,
    [cin, cout, k, stride, pad, dil]: [usize; 6],
    extra: usize,
    seed: u64,
) {
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
    let xt = gpu.upload(s, &x);
    for variant in [ConvVariant::Auto, ConvVariant::Plain] {
        let epi = Epilogue {
            variant,
            ..Default::default()
        };
        let y = if extra == 0 {
            layer.forward(gpu, &xt, epi).unwrap()
        } else {
            layer.forward_sized(gpu, &xt, out, epi).unwrap()
        };
        assert_eq!(y.shape(), os);
        let got = pollster::block_on(gpu.read(&y)).unwrap();
        let err = max_abs_diff(&got, &want);
        assert!(err < 1e-4, "{variant:?} n{n} {h}x{w} {cin}->{cout} k{k} s{stride} p{pad} d{dil} +{extra}: max err {err}");
    }
}

#[test]
fn conv_transpose_matches_reference_on_odd_shapes() {
    // 2×2 stride 2 (bias-free UNet, energy UNet up-sampling).
    check(1, 5, 7, [16, 8, 2, 2, 0, 1], 0, 1);
    check(2, 3, 9, [64, 32, 2, 2, 0, 1], 0, 2);
    check(1, 6, 5, [3, 5, 2, 2, 0, 1], 0, 3);
    // 4×4 stride 2 padding 1 (small UNet conv7).
    check(1, 19, 21, [64, 64, 4, 2, 1, 1], 0, 4);
    check(2, 4, 7, [1, 3, 4, 2, 1, 1], 0, 5);
    check(1, 6, 11, [12, 13, 4, 2, 1, 1], 0, 6);
    // Other strides, kernels, dilation, output_padding.
    check(1, 9, 10, [4, 8, 3, 1, 1, 1], 0, 7);
    check(1, 5, 6, [8, 9, 3, 3, 1, 1], 0, 8);
    check(1, 7, 8, [4, 4, 3, 1, 2, 2], 0, 9);
    check(1, 7, 9, [8, 8, 3, 2, 1, 1], 1, 10);
    check(1, 5, 7, [3, 2, 5, 3, 2, 1], 2, 11);
}

#[test]
fn conv_transpose_bias_relu_mask_and_errors() {
    let gpu = gpu();
    let (h, w, cin, cout) = (5, 7, 8, 12);
    let s = Shape::new(2, h, w, cin);
    let x = rand_vec(s.numel(), 21);
    let wt = rand_vec(cin * cout * 16, 22);
    let bias = rand_vec(cout, 23);
    let cfg = ConvConfig::new(cin, cout, 4, 4).stride(2).pad(1);
    let mut layer = ConvTranspose2d::new(gpu, &wt, cfg);
    layer.set_affine(gpu, None, Some(&bias));
    let (ho, wo) = layer.out_size(h, w).unwrap();
    assert_eq!((ho, wo), (2 * h, 2 * w));
    let maskv = rand_vec(ho * wo * cout, 24);
    let (_, raw) =
        reference::conv_transpose2d::conv_transpose2d(&x, s, &wt, Some(&bias), cfg, (ho, wo));
    let want = reference::elementwise::relu_mask(&reference::elementwise::relu(&raw), &maskv);
    let mask = gpu.upload(Shape::new(1, ho, wo, cout), &maskv);
    let xt = gpu.upload(s, &x);
    for variant in [ConvVariant::Auto, ConvVariant::Plain] {
        let y = layer
            .forward(
                gpu,
                &xt,
                Epilogue {
                    relu: true,
                    mask: Some(&mask),
                    variant,
                    ..Default::default()
                },
            )
            .unwrap();
        let got = pollster::block_on(gpu.read(&y)).unwrap();
        assert!(max_abs_diff(&got, &want) < 1e-4, "{variant:?}");
    }
    // The linear part (a JVP): no bias.
    let (_, lin) = reference::conv_transpose2d::conv_transpose2d(&x, s, &wt, None, cfg, (ho, wo));
    let no_shift = Epilogue {
        no_shift: true,
        ..Default::default()
    };
    let j = pollster::block_on(gpu.read(&layer.forward(gpu, &xt, no_shift).unwrap())).unwrap();
    assert!(max_abs_diff(&j, &lin) < 1e-4);
    // Clear errors, no panics.
    let bad = gpu.upload(Shape::new(1, h, w, 3), &rand_vec(h * w * 3, 1));
    let e = layer
        .forward(gpu, &bad, Epilogue::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 channels"), "{e}");
    let e = layer
        .forward_sized(gpu, &xt, (ho + 2, wo), Epilogue::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("output size"), "{e}");
    let e = layer
        .forward(
            gpu,
            &xt,
            Epilogue {
                mask: Some(&bad),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("mask"), "{e}");
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// ⟨conv(x), u⟩ = ⟨x, convT(u)⟩ for strided convs (sizes where the floor
/// division drops rows, so the adjoint needs `output_padding`), through
/// `ConvTranspose2d::adjoint_of` and `forward_sized`; and ⟨convT(x), u⟩ =
/// ⟨x, conv(u)⟩ through `ConvTranspose2d::adjoint`.
#[test]
fn transposed_and_strided_convs_are_adjoint() {
    let gpu = gpu();
    for (i, &(h, w, cin, cout, k, stride, pad, dil)) in [
        (
            9usize, 11usize, 8usize, 16usize, 3usize, 2usize, 1usize, 1usize,
        ),
        (8, 8, 4, 8, 2, 2, 0, 1),
        (10, 13, 3, 5, 4, 2, 1, 1),
        (11, 9, 4, 4, 3, 1, 2, 2),
        (12, 14, 2, 3, 3, 3, 1, 1),
    ]
    .iter()
    .enumerate()
    {
        let seed = 100 + 10 * i as u64;
        let wt = rand_vec(cout * cin * k * k, seed);
        let cfg = ConvConfig::new(cin, cout, k, k)
            .stride(stride)
            .pad(pad)
            .dilation(dil);
        let conv = Conv2d::new(gpu, &wt, cfg);
        let vjp = |adj: &ConvTranspose2d, u: &prior_gpu::Tensor| {
            adj.forward_sized(gpu, u, (h, w), Epilogue::default())
                .unwrap()
        };
        let (ho, wo) = conv.out_size(h, w);
        let x = rand_vec(2 * h * w * cin, seed + 1);
        let u = rand_vec(2 * ho * wo * cout, seed + 2);
        let xt = gpu.upload(Shape::new(2, h, w, cin), &x);
        let ut = gpu.upload(Shape::new(2, ho, wo, cout), &u);
        let cx =
            pollster::block_on(gpu.read(&conv.forward(gpu, &xt, Epilogue::default()).unwrap()))
                .unwrap();
        let adj = ConvTranspose2d::adjoint_of(gpu, &conv);
        let vt = vjp(&adj, &ut);
        assert_eq!(vt.shape(), Shape::new(2, h, w, cin));
        let v = pollster::block_on(gpu.read(&vt)).unwrap();
        let (l, r) = (dot(&cx, &u), dot(&x, &v));
        assert!(
            (l - r).abs() <= 1e-4 * l.abs().max(r.abs()).max(1.0),
            "case {i}: <Cx,u> {l} vs <x,C^T u> {r}"
        );
        // Scaled conv (a folded normalisation, plus a shift the VJP ignores):
        // the scale goes into the adjoint's weights.
        let scale = rand_vec(cout, seed + 3);
        let mut sconv = Conv2d::new(gpu, &wt, cfg);
        sconv.set_affine(gpu, Some(&scale), Some(&rand_vec(cout, seed + 4)));
        let sadj = ConvTranspose2d::adjoint_of(gpu, &sconv);
        let su: Vec<f32> = u
            .iter()
            .enumerate()
            .map(|(j, v)| v * scale[j % cout])
            .collect();
        let sv = pollster::block_on(gpu.read(&vjp(&sadj, &ut))).unwrap();
        let vs = pollster::block_on(gpu.read(&vjp(&adj, &gpu.upload(ut.shape(), &su)))).unwrap();
        assert!(max_abs_diff(&sv, &vs) < 1e-4);

        // The other direction: the conv is the adjoint of the transposed conv.
        let t = ConvTranspose2d::new(gpu, &wt, cfg.swapped());
        let back = t.adjoint(gpu);
        let tu = pollster::block_on(
            gpu.read(
                &t.forward_sized(gpu, &ut, (h, w), Epilogue::default())
                    .unwrap(),
            ),
        )
        .unwrap();
        let bx =
            pollster::block_on(gpu.read(&back.forward(gpu, &xt, Epilogue::default()).unwrap()))
                .unwrap();
        let (l, r) = (dot(&tu, &x), dot(&u, &bx));
        assert!(
            (l - r).abs() <= 1e-4 * l.abs().max(r.abs()).max(1.0),
            "case {i}: <Tu,x> {l} vs <u,T^T x> {r}"
        );
    }
}
