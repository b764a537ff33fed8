//! JVP/VJP of the ops against their CPU references (crate::reference::autodiff)
//! on odd shapes, the adjoint identity ⟨Jv, u⟩ = ⟨v, Jᵀu⟩, and central finite
//! differences of the forward kernels.
//!
//! Tolerances: JVP/VJP outputs are sums of ≤ 64·25 products of values in
//! [-1, 1] (times a scale ≤ 1) in f32 → 2e-4 absolute. The adjoint identity
//! holds to f32 rounding of those sums: 1e-4 relative. Finite differences of
//! a piecewise-linear layer are exact away from ReLU kinks; with ε = 1e-3 and
//! f32 outputs of size ~1 the rounding term is ~1e-7/1e-3 = 1e-4, and a kink
//! crossed is excluded (see the test): 2e-3 relative in norm.

mod common;
use common::*;
use prior_gpu::{Gpu, Shape, Tensor};
use prior_ops::autodiff;
use prior_ops::batch_norm::BatchNorm;
use prior_ops::conv2d::{Conv2d, ConvConfig, Epilogue};
use prior_ops::layer::{Affine, ConvLayer, ConvLayerConfig, Op, VjpAt};
use prior_ops::reference;

fn read(gpu: &Gpu, t: &Tensor) -> Vec<f32> {
    pollster::block_on(gpu.read(t)).unwrap()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

fn norm(a: &[f32]) -> f64 {
    dot(a, a).sqrt()
}

/// A `cin → cout` `k × k` stride-1 conv layer with padding `pad` and
/// dilation `dil`, on an `h × w` input.
struct Case {
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    k: usize,
    pad: usize,
    dil: usize,
}

/// One conv layer (with scale, shift and ReLU), `ntan` tangents for one primal.
fn check_conv(case: Case, ntan: usize, seed: u64) {
    let Case {
        h,
        w,
        cin,
        cout,
        k,
        pad,
        dil,
    } = case;
    let gpu = gpu();
    let s1 = Shape::new(1, h, w, cin);
    let st = Shape::new(ntan, h, w, cin);
    let wt: Vec<f32> = rand_vec(cout * cin * k * k, seed)
        .iter()
        .map(|v| v * 0.3)
        .collect();
    let scale: Vec<f32> = rand_vec(cout, seed + 1);
    let shift = rand_vec(cout, seed + 2);
    let geo = ConvConfig::new(cin, cout, k, k).pad(pad).dilation(dil);
    let cfg = ConvLayerConfig {
        conv: geo,
        transposed: false,
        relu: true,
    };
    let affine = Affine {
        scale: Some(&scale),
        shift: Some(&shift),
    };
    let layer = ConvLayer::new(gpu, &wt, cfg, affine).unwrap();
    let x = rand_vec(s1.numel(), seed + 3);
    let xt = gpu.upload(s1, &x);
    let primal = layer.forward(gpu, &xt).unwrap();
    let pm = read(gpu, &primal);
    let os = primal.shape();
    let v = rand_vec(st.numel(), seed + 4);
    let vt = gpu.upload(st, &v);
    let tag = format!("{h}x{w} {cin}->{cout} k{k} p{pad} d{dil} n{ntan}");
    let cref = reference::autodiff::ConvRef {
        w: &wt,
        cfg: geo,
        scale: Some(&scale),
    };

    // JVP against the reference.
    let jv = layer.jvp(gpu, &vt, &primal).unwrap();
    assert_eq!(jv.shape(), Shape::new(ntan, os.h, os.w, cout), "{tag}");
    let jv = read(gpu, &jv);
    let (_, want) = reference::autodiff::conv2d_jvp(&v, st, cref, Some(&pm));
    let e = max_abs_diff(&jv, &want);
    assert!(e < 2e-4, "{tag}: jvp err {e}");

    // VJP against the scatter-add reference, with the ReLU mask.
    let so = Shape::new(ntan, os.h, os.w, cout);
    let u = rand_vec(so.numel(), seed + 5);
    let ut = gpu.upload(so, &u);
    let jtu = layer.vjp(gpu, &ut, &primal, (h, w)).unwrap();
    assert_eq!(jtu.shape(), st, "{tag}");
    let jtu = read(gpu, &jtu);
    let want = reference::autodiff::conv2d_vjp(&u, st, cref, Some(&pm));
    let e = max_abs_diff(&jtu, &want);
    assert!(e < 2e-4, "{tag}: vjp err {e}");

    // Adjoint identity per tangent sample.
    let (ni, no) = (h * w * cin, os.h * os.w * cout);
    for b in 0..ntan {
        let lhs = dot(&jv[b * no..(b + 1) * no], &u[b * no..(b + 1) * no]);
        let rhs = dot(&v[b * ni..(b + 1) * ni], &jtu[b * ni..(b + 1) * ni]);
        let rel =
            (lhs - rhs).abs() / (norm(&jv[b * no..(b + 1) * no]) * norm(&u[b * no..(b + 1) * no]));
        assert!(
            rel < 1e-4,
            "{tag}: <Jv,u> {lhs} vs <v,J'u> {rhs} (rel {rel:.2e})"
        );
    }

    // The fused input mask equals a separate relu_mask after the transposed conv.
    let in_mask = gpu.upload(s1, &rand_vec(s1.numel(), seed + 6));
    let at = VjpAt {
        out: Some(&primal),
        in_hw: (h, w),
        in_mask: Some(&in_mask),
    };
    let fused = read(gpu, &layer.vjp_at(gpu, &ut, at).unwrap());
    let separate = reference::elementwise::relu_mask(&jtu, &read(gpu, &in_mask));
    assert_eq!(fused, separate, "{tag}: fused input mask");

    // Central finite differences of the forward layer (first tangent).
    let eps = 1e-3f32;
    let xp: Vec<f32> = x.iter().zip(&v).map(|(a, d)| a + eps * d).collect();
    let xm: Vec<f32> = x.iter().zip(&v).map(|(a, d)| a - eps * d).collect();
    let fp = read(gpu, &layer.forward(gpu, &gpu.upload(s1, &xp)).unwrap());
    let fm = read(gpu, &layer.forward(gpu, &gpu.upload(s1, &xm)).unwrap());
    let fd: Vec<f32> = fp
        .iter()
        .zip(&fm)
        .map(|(a, b)| (a - b) / (2.0 * eps))
        .collect();
    // Skip the outputs whose pre-activation the ±ε step can push across the
    // ReLU kink (|pre| ≤ ε·|linear tangent|): there the difference quotient
    // is not the derivative.
    let Op::Conv(conv) = &layer.op else {
        unreachable!("a conv layer")
    };
    let pre = read(gpu, &conv.forward(gpu, &xt, Epilogue::default()).unwrap());
    let lin = read(gpu, &layer.linear(gpu, &gpu.upload(s1, &v[..ni])).unwrap());
    let keep: Vec<bool> = pre
        .iter()
        .zip(&lin)
        .map(|(p, l)| p.abs() > 2.0 * eps * l.abs())
        .collect();
    let diff: Vec<f32> = fd
        .iter()
        .zip(&jv[..no])
        .zip(&keep)
        .map(|((a, b), k)| if *k { a - b } else { 0.0 })
        .collect();
    let rel = norm(&diff) / norm(&jv[..no]);
    assert!(
        rel < 2e-3,
        "{tag}: finite differences differ by {rel:.2e} relative"
    );
}

#[test]
fn conv_jvp_vjp_match_reference_on_odd_shapes() {
    check_conv(
        Case {
            h: 7,
            w: 9,
            cin: 1,
            cout: 64,
            k: 3,
            pad: 1,
            dil: 1,
        },
        3,
        1,
    );
    check_conv(
        Case {
            h: 13,
            w: 11,
            cin: 64,
            cout: 1,
            k: 3,
            pad: 1,
            dil: 1,
        },
        5,
        2,
    );
    check_conv(
        Case {
            h: 9,
            w: 10,
            cin: 64,
            cout: 64,
            k: 3,
            pad: 1,
            dil: 1,
        },
        2,
        3,
    );
    check_conv(
        Case {
            h: 11,
            w: 13,
            cin: 3,
            cout: 5,
            k: 5,
            pad: 2,
            dil: 1,
        },
        4,
        4,
    );
    check_conv(
        Case {
            h: 9,
            w: 17,
            cin: 4,
            cout: 12,
            k: 1,
            pad: 0,
            dil: 1,
        },
        3,
        5,
    );
    check_conv(
        Case {
            h: 17,
            w: 19,
            cin: 8,
            cout: 8,
            k: 3,
            pad: 2,
            dil: 2,
        },
        2,
        6,
    );
    // "valid" padding (pad 0 with k 3): the VJP pads by 2.
    check_conv(
        Case {
            h: 10,
            w: 12,
            cin: 4,
            cout: 8,
            k: 3,
            pad: 0,
            dil: 1,
        },
        3,
        7,
    );
}

#[test]
fn conv_vjp_refuses_strided_layers() {
    let gpu = gpu();
    let cfg = ConvConfig::new(4, 8, 3, 3).stride(2).pad(1);
    let conv = Conv2d::new(gpu, &rand_vec(8 * 4 * 9, 1), cfg);
    let e = conv
        .input_gradient_layer(gpu)
        .err()
        .expect("stride 2 must be refused")
        .to_string();
    assert!(
        e.contains("stride") && e.contains("conv_transpose2d"),
        "{e}"
    );
}

#[test]
fn batch_norm_relu_sub_jvp_vjp() {
    let gpu = gpu();
    let c = 7;
    let st = Shape::new(3, 5, 9, c);
    let t = rand_vec(st.numel(), 20);
    let tt = gpu.upload(st, &t);
    let pos = |v: Vec<f32>| v.iter().map(|x| x.abs() + 0.1).collect::<Vec<_>>();
    let bns = [
        BatchNorm::BfSd {
            sd: pos(rand_vec(c, 21)),
            gamma: rand_vec(c, 22),
        },
        BatchNorm::BfVar {
            var: pos(rand_vec(c, 23)),
            weight: rand_vec(c, 24),
        },
        BatchNorm::Standard {
            mean: rand_vec(c, 25),
            var: pos(rand_vec(c, 26)),
            weight: rand_vec(c, 27),
            bias: rand_vec(c, 28),
        },
    ];
    for bn in &bns {
        let got = read(gpu, &autodiff::batch_norm_jvp(gpu, bn, &tt).unwrap());
        assert!(max_abs_diff(&got, &reference::autodiff::batch_norm_jvp(bn, &t)) < 1e-6);
        let got = read(gpu, &autodiff::batch_norm_vjp(gpu, bn, &tt).unwrap());
        assert!(max_abs_diff(&got, &reference::autodiff::batch_norm_vjp(bn, &t)) < 1e-6);
        // The JVP is the difference quotient of the literal normalisation (linear: exact up to rounding).
        let x = rand_vec(st.numel(), 29);
        let xp: Vec<f32> = x.iter().zip(&t).map(|(a, d)| a + 0.01 * d).collect();
        let xm: Vec<f32> = x.iter().zip(&t).map(|(a, d)| a - 0.01 * d).collect();
        let fp = read(gpu, &bn.forward(gpu, &gpu.upload(st, &xp), false).unwrap());
        let fm = read(gpu, &bn.forward(gpu, &gpu.upload(st, &xm), false).unwrap());
        let fd: Vec<f32> = fp.iter().zip(&fm).map(|(a, b)| (a - b) / 0.02).collect();
        assert!(max_abs_diff(&fd, &got) < 1e-3, "{bn:?}");
    }
    let bad = gpu.upload(Shape::new(1, 2, 2, 3), &[0.0; 12]);
    assert!(autodiff::batch_norm_jvp(gpu, &bns[0], &bad)
        .unwrap_err()
        .to_string()
        .contains("7 channels"));

    // ReLU: one primal sample, three tangent samples.
    let p = rand_vec(5 * 9 * c, 30);
    let pt = gpu.upload(Shape::new(1, 5, 9, c), &p);
    let want = reference::autodiff::relu_jvp(&t, &p);
    assert_eq!(read(gpu, &autodiff::relu_jvp(gpu, &tt, &pt).unwrap()), want);
    assert_eq!(read(gpu, &autodiff::relu_vjp(gpu, &tt, &pt).unwrap()), want);

    // Residual subtraction.
    let t2 = rand_vec(st.numel(), 31);
    let t2t = gpu.upload(st, &t2);
    let got = read(gpu, &autodiff::sub_jvp(gpu, &tt, &t2t).unwrap());
    assert!(max_abs_diff(&got, &reference::autodiff::sub_jvp(&t, &t2)) < 1e-7);
    let (ga, gb) = autodiff::sub_vjp(gpu, &tt).unwrap();
    let (wa, wb) = reference::autodiff::sub_vjp(&t);
    assert_eq!(read(gpu, &ga), wa);
    assert_eq!(read(gpu, &gb), wb);
}
