//! Kernels of the linear measurement operators (`shaders/measure.wgsl`):
//! masks, s×s block averaging and its transpose, dense mat-vec products
//! (random orthonormal bases), and one axis of an orthonormal DFT (spectral
//! super-resolution). The operators themselves (M, Mᵀ and their checks) are
//! in `prior_algos::measure`.

use bytemuck::{Pod, Zeroable};
use prior_gpu::{Access, Gpu, GpuError, Kernel, Result, Shape, Tensor};

use crate::shaders::MEASURE;

// The file's bindings: 1 a, 2 b, 3 m (read), 4 y (read_write). Each
// entry point declares the ones it uses.
const R: Access = Access::Read;
const W: Access = Access::ReadWrite;
const U: Access = Access::Unused;
const fn kernel(entry: &'static str, bindings: &'static [Access]) -> Kernel {
    Kernel {
        file: "measure.wgsl",
        source: MEASURE,
        entry,
        bindings,
    }
}
/// Multiplies by a per-pixel mask.
pub const MASK_MUL: Kernel = kernel("mask_mul", &[R, R, U, W]);
/// s×s block averaging.
pub const BLOCK_DOWN: Kernel = kernel("block_down", &[R, U, U, W]);
/// The transpose of [`BLOCK_DOWN`].
pub const BLOCK_UP: Kernel = kernel("block_up", &[R, U, U, W]);
/// A dense mat-vec product per sample.
pub const MATVEC: Kernel = kernel("matvec", &[R, R, U, W]);
/// The transposed mat-vec product per sample.
pub const MATVEC_T: Kernel = kernel("matvec_t", &[R, R, U, W]);
/// One DFT pass along an axis.
pub const DFT: Kernel = kernel("dft", &[R, R, R, W]);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    len: u32,
    n: u32,
    h: u32,
    w: u32,
    c: u32,
    s: u32,
    rows: u32,
    cols: u32,
    m_len: u32,
    axis: u32,
    in_complex: u32,
    out_real: u32,
    use_mask: u32,
    _p0: u32,
    sign: f32,
    scale: f32,
}
prior_gpu::uniform!(Params {
    len,
    n,
    h,
    w,
    c,
    s,
    rows,
    cols,
    m_len,
    axis,
    in_complex,
    out_real,
    use_mask,
    _p0,
    sign,
    scale
});

fn err(op: &'static str, detail: String) -> GpuError {
    GpuError::Shape { op, detail }
}

/// Launches `k` on its inputs `ins` (the bindings before `y` it uses) and
/// output `y`.
fn launch(gpu: &Gpu, k: &Kernel, p: Params, ins: &[&Tensor], y: &Tensor, invocations: usize) {
    let mut bufs = ins.to_vec();
    bufs.push(y);
    gpu.launch(k, &[], &p, &bufs, crate::groups_flat(invocations));
}

/// `x ⊙ m`, `m` broadcast over the batch (its size must divide x's).
pub fn mask_mul(gpu: &Gpu, x: &Tensor, m: &Tensor) -> Result<Tensor> {
    if m.numel() == 0 || !x.numel().is_multiple_of(m.numel()) || m.shape().c != x.shape().c {
        return Err(err(
            "mask_mul",
            format!("mask {m:?} does not broadcast to {x:?}"),
        ));
    }
    let y = gpu.empty(x.shape());
    let p = Params {
        len: x.numel() as u32,
        m_len: m.numel() as u32,
        ..Default::default()
    };
    launch(gpu, &MASK_MUL, p, &[x, m], &y, x.numel());
    Ok(y)
}

/// Mᵀ of s×s block super-resolution: each block's sum divided by `s`
/// (= s · block mean). H and W must be multiples of `s`.
pub fn block_down(gpu: &Gpu, x: &Tensor, s: usize) -> Result<Tensor> {
    let sh = x.shape();
    if s == 0 || !sh.h.is_multiple_of(s) || !sh.w.is_multiple_of(s) {
        return Err(err(
            "block_down",
            format!("{}x{} is not a multiple of the factor {s}", sh.h, sh.w),
        ));
    }
    let out = Shape::new(sh.n, sh.h / s, sh.w / s, sh.c);
    let y = gpu.empty(out);
    let p = Params {
        len: out.numel() as u32,
        h: out.h as u32,
        w: out.w as u32,
        c: sh.c as u32,
        s: s as u32,
        ..Default::default()
    };
    launch(gpu, &BLOCK_DOWN, p, &[x], &y, out.numel());
    Ok(y)
}

/// M of s×s block super-resolution: each value divided by `s`, replicated
/// over its block.
pub fn block_up(gpu: &Gpu, x: &Tensor, s: usize) -> Result<Tensor> {
    let sh = x.shape();
    if s == 0 {
        return Err(err("block_up", "factor 0".into()));
    }
    let out = Shape::new(sh.n, sh.h * s, sh.w * s, sh.c);
    gpu.check_fits("block_up output", out)?;
    let y = gpu.empty(out);
    let p = Params {
        len: out.numel() as u32,
        h: out.h as u32,
        w: out.w as u32,
        c: sh.c as u32,
        s: s as u32,
        ..Default::default()
    };
    launch(gpu, &BLOCK_UP, p, &[x], &y, out.numel());
    Ok(y)
}

/// `y[s] = A · x[s]` for each of the `x.numel() / cols` samples; `A` holds
/// `rows × cols` values row-major. Returns `[n, 1, 1, rows]`.
pub fn matvec(gpu: &Gpu, a: &Tensor, rows: usize, cols: usize, x: &Tensor) -> Result<Tensor> {
    if a.numel() != rows * cols || cols == 0 || !x.numel().is_multiple_of(cols) {
        return Err(err("matvec", format!("A {a:?} as {rows}x{cols}, x {x:?}")));
    }
    let n = x.numel() / cols;
    let y = gpu.empty(Shape::new(n, 1, 1, rows));
    let inv = n.div_ceil(4) * rows;
    let p = Params {
        len: inv as u32,
        n: n as u32,
        rows: rows as u32,
        cols: cols as u32,
        ..Default::default()
    };
    launch(gpu, &MATVEC, p, &[a, x], &y, inv);
    Ok(y)
}

/// `y[s] = Aᵀ · x[s]` for each of the `x.numel() / rows` samples. Returns `[n, 1, 1, cols]`.
pub fn matvec_t(gpu: &Gpu, a: &Tensor, rows: usize, cols: usize, x: &Tensor) -> Result<Tensor> {
    if a.numel() != rows * cols || rows == 0 || !x.numel().is_multiple_of(rows) {
        return Err(err(
            "matvec_t",
            format!("A {a:?} as {rows}x{cols}, x {x:?}"),
        ));
    }
    let n = x.numel() / rows;
    let y = gpu.empty(Shape::new(n, 1, 1, cols));
    let inv = n.div_ceil(4) * cols;
    let p = Params {
        len: inv as u32,
        n: n as u32,
        rows: rows as u32,
        cols: cols as u32,
        ..Default::default()
    };
    launch(gpu, &MATVEC_T, p, &[a, x], &y, inv);
    Ok(y)
}

/// Which axis a [`dft`] pass transforms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Along the rows' index (height).
    H,
    /// Along the columns' index (width).
    W,
}

/// What one DFT pass ([`dft`]) does: the axis, the direction, and whether
/// its input is complex and its output real.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DftPass {
    /// The axis transformed.
    pub axis: Axis,
    /// The input is complex `[.., 2C]` (interleaved re, im), else real `[.., C]`.
    pub complex_in: bool,
    /// The inverse transform (e^{+2πi kj/L}), else the forward one.
    pub inverse: bool,
    /// Keep only the real part of the result (`[.., C]`).
    pub real_out: bool,
}

/// One pass of an orthonormal DFT along `pass.axis` (scale 1/√L,
/// `pass.inverse`: e^{+2πi kj/L}). `x` is real `[n, h, w, C]`
/// (`complex_in = false`) or complex `[n, h, w, 2C]` (interleaved re, im);
/// the result is complex `[n, h, w, 2C]`, or its real part `[n, h, w, C]`
/// when `real_out`. `twiddles` = [`twiddles`]`(L)` uploaded; `mask`
/// (`[1, h, w, 1]`) multiplies the output when given.
pub fn dft(
    gpu: &Gpu,
    x: &Tensor,
    pass: DftPass,
    twiddles: &Tensor,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let DftPass {
        axis,
        complex_in,
        inverse,
        real_out,
    } = pass;
    let sh = x.shape();
    let c = if complex_in {
        if !sh.c.is_multiple_of(2) {
            return Err(err(
                "dft",
                format!("complex input {x:?} has an odd channel count"),
            ));
        }
        sh.c / 2
    } else {
        sh.c
    };
    let len = match axis {
        Axis::H => sh.h,
        Axis::W => sh.w,
    };
    if twiddles.numel() != 2 * len {
        return Err(err(
            "dft",
            format!("twiddles {twiddles:?} for a length-{len} axis"),
        ));
    }
    if let Some(m) = mask {
        if m.numel() != sh.h * sh.w {
            return Err(err("dft", format!("mask {m:?} for {}x{}", sh.h, sh.w)));
        }
    }
    let out = Shape::new(sh.n, sh.h, sh.w, if real_out { c } else { 2 * c });
    let y = gpu.empty(out);
    let logical = sh.n * sh.h * sh.w * c;
    let p = Params {
        len: logical as u32,
        n: sh.n as u32,
        h: sh.h as u32,
        w: sh.w as u32,
        c: c as u32,
        axis: (axis == Axis::W) as u32,
        in_complex: complex_in as u32,
        out_real: real_out as u32,
        use_mask: mask.is_some() as u32,
        sign: if inverse { 1.0 } else { -1.0 },
        scale: (1.0 / (len as f64).sqrt()) as f32,
        ..Default::default()
    };
    let m = mask.unwrap_or(twiddles);
    launch(gpu, &DFT, p, &[x, twiddles, m], &y, logical);
    Ok(y)
}

/// `(cos, sin)(2π t / len)` for `t < len`, interleaved, computed in f64.
pub fn twiddles(len: usize) -> Vec<f32> {
    (0..len)
        .flat_map(|t| {
            let a = 2.0 * std::f64::consts::PI * t as f64 / len as f64;
            [a.cos() as f32, a.sin() as f32]
        })
        .collect()
}
