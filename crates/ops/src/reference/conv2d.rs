//! CPU reference of `conv2d`: direct 7-loop convolution, f64 accumulation.

use prior_gpu::Shape;

use crate::conv2d::ConvConfig;

/// Convolution of channels-last `x` (`s`, with `s.c == cfg.cin`) with
/// PyTorch-layout weights `(cout, cin, kh, kw)` of geometry `cfg` (stride,
/// zero padding, dilation) and an optional bias.
pub fn conv2d(
    x: &[f32],
    s: Shape,
    w: &[f32],
    bias: Option<&[f32]>,
    cfg: ConvConfig,
) -> (Shape, Vec<f32>) {
    let ConvConfig {
        cin,
        cout,
        kh,
        kw,
        stride,
        pad,
        dilation: dil,
    } = cfg;
    assert_eq!(s.c, cin, "input channels");
    let ho = (s.h + 2 * pad - dil * (kh - 1) - 1) / stride + 1;
    let wo = (s.w + 2 * pad - dil * (kw - 1) - 1) / stride + 1;
    let os = Shape::new(s.n, ho, wo, cout);
    let mut y = vec![0.0f32; os.numel()];
    for b in 0..s.n {
        for oy in 0..ho {
            for ox in 0..wo {
                for co in 0..cout {
                    let mut acc = bias.map_or(0.0, |b| b[co] as f64);
                    for ky in 0..kh {
                        let iy = (oy * stride + ky * dil) as isize - pad as isize;
                        if iy < 0 || iy >= s.h as isize {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = (ox * stride + kx * dil) as isize - pad as isize;
                            if ix < 0 || ix >= s.w as isize {
                                continue;
                            }
                            for ci in 0..s.c {
                                let xv =
                                    x[((b * s.h + iy as usize) * s.w + ix as usize) * s.c + ci];
                                let wv = w[((co * s.c + ci) * kh + ky) * kw + kx];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    y[((b * ho + oy) * wo + ox) * cout + co] = acc as f32;
                }
            }
        }
    }
    (os, y)
}
