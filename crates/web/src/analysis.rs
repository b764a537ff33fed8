//! The analysis methods of [`Model`]: `jacobian` (`prior jacobian`,
//! matrix free), `logp` and `score` (`prior logp`, `prior score`) on the
//! same library functions as the CLI.

use js_sys::Promise;
use prior_algos::jacobian::{self, At};
use prior_gpu::Shape;
use prior_models::energy::Likelihood;
use prior_models::tiling::Planar;
use prior_models::Conditioning;
use serde_json::json;
use wasm_bindgen::prelude::*;

use crate::js::{self, Image, Options};
use crate::Model;

/// `pixels`: `"y,x;y,x"` (as `--pixels`) or `[[y, x], ...]`.
fn pixels(o: &Options, h: usize, w: usize) -> Result<Vec<(usize, usize)>, JsValue> {
    let Some(v) = o.get("pixels") else {
        return Ok(Vec::new());
    };
    let pairs: Vec<(f64, f64)> = if let Some(s) = v.as_string() {
        s.split(';')
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                let v: Vec<f64> = p
                    .split(',')
                    .map(|x| x.trim().parse().unwrap_or(f64::NAN))
                    .collect();
                match v[..] {
                    [y, x] => (y, x),
                    _ => (f64::NAN, f64::NAN),
                }
            })
            .collect()
    } else if js_sys::Array::is_array(&v) {
        js_sys::Array::from(&v)
            .iter()
            .map(|p| {
                let a = js_sys::Array::from(&p);
                (
                    a.get(0).as_f64().unwrap_or(f64::NAN),
                    a.get(1).as_f64().unwrap_or(f64::NAN),
                )
            })
            .collect()
    } else {
        return Err(js::error(
            "option pixels: expected \"y,x;y,x\" or [[y, x], ...]",
        ));
    };
    pairs
        .into_iter()
        .map(|(y, x)| {
            if !(y >= 0.0 && x >= 0.0 && y.fract() == 0.0 && x.fract() == 0.0) {
                return Err(js::error(format!(
                    "option pixels: ({y}, {x}) is not y,x (non-negative integers)"
                )));
            }
            let (y, x) = (y as usize, x as usize);
            if y >= h || x >= w {
                return Err(js::error(format!(
                    "pixels {y},{x} is outside the {h}×{w} image"
                )));
            }
            Ok((y, x))
        })
        .collect()
}

#[wasm_bindgen]
impl Model {
    /// `prior jacobian` (matrix free) at `image` (`{c, h, w, data}`, the
    /// noisy image, or the clean one with `addNoise`). Options: `addNoise`
    /// (σ on the 0–255 scale, the CLI's generator and `seed`), `t` (noise
    /// variance for noise-conditioned models), `seed` (0), `topK` (16),
    /// `probes` (64), `oversample` (10), `power` (3), `batch` (128),
    /// `pixels` (`"y,x;y,x"`: adaptive filters, rows of J by VJP),
    /// `vectors` (also return the top-k left singular vectors). Resolves to
    /// the CLI's `--json` keys plus `singular_values` (all k),
    /// `filters[i].data` (planar rows), `vectors` (k planar vectors,
    /// concatenated), `denoised` and `input` (planar).
    pub fn jacobian(&self, image: JsValue, options: JsValue) -> Promise {
        self.spawn(|inner| async move {
            let o = Options::new(options, "jacobian")?;
            let mut img = Image::from_js(&image, "jacobian: image")?;
            if img.n != 1 {
                return Err(js::error("jacobian: the image must be one image (n = 1)"));
            }
            let seed = o.usize_or("seed", 0)? as u64;
            let top_k = o.usize_or("topK", jacobian::defaults::TOP_K)?;
            let probes = o.usize_or("probes", jacobian::defaults::PROBES)?;
            let oversample = o.usize_or("oversample", jacobian::defaults::OVERSAMPLE)?;
            let power = o.usize_or("power", jacobian::defaults::POWER)?;
            let batch = o.usize_or("batch", jacobian::defaults::BATCH)?;
            if top_k == 0 {
                return Err(js::error("topK must be at least 1"));
            }
            if probes == 0 {
                return Err(js::error("probes must be at least 1"));
            }
            let add_noise = o.f64("addNoise")?;
            if let Some(s) = add_noise {
                if !(s > 0.0 && s <= 100_000.0) {
                    return Err(js::error(format!(
                        "noise level {s} must be in (0, 100000] (0–255 scale)"
                    )));
                }
                img.data = jacobian::add_noise(&img.data, s, seed);
            }
            let t = o.f64("t")?.map(|t| t as f32);
            if t.is_some_and(|t| t < 0.0) {
                return Err(js::error("t: the noise variance must be non-negative"));
            }
            let pixels = pixels(&o, img.h, img.w)?;
            let want_vectors = o.flag("vectors");
            let signal = o.signal()?;
            let (gpu, l) = inner.open().await?;
            let variance = t.or(add_noise.map(|s| (s / 255.0).powi(2) as f32));
            let planar = Planar {
                c: img.c,
                h: img.h,
                w: img.w,
                data: &img.data,
            };
            let at = At::new(&gpu, &*l.den, planar, batch, variance).map_err(js::error)?;
            let n = at.n();
            let k = top_k.clamp(1, n);
            let clock = prior_algos::control::Clock::start();
            let check = || {
                if js::aborted(&signal) {
                    Err(js::abort_error("jacobian"))
                } else {
                    Ok(())
                }
            };
            check()?;
            let hu = jacobian::hutchinson(&gpu, &at, probes, seed)
                .await
                .map_err(js::error)?;
            check()?;
            let svd = jacobian::randomized_svd(&gpu, &at, k, oversample, power, seed)
                .await
                .map_err(js::error)?;
            check()?;
            let ll = (k + oversample).min(n);
            let idx: Vec<usize> = pixels.iter().map(|&(y, x)| y * img.w + x).collect();
            let rows = if idx.is_empty() {
                Vec::new()
            } else {
                jacobian::rows(&gpu, &at, &idx).await.map_err(js::error)?
            };
            let den = at.denoised(&gpu).await.map_err(js::error)?;
            let secs = clock.seconds();
            let filter_norms: Vec<serde_json::Value> = pixels
                .iter()
                .zip(&rows)
                .map(|((y, x), row)| {
                    let sum: f64 = row.iter().map(|v| *v as f64).sum();
                    let norm: f64 = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
                    json!({"pixel": [y, x], "sum": sum, "norm": norm})
                })
                .collect();
            let described = match (l.den.conditioning(), variance) {
                (Conditioning::NoiseVariance, Some(t)) => format!("{}, t = {t}", l.den.describe()),
                (Conditioning::NoiseVariance, None) => {
                    format!("{}, t estimated from the image", l.den.describe())
                }
                (Conditioning::Blind, _) => l.den.describe(),
            };
            let top: Vec<f64> = svd.s.iter().take(top_k.min(10)).copied().collect();
            let v = json!({
                "model": described,
                "shape": [img.c, img.h, img.w],
                "n": n,
                "sigma255": add_noise,
                "seed": seed,
                "method": "matrix-free",
                "trace": hu.trace,
                "trace_se": hu.trace_se,
                "sum_sq_singular_values": hu.sum_sq,
                "sum_sq_se": hu.sum_sq_se,
                "top_singular_values": top,
                "singular_values": svd.s,
                "filters": filter_norms,
                "jvps": probes + ll * (1 + power),
                "vjps": ll * (1 + power) + idx.len(),
                "seconds": secs,
                "adapter": gpu.adapter.name,
            });
            let r = js_sys::JSON::parse(&v.to_string())?;
            let filters = js_sys::Reflect::get(&r, &JsValue::from_str("filters"))?;
            for (i, row) in rows.iter().enumerate() {
                js::set(
                    &js_sys::Array::from(&filters).get(i as u32),
                    "data",
                    &js::floats(row),
                )?;
            }
            if want_vectors {
                let flat: Vec<f32> = (0..svd.u.cols)
                    .flat_map(|j| svd.u.col(j))
                    .map(|v| v as f32)
                    .collect();
                js::set(&r, "vectors", &js::floats(&flat))?;
            }
            js::set(&r, "denoised", &js::floats(&den))?;
            js::set(&r, "input", &js::floats(&img.data))?;
            for (key, d) in [("c", img.c), ("h", img.h), ("w", img.w)] {
                js::set(&r, key, &JsValue::from_f64(d as f64))?;
            }
            Ok(r)
        })
    }

    /// `prior logp` for the energy model: −log p(x) of each image of
    /// `images` (an array of `{c, h, w, data}`, or one batch `{n, c, h, w,
    /// data}`) at t = 0. Options: `logZ` (nats; default: the blob's
    /// calibration; refused without either, with the CLI's message).
    /// Resolves to `{images: [{file, energy, nats, bits_per_dim,
    /// db_per_dim}], log_z, seconds}` (the CLI's `--json` records; `file`
    /// is the index).
    pub fn logp(&self, images: JsValue, options: JsValue) -> Promise {
        self.spawn(|inner| async move {
            let o = Options::new(options, "logp")?;
            let list: Vec<Image> = if js_sys::Array::is_array(&images) {
                js_sys::Array::from(&images)
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Image::from_js(&v, &format!("logp: image {i}")))
                    .collect::<Result<_, _>>()?
            } else {
                vec![Image::from_js(&images, "logp: images")?]
            };
            let (gpu, l) = inner.open().await?;
            let e = l.energy.as_ref().ok_or_else(|| {
                js::error(format!(
                    "logp needs the dual-score-matching energy model; this is {}",
                    l.den.describe()
                ))
            })?;
            // As `prior logp`: no log-probability without a calibrated log Z
            // (the energies alone are `score(image, {t: 0}).energy`).
            let log_z = match (o.f64("logZ")?, e.log_z.as_ref()) {
                (Some(v), _) => v,
                (None, Some(c)) => c.log_z,
                (None, None) => {
                    let f = inner.blob().origin.display().to_string();
                    return Err(js::error(format!(
                        "{f}: no log Z in this weight file: run `prior calibrate -m {f} -i CALIBRATION_IMAGES -o CALIBRATED.safetensors` once, or pass logZ (nats)"
                    )));
                }
            };
            if !log_z.is_finite() {
                return Err(js::error(format!("logp: logZ {log_z}: not a finite number")));
            }
            let m = e.multiple();
            let clock = prior_algos::control::Clock::start();
            let mut records = Vec::new();
            let mut k = 0;
            for img in &list {
                if img.c != l.den.channels() {
                    return Err(js::error(format!(
                        "logp: image {k}: {} channel(s), the model takes {}",
                        img.c,
                        l.den.channels()
                    )));
                }
                if img.h % m != 0 || img.w % m != 0 {
                    return Err(js::error(format!(
                        "logp: image {k}: {}×{} is not a multiple of {m} in height and width",
                        img.h, img.w
                    )));
                }
                let y = gpu.upload(img.shape(), &img.channels_last());
                let t = gpu.zeros(Shape::new(img.n, 1, 1, 1));
                let u = e.energies(&gpu, &y, &t).await.map_err(js::error)?;
                let d = img.c * img.h * img.w;
                for energy in u {
                    let lk = Likelihood::new(energy, log_z, d);
                    let rec = json!({"file": k, "energy": lk.energy, "nats": lk.nats,
                                     "bits_per_dim": lk.bits_per_dim, "db_per_dim": lk.db_per_dim});
                    records.push(rec);
                    k += 1;
                }
            }
            let v = json!({"images": records, "log_z": log_z, "seconds": clock.seconds(),
                           "adapter": gpu.adapter.name});
            js_sys::JSON::parse(&v.to_string())
        })
    }

    /// `prior score` for the energy model: U(y, t), its data score ∇_yU
    /// (planar `data`) and, with `dudt: true`, the noise score ∂U/∂t, of
    /// `image` at noise variance `t` (required).
    pub fn score(&self, image: JsValue, options: JsValue) -> Promise {
        self.spawn(|inner| async move {
            let o = Options::new(options, "score")?;
            let img = Image::from_js(&image, "score: image")?;
            if img.n != 1 {
                return Err(js::error("score: the image must be one image (n = 1)"));
            }
            let t = o
                .f64("t")?
                .ok_or_else(|| js::error("score needs t (the noise variance)"))?
                as f32;
            let want_dudt = o.flag("dudt");
            let (gpu, l) = inner.open().await?;
            let e = l.energy.as_ref().ok_or_else(|| {
                js::error(format!(
                    "score needs the dual-score-matching energy model; this is {}",
                    l.den.describe()
                ))
            })?;
            if img.c != l.den.channels() {
                return Err(js::error(format!(
                    "score: {} channel(s), the model takes {}",
                    img.c,
                    l.den.channels()
                )));
            }
            let shape = img.shape();
            let y = gpu.upload(shape, &img.channels_last());
            let tt = gpu.upload(Shape::new(1, 1, 1, 1), &[t]);
            let ev = e
                .evaluate(&gpu, &y, &tt, true, want_dudt)
                .map_err(js::error)?;
            let grad = gpu
                .read(ev.grad.as_ref().expect("asked for"))
                .await
                .map_err(js::error)?;
            let energy = gpu.read(&ev.energy).await.map_err(js::error)?[0];
            let dudt = match &ev.dudt {
                Some(d) => Some(gpu.read(d).await.map_err(js::error)?[0]),
                None => None,
            };
            let mut m = serde_json::Map::new();
            m.insert("t".into(), json!(t));
            m.insert("energy".into(), json!(energy));
            m.insert("dudt".into(), json!(dudt));
            m.insert("adapter".into(), json!(gpu.adapter.name));
            js::result(m, Some((&grad, shape)))
        })
    }
}
