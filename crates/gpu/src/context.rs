//! Adapter selection and the [`Gpu`] context.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{GpuError, Result};
use crate::fault::{FaultInjection, Faults, Op};
use crate::kernel::{Access, Kernel, PipelineKey};
use crate::stream::Stream;
use crate::tensor::Pool;

/// How to pick an adapter. Defaults come from the environment:
/// `PRIOR_BACKEND` (`vulkan`, `metal`, `dx12`, `gl`, `webgpu`; also wgpu's
/// own `WGPU_BACKEND`) and `PRIOR_ADAPTER` (a case-insensitive substring of
/// the adapter name, e.g. `llvmpipe` or `nvidia`), and `PRIOR_FAULT`
/// (faults to provoke on purpose, see [`FaultInjection::parse`]).
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Backends to search (`None`: all that wgpu was built with).
    pub backends: Option<wgpu::Backends>,
    /// Keep only adapters whose name contains this (case-insensitive).
    pub adapter_name: Option<String>,
    /// Lower the storage-buffer limit below the adapter's (tests of tiling).
    pub max_buffer_bytes: Option<u64>,
    /// Faults to provoke (tests of the error paths).
    pub fault: FaultInjection,
}

impl GpuOptions {
    /// The options of the environment; an unreadable `PRIOR_FAULT` is
    /// ignored here (use [`GpuOptions::try_from_env`] to refuse it).
    pub fn from_env() -> Self {
        Self::try_from_env().unwrap_or_else(|_| GpuOptions {
            fault: FaultInjection::default(),
            ..Self::base_from_env()
        })
    }

    /// The options of the environment, or an error naming a bad `PRIOR_FAULT`.
    pub fn try_from_env() -> Result<Self> {
        let fault = match std::env::var("PRIOR_FAULT") {
            Ok(s) => FaultInjection::parse(&s).map_err(GpuError::Device)?,
            Err(_) => FaultInjection::default(),
        };
        Ok(GpuOptions {
            fault,
            ..Self::base_from_env()
        })
    }

    fn base_from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
        let backends = var("PRIOR_BACKEND").map(|b| wgpu::Backends::from_comma_list(&b));
        GpuOptions {
            backends,
            adapter_name: var("PRIOR_ADAPTER"),
            max_buffer_bytes: None,
            fault: FaultInjection::default(),
        }
    }
}

/// What `prior devices` prints about an adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Adapter name as the driver reports it.
    pub name: String,
    /// wgpu backend (`Vulkan`, `Metal`, `Dx12`, `Gl`, `BrowserWebGpu`).
    pub backend: String,
    /// Device type (`DiscreteGpu`, `IntegratedGpu`, `Cpu`, ...).
    pub device_type: String,
    /// Driver name and version string.
    pub driver: String,
    /// Largest storage-buffer binding, bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, bytes.
    pub max_buffer_size: u64,
    /// Whether the adapter supports subgroup operations.
    pub subgroups: bool,
    /// Smallest subgroup size the adapter may use (when `subgroups`).
    pub subgroup_min_size: u32,
    /// Whether the adapter supports `f16` in shaders.
    pub f16: bool,
}

impl AdapterSummary {
    fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features();
        AdapterSummary {
            name: info.name,
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            subgroup_min_size: info.subgroup_min_size,
            f16: features.contains(wgpu::Features::SHADER_F16),
        }
    }
}

/// The GPU context: device, queue, caches, pool and the command stream.
pub struct Gpu {
    /// The wgpu device every kernel runs on.
    pub device: wgpu::Device,
    /// The queue the stream submits to.
    pub queue: wgpu::Queue,
    /// What the adapter is (as `prior devices` prints it).
    pub adapter: AdapterSummary,
    /// Limits the device was opened with.
    pub limits: wgpu::Limits,
    /// Optional features enabled on the device: those of subgroups, `f16` and
    /// timestamp queries that the adapter has.
    pub features: wgpu::Features,
    /// Largest buffer a tensor may occupy (min of the storage-binding and
    /// buffer-size limits, or the lowered limit of [`GpuOptions`]).
    pub max_buffer_bytes: u64,
    no_subgroups: bool,
    pub(crate) faults: Arc<Faults>,
    /// Submissions so far (for [`FaultInjection::lose_device_at_submit`]).
    pub(crate) submits: std::sync::atomic::AtomicU64,
    pub(crate) fault: FaultInjection,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
    /// Shader modules by source (address and length of the `&'static str`):
    /// each source is parsed and translated once, whatever number of entry
    /// points and pipelines use it.
    modules: Mutex<HashMap<(usize, usize), wgpu::ShaderModule>>,
    /// Per-kernel timing, when on ([`Gpu::start_profiling`]).
    pub(crate) profiler: Mutex<Option<crate::profile::Profiler>>,
    pub(crate) pool: Arc<Mutex<Pool>>,
    pub(crate) stream: Mutex<Stream>,
}

/// Pipeline ids key the bind-group cache; a pipeline that failed to compile
/// is not cached, so ids come from a counter rather than the cache size.
static NEXT_PIPELINE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub(crate) struct Pipeline {
    pub id: u64,
    /// `file:entry`, for error messages.
    pub name: String,
    /// False when it failed to compile (its launches are skipped).
    pub valid: bool,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    /// The binding number of each storage buffer of a launch, in order
    /// (the bindings the entry point uses: its layout holds only these).
    pub slots: Vec<u32>,
    /// What reflection found (parameter struct, workgroup size), checked
    /// at every launch (feature `reflect`).
    #[cfg(feature = "reflect")]
    pub reflected: crate::reflect::Reflected,
}

fn instance(backends: Option<wgpu::Backends>) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if let Some(b) = backends {
        desc.backends = b;
    }
    wgpu::Instance::new(desc)
}

impl Gpu {
    /// Lists every adapter wgpu can see (for `prior devices`).
    pub async fn enumerate(options: &GpuOptions) -> Vec<AdapterSummary> {
        let backends = options.backends.unwrap_or(wgpu::Backends::all());
        let inst = instance(Some(backends));
        inst.enumerate_adapters(backends)
            .await
            .iter()
            .map(AdapterSummary::of)
            .collect()
    }

    /// Opens the best adapter matching `options` (a discrete GPU before an
    /// integrated one before a software driver).
    pub async fn new(options: GpuOptions) -> Result<Gpu> {
        let backends = options.backends.unwrap_or(wgpu::Backends::all());
        let inst = instance(Some(backends));
        let filter = options.adapter_name.as_ref().map(|s| s.to_lowercase());
        let mut candidates: Vec<wgpu::Adapter> = inst
            .enumerate_adapters(backends)
            .await
            .into_iter()
            .filter(|a| {
                filter
                    .as_ref()
                    .is_none_or(|f| a.get_info().name.to_lowercase().contains(f))
            })
            .collect();
        if candidates.is_empty() && filter.is_none() {
            // The browser exposes adapters only through request_adapter.
            if let Ok(a) = inst
                .request_adapter(&wgpu::RequestAdapterOptions::default())
                .await
            {
                candidates.push(a);
            }
        }
        let rank = |a: &wgpu::Adapter| {
            let info = a.get_info();
            let ty = match info.device_type {
                wgpu::DeviceType::DiscreteGpu => 0,
                wgpu::DeviceType::IntegratedGpu => 1,
                wgpu::DeviceType::VirtualGpu => 2,
                wgpu::DeviceType::Other => 3,
                wgpu::DeviceType::Cpu => 4,
            };
            // Prefer Vulkan/Metal/DX12/WebGPU over GL on the same device.
            let be = if info.backend == wgpu::Backend::Gl {
                1
            } else {
                0
            };
            (ty, be)
        };
        candidates.sort_by_key(rank);
        let Some(adapter) = candidates.into_iter().next() else {
            let mut f = String::new();
            if let Some(n) = &options.adapter_name {
                f += &format!(" whose name contains '{n}' (PRIOR_ADAPTER)");
            }
            if let Some(b) = options.backends {
                f += &format!(" on backends {b:?} (PRIOR_BACKEND)");
            }
            return Err(GpuError::NoAdapter { filter: f });
        };
        let summary = AdapterSummary::of(&adapter);
        let alimits = adapter.limits();
        let wanted =
            wgpu::Features::SUBGROUP | wgpu::Features::SHADER_F16 | wgpu::Features::TIMESTAMP_QUERY;
        let features = adapter.features() & wanted;
        let mut limits = wgpu::Limits::downlevel_defaults().using_resolution(alimits.clone());
        limits.max_storage_buffer_binding_size = alimits.max_storage_buffer_binding_size;
        limits.max_buffer_size = alimits.max_buffer_size;
        limits.max_storage_buffers_per_shader_stage =
            alimits.max_storage_buffers_per_shader_stage.min(10);
        limits.max_compute_workgroup_storage_size = alimits.max_compute_workgroup_storage_size;
        limits.max_compute_invocations_per_workgroup =
            alimits.max_compute_invocations_per_workgroup;
        limits.max_compute_workgroup_size_x = alimits.max_compute_workgroup_size_x;
        limits.max_compute_workgroup_size_y = alimits.max_compute_workgroup_size_y;
        limits.max_compute_workgroup_size_z = alimits.max_compute_workgroup_size_z;
        limits.max_compute_workgroups_per_dimension = alimits.max_compute_workgroups_per_dimension;
        limits.max_dynamic_uniform_buffers_per_pipeline_layout = alimits
            .max_dynamic_uniform_buffers_per_pipeline_layout
            .max(1);
        let hw_max = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        if let Some(cap) = options.fault.alloc_limit {
            // The driver refuses buffers above `cap`; planning still uses hw_max.
            limits.max_buffer_size = limits.max_buffer_size.min(cap);
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("prior"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|source| GpuError::RequestDevice {
                adapter: summary.name.clone(),
                source,
            })?;
        let faults = Faults::new(&summary.name);
        faults.install(&device);
        let max_buffer_bytes = options.max_buffer_bytes.map_or(hw_max, |m| m.min(hw_max));
        let align = limits.min_uniform_buffer_offset_alignment.max(256);
        Ok(Gpu {
            stream: Mutex::new(Stream::new(align)),
            device,
            queue,
            adapter: summary,
            limits,
            features,
            max_buffer_bytes,
            no_subgroups: std::env::var("PRIOR_NO_SUBGROUPS").is_ok_and(|v| v == "1"),
            faults,
            submits: std::sync::atomic::AtomicU64::new(0),
            fault: options.fault,
            pipelines: Mutex::new(HashMap::new()),
            modules: Mutex::new(HashMap::new()),
            profiler: Mutex::new(None),
            pool: Arc::new(Mutex::new(Pool::default())),
        })
    }

    /// Opens an adapter chosen by the environment (see [`GpuOptions::from_env`]).
    pub async fn from_env() -> Result<Gpu> {
        Gpu::new(GpuOptions::try_from_env()?).await
    }

    /// Waits (asynchronously) for the work recorded so far to be checked and
    /// returns the first GPU error since the last `read`/`check`: a buffer
    /// that could not be allocated, a validation error, a lost device. A
    /// lost device is reported by every later call; other errors are
    /// cleared once returned. Flushes the stream.
    pub async fn check(&self, what: &str) -> Result<()> {
        if let Some(e) = self.faults.lost_error(what) {
            return Err(e);
        }
        self.flush();
        match self.faults.take(what).await {
            Some(e) => {
                self.after_fault(&e);
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// True once the device is lost (see [`GpuError::DeviceLost`]).
    pub fn is_lost(&self) -> bool {
        self.faults.is_lost()
    }

    /// After an error: pooled buffers may be invalid (on the web their
    /// allocation is checked late), so the pool and bind groups are dropped.
    pub(crate) fn after_fault(&self, _e: &GpuError) {
        self.trim_pool();
    }

    /// True when kernels may use subgroup operations.
    pub fn has_subgroups(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
    }

    /// True when subgroup operations are available and every subgroup has
    /// at least `lanes` lanes. `PRIOR_NO_SUBGROUPS=1` turns subgroup kernels off.
    pub fn subgroups_at_least(&self, lanes: u32) -> bool {
        self.has_subgroups() && self.adapter.subgroup_min_size >= lanes && !self.no_subgroups
    }

    /// The shader module of `kernel.source`, created on first use (each
    /// source once: several entry points and specialisations share it).
    fn shader_module(&self, kernel: &Kernel) -> wgpu::ShaderModule {
        let key = (kernel.source.as_ptr() as usize, kernel.source.len());
        let mut modules = self.modules.lock().unwrap();
        modules
            .entry(key)
            .or_insert_with(|| {
                self.device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(kernel.file),
                        source: wgpu::ShaderSource::Wgsl(kernel.source.into()),
                    })
            })
            .clone()
    }

    /// How many shader modules have been created (one per distinct source).
    pub fn shader_modules(&self) -> usize {
        self.modules.lock().unwrap().len()
    }

    /// The compiled pipeline of `kernel` with the given specialisation
    /// constants (WGSL `override`s), from the cache or compiled now.
    pub(crate) fn pipeline(
        &self,
        kernel: &Kernel,
        constants: &[(&'static str, f64)],
    ) -> Arc<Pipeline> {
        let key = PipelineKey {
            file: kernel.file,
            entry: kernel.entry,
            source_ptr: kernel.source.as_ptr() as usize,
            bindings: kernel.bindings,
            constants: constants.iter().map(|(k, v)| (*k, v.to_bits())).collect(),
        };
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return p.clone();
        }
        // Checked against the WGSL without holding the cache lock (with
        // feature `reflect`; a mismatch panics).
        #[cfg(feature = "reflect")]
        let reflected = crate::reflect::check(kernel);
        let mut cache = self.pipelines.lock().unwrap();
        if let Some(p) = cache.get(&key) {
            return p.clone();
        }
        // The layout is the declaration: the bindings this entry point uses.
        let slots: Vec<u32> = kernel.used().map(|(b, _)| b).collect();
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: None,
            },
            count: None,
        }];
        for (binding, a) in kernel.used() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: a == Access::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let compile = || {
            let layout = self
                .device
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(kernel.entry),
                    entries: &entries,
                });
            let pl = self
                .device
                .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(kernel.entry),
                    bind_group_layouts: &[Some(&layout)],
                    immediate_size: 0,
                });
            let module = self.shader_module(kernel);
            let pipeline = self
                .device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(kernel.entry),
                    layout: Some(&pl),
                    module: &module,
                    entry_point: Some(kernel.entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants,
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                });
            (layout, pipeline)
        };
        let what = || {
            Op::Other(format!(
                "compiling kernel {} (entry point {})",
                kernel.file, kernel.entry
            ))
        };
        let ((layout, pipeline), failed) = self.faults.scoped(&self.device, what, compile);
        let id = NEXT_PIPELINE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{}:{}", kernel.file, kernel.entry);
        let p = Arc::new(Pipeline {
            id,
            name,
            valid: !failed,
            pipeline,
            layout,
            slots,
            #[cfg(feature = "reflect")]
            reflected,
        });
        // A pipeline that failed to compile is not cached: the error is
        // reported by the next read, and a retry compiles it again.
        if !failed {
            cache.insert(key, p.clone());
        }
        p
    }
}
