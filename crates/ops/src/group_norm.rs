//! Noise-conditioned group normalisation of the dual-score-matching energy
//! UNet (`shaders/group_norm.wgsl`), with its JVP and VJP.
//!
//! Per sample b and per group g of `group_size` consecutive channels, over
//! the group's channels and all pixels (n = group_size·H·W values):
//!
//! ```text
//! μ_g = mean(x), v_g = mean((x − μ_g)²), v̄ = mean_g v_g,
//! fac_g = sqrt(v̄/(v_g + eps) + eps),
//! z = (x − μ_g)·fac_g·gain[b, c],   gain[b, c] = weight_c·(1 + Linear_c(emb_b)).
//! ```
//!
//! The gains of all normalisations of a network are one `[n, 1, 1, L]`
//! tensor (the channels of every layer concatenated; a layer reads its
//! slice from `gain_offset`), built by [`gains`] from the concatenated
//! weights and conditioning-layer outputs.
//!
//! * [`GroupNorm::jvp`]: `z'` for an input tangent `x'` (or none) and a
//!   tangent `gain'` of the gains (the noise-level tangent of the energy
//!   model enters there);
//! * [`GroupNorm::vjp`]: `x̄` for a cotangent `z̄` (with respect to the input
//!   only; the gains are treated as constants);
//! * [`GroupNorm::vjp_jvp`]: forward over reverse, the tangent of `x̄` when
//!   the primal input moves along `h'` and the cotangent along `z̄'` (the
//!   second-order term a Hessian-vector product of a network needs).
//!
//! Statistics are f32 sums over chunks of ≥ 64 pixels (two passes for the
//! variance within a chunk), merged per group with Chan's formula.

use bytemuck::{Pod, Zeroable};
use prior_gpu::{Access, Gpu, GpuError, Kernel, Result, Shape, Tensor};

use crate::shaders::GROUP_NORM;

// The file's bindings: 1 x, 2 h, 3 st, 4 st2, 5 gain, 6 dgain, 7 out
// (read_write), 8 ht. Each entry point declares the ones it uses.
const R: Access = Access::Read;
const W: Access = Access::ReadWrite;
const U: Access = Access::Unused;
const fn kernel(entry: &'static str, bindings: &'static [Access]) -> Kernel {
    Kernel {
        file: "group_norm.wgsl",
        source: GROUP_NORM,
        entry,
        bindings,
    }
}
/// Computes every normalisation's per-sample gains from the conditioning
/// (gain ← the weights, dgain ← the conditioning).
pub const GAINS: Kernel = kernel("gains", &[U, U, U, U, R, R, W]);
/// Forward statistics: partial sums per chunk of pixels.
pub const CHUNK_FWD: Kernel = kernel("chunk_fwd", &[R, U, U, U, U, U, W]);
/// Forward statistics: merges the chunks of a group.
pub const MERGE_FWD: Kernel = kernel("merge_fwd", &[R, U, U, U, U, U, W]);
/// Forward statistics: mean, variance and scale factor per group (in place).
pub const FINALIZE_FWD: Kernel = kernel("finalize_fwd", &[U, U, U, U, U, U, W]);
/// Applies the normalisation and gains.
pub const APPLY_FWD: Kernel = kernel("apply_fwd", &[R, U, R, U, R, U, W]);
/// JVP/VJP: partial sums of the tangent terms per chunk.
pub const CHUNK_TAN: Kernel = kernel("chunk_tan", &[R, R, R, U, R, U, W]);
/// JVP/VJP: merges the tangent chunks of a group.
pub const MERGE_TAN: Kernel = kernel("merge_tan", &[R, U, U, U, U, U, W]);
/// JVP: per-group coefficients.
pub const FINALIZE_JVP: Kernel = kernel("finalize_jvp", &[U, U, R, U, U, U, W]);
/// VJP: per-group coefficients.
pub const FINALIZE_VJP: Kernel = kernel("finalize_vjp", &[U, U, R, U, U, U, W]);
/// JVP: applies the per-group coefficients.
pub const APPLY_JVP: Kernel = kernel("apply_jvp", &[R, R, R, R, R, R, W]);
/// VJP: applies the per-group coefficients.
pub const APPLY_VJP: Kernel = kernel("apply_vjp", &[R, R, R, R, R, U, W]);
/// Forward over reverse: partial sums per chunk (dgain ← the cotangent's
/// tangent, ht the primal tangent h').
pub const CHUNK_VJP_JVP: Kernel = kernel("chunk_vjp_jvp", &[R, R, R, U, R, R, W, R]);
/// Forward over reverse: merges eight sums per group.
pub const MERGE_SUM8: Kernel = kernel("merge_sum8", &[R, U, U, U, U, U, W]);
/// Forward over reverse: per-group coefficients.
pub const FINALIZE_VJP_JVP: Kernel = kernel("finalize_vjp_jvp", &[U, U, R, R, U, U, W]);
/// Forward over reverse: applies the per-group coefficients.
pub const APPLY_VJP_JVP: Kernel = kernel("apply_vjp_jvp", &[R, R, R, R, R, R, W, R]);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    hw: u32,
    c: u32,
    gs: u32,
    groups: u32,
    flags: u32,
    gain_off: u32,
    gain_len: u32,
    eps: f32,
    chunks: u32,
    chunk_px: u32,
    _p: u32,
}
prior_gpu::uniform!(Params {
    n,
    hw,
    c,
    gs,
    groups,
    flags,
    gain_off,
    gain_len,
    eps,
    chunks,
    chunk_px,
    _p
});

/// `w[j]·(1 + lin[b, j])` (or `w[j]·lin[b, j]` when `tangent`: the tangent
/// of the gains for a tangent `lin` of the conditioning outputs). `w` holds
/// L values, `lin` is `[n, 1, 1, L]`.
pub fn gains(gpu: &Gpu, w: &Tensor, lin: &Tensor, tangent: bool) -> Result<Tensor> {
    let l = w.numel();
    let s = lin.shape();
    if l == 0 || s.h * s.w * s.c != l {
        return Err(GpuError::Shape {
            op: "gains",
            detail: format!("{l} weights for conditioning outputs {s}"),
        });
    }
    let out = gpu.empty(Shape::new(s.n, 1, 1, l));
    let p = Params {
        n: s.n as u32,
        gain_len: l as u32,
        flags: u32::from(tangent),
        ..Default::default()
    };
    gpu.launch(
        &GAINS,
        &[],
        &p,
        &[w, lin, &out],
        crate::groups_flat(s.n * l),
    );
    Ok(out)
}

/// A value with its tangent, as the forward-over-reverse derivatives
/// ([`GroupNorm::vjp_jvp`], `reference::group_norm::vjp_jvp`) take them.
#[derive(Debug)]
pub struct Dual<'a, T: ?Sized> {
    /// The value.
    pub value: &'a T,
    /// Its tangent (same shape).
    pub tangent: &'a T,
}

impl<T: ?Sized> Clone for Dual<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: ?Sized> Copy for Dual<'_, T> {}

/// One normalisation layer: `channels` channels in groups of `group_size`,
/// reading its gains at `gain_offset` of the `[n, 1, 1, L]` gain tensor.
#[derive(Clone, Copy, Debug)]
pub struct GroupNorm {
    /// Channels normalised.
    pub channels: usize,
    /// Channels per group.
    pub group_size: usize,
    /// Added to the variance.
    pub eps: f32,
    /// Where this layer's gains start in the gain tensor's channels.
    pub gain_offset: usize,
}

/// Statistics of a forward pass, reused by the JVP and VJP at the same input:
/// `[n·G, 4]` = (μ, v, fac, unused) per sample and group.
pub struct NormStats {
    /// `[n·G, 4]`: (μ, v, fac, unused) per sample and group.
    pub st: Tensor,
}

/// Pixels per statistics chunk: at least 64, at most 256 chunks per group.
fn chunking(pixels: usize) -> (usize, usize) {
    let chunk_px = pixels.div_ceil(256).max(64);
    (pixels.div_ceil(chunk_px).max(1), chunk_px)
}

impl GroupNorm {
    /// A layer of `channels` channels in groups of `group_size`; refuses a group size that does not divide the channels.
    pub fn new(
        channels: usize,
        group_size: usize,
        eps: f32,
        gain_offset: usize,
    ) -> Result<GroupNorm> {
        if group_size == 0 || !channels.is_multiple_of(group_size) {
            return Err(GpuError::Shape {
                op: "group_norm",
                detail: format!("{channels} channels do not split into groups of {group_size}"),
            });
        }
        Ok(GroupNorm {
            channels,
            group_size,
            eps,
            gain_offset,
        })
    }

    fn groups(&self) -> usize {
        self.channels / self.group_size
    }

    fn params(&self, s: Shape, gain: &Tensor, flags: u32) -> Result<Params> {
        if s.c != self.channels {
            return Err(GpuError::Shape {
                op: "group_norm",
                detail: format!(
                    "input {s} has {} channels, the layer expects {}",
                    s.c, self.channels
                ),
            });
        }
        let gs = gain.shape();
        let l = gs.h * gs.w * gs.c;
        if gs.n != s.n || self.gain_offset + self.channels > l {
            return Err(GpuError::Shape {
                op: "group_norm",
                detail: format!(
                    "gains {gs} do not cover channels {}..{} of {} samples",
                    self.gain_offset,
                    self.gain_offset + self.channels,
                    s.n
                ),
            });
        }
        Ok(Params {
            n: s.n as u32,
            hw: s.pixels() as u32,
            c: s.c as u32,
            gs: self.group_size as u32,
            groups: self.groups() as u32,
            flags,
            gain_off: self.gain_offset as u32,
            gain_len: l as u32,
            eps: self.eps,
            chunks: chunking(s.pixels()).0 as u32,
            chunk_px: chunking(s.pixels()).1 as u32,
            _p: 0,
        })
    }

    /// `z` for `x` (`[n, h, w, channels]`) and the gains; also returns the statistics.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, gain: &Tensor) -> Result<(Tensor, NormStats)> {
        let s = x.shape();
        let p = self.params(s, gain, 0)?;
        let ng = s.n * self.groups();
        let st = gpu.empty(Shape::vector(4 * ng));
        let pb = &p;
        let nk = ng * p.chunks as usize;
        let part = gpu.empty(Shape::vector(2 * nk));
        gpu.launch(&CHUNK_FWD, &[], pb, &[x, &part], crate::groups_flat(nk));
        gpu.launch(&MERGE_FWD, &[], pb, &[&part, &st], crate::groups_flat(ng));
        gpu.launch(&FINALIZE_FWD, &[], pb, &[&st], crate::groups_flat(ng));
        let z = gpu.empty(s);
        gpu.launch(
            &APPLY_FWD,
            &[],
            pb,
            &[x, &st, gain, &z],
            crate::groups_flat(s.numel()),
        );
        Ok((z, NormStats { st }))
    }

    /// Forward-mode derivative at input `h` (with its statistics): `z'` for
    /// an input tangent `xt` (`None` = zero) and a gain tangent `dgain`
    /// (`None` = zero).
    pub fn jvp(
        &self,
        gpu: &Gpu,
        xt: Option<&Tensor>,
        h: &Tensor,
        stats: &NormStats,
        gain: &Tensor,
        dgain: Option<&Tensor>,
    ) -> Result<Tensor> {
        let s = h.shape();
        let mut flags = 0;
        if xt.is_none() {
            flags |= 4;
        }
        if let Some(dg) = dgain {
            if dg.shape() != gain.shape() {
                return Err(GpuError::Shape {
                    op: "group_norm_jvp",
                    detail: format!("gain tangent {dg:?} vs gains {gain:?}"),
                });
            }
            flags |= 2;
        }
        let p = self.params(s, gain, flags)?;
        let pb = &p;
        let ng = s.n * self.groups();
        let st = &stats.st;
        let st2 = gpu.empty(Shape::vector(4 * ng));
        let xtt = match xt {
            Some(t) => {
                if t.shape() != s {
                    return Err(GpuError::Shape {
                        op: "group_norm_jvp",
                        detail: format!("tangent {t:?} vs input {h:?}"),
                    });
                }
                let ps = Params { flags: 0, ..p };
                let nk = ng * p.chunks as usize;
                let part = gpu.empty(Shape::vector(2 * nk));
                gpu.launch(
                    &CHUNK_TAN,
                    &[],
                    &ps,
                    &[t, h, st, gain, &part],
                    crate::groups_flat(nk),
                );
                gpu.launch(&MERGE_TAN, &[], pb, &[&part, &st2], crate::groups_flat(ng));
                gpu.launch(&FINALIZE_JVP, &[], pb, &[st, &st2], crate::groups_flat(ng));
                t
            }
            None => h,
        };
        let dg = dgain.unwrap_or(gain);
        let z = gpu.empty(s);
        gpu.launch(
            &APPLY_JVP,
            &[],
            pb,
            &[xtt, h, st, &st2, gain, dg, &z],
            crate::groups_flat(s.numel()),
        );
        Ok(z)
    }

    /// Reverse-mode derivative at input `h`: `x̄` for a cotangent `zb` of the output.
    pub fn vjp(
        &self,
        gpu: &Gpu,
        zb: &Tensor,
        h: &Tensor,
        stats: &NormStats,
        gain: &Tensor,
    ) -> Result<Tensor> {
        let s = h.shape();
        if zb.shape() != s {
            return Err(GpuError::Shape {
                op: "group_norm_vjp",
                detail: format!("cotangent {zb:?} vs input {h:?}"),
            });
        }
        let p = self.params(s, gain, 1)?;
        let pb = &p;
        let ng = s.n * self.groups();
        let st = &stats.st;
        let st2 = gpu.empty(Shape::vector(4 * ng));
        let nk = ng * p.chunks as usize;
        let part = gpu.empty(Shape::vector(2 * nk));
        gpu.launch(
            &CHUNK_TAN,
            &[],
            pb,
            &[zb, h, st, gain, &part],
            crate::groups_flat(nk),
        );
        gpu.launch(&MERGE_TAN, &[], pb, &[&part, &st2], crate::groups_flat(ng));
        gpu.launch(&FINALIZE_VJP, &[], pb, &[st, &st2], crate::groups_flat(ng));
        let xb = gpu.empty(s);
        gpu.launch(
            &APPLY_VJP,
            &[],
            pb,
            &[zb, h, st, &st2, gain, &xb],
            crate::groups_flat(s.numel()),
        );
        Ok(xb)
    }

    /// Forward over reverse at input `h.value`: the tangent of
    /// [`GroupNorm::vjp`]'s `x̄(z̄, h)` when `z̄` moves along `zb.tangent` and
    /// `h` along `h.tangent` (gains constant). Linear in the two tangents
    /// jointly; with `zb.tangent = 0` it is the second-order term alone, and
    /// with `h.tangent = 0` it is `vjp(zb.tangent)`.
    pub fn vjp_jvp(
        &self,
        gpu: &Gpu,
        zb: Dual<Tensor>,
        h: Dual<Tensor>,
        stats: &NormStats,
        gain: &Tensor,
    ) -> Result<Tensor> {
        let (zb, zbt) = (zb.value, zb.tangent);
        let (h, ht) = (h.value, h.tangent);
        let s = h.shape();
        for (what, t) in [
            ("cotangent", zb),
            ("cotangent tangent", zbt),
            ("input tangent", ht),
        ] {
            if t.shape() != s {
                return Err(GpuError::Shape {
                    op: "group_norm_vjp_jvp",
                    detail: format!("{what} {t:?} vs input {h:?}"),
                });
            }
        }
        let p = self.params(s, gain, 0)?;
        let pb = &p;
        let ng = s.n * self.groups();
        let st = &stats.st;
        let nk = ng * p.chunks as usize;
        let part = gpu.empty(Shape::vector(8 * nk));
        gpu.launch(
            &CHUNK_VJP_JVP,
            &[],
            pb,
            &[zb, h, st, gain, zbt, &part, ht],
            crate::groups_flat(nk),
        );
        let sums = gpu.empty(Shape::vector(8 * ng));
        gpu.launch(
            &MERGE_SUM8,
            &[],
            pb,
            &[&part, &sums],
            crate::groups_flat(ng),
        );
        let coef = gpu.empty(Shape::vector(8 * ng));
        gpu.launch(
            &FINALIZE_VJP_JVP,
            &[],
            pb,
            &[st, &sums, &coef],
            crate::groups_flat(ng),
        );
        let out = gpu.empty(s);
        gpu.launch(
            &APPLY_VJP_JVP,
            &[],
            pb,
            &[zb, h, st, &coef, gain, zbt, &out, ht],
            crate::groups_flat(s.numel()),
        );
        Ok(out)
    }
}
