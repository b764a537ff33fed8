//! Sinusoidal embedding of a per-sample scalar (`shaders/embedding.wgsl`):
//! the noise variance t of the dual-score-matching energy model.
//!
//! `[cos(t·f_k), sin(t·f_k)]` for K frequencies f (2K values per sample), and
//! its derivative with respect to t, `[−f_k·sin(t·f_k), f_k·cos(t·f_k)]` (the
//! JVP for a unit tangent in t; scale it for other tangents).

use bytemuck::{Pod, Zeroable};
use prior_gpu::{Access, Gpu, GpuError, Kernel, Result, Shape, Tensor};

use crate::shaders::EMBEDDING;

const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite];
/// `sinusoid`: e[b, k] = cos(t_b·f_k), e[b, K + k] = sin(t_b·f_k) (and their t-derivatives).
pub const SINUSOID: Kernel = Kernel {
    file: "embedding.wgsl",
    source: EMBEDDING,
    entry: "sinusoid",
    bindings: BINDINGS,
};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    k: u32,
    derivative: u32,
    _p: u32,
}
prior_gpu::uniform!(Params {
    n,
    k,
    derivative,
    _p
});

/// The frequencies of the released energy models, `exp(−linspace(ln 1, ln 100, k))`
/// rounded to f32 as PyTorch computes them in float32 (`torch.linspace` takes
/// `start + i·step` for the first half and `end − (k−1−i)·step` for the second,
/// in f32; then `exp` in f32).
pub fn dsm_frequencies(k: usize) -> Vec<f32> {
    let start = 0.0f32;
    let end = 100f64.ln() as f32;
    if k == 1 {
        return vec![(-start).exp()];
    }
    let step = (end - start) / (k - 1) as f32;
    let half = k / 2;
    (0..k)
        .map(|i| {
            let v = if i < half {
                start + step * i as f32
            } else {
                end - step * (k - 1 - i) as f32
            };
            (-v).exp()
        })
        .collect()
}

/// A sinusoidal embedding with fixed frequencies on the GPU.
pub struct Sinusoid {
    /// The K frequencies f_k (the embedding has 2K features).
    pub freqs: Vec<f32>,
    freq: Tensor,
}

impl Sinusoid {
    /// Uploads the frequencies `freqs`.
    pub fn new(gpu: &Gpu, freqs: &[f32]) -> Sinusoid {
        Sinusoid {
            freqs: freqs.to_vec(),
            freq: gpu.upload(Shape::vector(freqs.len()), freqs),
        }
    }

    fn run(&self, gpu: &Gpu, t: &Tensor, derivative: bool) -> Result<Tensor> {
        let s = t.shape();
        if s.h * s.w * s.c != 1 {
            return Err(GpuError::Shape {
                op: "sinusoid",
                detail: format!("t must hold one value per sample, got {s}"),
            });
        }
        let k = self.freqs.len();
        let y = gpu.empty(Shape::new(s.n, 1, 1, 2 * k));
        let p = Params {
            n: s.n as u32,
            k: k as u32,
            derivative: u32::from(derivative),
            _p: 0,
        };
        gpu.launch(
            &SINUSOID,
            &[],
            &p,
            &[t, &self.freq, &y],
            crate::groups_flat(s.n * k),
        );
        Ok(y)
    }

    /// `[cos(t·f), sin(t·f)]` for `t` of shape `[n, 1, 1, 1]`; returns `[n, 1, 1, 2K]`.
    pub fn forward(&self, gpu: &Gpu, t: &Tensor) -> Result<Tensor> {
        self.run(gpu, t, false)
    }

    /// `d/dt [cos(t·f), sin(t·f)] = [−f·sin(t·f), f·cos(t·f)]`.
    pub fn derivative(&self, gpu: &Gpu, t: &Tensor) -> Result<Tensor> {
        self.run(gpu, t, true)
    }
}
