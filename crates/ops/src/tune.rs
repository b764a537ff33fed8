//! Per-adapter autotuning of the convolution kernels.
//!
//! **Where tuning happens.** Layers are built by sync constructors and
//! [`Conv2d::forward`] only records work, so nothing is timed there: a
//! forward with [`ConvVariant::Auto`] runs the choice this module holds for
//! its (layer shape, input shape) on this adapter, or the fixed default when
//! there is none, and notes the shape as *seen*. Tuning is an explicit async
//! pass, [`tune`] (on given shapes) or [`tune_seen`] (on the shapes forward
//! calls have met): the caller runs one forward of its model (which records
//! the shapes), then `tune_seen`, and every later call runs the tuned
//! kernels. The pass first loads the cached choices of this adapter from a
//! [`TuneStore`], times only the shapes the cache lacks, and saves the
//! merged table back, so later runs start fast.
//!
//! **Timing.** Each candidate runs the shape's convolution (synthetic
//! weights and input) several times back to back (enough for a ~10 ms
//! round, so on a fast GPU kernel time outweighs the submission latency),
//! then a dot product whose one number is read back (awaited, never
//! blocking): wall time per call. Candidates are timed round-robin after a
//! warm-up that compiles them, and compared by their medians; a candidate replaces the
//! fixed default only when its median is at least [`SWITCH_MARGIN`] faster,
//! so noise alone does not switch kernels. (GPU timestamp queries would
//! time the kernel alone, but they are a [`Gpu`]-wide mode of
//! `crates/gpu/src/profile.rs` that a user's `--profile` owns.)
//!
//! **Modes** (`PRIOR_TUNE`, [`TuneMode::for_adapter`]): `off` runs today's
//! fixed choice and never times or reads the cache; `quick` times the fixed
//! kernel and two tile shapes, 3 rounds; `full` every variant except the
//! naive baseline, 7 rounds. Unset, it is `quick` on GPUs and `off` on CPU
//! adapters (lavapipe, SwiftShader: the fixed kernels are the fastest or as
//! fast there, measured), see [`TuneMode::default_for`]. Library calls never tune by
//! themselves either, so tests that do not call this module run the fixed
//! kernels and stay deterministic.
//!
//! **Cache.** Native builds use [`DiskStore`]: one text file per adapter in
//! `$PRIOR_CACHE_DIR`, else `$XDG_CACHE_HOME/prior`, else `~/.cache/prior`
//! (`%LOCALAPPDATA%\prior` on Windows), keyed by adapter name, backend,
//! driver and prior's version ([`adapter_key`]), written atomically (a
//! temporary file renamed over the old one). A file that does not parse is
//! ignored with a warning in the [`TuneReport`] (and rewritten), never a
//! panic. In the browser the caller implements [`TuneStore`] on
//! `localStorage` (`getItem`/`setItem` of the key [`adapter_key`] returns)
//! and passes its clock (`performance.now()/1000`) in [`TuneConfig::now`].
//!
//! `PRIOR_CONV=<variant name>` (e.g. `tiled64x64`, see
//! [`ConvVariant::name`]) forces one variant for every `Auto` convolution:
//! the way to run the models' parity tests on a given kernel.

use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex};

use prior_gpu::{Gpu, GpuError, Result, Shape};

use crate::conv2d::{Conv2d, ConvConfig, ConvVariant, Epilogue, Tile};
use crate::conv_transpose2d::ConvTranspose2d;

/// A candidate must be this much faster (median) than the fixed default to
/// replace it: 3 %, above the median's run-to-run spread on lavapipe.
pub const SWITCH_MARGIN: f64 = 0.03;

/// How much tuning `PRIOR_TUNE` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TuneMode {
    /// Never time; run the fixed default kernels.
    Off,
    /// Time the fixed kernel and two tile shapes, 3 rounds (the default).
    Quick,
    /// Time every variant but the naive baseline, 7 rounds.
    Full,
}

impl TuneMode {
    /// The mode on a GPU when `PRIOR_TUNE` is unset.
    pub const DEFAULT: TuneMode = TuneMode::Quick;

    /// The mode when `PRIOR_TUNE` is unset: [`TuneMode::DEFAULT`] on GPUs,
    /// `Off` on CPU adapters (lavapipe, SwiftShader), where the fixed
    /// kernels were designed and measured fastest or as fast (the tiled
    /// ones 1.5–3× slower on lavapipe, within about ±10 % on SwiftShader,
    /// README): no run there pays for timing, and the test suite, which
    /// runs there, stays deterministic.
    pub fn default_for(gpu: &Gpu) -> TuneMode {
        if gpu.adapter.device_type == "Cpu" {
            TuneMode::Off
        } else {
            TuneMode::DEFAULT
        }
    }

    /// `PRIOR_TUNE` when set, else [`TuneMode::default_for`] this adapter.
    pub fn for_adapter(gpu: &Gpu) -> std::result::Result<TuneMode, String> {
        match std::env::var("PRIOR_TUNE") {
            Ok(s) if !s.trim().is_empty() => TuneMode::parse(&s),
            _ => Ok(TuneMode::default_for(gpu)),
        }
    }

    /// `off`, `quick` or `full`.
    pub fn parse(s: &str) -> std::result::Result<TuneMode, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "0" => Ok(TuneMode::Off),
            "quick" => Ok(TuneMode::Quick),
            "full" => Ok(TuneMode::Full),
            other => Err(format!("PRIOR_TUNE={other}: expected off, quick or full")),
        }
    }

    fn rounds(self) -> usize {
        match self {
            TuneMode::Off => 0,
            TuneMode::Quick => 3,
            TuneMode::Full => 7,
        }
    }
}

/// A tuning pass's settings.
#[derive(Clone, Copy, Debug)]
pub struct TuneConfig {
    /// How much to time.
    pub mode: TuneMode,
    /// A monotonic clock, seconds (native: `std::time::Instant`; the browser
    /// passes `performance.now() / 1000`).
    pub now: fn() -> f64,
}

impl TuneConfig {
    /// `mode` with the native clock (on wasm32 a clock that never advances:
    /// every candidate ties and the fixed default stays; pass a real one).
    pub fn new(mode: TuneMode) -> TuneConfig {
        TuneConfig {
            mode,
            now: wall_seconds,
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn wall_seconds() -> f64 {
    static START: LazyLock<std::time::Instant> = LazyLock::new(std::time::Instant::now);
    START.elapsed().as_secs_f64()
}

#[cfg(target_arch = "wasm32")]
fn wall_seconds() -> f64 {
    0.0
}

/// What a tuned choice is for: one (transposed) convolution geometry on one
/// input shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvKey {
    /// A transposed convolution.
    pub transposed: bool,
    /// The layer's geometry.
    pub cfg: ConvConfig,
    /// Input samples.
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output height (a transposed conv's may exceed its default).
    pub ho: usize,
    /// Output width.
    pub wo: usize,
}

impl ConvKey {
    /// The key of a convolution of geometry `cfg` on input shape `s`.
    pub fn conv(cfg: ConvConfig, s: Shape) -> ConvKey {
        let f = |n: usize, k: usize| {
            (n + 2 * cfg.pad).saturating_sub(cfg.dilation * (k - 1) + 1) / cfg.stride.max(1) + 1
        };
        ConvKey {
            transposed: false,
            cfg,
            n: s.n,
            h: s.h,
            w: s.w,
            ho: f(s.h, cfg.kh),
            wo: f(s.w, cfg.kw),
        }
    }

    /// The key of a transposed convolution of geometry `cfg` on input shape
    /// `s` with output size `out`.
    pub fn transposed(cfg: ConvConfig, s: Shape, out: (usize, usize)) -> ConvKey {
        ConvKey {
            transposed: true,
            cfg,
            n: s.n,
            h: s.h,
            w: s.w,
            ho: out.0,
            wo: out.1,
        }
    }

    /// Multiply-adds of one call.
    pub fn macs(&self) -> u64 {
        let c = &self.cfg;
        let pixels = if self.transposed {
            self.h * self.w
        } else {
            self.ho * self.wo
        };
        (self.n * pixels * c.cin * c.cout * c.kh * c.kw) as u64
    }

    /// One line of text: `conv 64>64 k3x3 s1 p1 d1 in1x128x128 out128x128`.
    pub fn text(&self) -> String {
        let c = &self.cfg;
        format!(
            "{} {}>{} k{}x{} s{} p{} d{} in{}x{}x{} out{}x{}",
            if self.transposed { "convt" } else { "conv" },
            c.cin,
            c.cout,
            c.kh,
            c.kw,
            c.stride,
            c.pad,
            c.dilation,
            self.n,
            self.h,
            self.w,
            self.ho,
            self.wo
        )
    }

    /// The key of [`ConvKey::text`].
    pub fn parse(s: &str) -> Option<ConvKey> {
        let mut it = s.split_whitespace();
        let transposed = match it.next()? {
            "conv" => false,
            "convt" => true,
            _ => return None,
        };
        let num = |t: &str| t.parse::<usize>().ok();
        let pair = |t: &str, sep: char| {
            let (a, b) = t.split_once(sep)?;
            Some((num(a)?, num(b)?))
        };
        let (cin, cout) = pair(it.next()?, '>')?;
        let (kh, kw) = pair(it.next()?.strip_prefix('k')?, 'x')?;
        let stride = num(it.next()?.strip_prefix('s')?)?;
        let pad = num(it.next()?.strip_prefix('p')?)?;
        let dilation = num(it.next()?.strip_prefix('d')?)?;
        let inp: Vec<usize> = it
            .next()?
            .strip_prefix("in")?
            .split('x')
            .map(num)
            .collect::<Option<_>>()?;
        let (ho, wo) = pair(it.next()?.strip_prefix("out")?, 'x')?;
        if it.next().is_some() || inp.len() != 3 {
            return None;
        }
        let positive = [
            cin, cout, kh, kw, stride, dilation, inp[0], inp[1], inp[2], ho, wo,
        ];
        if positive.contains(&0) {
            return None;
        }
        Some(ConvKey {
            transposed,
            cfg: ConvConfig {
                cin,
                cout,
                kh,
                kw,
                stride,
                pad,
                dilation,
            },
            n: inp[0],
            h: inp[1],
            w: inp[2],
            ho,
            wo,
        })
    }
}

/// The cache key of this adapter: name, backend, driver and prior's version.
pub fn adapter_key(gpu: &Gpu) -> String {
    let a = &gpu.adapter;
    format!(
        "{} | {} | {} | prior {}",
        a.name,
        a.backend,
        a.driver,
        env!("CARGO_PKG_VERSION")
    )
}

#[derive(Default)]
struct State {
    /// Choices per adapter key.
    choices: HashMap<String, HashMap<ConvKey, ConvVariant>>,
    /// Adapters whose store was read already.
    loaded: HashSet<String>,
    /// Shapes `Auto` forwards met without a choice, per adapter key.
    seen: HashMap<String, Vec<ConvKey>>,
}

static STATE: LazyLock<Mutex<State>> = LazyLock::new(Default::default);

/// `PRIOR_CONV`, read once.
static FORCED: LazyLock<Option<ConvVariant>> = LazyLock::new(|| {
    std::env::var("PRIOR_CONV")
        .ok()
        .and_then(|s| ConvVariant::from_name(s.trim()))
        .filter(|v| *v != ConvVariant::Auto)
});

/// Most shapes remembered as seen (a bound on memory for callers that vary
/// their input size).
const MAX_SEEN: usize = 1024;

/// The variant an `Auto` convolution of `key` runs: `PRIOR_CONV` when set,
/// else the tuned choice, else [`ConvVariant::Fixed`] (and the key is noted
/// as seen).
pub(crate) fn choice(gpu: &Gpu, key: &ConvKey) -> ConvVariant {
    if let Some(v) = *FORCED {
        return v;
    }
    let id = adapter_key(gpu);
    let mut st = STATE.lock().unwrap();
    if let Some(v) = st.choices.get(&id).and_then(|m| m.get(key)) {
        return *v;
    }
    let seen = st.seen.entry(id).or_default();
    if seen.len() < MAX_SEEN && !seen.contains(key) {
        seen.push(*key);
    }
    ConvVariant::Fixed
}

/// The choice held for `key` on this adapter, if any.
pub fn chosen(gpu: &Gpu, key: &ConvKey) -> Option<ConvVariant> {
    STATE
        .lock()
        .unwrap()
        .choices
        .get(&adapter_key(gpu))
        .and_then(|m| m.get(key))
        .copied()
}

/// Sets the choice for `key` on this adapter (what [`tune`] does).
pub fn set_choice(gpu: &Gpu, key: ConvKey, variant: ConvVariant) {
    STATE
        .lock()
        .unwrap()
        .choices
        .entry(adapter_key(gpu))
        .or_default()
        .insert(key, variant);
}

/// Forgets every choice, seen shape and loaded store of this adapter (the
/// next pass reads the store again).
pub fn clear(gpu: &Gpu) {
    let id = adapter_key(gpu);
    let mut st = STATE.lock().unwrap();
    st.choices.remove(&id);
    st.seen.remove(&id);
    st.loaded.remove(&id);
}

/// The shapes `Auto` forwards met on this adapter that have no choice yet.
pub fn seen(gpu: &Gpu) -> Vec<ConvKey> {
    let id = adapter_key(gpu);
    let st = STATE.lock().unwrap();
    let held = st.choices.get(&id);
    st.seen
        .get(&id)
        .map(|v| {
            v.iter()
                .filter(|k| held.is_none_or(|m| !m.contains_key(k)))
                .copied()
                .collect()
        })
        .unwrap_or_default()
}

/// Where tuned choices persist between runs: one text per adapter key.
pub trait TuneStore {
    /// The text saved under `key`, if any.
    fn load(&self, key: &str) -> Option<String>;
    /// Saves `text` under `key` (replacing it whole).
    fn save(&self, key: &str, text: &str) -> std::result::Result<(), String>;
    /// Where it is, for messages.
    fn describe(&self, key: &str) -> String;
}

/// The user's cache ([`DiskStore::from_env`]) on native builds, else (no
/// cache folder known, or wasm32, where the caller brings its own store)
/// [`NoStore`].
pub fn default_store() -> Box<dyn TuneStore> {
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(d) = DiskStore::from_env() {
        return Box::new(d);
    }
    Box::new(NoStore)
}

/// A store that keeps nothing (choices live for the process only).
pub struct NoStore;

impl TuneStore for NoStore {
    fn load(&self, _key: &str) -> Option<String> {
        None
    }
    fn save(&self, _key: &str, _text: &str) -> std::result::Result<(), String> {
        Ok(())
    }
    fn describe(&self, _key: &str) -> String {
        "memory only".into()
    }
}

/// The on-disk cache: `<dir>/tune-<hash of the adapter key>.txt`.
#[cfg(not(target_arch = "wasm32"))]
pub struct DiskStore {
    /// The cache folder (created on the first save).
    pub dir: std::path::PathBuf,
}

#[cfg(not(target_arch = "wasm32"))]
impl DiskStore {
    /// The user's cache folder: `$PRIOR_CACHE_DIR`, `$XDG_CACHE_HOME/prior`,
    /// `~/.cache/prior` or `%LOCALAPPDATA%\prior`; `None` when none is known.
    pub fn from_env() -> Option<DiskStore> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let dir = if let Some(d) = var("PRIOR_CACHE_DIR") {
            d.into()
        } else if let Some(d) = var("XDG_CACHE_HOME") {
            std::path::PathBuf::from(d).join("prior")
        } else if let Some(d) = var("LOCALAPPDATA") {
            std::path::PathBuf::from(d).join("prior")
        } else {
            std::path::PathBuf::from(var("HOME")?)
                .join(".cache")
                .join("prior")
        };
        Some(DiskStore { dir })
    }

    /// The file of adapter key `key`.
    pub fn path(&self, key: &str) -> std::path::PathBuf {
        // FNV-1a: stable across runs and Rust versions (unlike DefaultHasher).
        let h = key.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
        self.dir.join(format!("tune-{h:016x}.txt"))
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl TuneStore for DiskStore {
    fn load(&self, key: &str) -> Option<String> {
        std::fs::read_to_string(self.path(key)).ok()
    }

    fn save(&self, key: &str, text: &str) -> std::result::Result<(), String> {
        let path = self.path(key);
        let fail = |e: std::io::Error| format!("writing the tuning cache {}: {e}", path.display());
        std::fs::create_dir_all(&self.dir).map_err(fail)?;
        // Atomic: a reader sees the old file or the new one, never half.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            fail(e)
        })
    }

    fn describe(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }
}

const HEADER: &str = "# prior conv tuning cache v1";

/// The text a store holds for adapter key `key` and these choices.
pub fn cache_text(key: &str, choices: &HashMap<ConvKey, ConvVariant>) -> String {
    let mut lines: Vec<String> = choices
        .iter()
        .map(|(k, v)| format!("{} = {}", k.text(), v.name()))
        .collect();
    lines.sort();
    format!("{HEADER}\nadapter: {key}\n{}\n", lines.join("\n"))
}

/// The choices of a store's text for adapter key `key`, or why it is unusable.
pub fn parse_cache(
    key: &str,
    text: &str,
) -> std::result::Result<Vec<(ConvKey, ConvVariant)>, String> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("the first line is not `{HEADER}`"));
    }
    match lines.next().and_then(|l| l.strip_prefix("adapter: ")) {
        Some(a) if a == key => {}
        Some(a) => return Err(format!("it is for adapter `{a}`, not `{key}`")),
        None => return Err("line 2 is not `adapter: ...`".into()),
    }
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = line.split_once(" = ").and_then(|(k, v)| {
            let v = ConvVariant::from_name(v.trim()).filter(|v| *v != ConvVariant::Auto)?;
            Some((ConvKey::parse(k)?, v))
        });
        match parsed {
            Some(kv) => out.push(kv),
            None => return Err(format!("line {} does not parse: `{line}`", i + 3)),
        }
    }
    Ok(out)
}

/// The timing of one candidate of one shape.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// The variant.
    pub variant: ConvVariant,
    /// Median wall time per call (a round of back-to-back convolutions and
    /// one one-number readback, divided by the calls), s.
    pub seconds: f64,
}

/// The outcome for one shape.
#[derive(Clone, Debug)]
pub struct Decision {
    /// The shape.
    pub key: ConvKey,
    /// What `Auto` now runs for it.
    pub chosen: ConvVariant,
    /// The candidates' medians (empty when the choice came from the cache).
    pub timings: Vec<Timing>,
    /// The choice came from the store.
    pub cached: bool,
}

/// What a tuning pass did.
#[derive(Clone, Debug, Default)]
pub struct TuneReport {
    /// One per shape asked for.
    pub decisions: Vec<Decision>,
    /// Problems that did not stop the pass (a corrupt cache file, a cache
    /// that could not be written, a candidate that failed on this adapter).
    pub warnings: Vec<String>,
}

/// The variants `mode` times for `key` on this adapter, the fixed default first.
pub fn candidates(gpu: &Gpu, key: &ConvKey, mode: TuneMode) -> Vec<ConvVariant> {
    let mut v = vec![ConvVariant::Fixed];
    if mode == TuneMode::Off {
        return v;
    }
    // Without subgroups Plain is Fixed; a transposed conv with cin % 4 ≠ 0
    // runs Plain's kernel as Fixed too.
    let subgroup_fixed = gpu.subgroups_at_least(8) && key.cfg.cin.is_multiple_of(4);
    if mode == TuneMode::Full && subgroup_fixed {
        v.push(ConvVariant::Plain);
    }
    let tiles: &[Tile] = match mode {
        TuneMode::Full => &Tile::ALL,
        _ => &[Tile::T64x64, Tile::T32x32],
    };
    v.extend(tiles.iter().map(|t| ConvVariant::Tiled(*t)));
    v
}

fn synthetic(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7 + seed) % 23) as f32 - 11.0) * 0.01)
        .collect()
}

/// The operator of `key` with synthetic weights.
enum Layer {
    Conv(Conv2d),
    Transposed(ConvTranspose2d),
}

impl Layer {
    fn new(gpu: &Gpu, key: &ConvKey) -> Layer {
        let w = synthetic(key.cfg.weights(), 1);
        if key.transposed {
            Layer::Transposed(ConvTranspose2d::new(gpu, &w, key.cfg))
        } else {
            Layer::Conv(Conv2d::new(gpu, &w, key.cfg))
        }
    }

    fn run(
        &self,
        gpu: &Gpu,
        x: &prior_gpu::Tensor,
        key: &ConvKey,
        variant: ConvVariant,
    ) -> Result<prior_gpu::Tensor> {
        let epi = Epilogue {
            variant,
            ..Default::default()
        };
        match self {
            Layer::Conv(c) => c.forward(gpu, x, epi),
            Layer::Transposed(t) => t.forward_sized(gpu, x, (key.ho, key.wo), epi),
        }
    }
}

/// Wall time of `calls` calls of `variant` on `key` recorded back to back,
/// then a dot product of the last output and the awaited readback of that
/// one number.
async fn time_once(
    gpu: &Gpu,
    layer: &Layer,
    x: &prior_gpu::Tensor,
    key: &ConvKey,
    (variant, calls): (ConvVariant, usize),
    now: fn() -> f64,
) -> Result<f64> {
    let t0 = now();
    let mut y = layer.run(gpu, x, key, variant)?;
    for _ in 1..calls {
        y = layer.run(gpu, x, key, variant)?;
    }
    let d = crate::reduce::dot(gpu, &y, &y)?;
    gpu.read(&d).await?;
    Ok(now() - t0)
}

/// Calls per timed round: enough that a round of the first candidate takes
/// about [`ROUND_SECONDS`], so on a fast GPU the kernels' time, not the
/// submission and readback latency, decides (at most [`MAX_CALLS`]).
const ROUND_SECONDS: f64 = 0.01;
/// The most calls per timed round.
const MAX_CALLS: usize = 32;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::INFINITY;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Times `variants` on `key` (a warm-up each, then `rounds` round-robin
/// rounds of back-to-back calls, as many as make a round of the first
/// variant last about 10 ms) and returns their median time per call; a
/// variant that fails on this adapter is left out with a warning.
pub async fn time_variants(
    gpu: &Gpu,
    key: &ConvKey,
    variants: &[ConvVariant],
    rounds: usize,
    now: fn() -> f64,
    warnings: &mut Vec<String>,
) -> Result<Vec<Timing>> {
    let s = Shape::new(key.n, key.h, key.w, key.cfg.cin);
    gpu.check_fits("tuning input", s)?;
    let x = gpu.upload(s, &synthetic(s.numel(), 2));
    let layer = Layer::new(gpu, key);
    let mut ok: Vec<ConvVariant> = Vec::new();
    for &v in variants {
        match time_once(gpu, &layer, &x, key, (v, 1), now).await {
            Ok(_) => ok.push(v),
            Err(e @ GpuError::DeviceLost { .. }) => return Err(e),
            Err(e) => warnings.push(format!(
                "tuning {}: variant {} failed on {} and is left out: {e}",
                key.text(),
                v.name(),
                gpu.adapter.name
            )),
        }
    }
    let calls = match ok.first() {
        Some(&v) => {
            let t = time_once(gpu, &layer, &x, key, (v, 1), now).await?;
            ((ROUND_SECONDS / t.max(1e-9)).ceil() as usize).clamp(1, MAX_CALLS)
        }
        None => 1,
    };
    let mut times = vec![Vec::with_capacity(rounds); ok.len()];
    for _ in 0..rounds.max(1) {
        for (i, &v) in ok.iter().enumerate() {
            times[i].push(time_once(gpu, &layer, &x, key, (v, calls), now).await?);
        }
    }
    Ok(ok
        .into_iter()
        .zip(times)
        .map(|(variant, mut t)| Timing {
            variant,
            seconds: median(&mut t) / calls as f64,
        })
        .collect())
}

/// The fastest timing, keeping the fixed default unless a candidate beats
/// it by [`SWITCH_MARGIN`].
pub fn pick(timings: &[Timing]) -> ConvVariant {
    let fixed = timings
        .iter()
        .find(|t| t.variant == ConvVariant::Fixed)
        .map_or(f64::INFINITY, |t| t.seconds);
    let best = timings
        .iter()
        .filter(|t| t.variant != ConvVariant::Fixed)
        .min_by(|a, b| a.seconds.total_cmp(&b.seconds));
    match best {
        Some(b) if b.seconds < fixed * (1.0 - SWITCH_MARGIN) => b.variant,
        _ => ConvVariant::Fixed,
    }
}

/// Reads this adapter's choices from `store` into the table (once per
/// adapter until [`clear`]); a text that does not parse is ignored with a
/// warning.
pub fn load_store(gpu: &Gpu, store: &dyn TuneStore) -> Vec<String> {
    let id = adapter_key(gpu);
    if STATE.lock().unwrap().loaded.contains(&id) {
        return Vec::new();
    }
    let mut warnings = Vec::new();
    let entries = match store.load(&id) {
        None => Vec::new(),
        Some(text) => match parse_cache(&id, &text) {
            Ok(e) => e,
            Err(why) => {
                warnings.push(format!(
                    "ignoring the tuning cache {}: {why}",
                    store.describe(&id)
                ));
                Vec::new()
            }
        },
    };
    let mut st = STATE.lock().unwrap();
    st.loaded.insert(id.clone());
    let m = st.choices.entry(id).or_default();
    for (k, v) in entries {
        m.entry(k).or_insert(v);
    }
    warnings
}

/// Tunes `keys` on this adapter: loads the store's choices, times the
/// shapes it lacks (per `cfg.mode`; nothing at all when `Off`), keeps the
/// fastest and saves the merged table to `store`.
pub async fn tune(
    gpu: &Gpu,
    keys: &[ConvKey],
    cfg: TuneConfig,
    store: &dyn TuneStore,
) -> Result<TuneReport> {
    let mut report = TuneReport::default();
    if cfg.mode == TuneMode::Off {
        return Ok(report);
    }
    report.warnings = load_store(gpu, store);
    let mut new = false;
    let mut done = HashSet::new();
    for key in keys {
        if !done.insert(*key) {
            continue;
        }
        if let Some(v) = chosen(gpu, key) {
            report.decisions.push(Decision {
                key: *key,
                chosen: v,
                timings: Vec::new(),
                cached: true,
            });
            continue;
        }
        let variants = candidates(gpu, key, cfg.mode);
        let timings = time_variants(
            gpu,
            key,
            &variants,
            cfg.mode.rounds(),
            cfg.now,
            &mut report.warnings,
        )
        .await?;
        let v = pick(&timings);
        set_choice(gpu, *key, v);
        new = true;
        report.decisions.push(Decision {
            key: *key,
            chosen: v,
            timings,
            cached: false,
        });
    }
    if new {
        report.warnings.extend(save(gpu, store));
    }
    Ok(report)
}

/// Saves this adapter's table to `store`; the error, if any, as a warning.
fn save(gpu: &Gpu, store: &dyn TuneStore) -> Option<String> {
    let id = adapter_key(gpu);
    let text = {
        let st = STATE.lock().unwrap();
        cache_text(&id, st.choices.get(&id).unwrap_or(&HashMap::new()))
    };
    store.save(&id, &text).err()
}

/// The choice for `key` from timings measured by the caller (`prior bench`
/// times every variant anyway): the timings of `mode`'s candidates picked
/// as [`tune`] picks, held for `Auto` and saved to `store` (with a warning
/// when that fails). `Off` keeps [`ConvVariant::Fixed`] and saves nothing.
pub fn decide(
    gpu: &Gpu,
    key: ConvKey,
    timings: &[Timing],
    mode: TuneMode,
    store: &dyn TuneStore,
) -> (ConvVariant, Vec<String>) {
    if mode == TuneMode::Off {
        return (ConvVariant::Fixed, Vec::new());
    }
    let allowed = candidates(gpu, &key, mode);
    let eligible: Vec<Timing> = timings
        .iter()
        .filter(|t| allowed.contains(&t.variant))
        .copied()
        .collect();
    let v = pick(&eligible);
    set_choice(gpu, key, v);
    (v, save(gpu, store).into_iter().collect())
}

/// [`tune`] on the shapes `Auto` forwards have met without a choice.
pub async fn tune_seen(gpu: &Gpu, cfg: TuneConfig, store: &dyn TuneStore) -> Result<TuneReport> {
    let keys = seen(gpu);
    tune(gpu, &keys, cfg, store).await
}
