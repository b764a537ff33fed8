//! CPU reference of [`crate::noise_estimate`].

use prior_gpu::Shape;

/// Blind estimate of the noise variance t of each image of a batch
/// (channels-last `[n, h, w, c]` values): σ̂ = median(|d|)/0.6745 over the
/// finest diagonal Haar details d = (a − b − c + e)/2, t̂ = σ̂²; the median is
/// the element of rank ⌊len/2⌋. An image without a 2×2 block gets 0.
pub fn noise_variance(data: &[f32], s: Shape) -> Vec<f32> {
    (0..s.n)
        .map(|b| {
            let mut d = Vec::with_capacity(s.h / 2 * (s.w / 2) * s.c);
            let at = |y: usize, x: usize, c: usize| data[((b * s.h + y) * s.w + x) * s.c + c];
            for y in (0..s.h - s.h % 2).step_by(2) {
                for x in (0..s.w - s.w % 2).step_by(2) {
                    for c in 0..s.c {
                        d.push(
                            ((at(y, x, c) - at(y, x + 1, c) - at(y + 1, x, c)
                                + at(y + 1, x + 1, c))
                                * 0.5)
                                .abs(),
                        );
                    }
                }
            }
            if d.is_empty() {
                return 0.0;
            }
            let mid = d.len() / 2;
            let (_, m, _) = d.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
            let sigma = *m / 0.6745;
            sigma * sigma
        })
        .collect()
}
