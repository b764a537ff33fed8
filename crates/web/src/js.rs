//! Between JS values and the library's types: options objects (keys = the
//! CLI's long flags in camelCase), images (`{c, h, w, data}` with planar
//! data), results (the CLI's `--json` keys plus `data`, `n`, `c`, `h`, `w`)
//! and errors (an `AbortError` for a cancelled run).

use js_sys::{Array, Float32Array, Object, Reflect};
use prior_gpu::Shape;
use wasm_bindgen::prelude::*;

/// An error as a JS `Error` carrying the library's message.
pub fn error(e: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&e.to_string()).into()
}

/// The error a cancelled run rejects with: `name` is `"AbortError"`, as
/// for `fetch` with an aborted signal.
pub fn abort_error(what: &str) -> JsValue {
    let e = js_sys::Error::new(&format!("prior: {what} was cancelled (AbortSignal)"));
    e.set_name("AbortError");
    e.into()
}

/// An options object (`undefined`/`null`: no options).
pub struct Options {
    obj: JsValue,
}

impl Options {
    /// Wraps `obj`; anything but an object, `undefined` or `null` is an error.
    pub fn new(obj: JsValue, what: &str) -> Result<Options, JsValue> {
        if !(obj.is_undefined() || obj.is_null() || obj.is_object()) {
            return Err(error(format!("{what}: the options must be an object")));
        }
        Ok(Options { obj })
    }

    /// The raw value of `key` (`None` when absent, undefined or null).
    pub fn get(&self, key: &str) -> Option<JsValue> {
        if !self.obj.is_object() {
            return None;
        }
        Reflect::get(&self.obj, &JsValue::from_str(key))
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_null())
    }

    /// A number option.
    pub fn f64(&self, key: &str) -> Result<Option<f64>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| error(format!("option {key}: expected a finite number, got {v:?}"))),
        }
    }

    /// A float option with a default.
    pub fn f32_or(&self, key: &str, default: f32) -> Result<f32, JsValue> {
        Ok(self.f64(key)?.map_or(default, |x| x as f32))
    }

    /// A non-negative integer option.
    pub fn usize(&self, key: &str) -> Result<Option<usize>, JsValue> {
        match self.f64(key)? {
            None => Ok(None),
            Some(x) if x >= 0.0 && x.fract() == 0.0 && x <= 9.0e15 => Ok(Some(x as usize)),
            Some(x) => Err(error(format!(
                "option {key}: expected a non-negative integer, got {x}"
            ))),
        }
    }

    /// An integer option with a default.
    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize, JsValue> {
        Ok(self.usize(key)?.unwrap_or(default))
    }

    /// A string option.
    pub fn string(&self, key: &str) -> Result<Option<String>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_string()
                .map(Some)
                .ok_or_else(|| error(format!("option {key}: expected a string"))),
        }
    }

    /// `precision`: `"f32"` (the default) or `"f16"`, as `--precision`.
    pub fn precision(&self) -> Result<prior_ops::precision::Precision, JsValue> {
        use prior_ops::precision::Precision;
        match self.string("precision")?.as_deref() {
            None | Some("f32") => Ok(Precision::F32),
            Some("f16") => Ok(Precision::F16),
            Some(other) => Err(error(format!(
                "option precision: expected \"f32\" or \"f16\", got {other:?}"
            ))),
        }
    }

    /// A boolean option (default false).
    pub fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| v.is_truthy())
    }

    /// `onProgress`, when given.
    pub fn callback(&self, key: &str) -> Result<Option<js_sys::Function>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .dyn_into::<js_sys::Function>()
                .map(Some)
                .map_err(|_| error(format!("option {key}: expected a function"))),
        }
    }

    /// `signal`, when given.
    pub fn signal(&self) -> Result<Option<Signal>, JsValue> {
        match self.get("signal") {
            None => Ok(None),
            Some(v) if v.is_object() => Ok(Some(Signal(v))),
            Some(_) => Err(error("option signal: expected an AbortSignal")),
        }
    }
}

/// An `AbortSignal` (read through its `aborted` property).
pub struct Signal(JsValue);

impl Signal {
    /// Whether it fired.
    pub fn aborted(&self) -> bool {
        Reflect::get(&self.0, &JsValue::from_str("aborted")).is_ok_and(|v| v.is_truthy())
    }
}

/// Whether an optional signal fired.
pub fn aborted(s: &Option<Signal>) -> bool {
    s.as_ref().is_some_and(Signal::aborted)
}

/// A planar image or batch from JS: `{c, h, w, data}` (optionally `n`).
pub struct Image {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Planar N×C×H×W values.
    pub data: Vec<f32>,
}

impl Image {
    /// Reads `{n?, c, h, w, data: Float32Array | number[]}`.
    pub fn from_js(v: &JsValue, what: &str) -> Result<Image, JsValue> {
        let o = Options::new(v.clone(), what)?;
        let dim = |k: &str| -> Result<usize, JsValue> {
            o.usize(k)?
                .filter(|&d| d > 0)
                .ok_or_else(|| error(format!("{what}: needs a positive integer `{k}`")))
        };
        let (c, h, w) = (dim("c")?, dim("h")?, dim("w")?);
        let n = o.usize("n")?.unwrap_or(1).max(1);
        let data = match o.get("data") {
            Some(d) if d.is_instance_of::<Float32Array>() => Float32Array::from(d).to_vec(),
            Some(d) if Array::is_array(&d) => Array::from(&d)
                .iter()
                .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
                .collect(),
            _ => return Err(error(format!("{what}: needs `data`, a Float32Array"))),
        };
        if data.len() != n * c * h * w {
            return Err(error(format!(
                "{what}: data has {} values, {n}×{c}×{h}×{w} needs {}",
                data.len(),
                n * c * h * w
            )));
        }
        Ok(Image { n, c, h, w, data })
    }

    /// The shape on the GPU (`[n, h, w, c]`).
    pub fn shape(&self) -> Shape {
        Shape::new(self.n, self.h, self.w, self.c)
    }

    /// Channels-last values for the GPU.
    pub fn channels_last(&self) -> Vec<f32> {
        to_channels_last(&self.data, self.shape())
    }
}

/// Planar N×C×H×W → channels-last N×H×W×C.
pub fn to_channels_last(planar: &[f32], s: Shape) -> Vec<f32> {
    let (hw, c) = (s.h * s.w, s.c);
    let mut v = vec![0.0; planar.len()];
    for b in 0..s.n {
        let base = b * hw * c;
        for ch in 0..c {
            for p in 0..hw {
                v[base + p * c + ch] = planar[base + ch * hw + p];
            }
        }
    }
    v
}

/// Channels-last N×H×W×C → planar N×C×H×W (the layout of the CLI's `.npy`).
pub fn to_planar(nhwc: &[f32], s: Shape) -> Vec<f32> {
    let (hw, c) = (s.h * s.w, s.c);
    let mut v = vec![0.0; nhwc.len()];
    for b in 0..s.n {
        let base = b * hw * c;
        for ch in 0..c {
            for p in 0..hw {
                v[base + ch * hw + p] = nhwc[base + p * c + ch];
            }
        }
    }
    v
}

/// A result object: the JSON keys, then `data` (planar) and `n, c, h, w`.
pub fn result(
    json: serde_json::Map<String, serde_json::Value>,
    nhwc: Option<(&[f32], Shape)>,
) -> Result<JsValue, JsValue> {
    let text = serde_json::Value::Object(json).to_string();
    let obj = js_sys::JSON::parse(&text)?;
    if let Some((x, s)) = nhwc {
        set(
            &obj,
            "data",
            &Float32Array::from(to_planar(x, s).as_slice()),
        )?;
        for (k, v) in [("n", s.n), ("c", s.c), ("h", s.h), ("w", s.w)] {
            set(&obj, k, &JsValue::from_f64(v as f64))?;
        }
    }
    Ok(obj)
}

/// `obj[key] = value`.
pub fn set(obj: &JsValue, key: &str, value: &JsValue) -> Result<(), JsValue> {
    Reflect::set(obj, &JsValue::from_str(key), value).map(|_| ())
}

/// A new empty object.
pub fn object() -> JsValue {
    Object::new().into()
}

/// A Float32Array of `v`.
pub fn floats(v: &[f32]) -> JsValue {
    Float32Array::from(v).into()
}
