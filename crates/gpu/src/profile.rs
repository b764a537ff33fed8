//! Per-kernel GPU time from timestamp queries (`prior denoise|sample
//! --profile`). While profiling is on ([`Gpu::start_profiling`]), every
//! dispatch runs in a compute pass of its own with a timestamp written at
//! the pass's start and end (wgpu's pass timestamps, the portable kind);
//! each submission resolves its queries into a small buffer, read back by
//! [`Gpu::profile`], which sums the durations by kernel (`file:entry`).
//! One pass per dispatch costs a little extra time itself, so a profiled run
//! is slower than an unprofiled one; the figures are GPU time, not wall time.

use std::collections::HashMap;

use crate::context::Gpu;
use crate::error::{GpuError, Result};

/// Dispatches timed per submission (the rest of a larger one run untimed).
pub(crate) const MAX_PER_SUBMISSION: usize = 2048;

/// GPU time of one kernel over a profiled run.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    /// `file:entry`.
    pub kernel: String,
    /// Dispatches timed.
    pub calls: u64,
    /// Their summed GPU time, seconds.
    pub seconds: f64,
}

/// The queries of one submission.
pub(crate) struct Timing {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    n: usize,
}

/// A resolved submission waiting to be read back.
pub(crate) struct Pending {
    readback: wgpu::Buffer,
    names: Vec<String>,
}

/// The profiler's state on a [`Gpu`].
#[derive(Default)]
pub(crate) struct Profiler {
    pub pending: Vec<Pending>,
    totals: HashMap<String, (u64, f64)>,
}

impl Timing {
    pub fn new(device: &wgpu::Device, n: usize) -> Timing {
        let count = (2 * n.max(1)) as u32;
        let set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let buffer = |label, usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: count as u64 * 8,
                usage,
                mapped_at_creation: false,
            })
        };
        Timing {
            set,
            resolve: buffer(
                "profile resolve",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            readback: buffer(
                "profile readback",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            n,
        }
    }

    pub fn capacity(&self) -> usize {
        self.n
    }

    /// The timestamp writes of pass `k` (< capacity).
    pub fn writes(&self, k: usize) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(2 * k as u32),
            end_of_pass_write_index: Some(2 * k as u32 + 1),
        }
    }

    /// Resolves the timed passes (one name each) into the mappable buffer.
    pub fn resolve(self, enc: &mut wgpu::CommandEncoder, names: Vec<String>) -> Pending {
        let used = (2 * names.len()) as u32;
        if used > 0 {
            enc.resolve_query_set(&self.set, 0..used, &self.resolve, 0);
            enc.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, used as u64 * 8);
        }
        Pending {
            readback: self.readback,
            names,
        }
    }
}

impl Gpu {
    /// Turns per-kernel GPU timing on (every later dispatch is timed) and
    /// clears earlier figures; an error when the adapter has no timestamp
    /// queries.
    pub fn start_profiling(&self) -> Result<()> {
        if !self.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            return Err(GpuError::Device(format!(
                "{} has no timestamp queries: per-kernel GPU times are not available on this adapter",
                self.adapter.name
            )));
        }
        self.flush();
        *self.profiler.lock().unwrap() = Some(Profiler::default());
        Ok(())
    }

    /// Whether [`Gpu::start_profiling`] is on.
    pub fn profiling(&self) -> bool {
        self.profiler.lock().unwrap().is_some()
    }

    /// GPU time per kernel since [`Gpu::start_profiling`], the most
    /// expensive first (waits for the recorded work to finish).
    pub async fn profile(&self) -> Result<Vec<KernelTime>> {
        self.flush();
        let pending = match self.profiler.lock().unwrap().as_mut() {
            Some(p) => std::mem::take(&mut p.pending),
            None => return Ok(Vec::new()),
        };
        let period = self.queue.get_timestamp_period() as f64 * 1e-9;
        let mut add: Vec<(String, f64)> = Vec::new();
        for p in pending {
            if p.names.is_empty() {
                continue;
            }
            let (tx, rx) = crate::tensor::oneshot();
            p.readback
                .slice(..)
                .map_async(wgpu::MapMode::Read, move |r| tx.send(r));
            #[cfg(not(target_arch = "wasm32"))]
            self.device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| GpuError::Readback(format!("reading the profile: {e}")))?;
            rx.await
                .map_err(|e| GpuError::Readback(format!("reading the profile: {e}")))?;
            {
                let view = p
                    .readback
                    .slice(..)
                    .get_mapped_range()
                    .map_err(|e| GpuError::Readback(e.to_string()))?;
                let ticks: &[u64] = bytemuck::cast_slice(&view);
                for (k, name) in p.names.into_iter().enumerate() {
                    let d = ticks[2 * k + 1].saturating_sub(ticks[2 * k]) as f64 * period;
                    add.push((name, d));
                }
            }
            p.readback.unmap();
        }
        let mut guard = self.profiler.lock().unwrap();
        let Some(prof) = guard.as_mut() else {
            return Ok(Vec::new());
        };
        for (name, d) in add {
            let e = prof.totals.entry(name).or_insert((0, 0.0));
            e.0 += 1;
            e.1 += d;
        }
        let mut v: Vec<KernelTime> = prof
            .totals
            .iter()
            .map(|(k, (calls, secs))| KernelTime {
                kernel: k.clone(),
                calls: *calls,
                seconds: *secs,
            })
            .collect();
        v.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        Ok(v)
    }
}
