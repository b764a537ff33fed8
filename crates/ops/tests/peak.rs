//! The FMA ceiling kernel against its CPU reference: the values it writes
//! (so the loop really ran the stated number of rounds) on an odd count of
//! invocations, and a clear error for an empty launch.

mod common;
use common::*;
use prior_ops::{peak, reference};

#[test]
fn fma_peak_matches_reference() {
    let gpu = gpu();
    for &(n, iters) in &[(1u32, 1u32), (1000, 7), (4099, 300)] {
        let out = peak::fma_peak(gpu, n, iters).unwrap();
        let got = pollster::block_on(gpu.read(&out)).unwrap();
        assert_eq!(got.len(), n as usize);
        for i in [0, n / 2, n - 1] {
            let want = reference::peak::fma_peak(i, iters);
            // 64 lanes summed in a different order, each lane's start
            // rounded differently in f32: a few ulps of the sum (~6.4).
            assert!(
                (got[i as usize] - want).abs() <= 1e-5 * want.abs().max(1.0),
                "n {n} iters {iters} invocation {i}: {} vs {want}",
                got[i as usize]
            );
        }
    }
}

#[test]
fn empty_launch_is_an_error() {
    let e = peak::fma_peak(gpu(), 0, 10).unwrap_err().to_string();
    assert!(e.contains("fma_peak"), "{e}");
}
