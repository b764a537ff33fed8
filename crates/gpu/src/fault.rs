//! GPU faults as errors.
//!
//! wgpu reports most failures asynchronously: a buffer that could not be
//! allocated, a shader that does not validate or a submission on a lost
//! device becomes an "uncaptured error", which wgpu's default handler turns
//! into a panic. [`Gpu`](crate::Gpu) instead
//!
//! * wraps every allocation, pipeline creation and submission in error
//!   scopes (out-of-memory, validation, internal) and records the first
//!   error with a description of what was being done;
//! * installs an uncaptured-error handler that records anything else;
//! * installs a device-lost callback that marks the device as lost;
//!
//! and [`Gpu::read`](crate::Gpu::read) / [`Gpu::check`](crate::Gpu::check)
//! (async, never blocking) return the recorded error. Errors other than a
//! lost device are cleared when returned, so the same [`Gpu`](crate::Gpu)
//! can retry smaller work (tiles) after an allocation failure.
//!
//! On native backends error scopes resolve at once (the scope's future is
//! ready when popped); on the web they resolve later and are awaited by the
//! next `read`/`check`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::error::GpuError;

#[cfg(not(target_arch = "wasm32"))]
type ScopeFuture = Pin<Box<dyn Future<Output = Option<wgpu::Error>> + Send>>;
#[cfg(target_arch = "wasm32")]
type ScopeFuture = Pin<Box<dyn Future<Output = Option<wgpu::Error>>>>;

/// Faults to provoke on purpose, to test the error paths of programs built
/// on prior (env `PRIOR_FAULT`, see [`FaultInjection::parse`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultInjection {
    /// Open the device with this `max_buffer_size` while tensors are still
    /// planned against the adapter's limit: every allocation above it fails
    /// in the driver, as on a GPU that has run out of memory.
    pub alloc_limit: Option<u64>,
    /// Destroy the device (`device.destroy()`) just before the N-th
    /// submission (1-based), as if the GPU were reset mid-run.
    pub lose_device_at_submit: Option<u64>,
}

impl FaultInjection {
    /// Parses `alloc-limit=BYTES` and `lose-device=N`, comma-separated
    /// (e.g. `PRIOR_FAULT=lose-device=3`).
    pub fn parse(s: &str) -> Result<FaultInjection, String> {
        let mut f = FaultInjection::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("PRIOR_FAULT {item:?}: expected KEY=VALUE"))?;
            let n: u64 = v
                .trim()
                .parse()
                .map_err(|_| format!("PRIOR_FAULT {item:?}: {v:?} is not a number"))?;
            match k.trim() {
                "alloc-limit" => f.alloc_limit = Some(n),
                "lose-device" => f.lose_device_at_submit = Some(n.max(1)),
                other => {
                    return Err(format!(
                        "PRIOR_FAULT {other:?}: unknown fault (known: alloc-limit=BYTES, lose-device=N)"
                    ))
                }
            }
        }
        Ok(f)
    }
}

/// What an error scope was guarding, to word the error.
pub(crate) enum Op {
    /// Allocating a buffer of `bytes` bytes for `what`.
    Alloc { what: String, bytes: u64 },
    /// Anything else: "compiling kernel …", "running 12 commands (…)".
    Other(String),
}

/// An error as recorded: plain strings, so the log shared with wgpu's
/// callbacks (which must be `Send + Sync`) is so on every target.
enum Recorded {
    Alloc {
        what: String,
        bytes: u64,
        detail: String,
    },
    Fault {
        what: String,
        kind: &'static str,
        detail: String,
    },
}

/// What wgpu's callbacks write to: the first error, a count of later
/// ones, and the device-lost state.
#[derive(Default)]
struct Log {
    first: Mutex<Option<Recorded>>,
    more: Mutex<usize>,
    /// (reason, message) once the device is lost.
    lost: Mutex<Option<(String, String)>>,
}

impl Log {
    fn record(&self, e: Recorded) {
        let mut first = self.first.lock().unwrap();
        if first.is_none() {
            *first = Some(e);
        } else {
            *self.more.lock().unwrap() += 1;
        }
    }
}

/// The fault state of a [`Gpu`](crate::Gpu).
pub(crate) struct Faults {
    adapter: String,
    log: Arc<Log>,
    /// Scopes that had not resolved when popped (web).
    pending: Mutex<Vec<(Op, ScopeFuture)>>,
}

fn describe(op: Op, e: wgpu::Error) -> Recorded {
    let (kind, detail) = match &e {
        wgpu::Error::OutOfMemory { .. } => ("out-of-memory", "out of GPU memory".to_string()),
        wgpu::Error::Validation { description, .. } => ("validation", compact(description)),
        wgpu::Error::Internal { description, .. } => ("internal", compact(description)),
    };
    match op {
        Op::Alloc { what, bytes } => Recorded::Alloc {
            what,
            bytes,
            detail,
        },
        Op::Other(what) => Recorded::Fault { what, kind, detail },
    }
}

/// wgpu's multi-line report ("Validation Error / Caused by: / In
/// Device::create_buffer … / Buffer size … is greater than …", then a
/// source listing for shaders) as one line: the causes, without the
/// headers and the listing.
fn compact(description: &str) -> String {
    let mut parts = Vec::new();
    for line in description.lines().map(str::trim) {
        if line.starts_with(['┌', '│', '=']) {
            break;
        }
        let header = line.is_empty()
            || line == "Caused by:"
            || line.ends_with(" Error") && !line.contains(':');
        if !header && !line.starts_with("In ") {
            parts.push(line);
        }
    }
    if parts.is_empty() {
        description.trim().to_string()
    } else {
        parts.join("; ")
    }
}

impl Faults {
    pub fn new(adapter: &str) -> Arc<Faults> {
        Arc::new(Faults {
            adapter: adapter.to_string(),
            log: Arc::default(),
            pending: Mutex::new(Vec::new()),
        })
    }

    /// Installs the uncaptured-error handler and the device-lost callback.
    pub fn install(&self, device: &wgpu::Device) {
        let log = self.log.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log.record(describe(
                Op::Other("running GPU work outside prior's checked calls".into()),
                e,
            ));
        }));
        let log = self.log.clone();
        device.set_device_lost_callback(move |reason, message| {
            let reason = match reason {
                wgpu::DeviceLostReason::Destroyed => "destroyed".to_string(),
                _ => "driver reported it lost".to_string(),
            };
            log.lost.lock().unwrap().get_or_insert((reason, message));
        });
    }

    /// Records a failed allocation found without an error scope.
    pub fn record_alloc(&self, what: String, bytes: u64, detail: String) {
        self.log.record(Recorded::Alloc {
            what,
            bytes,
            detail,
        });
    }

    pub fn mark_lost(&self, reason: &str, message: &str) {
        self.log
            .lost
            .lock()
            .unwrap()
            .get_or_insert((reason.to_string(), message.to_string()));
    }

    pub fn is_lost(&self) -> bool {
        self.log.lost.lock().unwrap().is_some()
    }

    /// The device-lost error, worded for `what`, if the device is lost.
    pub fn lost_error(&self, what: &str) -> Option<GpuError> {
        self.log
            .lost
            .lock()
            .unwrap()
            .as_ref()
            .map(|(reason, message)| GpuError::DeviceLost {
                what: what.to_string(),
                adapter: self.adapter.clone(),
                reason: reason.clone(),
                message: if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                },
            })
    }

    /// Runs `f` inside out-of-memory, validation and internal error scopes
    /// and records the first error it caused as `op()`. Returns `f`'s value
    /// and whether it is known to have failed (always `false` while a scope
    /// is still pending on the web).
    pub fn scoped<T>(
        &self,
        device: &wgpu::Device,
        op: impl FnOnce() -> Op,
        f: impl FnOnce() -> T,
    ) -> (T, bool) {
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
        let value = f();
        let futures = [internal.pop(), validation.pop(), oom.pop()];
        let mut all: ScopeFuture = Box::pin(async move {
            let mut first = None;
            for fut in futures {
                let e = fut.await;
                if first.is_none() {
                    first = e;
                }
            }
            first
        });
        match all.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(None) => (value, false),
            Poll::Ready(Some(e)) => {
                self.log.record(describe(op(), e));
                (value, true)
            }
            Poll::Pending => {
                self.pending.lock().unwrap().push((op(), all));
                (value, false)
            }
        }
    }

    /// Awaits the scopes still pending (web) and returns the first recorded
    /// error, clearing it; a lost device is reported (and stays) first.
    pub async fn take(&self, what: &str) -> Option<GpuError> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap());
        for (op, fut) in pending {
            if let Some(e) = fut.await {
                self.log.record(describe(op, e));
            }
        }
        let first = self.log.first.lock().unwrap().take();
        let more = std::mem::take(&mut *self.log.more.lock().unwrap());
        if let Some(lost) = self.lost_error(what) {
            return Some(lost);
        }
        let later = if more > 0 {
            format!(" (and {more} later error(s))")
        } else {
            String::new()
        };
        first.map(|e| match e {
            Recorded::Alloc {
                what,
                bytes,
                detail,
            } => GpuError::Alloc {
                what,
                bytes,
                adapter: self.adapter.clone(),
                detail: detail + &later,
            },
            Recorded::Fault { what, kind, detail } => GpuError::Fault {
                what,
                kind,
                detail: detail + &later,
            },
        })
    }
}
