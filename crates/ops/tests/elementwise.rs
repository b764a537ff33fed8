//! Element-wise kernels against their CPU references on sizes that are not
//! multiples of the 64-wide workgroup (exact: one f32 operation each).

mod common;
use common::*;
use prior_gpu::Shape;
use prior_ops::{elementwise, reference};

fn read(t: &prior_gpu::Tensor) -> Vec<f32> {
    pollster::block_on(gpu().read(t)).unwrap()
}

#[test]
fn relu_axpby_sub_affine_match_reference() {
    let gpu = gpu();
    for (n, h, w, c) in [(1, 1, 1, 1), (1, 7, 9, 3), (2, 13, 5, 64), (3, 33, 17, 1)] {
        let s = Shape::new(n, h, w, c);
        let a = rand_vec(s.numel(), 1);
        let b = rand_vec(s.numel(), 2);
        let (at, bt) = (gpu.upload(s, &a), gpu.upload(s, &b));
        assert_eq!(
            read(&elementwise::relu(gpu, &at)),
            reference::elementwise::relu(&a)
        );
        assert_eq!(
            read(&elementwise::axpby(gpu, 0.5, &at, -2.0, &bt).unwrap()),
            reference::elementwise::axpby(0.5, &a, -2.0, &b)
        );
        assert_eq!(
            read(&elementwise::sub(gpu, &at, &bt).unwrap()),
            reference::elementwise::axpby(1.0, &a, -1.0, &b)
        );
        let scale = rand_vec(c, 3);
        let shift = rand_vec(c, 4);
        let ss = gpu.upload(Shape::vector(2 * c), &[scale.as_slice(), &shift].concat());
        let got = read(&elementwise::affine_c(gpu, &at, &ss).unwrap());
        assert!(max_abs_diff(&got, &reference::elementwise::affine_c(&a, &scale, &shift)) <= 1e-6);
        // The mask of batched tangents broadcasts one primal over n samples.
        let primal = gpu.upload(Shape::new(1, h, w, c), &b[..h * w * c]);
        let got = read(&elementwise::relu_mask(gpu, &at, &primal).unwrap());
        assert_eq!(got, reference::elementwise::relu_mask(&a, &b[..h * w * c]));
    }
}

#[test]
fn shape_mismatch_is_an_error() {
    let gpu = gpu();
    let a = gpu.upload(Shape::new(1, 2, 2, 1), &[0.0; 4]);
    let b = gpu.upload(Shape::new(1, 2, 3, 1), &[0.0; 6]);
    assert!(elementwise::axpby(gpu, 1.0, &a, 1.0, &b)
        .unwrap_err()
        .to_string()
        .contains("shape mismatch"));
}

/// `Gpu::repeat_batch` stacks copies of a batch (buffer copies at offsets).
#[test]
fn repeat_batch_stacks_copies() {
    let gpu = gpu();
    let x = rand_vec(2 * 3 * 5 * 2, 77);
    let t = gpu.repeat_batch(&gpu.upload(prior_gpu::Shape::new(2, 3, 5, 2), &x), 3);
    assert_eq!(t.shape(), prior_gpu::Shape::new(6, 3, 5, 2));
    let got = pollster::block_on(gpu.read(&t)).unwrap();
    assert_eq!(got, [x.clone(), x.clone(), x].concat());
}
