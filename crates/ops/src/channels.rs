//! Channel slicing and concatenation of channels-last tensors
//! (`shaders/channels.wgsl`), e.g. the low-pass `[0, C)` and details
//! `[C, 4C)` of Haar coefficients, or `concat(low, details)` as the input
//! of a conditional network. Slice and concat are adjoint, so each one's
//! VJP is the other; both are linear (JVP = the op on the tangents).

use bytemuck::{Pod, Zeroable};
use prior_gpu::{Access, Gpu, GpuError, Kernel, Result, Tensor};

use crate::shaders::CHANNELS;

/// `copy_channels`: dst[px, dst_start + j] = src[px, src_start + j] for j < len (slices and
/// concatenations).
pub const COPY_CHANNELS: Kernel = Kernel {
    file: "channels.wgsl",
    source: CHANNELS,
    entry: "copy_channels",
    bindings: &[Access::Read, Access::ReadWrite],
};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    count: u32,
    len: u32,
    src_c: u32,
    src_start: u32,
    dst_c: u32,
    dst_start: u32,
    _p: [u32; 2],
}
prior_gpu::uniform!(Params {
    count,
    len,
    src_c,
    src_start,
    dst_c,
    dst_start,
    _p
});

/// `dst[.., dst_start + j] = src[.., src_start + j]` for `j < len` (same n, h, w; checked by callers).
fn copy(gpu: &Gpu, src: &Tensor, src_start: usize, dst: &Tensor, dst_start: usize, len: usize) {
    let px = src.shape().n * src.shape().pixels();
    let count = px * len;
    if count == 0 {
        return;
    }
    let p = Params {
        count: count as u32,
        len: len as u32,
        src_c: src.shape().c as u32,
        src_start: src_start as u32,
        dst_c: dst.shape().c as u32,
        dst_start: dst_start as u32,
        _p: [0; 2],
    };
    gpu.launch(
        &COPY_CHANNELS,
        &[],
        &p,
        &[src, dst],
        crate::groups_flat(count),
    );
}

/// Channels `[start, start + len)` of `x` as a new `[n, h, w, len]` tensor.
pub fn slice_channels(gpu: &Gpu, x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    let s = x.shape();
    if len == 0 || start + len > s.c {
        return Err(GpuError::Shape {
            op: "slice_channels",
            detail: format!(
                "channels {start}..{} of a tensor with {} channels ({s})",
                start + len,
                s.c
            ),
        });
    }
    let y = gpu.empty(s.with_c(len));
    copy(gpu, x, start, &y, 0, len);
    Ok(y)
}

/// The parts side by side along the channel axis (all with the same n, h, w).
pub fn concat_channels(gpu: &Gpu, parts: &[&Tensor]) -> Result<Tensor> {
    let Some(first) = parts.first() else {
        return Err(GpuError::Shape {
            op: "concat_channels",
            detail: "nothing to concatenate".into(),
        });
    };
    let s0 = first.shape();
    for (i, p) in parts.iter().enumerate() {
        let s = p.shape();
        if (s.n, s.h, s.w) != (s0.n, s0.h, s0.w) {
            return Err(GpuError::Shape {
                op: "concat_channels",
                detail: format!("part {i} is {s} but part 0 is {s0}: n, h and w must agree"),
            });
        }
    }
    let total: usize = parts.iter().map(|p| p.shape().c).sum();
    let out = s0.with_c(total);
    gpu.check_fits("concat_channels", out)?;
    let y = gpu.empty(out);
    let mut at = 0;
    for p in parts {
        copy(gpu, p, 0, &y, at, p.shape().c);
        at += p.shape().c;
    }
    Ok(y)
}

/// VJP of [`slice_channels`]: a `[n, h, w, channels]` tensor holding `u` at
/// channels `[start, start + u.c)` and zeros elsewhere.
pub fn slice_channels_vjp(gpu: &Gpu, u: &Tensor, channels: usize, start: usize) -> Result<Tensor> {
    let s = u.shape();
    if start + s.c > channels {
        return Err(GpuError::Shape {
            op: "slice_channels_vjp",
            detail: format!(
                "a cotangent with {} channels at {start} does not fit in {channels} channels",
                s.c
            ),
        });
    }
    let y = gpu.zeros(s.with_c(channels));
    copy(gpu, u, 0, &y, start, s.c);
    Ok(y)
}

/// VJP of [`concat_channels`]: `u` cut back into parts of the given channel counts.
pub fn concat_channels_vjp(gpu: &Gpu, u: &Tensor, channels: &[usize]) -> Result<Vec<Tensor>> {
    let total: usize = channels.iter().sum();
    if total != u.shape().c {
        return Err(GpuError::Shape {
            op: "concat_channels_vjp",
            detail: format!(
                "parts of {channels:?} channels ({total} in all) but the cotangent has {}",
                u.shape().c
            ),
        });
    }
    let mut at = 0;
    let mut out = Vec::with_capacity(channels.len());
    for &c in channels {
        out.push(slice_channels(gpu, u, at, c)?);
        at += c;
    }
    Ok(out)
}

/// `x` with channels `[start, start + part.c)` replaced by `part` (a new tensor).
pub fn replace_channels(gpu: &Gpu, x: &Tensor, start: usize, part: &Tensor) -> Result<Tensor> {
    let (s, p) = (x.shape(), part.shape());
    if (s.n, s.h, s.w) != (p.n, p.h, p.w) || start + p.c > s.c {
        return Err(GpuError::Shape {
            op: "replace_channels",
            detail: format!("cannot place {p} at channel {start} of {s}"),
        });
    }
    let y = gpu.duplicate(x);
    copy(gpu, part, 0, &y, start, p.c);
    Ok(y)
}
