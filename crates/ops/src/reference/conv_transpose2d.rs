//! CPU reference of `conv_transpose2d`: the scatter definition of PyTorch's
//! `ConvTranspose2d` (every input pixel adds its weighted kernel into the
//! output), f64 accumulation; written independently of the GPU's gather form.

use prior_gpu::Shape;

use crate::conv2d::ConvConfig;

/// Transposed convolution of channels-last `x` (`s`, with `s.c == cfg.cin`)
/// with PyTorch-layout weights `(cin, cout, kh, kw)` of geometry `cfg`
/// (stride, padding, dilation) and an optional bias, into an `out_hw` output
/// (PyTorch's size `(h−1)·s − 2p + d·(k−1) + 1` plus any `output_padding`).
pub fn conv_transpose2d(
    x: &[f32],
    s: Shape,
    w: &[f32],
    bias: Option<&[f32]>,
    cfg: ConvConfig,
    out_hw: (usize, usize),
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
    let (ho, wo) = out_hw;
    let os = Shape::new(s.n, ho, wo, cout);
    let mut acc = vec![0.0f64; os.numel()];
    for b in 0..s.n {
        for iy in 0..s.h {
            for ix in 0..s.w {
                for ky in 0..kh {
                    let oy = (iy * stride + ky * dil) as isize - pad as isize;
                    if oy < 0 || oy >= ho as isize {
                        continue;
                    }
                    for kx in 0..kw {
                        let ox = (ix * stride + kx * dil) as isize - pad as isize;
                        if ox < 0 || ox >= wo as isize {
                            continue;
                        }
                        let o = ((b * ho + oy as usize) * wo + ox as usize) * cout;
                        for ci in 0..s.c {
                            let xv = x[((b * s.h + iy) * s.w + ix) * s.c + ci] as f64;
                            for co in 0..cout {
                                acc[o + co] +=
                                    xv * w[((ci * cout + co) * kh + ky) * kw + kx] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    let y = acc
        .iter()
        .enumerate()
        .map(|(i, v)| (v + bias.map_or(0.0, |b| b[i % cout] as f64)) as f32)
        .collect();
    (os, y)
}
