//! Tensors on the GPU and the buffer pool behind them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::context::Gpu;
use crate::error::{GpuError, Result};
use crate::fault::Op;

/// Shape of a channels-last tensor: `n` samples of `h × w` pixels with `c`
/// channels, stored `[n][h][w][c]` row-major.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Samples (batch size).
    pub n: usize,
    /// Height, pixels.
    pub h: usize,
    /// Width, pixels.
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl Shape {
    /// `n` samples of `h × w` pixels with `c` channels.
    pub const fn new(n: usize, h: usize, w: usize, c: usize) -> Self {
        Shape { n, h, w, c }
    }
    /// A flat vector of `len` values (shape `[1, 1, 1, len]`).
    pub const fn vector(len: usize) -> Self {
        Shape {
            n: 1,
            h: 1,
            w: 1,
            c: len,
        }
    }
    /// Number of values, `n·h·w·c`.
    pub const fn numel(&self) -> usize {
        self.n * self.h * self.w * self.c
    }
    /// Pixels per sample, `h·w`.
    pub const fn pixels(&self) -> usize {
        self.h * self.w
    }
    /// The same shape with `c` channels.
    pub const fn with_c(self, c: usize) -> Self {
        Shape { c, ..self }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[n={}, h={}, w={}, c={}]",
            self.n, self.h, self.w, self.c
        )
    }
}

static NEXT_BUFFER_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A wgpu buffer with a process-unique id (the bind-group cache key).
pub(crate) struct RawBuffer {
    pub id: u64,
    pub buffer: wgpu::Buffer,
    pub bytes: u64,
    /// False when the driver refused the allocation (the error is recorded
    /// in the fault state); such a buffer never goes back to the pool.
    pub valid: bool,
}

/// Free buffers by size. Tensors give their buffer back when the last handle
/// drops; the stream executes in order, so a buffer freed while commands
/// that use it are still pending can be handed to a later command at once.
#[derive(Default)]
pub(crate) struct Pool {
    free: HashMap<u64, Vec<Arc<RawBuffer>>>,
    pub free_bytes: u64,
    pub live_bytes: u64,
}

/// Pool size classes: up to 1 MiB round to 4 KiB, beyond that to 1/16 of
/// the next power of two, so repeated calls of one model reuse buffers
/// without wasting more than ~6 %.
fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(16);
    if bytes <= 1 << 20 {
        bytes.div_ceil(4096) * 4096
    } else {
        let step = bytes.next_power_of_two() / 16;
        bytes.div_ceil(step) * step
    }
}

/// Gives the buffer back to the pool when the last tensor handle drops.
pub(crate) struct Lease {
    pub raw: Arc<RawBuffer>,
    pool: Weak<Mutex<Pool>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            let mut p = pool.lock().unwrap();
            p.live_bytes -= self.raw.bytes;
            if self.raw.valid {
                p.free_bytes += self.raw.bytes;
                p.free
                    .entry(self.raw.bytes)
                    .or_default()
                    .push(self.raw.clone());
            }
        }
    }
}

/// An f32 tensor on the GPU (channels-last). Cloning shares the buffer.
#[derive(Clone)]
pub struct Tensor {
    pub(crate) lease: Arc<Lease>,
    shape: Shape,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{}", self.shape)
    }
}

impl Tensor {
    /// The tensor's shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }
    /// Number of f32 values.
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }
    /// The same buffer seen with another shape of the same size.
    pub fn reshape(&self, shape: Shape) -> Tensor {
        assert_eq!(
            shape.numel(),
            self.shape.numel(),
            "reshape {} -> {}",
            self.shape,
            shape
        );
        Tensor {
            lease: self.lease.clone(),
            shape,
        }
    }
    /// The wgpu buffer holding the values (possibly larger than `4·numel`
    /// bytes: pool buffers are rounded up to a size class).
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.lease.raw.buffer
    }
    pub(crate) fn raw(&self) -> &Arc<RawBuffer> {
        &self.lease.raw
    }
}

impl Gpu {
    /// Checks that a tensor of `shape` fits the adapter's buffer limits.
    pub fn check_fits(&self, what: &str, shape: Shape) -> Result<()> {
        let bytes = shape.numel() as u64 * 4;
        if bytes > self.max_buffer_bytes {
            return Err(GpuError::TooLarge {
                what: format!("{what} {shape}"),
                bytes,
                limit: self.max_buffer_bytes,
                adapter: self.adapter.name.clone(),
            });
        }
        Ok(())
    }

    /// A tensor with unspecified contents, from the pool when possible.
    /// Never panics: if the driver refuses the buffer (out of memory, over
    /// a limit) the error is recorded and returned by the next
    /// [`Gpu::read`] or [`Gpu::check`] as [`GpuError::Alloc`] naming the
    /// shape. Call [`Gpu::check_fits`] first where sizes come from the user.
    pub fn empty(&self, shape: Shape) -> Tensor {
        let bytes = size_class(shape.numel() as u64 * 4);
        let mut pool = self.pool.lock().unwrap();
        let raw = match pool.free.get_mut(&bytes).and_then(|v| v.pop()) {
            Some(raw) => {
                pool.free_bytes -= bytes;
                raw
            }
            None => {
                let create = || {
                    self.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("tensor"),
                        size: bytes,
                        usage: wgpu::BufferUsages::STORAGE
                            | wgpu::BufferUsages::COPY_SRC
                            | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    })
                };
                let what = || Op::Alloc {
                    what: format!("a tensor {shape}"),
                    bytes,
                };
                let (buffer, failed) = self.faults.scoped(&self.device, what, create);
                let id = NEXT_BUFFER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Arc::new(RawBuffer {
                    id,
                    buffer,
                    bytes,
                    valid: !failed,
                })
            }
        };
        pool.live_bytes += bytes;
        Tensor {
            lease: Arc::new(Lease {
                raw,
                pool: Arc::downgrade(&self.pool),
            }),
            shape,
        }
    }

    /// A tensor of zeros (cleared in the stream).
    pub fn zeros(&self, shape: Shape) -> Tensor {
        let t = self.empty(shape);
        self.stream.lock().unwrap().clear(t.raw().clone());
        t
    }

    /// Uploads `data` (channels-last, `shape.numel()` values). The copy is
    /// ordered in the stream, so it is safe with recycled buffers.
    pub fn upload(&self, shape: Shape, data: &[f32]) -> Tensor {
        assert_eq!(
            shape.numel(),
            data.len(),
            "upload: {} values for shape {}",
            data.len(),
            shape
        );
        let t = self.empty(shape);
        if !data.is_empty() {
            self.stream.lock().unwrap().upload(
                &self.device,
                &self.faults,
                t.raw().clone(),
                bytemuck::cast_slice(data),
            );
        }
        t
    }

    /// Copies `src` into `dst` (same number of elements).
    pub fn copy(&self, src: &Tensor, dst: &Tensor) {
        assert_eq!(src.numel(), dst.numel(), "copy {:?} -> {:?}", src, dst);
        let bytes = src.numel() as u64 * 4;
        self.stream
            .lock()
            .unwrap()
            .copy(src.raw().clone(), dst.raw().clone(), 0, bytes);
    }

    /// `k` copies of the batch `src` stacked along the batch axis
    /// (`[k·n, h, w, c]`), by buffer copies in the stream.
    pub fn repeat_batch(&self, src: &Tensor, k: usize) -> Tensor {
        let s = src.shape();
        let t = self.empty(Shape::new(s.n * k, s.h, s.w, s.c));
        let bytes = src.numel() as u64 * 4;
        let mut stream = self.stream.lock().unwrap();
        for i in 0..k as u64 {
            stream.copy(src.raw().clone(), t.raw().clone(), i * bytes, bytes);
        }
        t
    }

    /// A new tensor with the contents of `src`.
    pub fn duplicate(&self, src: &Tensor) -> Tensor {
        let t = self.empty(src.shape());
        self.copy(src, &t);
        t
    }

    /// Reads a tensor back (flushes the stream). Values are channels-last.
    /// Any GPU error since the last `read`/[`Gpu::check`] (a refused
    /// allocation, a validation error, a lost device) is returned here
    /// instead of the values, naming what was being done.
    pub async fn read(&self, t: &Tensor) -> Result<Vec<f32>> {
        let bytes = t.numel() as u64 * 4;
        let what = format!("reading back a tensor {}", t.shape());
        if let Some(e) = self.faults.lost_error(&what) {
            return Err(e);
        }
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let create = || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let op = || Op::Alloc {
            what: format!("the readback buffer of a tensor {}", t.shape()),
            bytes,
        };
        let (staging, _) = self.faults.scoped(&self.device, op, create);
        let staging = Arc::new(RawBuffer {
            id: 0,
            buffer: staging,
            bytes,
            valid: true,
        });
        self.stream
            .lock()
            .unwrap()
            .copy(t.raw().clone(), staging.clone(), 0, bytes);
        self.flush();
        if let Some(e) = self.faults.take(&what).await {
            self.after_fault(&e);
            return Err(e);
        }
        let (tx, rx) = oneshot();
        staging
            .buffer
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |r| tx.send(r));
        #[cfg(not(target_arch = "wasm32"))]
        let polled = self.device.poll(wgpu::PollType::wait_indefinitely());
        #[cfg(target_arch = "wasm32")]
        let polled: Result<(), String> = Ok(());
        let mapped = match polled {
            Ok(_) => rx.await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(detail) = mapped {
            // A lost device also fails the mapping: say so rather than "map failed".
            #[cfg(not(target_arch = "wasm32"))]
            let _ = self.device.poll(wgpu::PollType::Poll);
            let e = match self.faults.take(&what).await {
                Some(e) => e,
                None => GpuError::Readback(format!("{what}: {detail}")),
            };
            self.after_fault(&e);
            return Err(e);
        }
        let data = {
            let view = staging
                .buffer
                .slice(..)
                .get_mapped_range()
                .map_err(|e| GpuError::Readback(e.to_string()))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        staging.buffer.unmap();
        // Errors raised while the work ran (a device lost mid-run).
        if let Some(e) = self.faults.take(&what).await {
            self.after_fault(&e);
            return Err(e);
        }
        Ok(data)
    }

    /// Bytes held by live tensors and by free pooled buffers.
    pub fn memory_usage(&self) -> (u64, u64) {
        let p = self.pool.lock().unwrap();
        (p.live_bytes, p.free_bytes)
    }

    /// Drops every free pooled buffer.
    pub fn trim_pool(&self) {
        let mut p = self.pool.lock().unwrap();
        p.free.clear();
        p.free_bytes = 0;
        self.stream.lock().unwrap().clear_bind_groups();
    }
}

/// A one-shot channel whose receiver is a future (map_async's callback is
/// the sender; on the web the browser's event loop drives it).
pub(crate) fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
    }));
    (Sender(slot.clone()), Receiver(slot))
}
struct Slot<T> {
    value: Option<T>,
    waker: Option<std::task::Waker>,
}
pub(crate) struct Sender<T>(Arc<Mutex<Slot<T>>>);
pub(crate) struct Receiver<T>(Arc<Mutex<Slot<T>>>);
impl<T> Sender<T> {
    pub(crate) fn send(self, v: T) {
        let mut s = self.0.lock().unwrap();
        s.value = Some(v);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}
impl<T> std::future::Future for Receiver<T> {
    type Output = T;
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        let mut s = self.0.lock().unwrap();
        match s.value.take() {
            Some(v) => std::task::Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
}
