//! Storage precision of a convolution chain (`--precision f32|f16`): f16
//! weights and activations, f32 accumulation (`shaders/conv2d_f16.wgsl`,
//! launched by [`crate::conv2d::Conv2d::forward_f16`]). An f16 tensor is a
//! [`HalfTensor`]: its values two to a 32-bit word, in an ordinary
//! [`Tensor`] buffer of `⌈numel / 2⌉` words. The f32 ↔ f16 conversions of
//! the host side ([`f16_bits`], [`f16_value`]) round to nearest, ties to
//! even, as `pack2x16float` does on the adapters we know (WGSL leaves the
//! rounding mode of the pack to the implementation).

use prior_gpu::{Gpu, Result, Shape, Tensor};

/// How a layer stores its weights and activations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 everywhere (the default).
    #[default]
    F32,
    /// f16 storage, f32 accumulation (adapters with `shader-f16`).
    F16,
}

impl Precision {
    /// `f32` or `f16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }

    /// The precision that runs on `gpu` when `wanted` is asked for, with
    /// the warning to print when it differs: f16 needs the adapter's
    /// `shader-f16` feature, else f32 runs (never f16 silently, never an f16
    /// kernel on an adapter that does not claim it).
    pub fn on(gpu: &Gpu, wanted: Precision) -> (Precision, Option<String>) {
        if wanted == Precision::F16 && !gpu.adapter.f16 {
            let msg = format!(
                "warning: --precision f16: adapter '{}' lacks the shader-f16 feature; running f32",
                gpu.adapter.name
            );
            return (Precision::F32, Some(msg));
        }
        (wanted, None)
    }
}

/// An f16 tensor on the GPU (channels-last): element `i` of `shape` in half
/// `i % 2` of word `i / 2` (low half first, as `pack2x16float` writes).
#[derive(Clone, Debug)]
pub struct HalfTensor {
    shape: Shape,
    words: Tensor,
}

impl HalfTensor {
    /// An f16 tensor of `shape` with unspecified contents.
    pub fn empty(gpu: &Gpu, shape: Shape) -> HalfTensor {
        HalfTensor {
            shape,
            words: gpu.empty(Shape::vector(shape.numel().div_ceil(2).max(1))),
        }
    }

    /// Uploads f32 `values`, rounded to f16.
    pub fn upload(gpu: &Gpu, shape: Shape, values: &[f32]) -> HalfTensor {
        assert_eq!(values.len(), shape.numel(), "HalfTensor::upload size");
        let words = pack_halves(values);
        HalfTensor {
            shape,
            words: gpu.upload(Shape::vector(words.len()), &words),
        }
    }

    /// The logical shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The buffer of packed words.
    pub fn words(&self) -> &Tensor {
        &self.words
    }

    /// The packed words viewed as an f32 tensor `[n, h, w, c/2]` (one word
    /// per channel pair; `None` for an odd channel count, where pairs
    /// straddle pixels).
    pub fn pair_view(&self) -> Option<Tensor> {
        let s = self.shape;
        s.c.is_multiple_of(2)
            .then(|| self.words.reshape(s.with_c(s.c / 2)))
    }

    /// Concatenates f16 tensors along channels (each with an even channel
    /// count, so that a part's pixel is whole words): the f32 channel copy
    /// on the word views ([`HalfTensor::pair_view`]).
    pub fn concat_channels(gpu: &Gpu, parts: &[&HalfTensor]) -> Result<HalfTensor> {
        let mut views = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            views.push(p.pair_view().ok_or_else(|| prior_gpu::GpuError::Shape {
                op: "concat_channels f16",
                detail: format!(
                    "part {i} is {}: f16 parts need even channel counts",
                    p.shape
                ),
            })?);
        }
        let refs: Vec<&Tensor> = views.iter().collect();
        Ok(HalfTensor::from_pairs(&crate::channels::concat_channels(
            gpu, &refs,
        )?))
    }

    /// The f16 tensor whose [`HalfTensor::pair_view`] is `view`.
    pub fn from_pairs(view: &Tensor) -> HalfTensor {
        let s = view.shape();
        HalfTensor {
            shape: s.with_c(2 * s.c),
            words: view.reshape(Shape::vector(s.numel().max(1))),
        }
    }

    /// Reads the values back as f32.
    pub async fn read(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let words = gpu.read(&self.words).await?;
        Ok(unpack_halves(&words, self.shape.numel()))
    }
}

/// A convolution's input or output: f32 or f16 storage.
#[derive(Clone, Debug)]
pub enum Activation {
    /// f32 values.
    F32(Tensor),
    /// f16 values.
    F16(HalfTensor),
}

impl Activation {
    /// The logical shape.
    pub fn shape(&self) -> Shape {
        match self {
            Activation::F32(t) => t.shape(),
            Activation::F16(h) => h.shape(),
        }
    }

    /// The buffer a kernel binds: the f32 values or the packed f16 words.
    pub fn words(&self) -> &Tensor {
        match self {
            Activation::F32(t) => t,
            Activation::F16(h) => h.words(),
        }
    }
}

/// The f16 bit pattern nearest to `x` (ties to even; overflow to ±inf).
pub fn f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 112; // the f16 biased exponent
    if e >= 31 {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // A subnormal (or zero): units of 2^-24.
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let (k, rem, half) = (m >> shift, m & ((1 << shift) - 1), 1 << (shift - 1));
        let k = if rem > half || (rem == half && k & 1 == 1) {
            k + 1
        } else {
            k
        };
        return sign | k as u16;
    }
    let k = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    // A carry out of the mantissa bumps the exponent (up to inf): still right.
    let k = if rem > 0x1000 || (rem == 0x1000 && k & 1 == 1) {
        k + 1
    } else {
        k
    };
    sign | k as u16
}

/// The value of the f16 bit pattern `h`.
pub fn f16_value(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let (e, m) = (((h >> 10) & 0x1f) as u32, (h & 0x3ff) as u32);
    match e {
        0 => {
            let v = m as f32 * 2f32.powi(-24);
            if sign != 0 {
                -v
            } else {
                v
            }
        }
        31 => f32::from_bits(sign | 0x7f80_0000 | (m << 13)),
        _ => f32::from_bits(sign | ((e + 112) << 23) | (m << 13)),
    }
}

/// `x` rounded to the nearest f16 (as an f32).
pub fn round_f16(x: f32) -> f32 {
    f16_value(f16_bits(x))
}

/// Values packed two f16 to a word (as f32 bit patterns, the element type
/// of a [`Tensor`] upload).
pub fn pack_halves(values: &[f32]) -> Vec<f32> {
    values
        .chunks(2)
        .map(|p| {
            let lo = f16_bits(p[0]) as u32;
            let hi = p.get(1).map_or(0, |&v| f16_bits(v) as u32);
            f32::from_bits(lo | (hi << 16))
        })
        .collect()
}

/// The first `n` values of words packed by [`pack_halves`].
pub fn unpack_halves(words: &[f32], n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let w = words[i / 2].to_bits();
            f16_value(if i % 2 == 0 {
                w as u16
            } else {
                (w >> 16) as u16
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversions_round_to_nearest_even() {
        assert_eq!(f16_bits(1.0), 0x3c00);
        assert_eq!(f16_bits(-2.0), 0xc000);
        assert_eq!(f16_bits(65504.0), 0x7bff);
        assert_eq!(f16_bits(65520.0), 0x7c00); // rounds up to inf
        assert_eq!(f16_bits(2f32.powi(-24)), 0x0001);
        assert_eq!(f16_bits(2f32.powi(-26)), 0x0000); // below half the smallest subnormal
        assert_eq!(f16_bits(1.0 + 2f32.powi(-11)), 0x3c00); // tie to even (down)
        assert_eq!(f16_bits(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02); // tie to even (up)
        assert_eq!(f16_value(0x3555), 0.333_251_95);
        for i in 0..=0x7bffu16 {
            assert_eq!(f16_bits(f16_value(i)), i, "round trip of {i:#x}");
        }
        let v = [0.1f32, -3.7, 1e-6, 123.456, 0.0];
        let back = unpack_halves(&pack_halves(&v), v.len());
        for (a, b) in v.iter().zip(&back) {
            // f16 has 11 significant bits: relative error ≤ 2^-11 (normals);
            // 1e-6 is subnormal, absolute error ≤ 2^-25.
            assert!(
                (a - b).abs() <= a.abs() * 2f32.powi(-11) + 2f32.powi(-25),
                "{a} {b}"
            );
        }
    }
}
