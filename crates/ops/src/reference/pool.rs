//! CPU reference of `pool`: 2×2 average pooling (stride 2, odd edge dropped)
//! and nearest up-sampling with a scale (its adjoint for scale ¼).

use prior_gpu::Shape;

/// `avg_pool2d(x, 2, 2)` on channels-last `x`.
pub fn avg_pool2(x: &[f32], s: Shape) -> (Shape, Vec<f32>) {
    let os = Shape::new(s.n, s.h / 2, s.w / 2, s.c);
    let mut y = vec![0.0f32; os.numel()];
    for b in 0..s.n {
        for oy in 0..os.h {
            for ox in 0..os.w {
                for c in 0..s.c {
                    let at = |yy: usize, xx: usize| x[((b * s.h + yy) * s.w + xx) * s.c + c] as f64;
                    let v = at(2 * oy, 2 * ox)
                        + at(2 * oy, 2 * ox + 1)
                        + at(2 * oy + 1, 2 * ox)
                        + at(2 * oy + 1, 2 * ox + 1);
                    y[((b * os.h + oy) * os.w + ox) * s.c + c] = (v / 4.0) as f32;
                }
            }
        }
    }
    (os, y)
}

/// `scale · x` repeated over 2×2 blocks into `out_hw` (extra odd row/column 0).
pub fn upsample2(x: &[f32], s: Shape, out_hw: (usize, usize), scale: f32) -> (Shape, Vec<f32>) {
    let os = Shape::new(s.n, out_hw.0, out_hw.1, s.c);
    let mut y = vec![0.0f32; os.numel()];
    for b in 0..s.n {
        for oy in 0..os.h {
            for ox in 0..os.w {
                let (iy, ix) = (oy / 2, ox / 2);
                if iy >= s.h || ix >= s.w {
                    continue;
                }
                for c in 0..s.c {
                    y[((b * os.h + oy) * os.w + ox) * s.c + c] =
                        scale * x[((b * s.h + iy) * s.w + ix) * s.c + c];
                }
            }
        }
    }
    (os, y)
}
