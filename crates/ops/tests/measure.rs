//! Measurement kernels against the CPU references on odd shapes. Sums of up
//! to a few hundred f32 products vs f64 on the CPU: 1e-5 absolute for values
//! of order 1 (the DFT: twiddles rounded to f32, 1e-5).

mod common;
use common::{gpu, max_abs_diff, rand_vec};
use prior_ops::measure::{self, Axis, DftPass};
use prior_ops::reference::measure as cpu;
use prior_ops::Shape;

fn read(t: &prior_ops::Tensor) -> Vec<f32> {
    pollster::block_on(gpu().read(t)).unwrap()
}

#[test]
fn mask_and_blocks_match_cpu() {
    let g = gpu();
    let shape = Shape::new(2, 9, 15, 3);
    let x = rand_vec(shape.numel(), 1);
    let m: Vec<f32> = rand_vec(9 * 15 * 3, 2)
        .iter()
        .map(|v| (*v > 0.0) as u8 as f32)
        .collect();
    let tx = g.upload(shape, &x);
    let got = read(&measure::mask_mul(g, &tx, &g.upload(Shape::new(1, 9, 15, 3), &m)).unwrap());
    assert_eq!(got, cpu::mask_mul(&x, &m));
    let down = measure::block_down(g, &tx, 3).unwrap();
    assert_eq!(down.shape(), Shape::new(2, 3, 5, 3));
    assert!(max_abs_diff(&read(&down), &cpu::block_down(&x, (2, 9, 15, 3), 3)) <= 1e-5);
    let lo = rand_vec(2 * 3 * 5 * 3, 3);
    let up = measure::block_up(g, &g.upload(Shape::new(2, 3, 5, 3), &lo), 3).unwrap();
    assert_eq!(up.shape(), shape);
    assert!(max_abs_diff(&read(&up), &cpu::block_up(&lo, (2, 3, 5, 3), 3)) <= 1e-6);
    assert!(
        measure::block_down(g, &tx, 2).is_err(),
        "9x15 is not a multiple of 2"
    );
    assert!(measure::mask_mul(g, &tx, &g.upload(Shape::new(1, 9, 15, 1), &m[..135])).is_err());
}

#[test]
fn matvec_both_ways_match_cpu() {
    let g = gpu();
    let (rows, cols) = (37, 23);
    let a = rand_vec(rows * cols, 4);
    let ta = g.upload(Shape::vector(rows * cols), &a);
    // sample counts around the kernels' groups of four (a partial group, one, several)
    for n in [1usize, 3, 4, 9] {
        let x = rand_vec(n * cols, 5 + n as u64);
        let y =
            measure::matvec(g, &ta, rows, cols, &g.upload(Shape::new(n, 1, 1, cols), &x)).unwrap();
        assert_eq!(y.shape(), Shape::new(n, 1, 1, rows));
        assert!(
            max_abs_diff(&read(&y), &cpu::matvec(&a, rows, cols, &x)) <= 1e-5,
            "matvec, {n} samples"
        );
        let u = rand_vec(n * rows, 6 + n as u64);
        let y = measure::matvec_t(g, &ta, rows, cols, &g.upload(Shape::new(n, 1, 1, rows), &u))
            .unwrap();
        assert_eq!(y.shape(), Shape::new(n, 1, 1, cols));
        assert!(
            max_abs_diff(&read(&y), &cpu::matvec_t(&a, rows, cols, &u)) <= 1e-5,
            "matvec_t, {n} samples"
        );
    }
    let x = rand_vec(3 * cols, 5);
    assert!(measure::matvec(
        g,
        &ta,
        rows,
        cols + 1,
        &g.upload(Shape::vector(cols), &x[..cols])
    )
    .is_err());
}

#[test]
fn dft_passes_match_cpu() {
    let g = gpu();
    let (n, h, w, c) = (2, 7, 12, 3);
    let x = rand_vec(n * h * w * c, 7);
    let xc = rand_vec(n * h * w * 2 * c, 8);
    let mask: Vec<f32> = rand_vec(h * w, 9)
        .iter()
        .map(|v| (*v > 0.0) as u8 as f32)
        .collect();
    let tw_h = g.upload(Shape::vector(2 * h), &measure::twiddles(h));
    let tw_w = g.upload(Shape::vector(2 * w), &measure::twiddles(w));
    let tm = g.upload(Shape::new(1, h, w, 1), &mask);
    let (tx, txc) = (
        g.upload(Shape::new(n, h, w, c), &x),
        g.upload(Shape::new(n, h, w, 2 * c), &xc),
    );
    // real in along W, forward
    let p = DftPass {
        axis: Axis::W,
        complex_in: false,
        inverse: false,
        real_out: false,
    };
    let y = measure::dft(g, &tx, p, &tw_w, None).unwrap();
    assert!(max_abs_diff(&read(&y), &cpu::dft(&x, (n, h, w, c), p, None)) <= 1e-5);
    // complex along H, forward, masked
    let p = DftPass {
        axis: Axis::H,
        complex_in: true,
        inverse: false,
        real_out: false,
    };
    let y = measure::dft(g, &txc, p, &tw_h, Some(&tm)).unwrap();
    assert!(max_abs_diff(&read(&y), &cpu::dft(&xc, (n, h, w, c), p, Some(&mask))) <= 1e-5);
    // complex along W, inverse, real part
    let p = DftPass {
        axis: Axis::W,
        complex_in: true,
        inverse: true,
        real_out: true,
    };
    let y = measure::dft(g, &txc, p, &tw_w, None).unwrap();
    assert_eq!(y.shape(), Shape::new(n, h, w, c));
    assert!(max_abs_diff(&read(&y), &cpu::dft(&xc, (n, h, w, c), p, None)) <= 1e-5);
    let p = DftPass {
        axis: Axis::H,
        complex_in: false,
        inverse: false,
        real_out: false,
    };
    assert!(
        measure::dft(g, &tx, p, &tw_w, None).is_err(),
        "wrong twiddles"
    );
}
