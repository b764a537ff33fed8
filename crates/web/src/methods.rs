//! The async methods of [`Model`] that mirror the CLI's commands: each reads
//! an options object (the CLI's long flags in camelCase, the CLI's
//! defaults), calls the same library function as the CLI and resolves to
//! the CLI's `--json` keys plus the image data.

use std::ops::ControlFlow;
use std::rc::Rc;

use js_sys::Promise;
use prior_algos::mala::{self, LevelReport, MalaError, MalaParams};
use prior_algos::measure::{self, Task};
use prior_algos::metrics;
use prior_algos::multiscale::{self, LevelProgress, MultiScaleRun};
use prior_algos::sampler::{
    self, defaults, Problem, Progress, SampleRun, SamplerError, SamplerParams, Schedule,
};
use prior_gpu::{Gpu, Shape, Tensor};
use prior_models::tiling::{apply_image, Apply, Planar};
use prior_models::{Conditioning, Denoiser, Noise};
use serde_json::json;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::js::{self, Image, Options, Signal};
use crate::{tune_store, Loaded, Model};

/// PSNR in dB against the clean image, peak 1, unclamped (as `prior solve`).
fn psnr(a: &[f32], b: &[f32]) -> f64 {
    metrics::psnr(a, b, 1.0)
}

/// The largest accepted `addNoise` (`prior denoise`'s `MAX_SIGMA`: the
/// noise stream `round(σ)·1000` must fit in 32 bits).
const MAX_SIGMA: f64 = 100_000.0;

/// Parses `HxW` (`size: "28x28"`, as `prior sample --size`).
fn parse_size(s: &str) -> Result<(usize, usize), JsValue> {
    let bad = || {
        js::error(format!(
            "size {s}: expected HxW with positive integers, e.g. 40x40"
        ))
    };
    let (h, w) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let h: usize = h.trim().parse().map_err(|_| bad())?;
    let w: usize = w.trim().parse().map_err(|_| bad())?;
    if h == 0 || w == 0 {
        return Err(bad());
    }
    Ok((h, w))
}

/// `--schedule auto|measured|recursion|estimated` for a model conditioned as `c`
/// (auto: recursion for noise-conditioned models, measured for blind ones,
/// as `prior sample`).
fn schedule(o: &Options, c: Conditioning) -> Result<Schedule, JsValue> {
    let name = o.string("schedule")?.unwrap_or_else(|| "auto".into());
    Ok(match (name.as_str(), c) {
        ("measured", _) | ("auto", Conditioning::Blind) => Schedule::Measured,
        ("recursion", _) | ("auto", Conditioning::NoiseVariance) => Schedule::Recursion,
        ("estimated", _) => Schedule::Estimated,
        _ => {
            return Err(js::error(format!(
                "option schedule: {name:?} is not one of auto, measured, recursion, estimated"
            )))
        }
    })
}

/// The sampler's options (`SamplerFlags` of the CLI, same defaults).
fn sampler_params(
    o: &Options,
    default_beta: f32,
    c: Conditioning,
) -> Result<SamplerParams, JsValue> {
    Ok(SamplerParams {
        sigma0: o.f32_or("sigma0", defaults::SIGMA0)?,
        sigma_final: o.f32_or("sigmaFinal", defaults::SIGMA_FINAL)?,
        h0: o.f32_or("h0", defaults::H0)?,
        beta: o.f32_or("beta", default_beta)?,
        max_iters: o.usize_or("maxIters", defaults::MAX_ITERS)?,
        seed: o.usize_or("seed", defaults::SEED as usize)? as u64,
        fixed_step: o.f64("fixedStep")?.map(|x| x as f32),
        check_every: o.usize_or("checkEvery", defaults::CHECK_EVERY)?,
        schedule: schedule(o, c)?,
        start_mean: o.f32_or("startMean", defaults::START_MEAN)?,
        ..Default::default()
    })
}

/// `samples` (default 1, at least 1).
fn samples(o: &Options) -> Result<usize, JsValue> {
    match o.usize_or("samples", 1)? {
        0 => Err(js::error("samples must be at least 1")),
        n => Ok(n),
    }
}

/// Reports progress to `onProgress` and watches `signal`.
struct Reporter {
    on_progress: Option<js_sys::Function>,
    signal: Option<Signal>,
    /// Attach the current image every `every` readbacks' iterations.
    image_every: Option<usize>,
    /// σ_t per sample at the last readback (multi-scale runs report it).
    last: std::cell::RefCell<Vec<f32>>,
    gpu: Rc<Gpu>,
}

impl Reporter {
    fn new(o: &Options, gpu: Rc<Gpu>) -> Result<Reporter, JsValue> {
        let every = o.usize_or("every", 10)?.max(1);
        Ok(Reporter {
            on_progress: o.callback("onProgress")?,
            signal: o.signal()?,
            image_every: o.flag("progressImage").then_some(every),
            last: Default::default(),
            gpu,
        })
    }

    fn check(&self, what: &str) -> Result<(), JsValue> {
        if js::aborted(&self.signal) {
            return Err(js::abort_error(what));
        }
        Ok(())
    }

    /// One sampler readback (`level`: multi-scale level, if any).
    fn sampler(&self, p: &Progress, level: Option<Option<usize>>) -> ControlFlow<()> {
        *self.last.borrow_mut() = p.sigmas.to_vec();
        if let Some(f) = &self.on_progress {
            let o = js::object();
            let num = |x: f64| JsValue::from_f64(x);
            let _ = js::set(&o, "iteration", &num(p.iteration as f64));
            let _ = js::set(&o, "sigmas", &js::floats(p.sigmas));
            let _ = js::set(&o, "measured", &js::floats(p.measured));
            let _ = js::set(&o, "running", &num(p.running as f64));
            if let Some(l) = level {
                let v = l.map_or(JsValue::from_str("low"), |j| num(j as f64));
                let _ = js::set(&o, "level", &v);
            }
            match self.image_every {
                Some(k) if p.iteration.is_multiple_of(k) || p.iteration == 1 => {
                    // The iterate is read back off the sampler's path: a
                    // copy now, the callback when the read resolves.
                    let copy = self.gpu.duplicate(p.y);
                    let (gpu, f) = (self.gpu.clone(), f.clone());
                    wasm_bindgen_futures::spawn_local(async move {
                        if let Ok(y) = gpu.read(&copy).await {
                            let s = copy.shape();
                            let _ = js::set(&o, "image", &js::floats(&js::to_planar(&y, s)));
                            for (k, v) in [("n", s.n), ("c", s.c), ("h", s.h), ("w", s.w)] {
                                let _ = js::set(&o, k, &JsValue::from_f64(v as f64));
                            }
                        }
                        let _ = f.call1(&JsValue::NULL, &o);
                    });
                }
                _ => {
                    let _ = f.call1(&JsValue::NULL, &o);
                }
            }
        }
        if js::aborted(&self.signal) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// A sampler error as a JS error (cancellation: an `AbortError`).
fn sampler_error(e: SamplerError, what: &str) -> JsValue {
    match e {
        SamplerError::Cancelled { .. } => js::abort_error(what),
        e => js::error(e),
    }
}

/// Checks a denoiser against a batch shape, as the CLI's driver does.
fn check_shape(model: &dyn Denoiser, shape: Shape) -> Result<(), JsValue> {
    if model.channels() != shape.c {
        return Err(js::error(format!(
            "the model takes {} channel(s), the image has {}",
            model.channels(),
            shape.c
        )));
    }
    let m = model.size_multiple();
    if !shape.h.is_multiple_of(m) || !shape.w.is_multiple_of(m) {
        return Err(js::error(format!(
            "the model needs sizes that are multiples of {m}; got {}x{}",
            shape.h, shape.w
        )));
    }
    Ok(())
}

/// Runs the coarse-to-fine sampler with the model's residual.
async fn drive(
    gpu: &Gpu,
    model: &dyn Denoiser,
    shape: Shape,
    problem: Option<Problem<'_>>,
    params: &SamplerParams,
    rep: &Reporter,
    what: &str,
) -> Result<(SampleRun, Vec<f32>), JsValue> {
    check_shape(model, shape)?;
    rep.check(what)?;
    let run = sampler::run(
        gpu,
        shape,
        problem,
        params,
        |g: &Gpu, y: &Tensor, noise: Noise<'_>| model.residual(g, y, noise),
        |p: &Progress| rep.sampler(p, None),
    )
    .await
    .map_err(|e| sampler_error(e, what))?;
    let x = gpu.read(&run.x).await.map_err(js::error)?;
    Ok((run, x))
}

/// The JSON of a multi-scale run (the keys of `prior sample --json` with a
/// multi-scale model), with the last σ_t per sample `rep` saw.
fn multiscale_json(
    out: &MultiScaleRun,
    params: &SamplerParams,
    task: &str,
    rep: &Reporter,
    adapter: &str,
) -> serde_json::Map<String, serde_json::Value> {
    let last = rep.last.borrow();
    multiscale::summary(
        out,
        params,
        task,
        (!last.is_empty()).then_some(&last[..]),
        adapter,
    )
}

impl Model {
    pub(crate) fn spawn<F>(&self, f: impl FnOnce(Rc<crate::Inner>) -> F) -> Promise
    where
        F: std::future::Future<Output = Result<JsValue, JsValue>> + 'static,
    {
        future_to_promise(f(self.inner.clone()))
    }
}

async fn synthesize_multi(
    gpu: &Rc<Gpu>,
    l: &Loaded,
    o: &Options,
    h: usize,
    w: usize,
) -> Result<JsValue, JsValue> {
    let m = l.multi.as_ref().expect("a multi-scale model");
    let n = samples(o)?;
    let params = sampler_params(o, defaults::BETA_SAMPLE, Conditioning::Blind)?;
    let rep = Reporter::new(o, gpu.clone())?;
    rep.check("synthesize")?;
    let out = multiscale::synthesize(gpu, m, n, h, w, &params, |lp: &LevelProgress| {
        rep.sampler(lp.progress, Some(lp.level))
    })
    .await
    .map_err(|e| sampler_error(e, "synthesize"))?;
    let shape = out.image.shape();
    let x = gpu.read(&out.image).await.map_err(js::error)?;
    let json = multiscale_json(&out, &params, "synthesis", &rep, &gpu.adapter.name);
    js::result(json, Some((&x, shape)))
}

/// `prior sample --method mala` (`MalaFlags` of the CLI, same defaults):
/// annealed MALA on the energy model, `onProgress` at each level's
/// readback with `level`, `t`, `eps`, `acceptance`, `mean_acceptance`,
/// `energy` and, for the σ_t plot, `iteration` (steps so far) and `sigmas`
/// (√t per sample); `signal` cancels after the current level.
async fn sample_mala(
    gpu: &Rc<Gpu>,
    l: &Loaded,
    o: &Options,
    h: usize,
    w: usize,
) -> Result<JsValue, JsValue> {
    let model = l.energy.as_ref().ok_or_else(|| {
        js::error(format!(
            "sample: method mala needs a model with an energy U(y, t) (a dual-score-matching energy_unet); this is {}; use method coarse-to-fine for denoisers",
            l.den.describe()
        ))
    })?;
    let d = MalaParams::default();
    let params = MalaParams {
        levels: o.usize_or("levels", d.levels)?,
        steps: o.usize_or("steps", d.steps)?,
        t_max: o.f32_or("tMax", d.t_max)?,
        t_min: o.f32_or("tMin", d.t_min)?,
        step_scale: o.f32_or("stepScale", d.step_scale)?,
        target_acceptance: (!o.flag("noAdapt"))
            .then_some(o.f32_or("targetAcceptance", d.target_acceptance.unwrap_or(0.574))?),
        denoise: !o.flag("noDenoise"),
        seed: o.usize_or("seed", defaults::SEED as usize)? as u64,
    };
    let c = o.usize_or("channels", model.channels())?;
    if c != model.channels() {
        return Err(js::error(format!(
            "sample: channels {c}: the model takes {}",
            model.channels()
        )));
    }
    let m = model.multiple();
    if !h.is_multiple_of(m) || !w.is_multiple_of(m) {
        return Err(js::error(format!(
            "the model needs sizes that are multiples of {m}; got {h}x{w}"
        )));
    }
    let shape = Shape::new(samples(o)?, h, w, c);
    let on_progress = o.callback("onProgress")?;
    let signal = o.signal()?;
    if js::aborted(&signal) {
        return Err(js::abort_error("sample"));
    }
    let steps = params.steps;
    let out = mala::run(gpu, &**model, shape, &params, |r: &LevelReport| {
        if let Some(f) = &on_progress {
            let p = js::object();
            let num = |x: f64| JsValue::from_f64(x);
            let _ = js::set(&p, "level", &num(r.level as f64));
            let _ = js::set(&p, "iteration", &num(((r.level + 1) * steps) as f64));
            let _ = js::set(&p, "t", &num(r.t as f64));
            let _ = js::set(&p, "eps", &num(r.eps as f64));
            let _ = js::set(&p, "acceptance", &js::floats(&r.acceptance));
            let _ = js::set(&p, "mean_acceptance", &num(r.mean_acceptance as f64));
            let _ = js::set(&p, "energy", &js::floats(&r.energy));
            let sigmas = vec![r.t.sqrt(); r.acceptance.len()];
            let _ = js::set(&p, "sigmas", &js::floats(&sigmas));
            let _ = f.call1(&JsValue::NULL, &p);
        }
        if js::aborted(&signal) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .await
    .map_err(|e| match e {
        MalaError::Cancelled { .. } => js::abort_error("sample"),
        e => js::error(e),
    })?;
    let x = gpu.read(&out.x).await.map_err(js::error)?;
    // The CLI's --json keys (less `output`: nothing is written).
    let m = prior_algos::mala::summary(&out, shape, &params, &gpu.adapter.name);
    js::result(m, Some((&x, shape)))
}

#[wasm_bindgen]
impl Model {
    /// `prior denoise`: denoises `image` (`{c, h, w, data}`, planar, one
    /// image, values in [0, 1]); tiled like the CLI when the adapter's
    /// buffers are too small for one pass. Options (`prior denoise`'s
    /// flags): `addNoise` (σ on the 0–255 scale: the noise of the CLI's
    /// image 0, from the same counter-based generator; the image is then the
    /// clean reference), `seed` (0; only with `addNoise`), `clean` (the
    /// reference for PSNR/SSIM, `{c, h, w, data}`). Resolves to the CLI's
    /// `--json` keys for one in-memory image (`height`, `width`,
    /// `channels`, `sigma`, `psnr_input`, `psnr_output`, `ssim_input`,
    /// `ssim_output` — null without a reference, the output clamped to
    /// [0, 1] for them as on the CLI —, `seconds`, `adapter`), the denoised
    /// `data` with `n, c, h, w`, and `input` (the noisy image, planar) with
    /// `addNoise`.
    pub fn denoise(&self, image: JsValue, options: JsValue) -> Promise {
        self.spawn(|inner| async move {
            let o = Options::new(options, "denoise")?;
            let img = Image::from_js(&image, "denoise: image")?;
            if img.n != 1 {
                return Err(js::error(format!(
                    "denoise: one image at a time (n = 1); got n = {}",
                    img.n
                )));
            }
            let sigma = o.f64("addNoise")?;
            if let Some(s) = sigma {
                if !s.is_finite() || !(0.0..=MAX_SIGMA).contains(&s) {
                    return Err(js::error(format!(
                        "denoise: addNoise {s}: expected a noise level between 0 and {MAX_SIGMA} on the 0–255 scale"
                    )));
                }
            }
            if sigma.is_none() && o.get("seed").is_some() {
                return Err(js::error("denoise: option seed needs addNoise"));
            }
            let seed = o.usize_or("seed", 0)? as u64;
            let clean = match (o.get("clean"), sigma) {
                (Some(c), _) => {
                    let c = Image::from_js(&c, "denoise: clean")?;
                    if (c.n, c.c, c.h, c.w) != (1, img.c, img.h, img.w) {
                        return Err(js::error(format!(
                            "denoise: the clean reference is {}×{}×{}×{} (N×C×H×W), the image 1×{}×{}×{}",
                            c.n, c.c, c.h, c.w, img.c, img.h, img.w
                        )));
                    }
                    Some(c.data)
                }
                (None, Some(_)) => Some(img.data.clone()),
                (None, None) => None,
            };
            let input = match sigma {
                Some(s) => prior_algos::jacobian::add_noise(&img.data, s, seed),
                None => img.data.clone(),
            };
            let (gpu, l) = inner.open_with(o.precision()?).await?;
            if img.c != l.den.channels() {
                return Err(js::error(format!(
                    "denoise: the model takes {} channel(s), the image has {}",
                    l.den.channels(),
                    img.c
                )));
            }
            let clock = prior_algos::control::Clock::start();
            let (c, h, w) = (img.c, img.h, img.w);
            fn planar(c: usize, h: usize, w: usize, data: &[f32]) -> Planar<'_> {
                Planar { c, h, w, data }
            }
            // One image in flight at a time, as the CLI (no readback blocks).
            let out = apply_image(&gpu, &*l.den, planar(c, h, w, &input), Apply::Denoise, None)
                .await
                .map_err(js::error)?;
            let seconds = clock.seconds();
            tune_store::after_first_denoise(&gpu).await;
            let num = |v: f64| json!(Some(v).filter(|x| x.is_finite()));
            let (mut pi, mut po, mut si, mut so) = (json!(null), json!(null), json!(null), json!(null));
            if let Some(clean) = &clean {
                let clamped: Vec<f32> = out.iter().map(|v| v.clamp(0.0, 1.0)).collect();
                pi = num(metrics::psnr(&input, clean, 1.0));
                po = num(metrics::psnr(&clamped, clean, 1.0));
                si = num(metrics::ssim(planar(c, h, w, &input), planar(c, h, w, clean)));
                so = num(metrics::ssim(planar(c, h, w, &clamped), planar(c, h, w, clean)));
            }
            let v = json!({
                "height": img.h, "width": img.w, "channels": img.c, "sigma": sigma,
                "psnr_input": pi, "psnr_output": po, "ssim_input": si, "ssim_output": so,
                "seconds": seconds, "adapter": gpu.adapter.name,
            });
            let serde_json::Value::Object(m) = v else {
                unreachable!("json! of an object")
            };
            let r = js::result(m, None)?;
            js::set(&r, "data", &js::floats(&out))?;
            for (k, v) in [("n", 1), ("c", img.c), ("h", img.h), ("w", img.w)] {
                js::set(&r, k, &JsValue::from_f64(v as f64))?;
            }
            if sigma.is_some() {
                js::set(&r, "input", &js::floats(&input))?;
            }
            Ok(r)
        })
    }

    /// `prior sample`: draws `samples` images of `size` ("HxW") from the
    /// prior with the coarse-to-fine sampler (with a multi-scale model:
    /// coarse-to-fine multi-scale synthesis, as [`Model::synthesize`]).
    /// Options: `size` (required), `channels`, `samples`, `sigma0`,
    /// `sigmaFinal`, `h0`, `beta` (0.5), `maxIters`, `seed`, `fixedStep`,
    /// `checkEvery`, `schedule`, `startMean`; `onProgress`,
    /// `progressImage` + `every`, `signal`. `method: "mala"` (energy
    /// models): `prior sample --method mala`, options `levels`, `steps`,
    /// `tMax`, `tMin`, `stepScale`, `targetAcceptance`, `noAdapt`,
    /// `noDenoise`, `seed`, `samples`, `channels`; `onProgress` once per
    /// level.
    pub fn sample(&self, options: JsValue) -> Promise {
        self.spawn(|inner| async move {
            let o = Options::new(options, "sample")?;
            let size = o
                .string("size")?
                .ok_or_else(|| js::error("sample: needs size: \"HxW\""))?;
            let (h, w) = parse_size(&size)?;
            let method = o
                .string("method")?
                .unwrap_or_else(|| "coarse-to-fine".into());
            let precision = o.precision()?;
            let f16 = precision == prior_ops::precision::Precision::F16;
            let (gpu, l) = match method.as_str() {
                "coarse-to-fine" => inner.open_with(precision).await?,
                "mala" if f16 => {
                    return Err(js::error(format!(
                        "sample: precision f16 is available only for the models with f16 kernels ({}) with the coarse-to-fine sampler",
                        prior_models::F16_MODELS
                    )))
                }
                "mala" => {
                    let (gpu, l) = inner.open().await?;
                    return sample_mala(&gpu, &l, &o, h, w).await;
                }
                m => {
                    return Err(js::error(format!(
                        "sample: method {m:?} is not one of coarse-to-fine, mala"
                    )))
                }
            };
            if l.multi.is_some() {
                return synthesize_multi(&gpu, &l, &o, h, w).await;
            }
            let c = o.usize_or("channels", l.den.channels())?;
            let shape = Shape::new(samples(&o)?, h, w, c);
            let params = sampler_params(&o, defaults::BETA_SAMPLE, l.den.conditioning())?;
            let rep = Reporter::new(&o, gpu.clone())?;
            let (run, x) = drive(&gpu, &*l.den, shape, None, &params, &rep, "sample").await?;
            let mut m = sampler::summary(&run, shape, &params, &gpu.adapter.name);
            m.insert("task".into(), "synthesis".into());
            js::result(m, Some((&x, shape)))
        })
    }

    /// Multi-scale synthesis (`prior sample` with a multi-scale model):
    /// the same options as [`Model::sample`].
    pub fn synthesize(&self, options: JsValue) -> Promise {
        self.spawn(|inner| async move {
            let o = Options::new(options, "synthesize")?;
            let size = o
                .string("size")?
                .ok_or_else(|| js::error("synthesize: needs size: \"HxW\""))?;
            let (h, w) = parse_size(&size)?;
            let (gpu, l) = inner.open_with(o.precision()?).await?;
            if l.multi.is_none() {
                return Err(js::error(format!(
                    "synthesize needs a multi-scale model; this is {}",
                    l.den.describe()
                )));
            }
            synthesize_multi(&gpu, &l, &o, h, w).await
        })
    }

    /// Multi-scale super-resolution by 2^`levels`: samples the missing
    /// detail levels of `image` (`{c, h, w, data}`, the Haar low-pass, i.e.
    /// 2^k × 2^k block means, of the wanted image). Options: `levels`
    /// (default: all of the model's), the sampler's options (β 0.5, as
    /// `prior sample`), `samples` (the image is repeated), `onProgress`,
    /// `signal`.
    #[wasm_bindgen(js_name = superResolve)]
    pub fn super_resolve(&self, image: JsValue, options: JsValue) -> Promise {
        self.spawn(|inner| async move {
            let o = Options::new(options, "superResolve")?;
            let img = Image::from_js(&image, "superResolve: image")?;
            let (gpu, l) = inner.open().await?;
            let m = l.multi.as_ref().ok_or_else(|| {
                js::error(format!(
                    "superResolve needs a multi-scale model; this is {}",
                    l.den.describe()
                ))
            })?;
            let k = o.usize_or("levels", m.levels())?;
            let n = samples(&o)?;
            let one = img.channels_last();
            let per = one.len() / img.n;
            let mut batch = Vec::with_capacity(n * per);
            for _ in 0..n {
                batch.extend_from_slice(&one[..per]);
            }
            let low = gpu.upload(Shape::new(n, img.h, img.w, img.c), &batch);
            let params = sampler_params(&o, defaults::BETA_SAMPLE, Conditioning::Blind)?;
            let rep = Reporter::new(&o, gpu.clone())?;
            rep.check("superResolve")?;
            let out = multiscale::super_resolve(&gpu, m, &low, k, &params, |lp: &LevelProgress| {
                rep.sampler(lp.progress, Some(lp.level))
            })
            .await
            .map_err(|e| sampler_error(e, "superResolve"))?;
            let shape = out.image.shape();
            let x = gpu.read(&out.image).await.map_err(js::error)?;
            let mut json = multiscale_json(&out, &params, "superres", &rep, &gpu.adapter.name);
            json.insert("factor".into(), json!(1usize << k));
            js::result(json, Some((&x, shape)))
        })
    }

    /// `prior solve TASK`: a linear inverse problem solved with the same
    /// sampler, measuring the clean `image` (`{c, h, w, data}`). Tasks and
    /// their options: `inpaint` (`rect: "T,L,H,W"` or `[t, l, h, w]`, or
    /// `mask`: `{c, h, w, data}` with 1 = known), `pixels` / `cs` /
    /// `spectral` (`fraction`), `superres` (`factor`), `matrix` (`matrix`:
    /// n × C·H·W rows, row-major). Sampler options as
    /// [`Model::sample`] (β 0.01, as `prior solve`). The result adds
    /// `operator`, `measurements`, `psnr_input`, `psnr` and `input` (the
    /// naive reconstruction M x_c, planar).
    pub fn solve(&self, task: String, image: JsValue, options: JsValue) -> Promise {
        self.spawn(|inner| async move {
            let o = Options::new(options, "solve")?;
            let img = Image::from_js(&image, "solve: image")?;
            if img.n != 1 {
                return Err(js::error("solve: the image must be one image (n = 1)"));
            }
            let (h, w, c) = (img.h, img.w, img.c);
            let task = task_of(&task, &o, (h, w, c))?;
            let (gpu, l) = inner.open().await?;
            if c != l.den.channels() {
                return Err(js::error(format!(
                    "solve: the image has {c} channel(s), the model takes {}",
                    l.den.channels()
                )));
            }
            let params = sampler_params(&o, defaults::BETA_SOLVE, l.den.conditioning())?;
            let op = measure::build(&gpu, &task, (h, w, c), params.seed).map_err(js::error)?;
            let data = img.channels_last();
            let one = Shape::new(1, h, w, c);
            let x = gpu.upload(one, &data);
            let x_c = op.mt(&gpu, &x).map_err(js::error)?;
            let naive = gpu
                .read(&op.m(&gpu, &x_c).map_err(js::error)?)
                .await
                .map_err(js::error)?;
            let shape = Shape::new(samples(&o)?, h, w, c);
            let rep = Reporter::new(&o, gpu.clone())?;
            let problem = Problem {
                op: op.as_ref(),
                x_c: &x_c,
            };
            let (run, out) =
                drive(&gpu, &*l.den, shape, Some(problem), &params, &rep, "solve").await?;
            let per = one.numel();
            let psnrs: Vec<f64> = (0..shape.n)
                .map(|s| psnr(&out[s * per..(s + 1) * per], &data))
                .collect();
            let mut m = sampler::summary(&run, shape, &params, &gpu.adapter.name);
            m.insert("task".into(), json!(task.name()));
            m.insert("operator".into(), json!(op.describe()));
            m.insert("measurements".into(), json!(op.dimensions()));
            m.insert("psnr_input".into(), json!(psnr(&naive, &data)));
            m.insert(
                "psnr".into(),
                if shape.n == 1 {
                    json!(psnrs[0])
                } else {
                    json!(psnrs)
                },
            );
            let r = js::result(m, Some((&out, shape)))?;
            js::set(&r, "input", &js::floats(&js::to_planar(&naive, one)))?;
            Ok(r)
        })
    }
}

/// `matrix`: the n × D measurement rows (D = C·H·W, each row in (C, H, W)
/// order), a Float32Array, Float64Array or array of numbers, checked as
/// `prior solve matrix --matrix` checks its `.npy` (rows that are not
/// orthonormal are orthonormalised by the library).
fn matrix_task(o: &Options, (h, w, c): (usize, usize, usize)) -> Result<Task, JsValue> {
    let v = o
        .get("matrix")
        .ok_or_else(|| js::error("matrix needs matrix: the n × C·H·W rows"))?;
    let rows: Vec<f64> = if v.is_instance_of::<js_sys::Float32Array>() {
        js_sys::Float32Array::from(v)
            .to_vec()
            .into_iter()
            .map(f64::from)
            .collect()
    } else if v.is_instance_of::<js_sys::Float64Array>() {
        js_sys::Float64Array::from(v).to_vec()
    } else if js_sys::Array::is_array(&v) {
        js_sys::Array::from(&v)
            .iter()
            .map(|x| x.as_f64().unwrap_or(f64::NAN))
            .collect()
    } else {
        return Err(js::error(
            "option matrix: expected a Float32Array, Float64Array or array of numbers",
        ));
    };
    let d = h * w * c;
    if rows.is_empty() || !rows.len().is_multiple_of(d) || rows.len() / d > d {
        return Err(js::error(format!(
            "option matrix: {} values, but the image is {h}x{w}x{c}: need n rows of D = C·H·W = {d} values, 1 ≤ n ≤ {d}",
            rows.len()
        )));
    }
    if let Some(i) = rows.iter().position(|v| !v.is_finite()) {
        return Err(js::error(format!(
            "option matrix: value {i} (row {}, column {}) is not finite",
            i / d,
            i % d
        )));
    }
    Ok(Task::Matrix {
        count: rows.len() / d,
        rows,
        source: "the matrix option".into(),
    })
}

/// The task and its options, as `prior solve`'s `task_of` (the flags of
/// other tasks are refused).
fn task_of(name: &str, o: &Options, (h, w, c): (usize, usize, usize)) -> Result<Task, JsValue> {
    let extra = |k: &str| {
        Err(js::error(format!(
            "solve: option {k} does not apply to `{name}`"
        )))
    };
    let fraction = || -> Result<f64, JsValue> {
        o.f64("fraction")?
            .ok_or_else(|| js::error(format!("solve: `{name}` needs fraction")))
    };
    let has = |k: &str| o.get(k).is_some();
    match name {
        "inpaint" => {
            if has("fraction") {
                return extra("fraction");
            }
            if has("factor") {
                return extra("factor");
            }
            match (o.get("rect"), o.get("mask")) {
                (Some(r), None) => {
                    let v: Vec<f64> = if let Some(s) = r.as_string() {
                        s.split(',')
                            .map(|p| p.trim().parse::<f64>().unwrap_or(f64::NAN))
                            .collect()
                    } else if js_sys::Array::is_array(&r) {
                        js_sys::Array::from(&r)
                            .iter()
                            .map(|x| x.as_f64().unwrap_or(f64::NAN))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    match v[..] {
                        [t, l, hh, ww]
                            if v.iter().all(|x| *x >= 0.0 && x.fract() == 0.0) =>
                        {
                            Ok(Task::InpaintRect {
                                top: t as usize,
                                left: l as usize,
                                height: hh as usize,
                                width: ww as usize,
                            })
                        }
                        _ => Err(js::error(format!(
                            "solve: rect {r:?}: expected TOP,LEFT,HEIGHT,WIDTH as four non-negative integers"
                        ))),
                    }
                }
                (None, Some(m)) => {
                    let mask = Image::from_js(&m, "solve: mask")?;
                    if (mask.h, mask.w) != (h, w) {
                        return Err(js::error(format!(
                            "solve: the mask is {}x{}, the image {h}x{w}",
                            mask.h, mask.w
                        )));
                    }
                    Ok(Task::InpaintMask {
                        channels: mask.c,
                        mask: mask.channels_last(),
                    })
                }
                (Some(_), Some(_)) => Err(js::error("inpaint: give either rect or mask, not both")),
                (None, None) => Err(js::error("inpaint needs rect: \"T,L,H,W\" or mask")),
            }
        }
        "pixels" | "cs" | "spectral" => {
            if has("rect") || has("mask") {
                return extra("rect/mask");
            }
            if has("factor") {
                return extra("factor");
            }
            let p = fraction()?;
            Ok(match name {
                "pixels" => Task::Pixels { fraction: p },
                "cs" => Task::RandomBasis { fraction: p },
                _ => Task::Spectral { fraction: p },
            })
        }
        "superres" => {
            if has("rect") || has("mask") {
                return extra("rect/mask");
            }
            if has("fraction") {
                return extra("fraction");
            }
            let s = o
                .usize("factor")?
                .ok_or_else(|| js::error("superres needs factor"))?;
            if s == 0 {
                return Err(js::error("factor must be at least 1"));
            }
            let _ = c;
            Ok(Task::SuperRes { factor: s })
        }
        "matrix" => {
            for k in ["rect", "mask", "fraction", "factor"] {
                if has(k) {
                    return extra(k);
                }
            }
            matrix_task(o, (h, w, c))
        }
        other => Err(js::error(format!(
            "solve: unknown task {other:?} (inpaint, pixels, superres, cs, spectral, matrix)"
        ))),
    }
}
