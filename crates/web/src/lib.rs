//! prior in the browser: a small wasm-bindgen API over the same crates the
//! CLI uses, on the browser's WebGPU (`cargo xtask web` builds the bundle and
//! the page in `www/`; `tests/browser.rs` runs it in headless Chromium).
//!
//! ```js
//! import wasm, { init, Model } from "./pkg/prior_web.js";
//! await wasm();
//! const adapter = await init();                 // opens WebGPU once
//! const model = Model.load(bytes, "model.pt");  // .pt checkpoint or .safetensors blob
//! const out = await model.denoise(c, h, w, data); // planar CHW Float32Array in [0,1]
//! ```
//!
//! Every error reaches JS as an exception with the library's message. The
//! GPU is f32 only; kernels without subgroup operations are chosen when the
//! adapter has no subgroups (the same choice as on native adapters).

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use js_sys::{Float32Array, Promise};
use prior_gpu::{wgpu, Gpu, GpuOptions};
use prior_models::blob::WeightBlob;
use prior_models::tiling::{apply_image, Apply, Planar};
use prior_models::Denoiser;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

thread_local! {
    /// The one WebGPU device of the page, opened by [`init`].
    static GPU: RefCell<Option<Rc<Gpu>>> = const { RefCell::new(None) };
}

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn gpu() -> Result<Rc<Gpu>, JsError> {
    GPU.with(|g| g.borrow().clone())
        .ok_or_else(|| JsError::new("prior: call init() (and await it) before loading a model"))
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

/// Opens the browser's WebGPU adapter (once; later calls return the same
/// one) and returns a description of it.
#[wasm_bindgen]
pub async fn init() -> Result<String, JsError> {
    install_panic_hook();
    if let Some(g) = GPU.with(|g| g.borrow().clone()) {
        return Ok(describe_adapter(&g));
    }
    let options = GpuOptions {
        backends: Some(wgpu::Backends::BROWSER_WEBGPU),
        ..Default::default()
    };
    let gpu = Gpu::new(options).await.map_err(|e| {
        JsError::new(&format!(
            "prior: no WebGPU device ({e}); is WebGPU enabled in this browser?"
        ))
    })?;
    let text = describe_adapter(&gpu);
    GPU.with(|g| *g.borrow_mut() = Some(Rc::new(gpu)));
    Ok(text)
}

/// A loaded denoiser.
#[wasm_bindgen]
pub struct Model {
    model: Rc<dyn Denoiser>,
}

#[wasm_bindgen]
impl Model {
    /// Loads a PyTorch checkpoint (zip or legacy `torch.save`, read as data)
    /// or a `.safetensors` weight blob; `name` is used in error messages.
    pub fn load(bytes: &[u8], name: &str) -> Result<Model, JsError> {
        let gpu = gpu()?;
        let origin = Path::new(name);
        let blob = if prior_models::import::looks_like_torch_checkpoint(bytes) {
            prior_models::import::import_bytes(bytes, origin).map_err(js_err)?
        } else {
            WeightBlob::from_bytes_at(bytes, origin).map_err(js_err)?
        };
        let model = prior_models::load(&gpu, &blob).map_err(js_err)?;
        Ok(Model {
            model: Rc::from(model),
        })
    }

    /// Architecture, variant and source of the weights.
    pub fn describe(&self) -> String {
        self.model.describe()
    }

    /// Image channels the model takes (1: gray, 3: colour).
    #[wasm_bindgen(getter)]
    pub fn channels(&self) -> usize {
        self.model.channels()
    }

    /// Parameter count.
    #[wasm_bindgen(getter)]
    pub fn parameters(&self) -> usize {
        self.model.parameters()
    }

    /// Denoises a planar `(c, h, w)` image with values in [0, 1]; resolves
    /// to the denoised image in the same layout (tiled like the CLI when the
    /// adapter's buffers are too small for one pass).
    pub fn denoise(&self, c: usize, h: usize, w: usize, data: &Float32Array) -> Promise {
        let model = self.model.clone();
        let data = data.to_vec();
        future_to_promise(async move {
            let gpu = gpu()?;
            let img = Planar {
                c,
                h,
                w,
                data: &data,
            };
            let out = apply_image(&gpu, &*model, img, Apply::Denoise, None)
                .await
                .map_err(js_err)?;
            Ok(Float32Array::from(out.as_slice()).into())
        })
    }
}
