//! Eval-mode batch normalisation (`shaders/batch_norm.wgsl`) in the three
//! conventions of the checkpoints. Models fold these into the convolution
//! epilogue (`scale = gamma / sd` etc., see [`BatchNorm::scale_shift`]);
//! the standalone kernels are the literal formulas and check that folding.

use bytemuck::{Pod, Zeroable};
use prior_gpu::{Access, Gpu, GpuError, Kernel, Result, Shape, Tensor};

use crate::shaders::BATCH_NORM;

const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite];
/// `bn_bf_sd`: `y = x / sd[c] · gamma[c]` (optionally ReLU).
pub const BN_BF_SD: Kernel = Kernel {
    file: "batch_norm.wgsl",
    source: BATCH_NORM,
    entry: "bn_bf_sd",
    bindings: BINDINGS,
};
/// `bn_bf_var`: `y = x / (sqrt(var[c]) + 1e-5) · weight[c]` (optionally ReLU).
pub const BN_BF_VAR: Kernel = Kernel {
    file: "batch_norm.wgsl",
    source: BATCH_NORM,
    entry: "bn_bf_var",
    bindings: BINDINGS,
};
/// `bn_standard`: `y = (x − mean[c]) / sqrt(var[c] + 1e-5) · weight[c] + bias[c]`
/// (optionally ReLU).
pub const BN_STANDARD: Kernel = Kernel {
    file: "batch_norm.wgsl",
    source: BATCH_NORM,
    entry: "bn_standard",
    bindings: BINDINGS,
};

/// The statistics of one normalisation layer, per channel.
#[derive(Clone, Debug)]
pub enum BatchNorm {
    /// `x / sd · gamma` (BF-CNN: `running_sd`, `gammas`).
    BfSd {
        /// Standard deviation per channel (`running_sd`).
        sd: Vec<f32>,
        /// Scale per channel (`gammas`).
        gamma: Vec<f32>,
    },
    /// `x / (sqrt(var) + 1e-5) · weight` (bias-free DnCNN).
    BfVar {
        /// Variance per channel (`running_var`).
        var: Vec<f32>,
        /// Scale per channel (`weight`).
        weight: Vec<f32>,
    },
    /// `(x − mean) / sqrt(var + 1e-5) · weight + bias` (PyTorch BatchNorm2d, eval).
    Standard {
        /// Mean per channel (`running_mean`).
        mean: Vec<f32>,
        /// Variance per channel (`running_var`).
        var: Vec<f32>,
        /// Scale per channel (`weight`).
        weight: Vec<f32>,
        /// Shift per channel (`bias`).
        bias: Vec<f32>,
    },
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    len: u32,
    channels: u32,
    relu: u32,
    _pad: u32,
}
prior_gpu::uniform!(Params {
    len,
    channels,
    relu,
    _pad
});

impl BatchNorm {
    /// Number of channels the statistics are for.
    pub fn channels(&self) -> usize {
        match self {
            BatchNorm::BfSd { sd, .. } => sd.len(),
            BatchNorm::BfVar { var, .. } => var.len(),
            BatchNorm::Standard { mean, .. } => mean.len(),
        }
    }

    /// The equivalent per-channel affine map `x·scale + shift`, computed in
    /// f32 the way the layer divides (`gamma / sd`, ...). Folded into a
    /// convolution it differs from the literal formula by ≤ 1 ulp per value.
    pub fn scale_shift(&self) -> (Vec<f32>, Option<Vec<f32>>) {
        match self {
            BatchNorm::BfSd { sd, gamma } => {
                (sd.iter().zip(gamma).map(|(s, g)| g / s).collect(), None)
            }
            BatchNorm::BfVar { var, weight } => (
                var.iter()
                    .zip(weight)
                    .map(|(v, w)| w / (v.sqrt() + 1e-5))
                    .collect(),
                None,
            ),
            BatchNorm::Standard {
                mean,
                var,
                weight,
                bias,
            } => {
                let scale: Vec<f32> = var
                    .iter()
                    .zip(weight)
                    .map(|(v, w)| w / (v + 1e-5).sqrt())
                    .collect();
                let shift = mean
                    .iter()
                    .zip(&scale)
                    .zip(bias)
                    .map(|((m, s), b)| b - m * s)
                    .collect();
                (scale, Some(shift))
            }
        }
    }

    fn packed(&self) -> (Kernel, Vec<f32>) {
        match self {
            BatchNorm::BfSd { sd, gamma } => (BN_BF_SD, [sd.as_slice(), gamma].concat()),
            BatchNorm::BfVar { var, weight } => (BN_BF_VAR, [var.as_slice(), weight].concat()),
            BatchNorm::Standard {
                mean,
                var,
                weight,
                bias,
            } => (BN_STANDARD, [mean.as_slice(), var, weight, bias].concat()),
        }
    }

    /// Records the literal normalisation of `x` (`[.., C]`), optionally followed by ReLU.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, relu: bool) -> Result<Tensor> {
        let c = self.channels();
        if x.shape().c != c {
            return Err(GpuError::Shape {
                op: "batch_norm",
                detail: format!("input {} vs {} channels", x.shape(), c),
            });
        }
        let (kernel, stats) = self.packed();
        let s = gpu.upload(Shape::vector(stats.len()), &stats);
        let y = gpu.empty(x.shape());
        let p = Params {
            len: x.numel() as u32,
            channels: c as u32,
            relu: relu as u32,
            _pad: 0,
        };
        gpu.launch(
            &kernel,
            &[],
            &p,
            &[x, &s, &y],
            crate::groups_flat(x.numel()),
        );
        Ok(y)
    }
}
