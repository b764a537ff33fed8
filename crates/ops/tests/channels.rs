//! Channel slice/concat against the CPU reference (exact copies) on odd
//! channel counts and batches, the VJP pairs (⟨slice v, u⟩ = ⟨v, sliceᵀ u⟩),
//! replace, and clear errors.

mod common;
use common::*;
use prior_gpu::Shape;
use prior_ops::channels::*;
use prior_ops::reference;

fn read(t: &prior_gpu::Tensor) -> Vec<f32> {
    pollster::block_on(gpu().read(t)).unwrap()
}

#[test]
fn slice_and_concat_match_reference() {
    let gpu = gpu();
    let s = Shape::new(2, 7, 5, 5);
    let x = rand_vec(s.numel(), 1);
    let xt = gpu.upload(s, &x);
    for (start, len) in [(0, 1), (1, 3), (2, 3), (0, 5), (4, 1)] {
        let y = slice_channels(gpu, &xt, start, len).unwrap();
        assert_eq!(y.shape(), s.with_c(len));
        assert_eq!(
            read(&y),
            reference::channels::slice_channels(&x, s, start, len),
            "{start}+{len}"
        );
    }
    let a = rand_vec(2 * 7 * 5, 2);
    let b = rand_vec(2 * 7 * 5 * 3, 3);
    let (at, bt) = (gpu.upload(s.with_c(1), &a), gpu.upload(s.with_c(3), &b));
    let y = concat_channels(gpu, &[&at, &bt, &xt]).unwrap();
    assert_eq!(y.shape(), s.with_c(9));
    assert_eq!(
        read(&y),
        reference::channels::concat_channels(&[(&a, 1), (&b, 3), (&x, 5)])
    );

    // replace channels 1..4 of x by b
    let r = replace_channels(gpu, &xt, 1, &bt).unwrap();
    let mut want = x.clone();
    for p in 0..2 * 7 * 5 {
        want[p * 5 + 1..p * 5 + 4].copy_from_slice(&b[p * 3..p * 3 + 3]);
    }
    assert_eq!(read(&r), want);
}

#[test]
fn vjps_are_adjoints() {
    let gpu = gpu();
    let s = Shape::new(3, 4, 6, 4);
    let v = rand_vec(s.numel(), 4);
    let u = rand_vec(s.numel() / 4 * 3, 5);
    let (vt, ut) = (gpu.upload(s, &v), gpu.upload(s.with_c(3), &u));
    let sv = read(&slice_channels(gpu, &vt, 1, 3).unwrap());
    let stu = read(&slice_channels_vjp(gpu, &ut, 4, 1).unwrap());
    let d1: f64 = sv
        .iter()
        .zip(&u)
        .map(|(a, b)| (*a as f64) * (*b as f64))
        .sum();
    let d2: f64 = v
        .iter()
        .zip(&stu)
        .map(|(a, b)| (*a as f64) * (*b as f64))
        .sum();
    assert!((d1 - d2).abs() < 1e-9 * d1.abs().max(1.0), "{d1} vs {d2}");
    // zeros outside the slice
    assert!(stu.chunks(4).all(|px| px[0] == 0.0));
    // concat's VJP cuts the cotangent back into the parts
    let parts = concat_channels_vjp(gpu, &vt, &[1, 3]).unwrap();
    assert_eq!(
        read(&parts[0]),
        reference::channels::slice_channels(&v, s, 0, 1)
    );
    assert_eq!(
        read(&parts[1]),
        reference::channels::slice_channels(&v, s, 1, 3)
    );
}

#[test]
fn bad_arguments_are_clear_errors() {
    let gpu = gpu();
    let x = gpu.upload(Shape::new(1, 3, 3, 4), &rand_vec(36, 6));
    let e = slice_channels(gpu, &x, 2, 3).unwrap_err().to_string();
    assert!(
        e.contains("channels 2..5 of a tensor with 4 channels"),
        "{e}"
    );
    let y = gpu.upload(Shape::new(1, 3, 4, 1), &rand_vec(12, 7));
    let e = concat_channels(gpu, &[&x, &y]).unwrap_err().to_string();
    assert!(e.contains("n, h and w must agree"), "{e}");
    assert!(concat_channels(gpu, &[]).is_err());
    let e = concat_channels_vjp(gpu, &x, &[1, 2])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cotangent has 4"), "{e}");
}
