//! prior in the browser: a wasm-bindgen API over the same crates the CLI
//! uses, on the browser's WebGPU (`cargo xtask web` builds the bundle and
//! the page in `www/`; `tests/browser.rs` runs it in headless Chromium).
//!
//! ```js
//! import wasm, { Model } from "./pkg/prior_web.js";
//! await wasm();
//! const model = Model.load(bytes, "model.pt");  // parsed on the CPU, no GPU yet
//! const r = await model.sample({ size: "28x28", seed: 3, beta: 0.5, maxIters: 10 });
//! r.data; r.n; r.c; r.h; r.w; r.iterations; r.final_sigma; // the CLI's --json keys
//! ```
//!
//! Options objects use the CLI's long flags in camelCase with the CLI's
//! defaults (`prior_algos::sampler::defaults`); results carry the keys of
//! the CLI's `--json` line (built by the same library function where the
//! CLI has one) plus the planar N×C×H×W `data` and its dims. WebGPU is
//! opened on the first async call (or by [`init`]). `onProgress` is called
//! at every readback; `signal` (an `AbortSignal`) cancels a run, which then
//! rejects with an error named `AbortError`, and the model stays usable.
//! Every error reaches JS as an exception with the library's message. The
//! GPU is f32 only; kernels without subgroup operations are chosen when the
//! adapter has no subgroups (the same choice as on native adapters).

mod analysis;
mod js;
mod methods;
mod tune_store;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use js_sys::Float32Array;
use prior_gpu::{wgpu, Gpu, GpuOptions};
use prior_models::blob::WeightBlob;
use prior_models::energy::EnergyUNet;
use prior_models::hparams::Hparams;
use prior_models::multiscale::MultiScale;
use prior_models::{Arch, Denoiser};
use prior_ops::precision::Precision;
use wasm_bindgen::prelude::*;

thread_local! {
    /// The one WebGPU device of the page, opened by [`init`] or the first
    /// async method.
    static GPU: RefCell<Option<Rc<Gpu>>> = const { RefCell::new(None) };
}

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn describe_adapter(gpu: &Gpu) -> String {
    let a = &gpu.adapter;
    format!(
        "{} ({}, {}{}{})",
        if a.name.is_empty() {
            "unnamed adapter"
        } else {
            &a.name
        },
        a.backend,
        a.device_type,
        if a.driver.is_empty() {
            String::new()
        } else {
            format!(", {}", a.driver)
        },
        if gpu.has_subgroups() {
            ", subgroups"
        } else {
            ", no subgroups"
        },
    )
}

#[cfg(target_arch = "wasm32")]
fn install_panic_hook() {
    #[wasm_bindgen]
    extern "C" {
        #[wasm_bindgen(js_namespace = console)]
        fn error(msg: &str);
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    // A panic aborts the module with "unreachable"; print its message first.
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| error(&format!("prior panicked: {info}"))))
    });
}

#[cfg(not(target_arch = "wasm32"))]
fn install_panic_hook() {}

/// The page's GPU, opened on first use.
async fn gpu() -> Result<Rc<Gpu>, JsValue> {
    install_panic_hook();
    if let Some(g) = GPU.with(|g| g.borrow().clone()) {
        return Ok(g);
    }
    let options = GpuOptions {
        backends: Some(wgpu::Backends::BROWSER_WEBGPU),
        ..Default::default()
    };
    let opened = Gpu::new(options).await.map_err(|e| {
        js::error(format!(
            "prior: no WebGPU device ({e}); is WebGPU enabled in this browser?"
        ))
    })?;
    // Two calls may have raced to open it: keep the first one stored.
    let gpu = GPU.with(|g| g.borrow_mut().get_or_insert(Rc::new(opened)).clone());
    tune_store::begin(&gpu);
    Ok(gpu)
}

/// Opens the browser's WebGPU adapter (once; later calls return the same
/// one) and returns a description of it. Optional: the first async method
/// of a [`Model`] opens it too.
#[wasm_bindgen]
pub async fn init() -> Result<String, JsValue> {
    Ok(describe_adapter(&*gpu().await?))
}

/// `clean + (σ/255)·z` with z from prior's counter-based generator: the
/// noisy image `prior denoise --add-noise SIGMA_255 --seed SEED` denoises
/// (its image 0), identical on every adapter and in the goldens.
#[wasm_bindgen(js_name = addNoise)]
pub fn add_noise(clean: &Float32Array, sigma255: f64, seed: u32) -> Float32Array {
    let v = prior_algos::jacobian::add_noise(&clean.to_vec(), sigma255, seed as u64);
    Float32Array::from(v.as_slice())
}

/// Where a model's weights come from (parsed on the CPU by [`Model::load`]).
enum Source {
    /// One blob (any architecture, a combined multi-scale blob included).
    Blob(WeightBlob),
    /// The authors' multi-scale files: the low-pass model and the level-j
    /// conditional models, finest first.
    Parts {
        low: WeightBlob,
        scales: Vec<WeightBlob>,
        origin: String,
    },
}

/// The model on the GPU (built on the first async call).
#[derive(Clone)]
struct Loaded {
    den: Rc<dyn Denoiser>,
    multi: Option<Rc<MultiScale>>,
    energy: Option<Rc<EnergyUNet>>,
}

struct Inner {
    source: Source,
    loaded: RefCell<Option<Loaded>>,
    /// The same weights with f16 storage (`precision: "f16"`), built on
    /// first use.
    loaded_f16: RefCell<Option<Loaded>>,
}

impl Inner {
    /// The GPU and the model on it.
    async fn open(&self) -> Result<(Rc<Gpu>, Loaded), JsValue> {
        let gpu = gpu().await?;
        if let Some(l) = self.loaded.borrow().clone() {
            return Ok((gpu, l));
        }
        let l = self.build(&gpu, Precision::F32)?;
        *self.loaded.borrow_mut() = Some(l.clone());
        Ok((gpu, l))
    }

    /// The model of `source` on `gpu` with `precision` storage (f16 refused
    /// by the energy model).
    fn build(&self, gpu: &Gpu, precision: Precision) -> Result<Loaded, JsValue> {
        let set = |m: &mut dyn Denoiser| {
            m.set_precision(gpu, precision)
                .map_err(|e| js::error(format!("precision {}: {e}", precision.name())))
        };
        let multi = |mut m: MultiScale| -> Result<Loaded, JsValue> {
            set(&mut m)?;
            let m = Rc::new(m);
            Ok(Loaded {
                den: m.clone(),
                multi: Some(m),
                energy: None,
            })
        };
        match &self.source {
            Source::Parts {
                low,
                scales,
                origin,
            } => multi(
                MultiScale::from_parts(gpu, low.clone(), scales.clone(), origin)
                    .map_err(js::error)?,
            ),
            Source::Blob(b) => match b.arch().map_err(js::error)? {
                Arch::Multiscale => multi(MultiScale::from_blob(gpu, b).map_err(js::error)?),
                Arch::EnergyUnet => {
                    let mut e = EnergyUNet::from_blob(gpu, b).map_err(js::error)?;
                    set(&mut e)?;
                    let e = Rc::new(e);
                    Ok(Loaded {
                        den: e.clone(),
                        multi: None,
                        energy: Some(e),
                    })
                }
                _ => {
                    let mut m = prior_models::load(gpu, b).map_err(js::error)?;
                    set(m.as_mut())?;
                    Ok(Loaded {
                        den: Rc::from(m),
                        multi: None,
                        energy: None,
                    })
                }
            },
        }
    }

    /// The GPU and the model with `precision` storage, as `--precision`:
    /// f16 for the models of `prior_models::F16_MODELS`, f32 with a console
    /// warning on adapters without shader-f16.
    async fn open_with(&self, precision: Precision) -> Result<(Rc<Gpu>, Loaded), JsValue> {
        let (gpu, l) = self.open().await?;
        let (p, warning) = Precision::on(&gpu, precision);
        if let Some(w) = warning {
            tune_store::warn(&w);
        }
        if p == Precision::F32 {
            return Ok((gpu, l));
        }
        if let Some(l) = self.loaded_f16.borrow().clone() {
            return Ok((gpu, l));
        }
        let f16 = self.build(&gpu, p)?;
        *self.loaded_f16.borrow_mut() = Some(f16.clone());
        Ok((gpu, f16))
    }

    fn blob(&self) -> &WeightBlob {
        match &self.source {
            Source::Blob(b) => b,
            Source::Parts { low, .. } => low,
        }
    }
}

fn parse_blob(bytes: &[u8], name: &str) -> Result<WeightBlob, JsError> {
    let origin = Path::new(name);
    let blob = if prior_models::import::looks_like_torch_checkpoint(bytes) {
        prior_models::import::import_bytes(bytes, origin).map_err(js_err)?
    } else {
        WeightBlob::from_bytes_at(bytes, origin).map_err(js_err)?
    };
    // The same check as `prior_models::load` does first: a missing or
    // unknown hyper-parameter is refused here, before any GPU work.
    blob.hparams().map_err(js_err)?;
    Ok(blob)
}

/// A loaded model: a denoiser, an energy model or a multi-scale model.
#[wasm_bindgen]
pub struct Model {
    inner: Rc<Inner>,
}

#[wasm_bindgen]
impl Model {
    /// Loads a PyTorch checkpoint (zip or legacy `torch.save`, read as data)
    /// or a `.safetensors` weight blob (a combined multi-scale blob
    /// included); `name` is used in error messages. Synchronous: the
    /// weights are parsed on the CPU; WebGPU is opened by the first async
    /// method.
    pub fn load(bytes: &[u8], name: &str) -> Result<Model, JsError> {
        install_panic_hook();
        Ok(Model {
            inner: Rc::new(Inner {
                source: Source::Blob(parse_blob(bytes, name)?),
                loaded: RefCell::new(None),
                loaded_f16: RefCell::new(None),
            }),
        })
    }

    /// Loads a multi-scale model from the authors' set of files, an array of
    /// `{name, bytes}`: one `low*.pt` (or `.safetensors`) and
    /// `*scale_{j}.pt` for j = 0..J−1 (the naming of
    /// `prior_models::multiscale::MultiScale::from_dir`).
    #[wasm_bindgen(js_name = loadMultiScale)]
    pub fn load_multiscale(files: js_sys::Array) -> Result<Model, JsError> {
        install_panic_hook();
        let mut low = Vec::new();
        let mut scales: Vec<(usize, WeightBlob)> = Vec::new();
        let mut names = Vec::new();
        for f in files.iter() {
            let get = |k: &str| js_sys::Reflect::get(&f, &JsValue::from_str(k)).ok();
            let name = get("name")
                .and_then(|v| v.as_string())
                .ok_or_else(|| JsError::new("loadMultiScale: each file needs a `name` string"))?;
            let bytes = get("bytes")
                .filter(|v| v.is_instance_of::<js_sys::Uint8Array>())
                .map(|v| js_sys::Uint8Array::from(v).to_vec())
                .ok_or_else(|| {
                    JsError::new(&format!(
                        "loadMultiScale: {name}: `bytes` must be a Uint8Array"
                    ))
                })?;
            let base = name.rsplit('/').next().unwrap_or(&name).to_string();
            let stem = base
                .strip_suffix(".pt")
                .or_else(|| base.strip_suffix(".safetensors"))
                .unwrap_or(&base);
            if stem.starts_with("low") {
                low.push(parse_blob(&bytes, &name)?);
            } else if let Some(j) = stem
                .rsplit_once("scale_")
                .and_then(|(_, j)| j.parse::<usize>().ok())
            {
                scales.push((j, parse_blob(&bytes, &name)?));
            } else {
                return Err(JsError::new(&format!(
                    "loadMultiScale: {name} is neither low*.pt nor *scale_J.pt"
                )));
            }
            names.push(name);
        }
        let origin = names.join(", ");
        let low = match low.len() {
            1 => low.pop().expect("one"),
            0 => {
                return Err(JsError::new(&format!(
                    "loadMultiScale ({origin}): no low-pass model (low*.pt or low*.safetensors)"
                )))
            }
            k => {
                return Err(JsError::new(&format!(
                    "loadMultiScale ({origin}): {k} low-pass models; give one"
                )))
            }
        };
        scales.sort_by_key(|(j, _)| *j);
        for (i, (j, _)) in scales.iter().enumerate() {
            if *j != i {
                return Err(JsError::new(&format!(
                    "loadMultiScale ({origin}): conditional models must be numbered scale_0 … scale_{{J-1}} without gaps or duplicates; found scale_{j} where scale_{i} was expected"
                )));
            }
        }
        if scales.is_empty() {
            return Err(JsError::new(&format!(
                "loadMultiScale ({origin}): no conditional models (rf*_scale_0.pt, ...)"
            )));
        }
        Ok(Model {
            inner: Rc::new(Inner {
                source: Source::Parts {
                    low,
                    scales: scales.into_iter().map(|(_, b)| b).collect(),
                    origin,
                },
                loaded: RefCell::new(None),
                loaded_f16: RefCell::new(None),
            }),
        })
    }

    /// Architecture, variant and source of the weights (the model's own
    /// description once it is on the GPU).
    pub fn describe(&self) -> String {
        if let Some(l) = self.inner.loaded.borrow().as_ref() {
            return l.den.describe();
        }
        let b = self.inner.blob();
        match &self.inner.source {
            Source::Parts { scales, origin, .. } => format!(
                "multiscale conditional model, J = {} Haar levels ({origin})",
                scales.len()
            ),
            Source::Blob(_) => format!(
                "{} {} ({})",
                b.arch().map(|a| a.name()).unwrap_or("?"),
                b.variant().unwrap_or(""),
                b.origin.display()
            ),
        }
    }

    /// The architecture's name (`bfcnn`, `energy_unet`, `multiscale`, ...).
    #[wasm_bindgen(getter)]
    pub fn arch(&self) -> String {
        match &self.inner.source {
            Source::Parts { .. } => Arch::Multiscale.name().to_string(),
            Source::Blob(b) => b.arch().map(|a| a.name().to_string()).unwrap_or_default(),
        }
    }

    /// Image channels the model takes (1: gray, 3: colour).
    #[wasm_bindgen(getter)]
    pub fn channels(&self) -> usize {
        match self.inner.blob().hparams() {
            Ok(Hparams::Bfcnn(h)) | Ok(Hparams::Dncnn(h)) => h.in_channels,
            Ok(Hparams::Multiscale(h)) => h.channels,
            Ok(Hparams::Rcnn(h)) => h.in_channels,
            Ok(Hparams::UnetSmall(h)) => h.in_channels,
            Ok(Hparams::BfUnet(h)) => h.in_channels,
            Ok(Hparams::EnergyUnet(h)) => h.in_channels,
            Err(_) => 0,
        }
    }

    /// Parameter count.
    #[wasm_bindgen(getter)]
    pub fn parameters(&self) -> usize {
        match &self.inner.source {
            Source::Blob(b) => b.param_count(),
            Source::Parts { low, scales, .. } => {
                low.param_count() + scales.iter().map(|s| s.param_count()).sum::<usize>()
            }
        }
    }
}
