//! ConvLayer (`prior_ops::layer`): for every kind of layer the models build
//! (stride-1 conv with folded scale + ReLU, dilated conv, strided conv,
//! transposed convs, the odd-size pad and crop), on two tangents at once:
//! - the JVP of a bias-free layer at x applied to x gives the forward
//!   output (ReLU layers are positively homogeneous: J(x)·x = f(x));
//! - the VJP is the adjoint of the JVP: ⟨u, J v⟩ = ⟨Jᵀ u, v⟩;
//! - the input ReLU mask fused into the VJP equals a separate mask.
//!
//! Tolerance: outputs are sums of ≤ 576 products of values in [-1, 1] in
//! f32 → 1e-4 absolute; inner products over ~10³–10⁴ terms → 1e-4 relative.

mod common;
use common::*;
use prior_gpu::Shape;
use prior_ops::layer::{Affine, ConvLayer, ConvLayerConfig, VjpAt};

fn read(t: &prior_gpu::Tensor) -> Vec<f32> {
    pollster::block_on(gpu().read(t)).unwrap()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Checks a layer on a `[1, h, w, cin]` primal with 2 tangents.
fn check(name: &str, layer: &ConvLayer, h: usize, w: usize, homogeneous: bool, seed: u64) {
    let gpu = gpu();
    let cin = layer.in_channels();
    let s = Shape::new(1, h, w, cin);
    let x = gpu.upload(s, &rand_vec(s.numel(), seed));
    let out = layer.forward(gpu, &x).unwrap();
    let os = out.shape();
    if homogeneous {
        let jx = read(&layer.jvp(gpu, &x, &out).unwrap());
        let d = max_abs_diff(&jx, &read(&out));
        assert!(d < 1e-4, "{name}: J(x)·x differs from f(x) by {d}");
    }
    let vs = Shape::new(2, h, w, cin);
    let v = gpu.upload(vs, &rand_vec(vs.numel(), seed + 1));
    let us = Shape::new(2, os.h, os.w, os.c);
    let u = gpu.upload(us, &rand_vec(us.numel(), seed + 2));
    let jv = read(&layer.jvp(gpu, &v, &out).unwrap());
    let jtu = layer.vjp(gpu, &u, &out, (h, w)).unwrap();
    assert_eq!(jtu.shape(), vs, "{name}: VJP shape");
    // The ReLU derivative of the input fused into the adjoint's launch
    // equals a separate mask after it.
    let ms = Shape::new(1, h, w, cin);
    let in_mask = gpu.upload(ms, &rand_vec(ms.numel(), seed + 3));
    let at = VjpAt {
        out: Some(&out),
        in_hw: (h, w),
        in_mask: Some(&in_mask),
    };
    let fused = read(&layer.vjp_at(gpu, &u, at).unwrap());
    let separate = prior_ops::reference::elementwise::relu_mask(&read(&jtu), &read(&in_mask));
    assert_eq!(fused, separate, "{name}: fused input mask");
    let (lhs, rhs) = (dot(&read(&u), &jv), dot(&read(&jtu), &read(&v)));
    let rel = (lhs - rhs).abs() / lhs.abs().max(rhs.abs()).max(1e-3);
    assert!(
        rel < 1e-4,
        "{name}: <u, Jv> = {lhs} but <J'u, v> = {rhs} (rel {rel})"
    );
}

#[test]
fn every_layer_kind_has_a_consistent_jvp_and_vjp() {
    let gpu = gpu();
    let (cin, cout) = (5, 12);
    let w3 = rand_vec(cout * cin * 9, 1);
    let scale: Vec<f32> = (0..cout).map(|i| 0.5 + i as f32 / 10.0).collect();
    let shift: Vec<f32> = (0..cout).map(|i| 0.1 * i as f32 - 0.5).collect();

    let cfg = ConvLayerConfig::same(cin, cout, 3, 1).relu(true);
    let l = ConvLayer::new(
        gpu,
        &w3,
        cfg,
        Affine {
            scale: Some(&scale),
            shift: None,
        },
    )
    .unwrap();
    check("3x3 same + scale + relu", &l, 9, 11, true, 10);
    let l = ConvLayer::new(
        gpu,
        &w3,
        cfg,
        Affine {
            scale: Some(&scale),
            shift: Some(&shift),
        },
    )
    .unwrap();
    check("3x3 same + scale + bias + relu", &l, 9, 11, false, 11);

    let cfg = ConvLayerConfig::same(cin, cout, 3, 2).relu(true);
    check(
        "3x3 dilation 2",
        &ConvLayer::new(gpu, &w3, cfg, Affine::default()).unwrap(),
        10,
        9,
        true,
        12,
    );

    let cfg = ConvLayerConfig::from_weight_shape([cout, cin, 3, 3], false)
        .stride(2)
        .pad(1)
        .relu(true);
    check(
        "3x3 stride 2",
        &ConvLayer::new(gpu, &w3, cfg, Affine::default()).unwrap(),
        10,
        13,
        true,
        13,
    );

    let w4 = rand_vec(cin * cout * 16, 2);
    let cfg = ConvLayerConfig::from_weight_shape([cin, cout, 4, 4], true)
        .stride(2)
        .pad(1)
        .relu(true);
    check(
        "4x4 transposed stride 2",
        &ConvLayer::new(gpu, &w4, cfg, Affine::default()).unwrap(),
        5,
        6,
        true,
        14,
    );
    let l = ConvLayer::new(
        gpu,
        &w4,
        cfg,
        Affine {
            scale: None,
            shift: Some(&shift),
        },
    )
    .unwrap();
    check("4x4 transposed + bias", &l, 5, 6, false, 15);

    let w2 = rand_vec(cin * cout * 4, 3);
    let cfg = ConvLayerConfig::from_weight_shape([cin, cout, 2, 2], true).stride(2);
    check(
        "2x2 transposed stride 2",
        &ConvLayer::new(gpu, &w2, cfg, Affine::default()).unwrap(),
        4,
        7,
        true,
        16,
    );

    check(
        "pad 1x1",
        &ConvLayer::pad_or_crop(gpu, 3, 1, 1, true).unwrap(),
        7,
        5,
        true,
        17,
    );
    check(
        "crop 1x0",
        &ConvLayer::pad_or_crop(gpu, 3, 1, 0, false).unwrap(),
        8,
        6,
        true,
        18,
    );
    check(
        "crop 1x1",
        &ConvLayer::pad_or_crop(gpu, 3, 1, 1, false).unwrap(),
        8,
        6,
        true,
        19,
    );
}

#[test]
fn bad_configs_are_refused() {
    let gpu = gpu();
    let cfg = ConvLayerConfig::same(2, 3, 3, 1);
    let err = ConvLayer::new(gpu, &[0.0; 10], cfg, Affine::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("10 weights"), "{err}");
    let cfg = ConvLayerConfig {
        transposed: true,
        ..ConvLayerConfig::same(2, 3, 3, 1).dilation(2)
    };
    let err = ConvLayer::new(gpu, &[0.0; 54], cfg, Affine::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("no dilation"), "{err}");
}
