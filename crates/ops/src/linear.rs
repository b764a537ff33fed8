//! Fully connected layers (`shaders/linear.wgsl`) on batches of vectors stored
//! as `[n, 1, 1, features]` tensors: forward with optional bias, the JVP
//! (the same map without the bias) and the VJP (the transposed map).

use bytemuck::{Pod, Zeroable};
use prior_gpu::{Access, Gpu, GpuError, Kernel, Result, Shape, Tensor};

use crate::shaders::LINEAR as SRC;

const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::Read, Access::ReadWrite];
/// `linear`: `y[b, o] = Σ_i W[o, i]·x[b, i]` (+ `bias[o]`).
pub const LINEAR: Kernel = Kernel {
    file: "linear.wgsl",
    source: SRC,
    entry: "linear",
    bindings: BINDINGS,
};
/// `linear_t`: `y[b, i] = Σ_o W[o, i]·x[b, o]` (the VJP Wᵀ·x, no bias).
pub const LINEAR_T: Kernel = Kernel {
    file: "linear.wgsl",
    source: SRC,
    entry: "linear_t",
    // No bias (binding 3).
    bindings: &[
        Access::Read,
        Access::Read,
        Access::Unused,
        Access::ReadWrite,
    ],
};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    rows: u32,
    cols: u32,
    flags: u32,
}
prior_gpu::uniform!(Params {
    n,
    rows,
    cols,
    flags
});

/// A PyTorch `nn.Linear(in_features, out_features)` on the GPU.
pub struct Linear {
    /// Length of each input vector.
    pub in_features: usize,
    /// Length of each output vector.
    pub out_features: usize,
    /// `(out, in)` row-major, as PyTorch stores it.
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// From PyTorch-layout weights `(out, in)` and an optional bias `(out)`.
    pub fn new(
        gpu: &Gpu,
        weight: &[f32],
        bias: Option<&[f32]>,
        out_features: usize,
        in_features: usize,
    ) -> Result<Linear> {
        if weight.len() != out_features * in_features
            || bias.is_some_and(|b| b.len() != out_features)
        {
            return Err(GpuError::Shape {
                op: "linear",
                detail: format!(
                    "{} weights and {:?} biases for a {in_features} → {out_features} layer",
                    weight.len(),
                    bias.map(|b| b.len())
                ),
            });
        }
        Ok(Linear {
            in_features,
            out_features,
            weight: gpu.upload(Shape::vector(weight.len()), weight),
            bias: bias.map(|b| gpu.upload(Shape::vector(b.len()), b)),
        })
    }

    fn check(&self, x: &Tensor, features: usize, op: &'static str) -> Result<usize> {
        let s = x.shape();
        if s.h * s.w * s.c != features {
            return Err(GpuError::Shape {
                op,
                detail: format!("input {s} does not hold {features} features per sample"),
            });
        }
        Ok(s.n)
    }

    fn run(&self, gpu: &Gpu, x: &Tensor, bias: bool) -> Result<Tensor> {
        let n = self.check(x, self.in_features, "linear")?;
        let y = gpu.empty(Shape::new(n, 1, 1, self.out_features));
        let flags = u32::from(bias && self.bias.is_some());
        let p = Params {
            n: n as u32,
            rows: self.out_features as u32,
            cols: self.in_features as u32,
            flags,
        };
        let b = self.bias.as_ref().unwrap_or(&self.weight);
        gpu.launch(
            &LINEAR,
            &[],
            &p,
            &[x, &self.weight, b, &y],
            crate::groups_flat(n * self.out_features),
        );
        Ok(y)
    }

    /// `W·x + b` for `x` of shape `[n, 1, 1, in]` (any `h·w·c = in`); returns `[n, 1, 1, out]`.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        self.run(gpu, x, true)
    }

    /// The JVP for tangent `x`: `W·x` (no bias).
    pub fn jvp(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        self.run(gpu, x, false)
    }

    /// The VJP for cotangent `u` (`[n, 1, 1, out]`): `Wᵀ·u`, shape `[n, 1, 1, in]`.
    pub fn vjp(&self, gpu: &Gpu, u: &Tensor) -> Result<Tensor> {
        let n = self.check(u, self.out_features, "linear_vjp")?;
        let y = gpu.empty(Shape::new(n, 1, 1, self.in_features));
        let p = Params {
            n: n as u32,
            rows: self.out_features as u32,
            cols: self.in_features as u32,
            flags: 0,
        };
        gpu.launch(
            &LINEAR_T,
            &[],
            &p,
            &[u, &self.weight, &y],
            crate::groups_flat(n * self.in_features),
        );
        Ok(y)
    }
}

/// `sample_axpy`: `y[k] = x[k] + a[s]·v[k]` with a per-sample scalar `a[s]`
/// (e.g. x̂ = y − t_s·∇U).
pub const SAMPLE_AXPY: Kernel = Kernel {
    file: "linear.wgsl",
    source: SRC,
    entry: "sample_axpy",
    bindings: BINDINGS,
};

/// `x + a_b·v` with one scalar `a_b` per sample (`a` is `[n, 1, 1, 1]`,
/// `x` and `v` `[n, h, w, c]`): a diagonal linear map per sample.
pub fn sample_axpy(gpu: &Gpu, x: &Tensor, a: &Tensor, v: &Tensor) -> Result<Tensor> {
    let s = x.shape();
    if v.shape() != s || a.numel() != s.n || s.n == 0 {
        return Err(GpuError::Shape {
            op: "sample_axpy",
            detail: format!("x {s}, a {:?}, v {:?}", a.shape(), v.shape()),
        });
    }
    let y = gpu.empty(s);
    let p = Params {
        n: s.numel() as u32,
        rows: 0,
        cols: (s.numel() / s.n) as u32,
        flags: 0,
    };
    gpu.launch(
        &SAMPLE_AXPY,
        &[],
        &p,
        &[x, a, v, &y],
        crate::groups_flat(s.numel()),
    );
    Ok(y)
}
