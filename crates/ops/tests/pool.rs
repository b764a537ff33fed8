//! avg_pool2 / upsample2 against their CPU references on odd shapes (odd
//! heights and widths, whose last row/column pooling drops; channel counts 1,
//! 3, 64; several samples), the adjoint identity ⟨pool(x), u⟩ = ⟨x, poolᵀ(u)⟩,
//! and clear errors. Tolerance 1e-6: a 4-term sum in f32.

mod common;
use common::*;
use prior_gpu::Shape;
use prior_ops::{pool, reference};

#[test]
fn avg_pool_and_upsample_match_reference() {
    let gpu = gpu();
    for (i, &(n, h, w, c)) in [
        (1usize, 7usize, 9usize, 1usize),
        (2, 8, 6, 3),
        (1, 13, 10, 64),
        (3, 2, 3, 5),
    ]
    .iter()
    .enumerate()
    {
        let s = Shape::new(n, h, w, c);
        let x = rand_vec(s.numel(), 50 + i as u64);
        let xt = gpu.upload(s, &x);
        let (os, want) = reference::pool::avg_pool2(&x, s);
        let y = pool::avg_pool2(gpu, &xt).unwrap();
        assert_eq!(y.shape(), os);
        let got = pollster::block_on(gpu.read(&y)).unwrap();
        assert!(max_abs_diff(&got, &want) < 1e-6, "pool {s}");

        let u = rand_vec(os.numel(), 60 + i as u64);
        let ut = gpu.upload(os, &u);
        let (_, want_up) = reference::pool::upsample2(&u, os, (h, w), 0.25);
        let v =
            pollster::block_on(gpu.read(&pool::avg_pool2_vjp(gpu, &ut, (h, w)).unwrap())).unwrap();
        assert!(max_abs_diff(&v, &want_up) < 1e-6, "vjp {s}");
        // Adjoint: <pool x, u> = <x, pool^T u>.
        let l: f64 = got.iter().zip(&u).map(|(a, b)| *a as f64 * *b as f64).sum();
        let r: f64 = x.iter().zip(&v).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!(
            (l - r).abs() < 1e-5 * l.abs().max(1.0),
            "adjoint {s}: {l} vs {r}"
        );
        // Plain up-sampling with another scale.
        let (_, want2) = reference::pool::upsample2(&u, os, (2 * os.h, 2 * os.w), 1.0);
        let v2 = pollster::block_on(
            gpu.read(&pool::upsample2(gpu, &ut, (2 * os.h, 2 * os.w), 1.0).unwrap()),
        )
        .unwrap();
        assert!(max_abs_diff(&v2, &want2) < 1e-6);
    }
}

#[test]
fn pool_errors_are_clear() {
    let gpu = gpu();
    let x = gpu.upload(Shape::new(1, 1, 5, 2), &rand_vec(10, 1));
    let e = pool::avg_pool2(gpu, &x).unwrap_err().to_string();
    assert!(e.contains("smaller than 2×2"), "{e}");
    let e = pool::upsample2(gpu, &x, (4, 10), 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("2h or 2h+1"), "{e}");
}

#[test]
fn avg_pool2_f16_averages_the_halves_in_f32() {
    use prior_ops::precision::{round_f16, HalfTensor};
    let gpu = gpu();
    // Odd size (the last row and column dropped), 6 channels, two samples.
    let s = Shape::new(2, 5, 7, 6);
    let x: Vec<f32> = rand_vec(s.numel(), 41).iter().map(|v| 8.0 * v).collect();
    let xh = HalfTensor::upload(gpu, s, &x);
    let y = prior_ops::pool::avg_pool2_f16(gpu, &xh).unwrap();
    assert_eq!(y.shape(), Shape::new(2, 2, 3, 6));
    let got = pollster::block_on(y.read(gpu)).unwrap();
    let x16: Vec<f32> = x.iter().map(|&v| round_f16(v)).collect();
    let at = |b: usize, r: usize, c: usize, ch: usize| x16[((b * 5 + r) * 7 + c) * 6 + ch];
    let mut worst = 0.0f32;
    for b in 0..2 {
        for oy in 0..2 {
            for ox in 0..3 {
                for ch in 0..6 {
                    let (r, c) = (2 * oy, 2 * ox);
                    let v = 0.25
                        * ((at(b, r, c, ch) + at(b, r, c + 1, ch))
                            + (at(b, r + 1, c, ch) + at(b, r + 1, c + 1, ch)));
                    let g = got[((b * 2 + oy) * 3 + ox) * 6 + ch];
                    // One rounding to f16: half an ulp.
                    let bound = v.abs() * 2f32.powi(-11) + 2f32.powi(-25);
                    assert!((g - v).abs() <= bound, "{g} vs {v}");
                    worst = worst.max((g - round_f16(v)).abs());
                }
            }
        }
    }
    eprintln!("avg_pool2_f16: max |got − round_f16(exact)| = {worst:e}");
    // An odd channel count is refused by name.
    let odd = HalfTensor::upload(gpu, Shape::new(1, 2, 2, 3), &[0.0; 12]);
    let e = prior_ops::pool::avg_pool2_f16(gpu, &odd).unwrap_err();
    assert!(e.to_string().contains("even channel count"), "{e}");
}
