//! The three batch-norm conventions against their CPU references (literal
//! formulas), with and without ReLU, on odd channel counts; and the folded
//! per-channel affine the models use against the literal formula.
//! Tolerance: one division and a few multiplies in f32 → 1e-5 relative.

mod common;
use common::*;
use prior_gpu::Shape;
use prior_ops::batch_norm::BatchNorm;
use prior_ops::{elementwise, reference};

fn positive(v: Vec<f32>) -> Vec<f32> {
    v.into_iter().map(|x| x.abs() + 0.1).collect()
}

fn norms(c: usize) -> Vec<BatchNorm> {
    vec![
        BatchNorm::BfSd {
            sd: positive(rand_vec(c, 1)),
            gamma: rand_vec(c, 2),
        },
        BatchNorm::BfVar {
            var: positive(rand_vec(c, 3)),
            weight: rand_vec(c, 4),
        },
        BatchNorm::Standard {
            mean: rand_vec(c, 5),
            var: positive(rand_vec(c, 6)),
            weight: rand_vec(c, 7),
            bias: rand_vec(c, 8),
        },
    ]
}

#[test]
fn batch_norm_conventions_match_reference() {
    let gpu = gpu();
    for (c, h, w) in [(1, 5, 7), (3, 9, 4), (64, 13, 11), (5, 1, 67)] {
        let s = Shape::new(2, h, w, c);
        let x = rand_vec(s.numel(), 9);
        let xt = gpu.upload(s, &x);
        for bn in norms(c) {
            for relu in [false, true] {
                let got =
                    pollster::block_on(gpu.read(&bn.forward(gpu, &xt, relu).unwrap())).unwrap();
                let want = reference::batch_norm::batch_norm(&bn, &x, relu);
                let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                assert!(
                    max_abs_diff(&got, &want) <= 1e-5 * scale,
                    "{bn:?} relu {relu}"
                );
            }
            // Folding into (scale, shift) — what conv epilogues apply — agrees.
            let (scale, shift) = bn.scale_shift();
            let shift = shift.unwrap_or_else(|| vec![0.0; c]);
            let ss = gpu.upload(Shape::vector(2 * c), &[scale.as_slice(), &shift].concat());
            let folded =
                pollster::block_on(gpu.read(&elementwise::affine_c(gpu, &xt, &ss).unwrap()))
                    .unwrap();
            let want = reference::batch_norm::batch_norm(&bn, &x, false);
            let m = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            assert!(max_abs_diff(&folded, &want) <= 1e-5 * m, "folded {bn:?}");
        }
    }
}

#[test]
fn batch_norm_channel_mismatch_is_an_error() {
    let gpu = gpu();
    let bn = BatchNorm::BfSd {
        sd: vec![1.0; 4],
        gamma: vec![1.0; 4],
    };
    let x = gpu.upload(Shape::new(1, 2, 2, 3), &[0.0; 12]);
    let e = bn.forward(gpu, &x, false).unwrap_err().to_string();
    assert!(e.contains("4 channels"), "{e}");
}
