//! The command stream: an ordered recording of launches, uploads, copies and
//! clears, encoded into one command encoder per flush.
//!
//! The recording is plain data (pipelines, buffer handles, a parameter
//! arena); only [`Gpu::flush`] talks to wgpu. Parameters of every launch are
//! packed into one uniform arena, uploaded once per flush and bound with
//! dynamic offsets, so bind groups can be cached across calls.

use std::collections::HashMap;
use std::sync::Arc;

use crate::context::{Gpu, Pipeline};
use crate::fault::{Faults, Op};
use crate::kernel::{Dispatch, Kernel, Uniform};
use crate::tensor::{RawBuffer, Tensor};

/// Size of the uniform window each launch sees (its parameter block must fit).
pub(crate) const PARAM_WINDOW: u64 = 256;

enum Command {
    Dispatch {
        pipeline: Arc<Pipeline>,
        buffers: Vec<Arc<RawBuffer>>,
        offset: u32,
        groups: [u32; 3],
    },
    Copy {
        src: Arc<RawBuffer>,
        dst: Arc<RawBuffer>,
        dst_offset: u64,
        bytes: u64,
    },
    Clear {
        buf: Arc<RawBuffer>,
    },
}

impl Command {
    fn runnable(&self) -> bool {
        match self {
            Command::Dispatch {
                pipeline, buffers, ..
            } => pipeline.valid && buffers.iter().all(|b| b.valid),
            Command::Copy { src, dst, .. } => src.valid && dst.valid,
            Command::Clear { buf } => buf.valid,
        }
    }
}

pub(crate) struct Stream {
    commands: Vec<Command>,
    params: Vec<u8>,
    align: u32,
    arena: Option<(u64, wgpu::Buffer, u64)>, // (id, buffer, capacity)
    arena_generation: u64,
    bind_groups: HashMap<(u64, Vec<u64>, u64), wgpu::BindGroup>,
    pub dispatches_since_flush: usize,
}

impl Stream {
    pub fn new(align: u32) -> Self {
        Stream {
            commands: Vec::new(),
            params: Vec::new(),
            align,
            arena: None,
            arena_generation: 0,
            bind_groups: HashMap::new(),
            dispatches_since_flush: 0,
        }
    }

    pub fn clear(&mut self, buf: Arc<RawBuffer>) {
        self.commands.push(Command::Clear { buf });
    }

    pub fn copy(&mut self, src: Arc<RawBuffer>, dst: Arc<RawBuffer>, dst_offset: u64, bytes: u64) {
        self.commands.push(Command::Copy {
            src,
            dst,
            dst_offset,
            bytes,
        });
    }

    /// Uploads through a mapped-at-creation staging buffer copied in order.
    /// A staging buffer the driver refuses is recorded in `faults` (the
    /// next read reports it) and the copy is skipped.
    pub fn upload(
        &mut self,
        device: &wgpu::Device,
        faults: &Faults,
        dst: Arc<RawBuffer>,
        data: &[u8],
    ) {
        let bytes = (data.len() as u64).div_ceil(4) * 4;
        let create = || {
            let staging = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("upload"),
                size: bytes,
                usage: wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: true,
            });
            let written = match staging.slice(..).get_mapped_range_mut() {
                Ok(mut view) => {
                    let mut padded = data.to_vec();
                    padded.resize(bytes as usize, 0);
                    view.copy_from_slice(&padded);
                    true
                }
                Err(_) => false,
            };
            staging.unmap();
            (staging, written)
        };
        let what = || Op::Alloc {
            what: format!("an upload of {} values", data.len() / 4),
            bytes,
        };
        let ((staging, written), failed) = faults.scoped(device, what, create);
        if failed || !written || !dst.valid {
            if !failed && !written {
                faults.record_alloc(
                    format!("an upload of {} values", data.len() / 4),
                    bytes,
                    "the staging buffer could not be mapped".into(),
                );
            }
            return;
        }
        let src = Arc::new(RawBuffer {
            id: 0,
            buffer: staging,
            bytes,
            valid: true,
        });
        self.commands.push(Command::Copy {
            src,
            dst,
            dst_offset: 0,
            bytes,
        });
    }

    pub fn clear_bind_groups(&mut self) {
        self.bind_groups.clear();
    }
}

impl Gpu {
    /// Appends one kernel launch to the stream. `params` is the kernel's
    /// uniform block (its [`Uniform`] twin of the WGSL struct, at most 256
    /// bytes); `buffers` are the storage bindings its entry point uses, in
    /// order ([`Kernel::used`]: none for an [`crate::Access::Unused`] slot); `dispatch` the
    /// workgroup counts and the workgroup size they assume.
    pub fn launch<P: Uniform>(
        &self,
        kernel: &Kernel,
        constants: &[(&'static str, f64)],
        params: &P,
        buffers: &[&Tensor],
        dispatch: Dispatch,
    ) {
        let params = bytemuck::bytes_of(params);
        assert!(
            params.len() as u64 <= PARAM_WINDOW,
            "{}: parameter block over 256 bytes",
            kernel.entry
        );
        assert_eq!(
            buffers.len(),
            kernel.used().count(),
            "{}: wrong number of buffers",
            kernel.entry
        );
        let groups = dispatch.groups;
        if groups.contains(&0) {
            return;
        }
        let pipeline = self.pipeline(kernel, constants);
        debug_assert_eq!(pipeline.slots.len(), buffers.len());
        #[cfg(feature = "reflect")]
        crate::reflect::check_launch::<P>(&pipeline.name, &pipeline.reflected, &dispatch);
        let mut s = self.stream.lock().unwrap();
        let offset = s.params.len().next_multiple_of(s.align as usize);
        s.params.resize(offset, 0);
        s.params.extend_from_slice(params);
        let buffers = buffers.iter().map(|t| t.raw().clone()).collect();
        s.commands.push(Command::Dispatch {
            pipeline,
            buffers,
            offset: offset as u32,
            groups,
        });
        s.dispatches_since_flush += 1;
    }

    /// Encodes every pending command into one command encoder and submits
    /// it. Errors (validation, out of memory, a lost device) are recorded
    /// and returned by the next [`Gpu::read`] or [`Gpu::check`].
    pub fn flush(&self) {
        let mut s = self.stream.lock().unwrap();
        if s.commands.is_empty() {
            return;
        }
        let commands = std::mem::take(&mut s.commands);
        if self.faults.is_lost() {
            // Nothing can run any more; the next read reports the loss.
            s.params.clear();
            s.dispatches_since_flush = 0;
            return;
        }
        // Commands on a buffer the driver refused (or with a pipeline that
        // did not compile) are dropped: the error is already recorded, and
        // one invalid command would invalidate the whole submission, so
        // the valid work queued with it (model weights uploaded before a
        // failed activation, say) would be lost for the retry.
        let mut commands = commands;
        commands.retain(Command::runnable);
        if commands.is_empty() {
            s.params.clear();
            return;
        }
        let what = || Op::Other(describe_commands(&commands));
        let ((), _) = self.faults.scoped(&self.device, what, || {
            self.encode_and_submit(&mut s, &commands)
        });
        drop(s);
        drop(commands);
    }

    fn encode_and_submit(&self, s: &mut Stream, commands: &[Command]) {
        let mut params = std::mem::take(&mut s.params);
        params.resize(params.len() + PARAM_WINDOW as usize, 0);
        let need = params.len() as u64;
        let grow = s.arena.as_ref().is_none_or(|(_, _, cap)| *cap < need);
        if grow {
            let cap = need.next_power_of_two().max(64 * 1024);
            let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: cap,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            s.arena_generation += 1;
            s.arena = Some((s.arena_generation, buffer, cap));
            s.bind_groups.clear();
        }
        let (arena_id, arena) = {
            let (id, buf, _) = s.arena.as_ref().unwrap();
            (*id, buf.clone())
        };
        self.queue.write_buffer(&arena, 0, &params);

        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("prior"),
            });
        // Profiling (`Gpu::start_profiling`): each dispatch gets a pass of
        // its own with timestamps at its start and end, resolved into a
        // readback buffer at the end of the submission.
        let profiled = self.profiler.lock().unwrap().is_some();
        let timing = profiled.then(|| {
            let n = commands
                .iter()
                .filter(|c| matches!(c, Command::Dispatch { .. }))
                .count()
                .min(crate::profile::MAX_PER_SUBMISSION);
            crate::profile::Timing::new(&self.device, n)
        });
        let mut timed: Vec<String> = Vec::new();
        let mut i = 0;
        while i < commands.len() {
            match &commands[i] {
                Command::Dispatch { .. } => {
                    let slot = timing
                        .as_ref()
                        .filter(|t| timed.len() < t.capacity())
                        .map(|_| timed.len());
                    let writes = slot.and_then(|k| timing.as_ref().map(|t| t.writes(k)));
                    let one_per_pass = timing.is_some();
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: writes,
                    });
                    let first = i;
                    while let Some(Command::Dispatch {
                        pipeline,
                        buffers,
                        offset,
                        groups,
                    }) = commands.get(i)
                    {
                        if one_per_pass && i > first {
                            break;
                        }
                        if slot.is_some() {
                            timed.push(pipeline.name.clone());
                        }
                        let key = (
                            pipeline.id,
                            buffers.iter().map(|b| b.id).collect::<Vec<_>>(),
                            arena_id,
                        );
                        if !s.bind_groups.contains_key(&key) {
                            let mut entries = vec![wgpu::BindGroupEntry {
                                binding: 0,
                                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                    buffer: &arena,
                                    offset: 0,
                                    size: std::num::NonZeroU64::new(PARAM_WINDOW),
                                }),
                            }];
                            for (&binding, b) in pipeline.slots.iter().zip(buffers) {
                                entries.push(wgpu::BindGroupEntry {
                                    binding,
                                    resource: b.buffer.as_entire_binding(),
                                });
                            }
                            let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                                label: None,
                                layout: &pipeline.layout,
                                entries: &entries,
                            });
                            if s.bind_groups.len() > 8192 {
                                s.bind_groups.clear();
                            }
                            s.bind_groups.insert(key.clone(), bg);
                        }
                        pass.set_pipeline(&pipeline.pipeline);
                        pass.set_bind_group(0, &s.bind_groups[&key], &[*offset]);
                        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        i += 1;
                    }
                }
                Command::Copy {
                    src,
                    dst,
                    dst_offset,
                    bytes,
                } => {
                    enc.copy_buffer_to_buffer(&src.buffer, 0, &dst.buffer, *dst_offset, *bytes);
                    i += 1;
                }
                Command::Clear { buf } => {
                    enc.clear_buffer(&buf.buffer, 0, None);
                    i += 1;
                }
            }
        }
        if let Some(t) = timing {
            let pending = t.resolve(&mut enc, timed);
            if let Some(p) = self.profiler.lock().unwrap().as_mut() {
                p.pending.push(pending);
            }
        }
        s.dispatches_since_flush = 0;
        let n = self
            .submits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if self.fault.lose_device_at_submit == Some(n) {
            self.device.destroy();
            self.faults
                .mark_lost("destroyed", "PRIOR_FAULT lose-device");
        }
        // Submit while still holding the stream: the parameter arena is
        // shared, and another thread's write_buffer must not slip in between
        // this flush's write and its submission.
        self.queue.submit([enc.finish()]);
    }
}

/// "running 12 commands (conv2d.wgsl:conv, relu, … and 3 copies)", for errors.
fn describe_commands(commands: &[Command]) -> String {
    let mut kernels: Vec<String> = Vec::new();
    let mut copies = 0;
    for c in commands {
        match c {
            Command::Dispatch { pipeline, .. } => {
                if !kernels.contains(&pipeline.name) && kernels.len() < 6 {
                    kernels.push(pipeline.name.clone());
                }
            }
            Command::Copy { .. } | Command::Clear { .. } => copies += 1,
        }
    }
    let mut parts = kernels.join(", ");
    if copies > 0 {
        if !parts.is_empty() {
            parts += ", ";
        }
        parts += &format!("{copies} copies/clears");
    }
    format!(
        "running a submission of {} GPU commands ({parts})",
        commands.len()
    )
}
