//! The browser's home for the per-adapter convolution choices of
//! `prior_ops::tune`: the page's `localStorage`, one entry per adapter key
//! (adapter, driver, prior's version), in the same text format as the
//! native disk cache. Where `localStorage` is missing or refused (a Worker,
//! a sandboxed frame, a full quota) the choices live for the page only.
//!
//! When tuning runs mirrors `prior denoise`: cached choices are loaded when
//! the GPU opens, and shapes without one are tuned once, after the first
//! denoise, in the mode [`TuneMode::default_for`] the adapter (off on CPU
//! adapters such as SwiftShader, so the tests never time anything).

use std::cell::Cell;

use js_sys::{Function, Reflect};
use prior_gpu::Gpu;
use prior_ops::tune::{self, TuneConfig, TuneMode, TuneStore};
use wasm_bindgen::{JsCast, JsValue};

thread_local! {
    /// Whether this page already ran its tuning pass.
    static TUNED: Cell<bool> = const { Cell::new(false) };
}

/// `localStorage`, when the page has one.
struct LocalStorage;

fn storage() -> Option<JsValue> {
    Reflect::get(&js_sys::global(), &JsValue::from_str("localStorage"))
        .ok()
        .filter(|s| !s.is_undefined() && !s.is_null())
}

fn method(obj: &JsValue, name: &str) -> Option<Function> {
    Reflect::get(obj, &JsValue::from_str(name))
        .ok()?
        .dyn_into::<Function>()
        .ok()
}

fn entry(key: &str) -> String {
    format!("prior tune: {key}")
}

impl TuneStore for LocalStorage {
    fn load(&self, key: &str) -> Option<String> {
        let s = storage()?;
        method(&s, "getItem")?
            .call1(&s, &JsValue::from_str(&entry(key)))
            .ok()?
            .as_string()
    }

    fn save(&self, key: &str, text: &str) -> Result<(), String> {
        let s = storage().ok_or("this page has no localStorage")?;
        let set = method(&s, "setItem").ok_or("localStorage has no setItem")?;
        set.call2(
            &s,
            &JsValue::from_str(&entry(key)),
            &JsValue::from_str(text),
        )
        .map(|_| ())
        .map_err(|e| format!("localStorage refused it ({e:?})"))
    }

    fn describe(&self, key: &str) -> String {
        format!("localStorage[{:?}]", entry(key))
    }
}

/// `performance.now()` in seconds (the tuner's clock).
fn now() -> f64 {
    let Ok(perf) = Reflect::get(&js_sys::global(), &JsValue::from_str("performance")) else {
        return 0.0;
    };
    method(&perf, "now")
        .and_then(|f| f.call0(&perf).ok())
        .and_then(|v| v.as_f64())
        .map_or(0.0, |ms| ms / 1000.0)
}

/// `console.warn("prior: …")`.
pub(crate) fn warn(w: &str) {
    if let Ok(console) = Reflect::get(&js_sys::global(), &JsValue::from_str("console")) {
        if let Some(f) = method(&console, "warn") {
            let _ = f.call1(&console, &JsValue::from_str(&format!("prior: {w}")));
        }
    }
}

/// Loads the cached choices of `gpu`'s adapter (when tuning is on for it).
pub(crate) fn begin(gpu: &Gpu) {
    if TuneMode::default_for(gpu) != TuneMode::Off {
        tune::load_store(gpu, &LocalStorage)
            .iter()
            .for_each(|w| warn(w));
    }
}

/// Tunes, once per page, the conv shapes met so far without a cached choice
/// and saves them; a failure is a console warning (the fixed kernels run).
pub(crate) async fn after_first_denoise(gpu: &Gpu) {
    let mode = TuneMode::default_for(gpu);
    if mode == TuneMode::Off || TUNED.with(|t| t.replace(true)) || tune::seen(gpu).is_empty() {
        return;
    }
    let cfg = TuneConfig { mode, now };
    match tune::tune_seen(gpu, cfg, &LocalStorage).await {
        Ok(r) => r.warnings.iter().for_each(|w| warn(w)),
        Err(e) => warn(&format!(
            "tuning the convolutions failed ({e}); the fixed kernels run"
        )),
    }
}
