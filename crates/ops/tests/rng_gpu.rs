//! GPU noise (`shaders/rng.wgsl`) against the CPU generator: the same
//! numbers in (N, C, H, W) counter order whatever the channels-last storage.
//! f32 `log`/`cos` on an adapter may differ from Rust's by an ulp, so the
//! comparison is to 1e-6 absolute (|z| < 6 here).

mod common;
use common::{gpu, max_abs_diff};
use prior_ops::reference::rng;
use prior_ops::Shape;

/// CPU reference laid out channels-last: element (s, h, w, c) takes counter
/// offset + s·CHW + c·HW + h·W + w.
fn cpu_channels_last(shape: Shape, seed: u64, stream: u32, offset: u32) -> Vec<f32> {
    let k = rng::key(seed, stream);
    let (h, w, c) = (shape.h, shape.w, shape.c);
    let mut out = vec![0.0; shape.numel()];
    for s in 0..shape.n {
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let i = offset as usize + s * c * h * w + ch * h * w + y * w + x;
                    out[((s * h + y) * w + x) * c + ch] = rng::normal(k, i as u32);
                }
            }
        }
    }
    out
}

#[test]
fn gpu_noise_matches_cpu_on_odd_shapes() {
    let g = gpu();
    for (shape, seed, stream, offset) in [
        (Shape::new(1, 7, 5, 3), 0u64, 25_000u32, 0u32),
        (Shape::new(3, 13, 11, 1), 12345, 7, 99),
        (Shape::new(2, 9, 17, 3), u64::MAX - 3, 0x8000_0001, 1 << 20),
    ] {
        let got = pollster::block_on(
            g.read(&prior_ops::rng::normal(g, shape, seed, stream, offset).unwrap()),
        )
        .unwrap();
        let want = cpu_channels_last(shape, seed, stream, offset);
        let d = max_abs_diff(&got, &want);
        assert!(d <= 1e-6, "{shape}: max diff {d}");
    }
}

#[test]
fn gpu_noise_matches_golden_first_values() {
    // tests/golden/set12_psnr.json: seed 0, stream 25000, first 8 normals.
    let g = gpu();
    let t = prior_ops::rng::normal(g, Shape::new(1, 1, 8, 1), 0, 25_000, 0).unwrap();
    let got = pollster::block_on(g.read(&t)).unwrap();
    let want = [
        0.37761190533638,
        -0.11500437557697296,
        -0.6377096176147461,
        0.7092419266700745,
        -0.5089250206947327,
        -0.07480030506849289,
        0.2960848808288574,
        -0.2598767876625061,
    ];
    for (a, b) in got.iter().zip(want) {
        assert!((*a as f64 - b).abs() < 1e-6, "{a} vs {b}");
    }
}

#[test]
fn channels_last_storage_does_not_change_the_numbers() {
    // A (C,H,W) image's noise is the first C·H·W normals of the stream.
    let g = gpu();
    let shape = Shape::new(1, 6, 4, 3);
    let got =
        pollster::block_on(g.read(&prior_ops::rng::normal(g, shape, 5, 2, 0).unwrap())).unwrap();
    let flat = rng::normals(5, 2, shape.numel());
    for ch in 0..3 {
        for p in 0..24 {
            assert!((got[p * 3 + ch] - flat[ch * 24 + p]).abs() <= 1e-6);
        }
    }
}

#[test]
fn axpy_normal_broadcasts_one_sample() {
    let g = gpu();
    let shape = Shape::new(2, 5, 3, 2);
    let base: Vec<f32> = common::rand_vec(15 * 2, 3);
    let a = g.upload(Shape::new(1, 5, 3, 2), &base);
    let got = pollster::block_on(
        g.read(&prior_ops::rng::axpy_normal(g, &a, shape, 0.5, 9, 1, 0).unwrap()),
    )
    .unwrap();
    let z = cpu_channels_last(shape, 9, 1, 0);
    let want: Vec<f32> = (0..shape.numel())
        .map(|j| base[j % base.len()] + 0.5 * z[j])
        .collect();
    assert!(max_abs_diff(&got, &want) <= 1e-6);
    let bad = g.upload(Shape::new(1, 2, 2, 2), &[0.0; 8]);
    assert!(prior_ops::rng::axpy_normal(g, &bad, shape, 1.0, 0, 0, 0).is_err());
}

#[test]
fn many_normals_agree_including_the_tails() {
    // 200 000 numbers cover u1 near 1 (where a builtin log loses accuracy)
    // and the tails (u1 near 0).
    let g = gpu();
    let shape = Shape::new(1, 1, 200_000, 1);
    let got =
        pollster::block_on(g.read(&prior_ops::rng::normal(g, shape, 3, 4, 0).unwrap())).unwrap();
    let k = rng::key(3, 4);
    for (i, v) in got.iter().enumerate() {
        let want = rng::normal(k, i as u32);
        assert!((v - want).abs() <= 1e-6, "element {i}: {v} vs {want}");
    }
}
