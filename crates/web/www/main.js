// The demo page of prior-web: one panel per CLI capability, all through the
// JS API (crates/web/src/*.rs), nothing computed here but pixels and plots.
// ?test=1: the golden check (result POSTed to /result; crates/web/tests/browser.rs).
// ?shots=1: runs every panel once on tiny inputs, then POSTs /result.
import wasmInit, { init, Model, addNoise } from "./pkg/prior_web.js";
import { parseNpy, fetchBytes } from "./npy.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

function status(text, isError = false) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

// Progress lines also go to the serving origin (printed by the tests).
function log(text) {
  console.log(text);
  if (params.has("test") || params.has("run") || params.has("shots")) fetch("/log", { method: "POST", body: text }).catch(() => {});
}

// ---------------------------------------------------------------- tabs
const sections = [...document.querySelectorAll("section")];
function show(id) {
  for (const s of sections) s.classList.toggle("on", s.id === id);
  for (const b of $("tabs").children) b.classList.toggle("on", b.dataset.tab === id);
}
for (const s of sections) {
  const b = document.createElement("button");
  b.textContent = s.dataset.title;
  b.dataset.tab = s.id;
  b.onclick = () => show(s.id);
  $("tabs").append(b);
}
show(params.get("tab") ?? "sample");

// ---------------------------------------------------------------- images
// Image → planar (c, h, w) floats in [0, 1]; gray when the model takes 1
// channel; optionally resized to size×size (a centre square).
async function decodeImage(blob, channels, size = null) {
  const bmp = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  let { width: w, height: h } = bmp;
  let sx = 0, sy = 0, sw = w, sh = h;
  if (size) {
    const m = Math.min(w, h);
    [sx, sy, sw, sh] = [(w - m) >> 1, (h - m) >> 1, m, m];
    w = h = size;
  }
  const cv = new OffscreenCanvas(w, h);
  const ctx = cv.getContext("2d");
  ctx.drawImage(bmp, sx, sy, sw, sh, 0, 0, w, h);
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const data = new Float32Array(channels * h * w);
  for (let i = 0; i < h * w; i++) {
    const [r, g, b] = [rgba[4 * i], rgba[4 * i + 1], rgba[4 * i + 2]];
    if (channels === 1) data[i] = (0.299 * r + 0.587 * g + 0.114 * b) / 255;
    else for (let k = 0; k < 3; k++) data[k * h * w + i] = rgba[4 * i + k] / 255;
  }
  return { c: channels, h, w, data };
}

// A crop of a planar image (top-left at the centre minus half).
function centreCrop(img, size) {
  const s = Math.min(size, img.h, img.w);
  const [t, l] = [(img.h - s) >> 1, (img.w - s) >> 1];
  const data = new Float32Array(img.c * s * s);
  for (let k = 0; k < img.c; k++)
    for (let y = 0; y < s; y++)
      for (let x = 0; x < s; x++) data[(k * s + y) * s + x] = img.data[(k * img.h + t + y) * img.w + l + x];
  return { c: img.c, h: s, w: s, data };
}

// Draws sample `k` of planar N×C×H×W `data` (values in [0,1], or a
// symmetric scale around 0 with `signed`).
function draw(canvas, { c, h, w, data }, k = 0, signed = false) {
  canvas.width = w;
  canvas.height = h;
  const img = new ImageData(w, h);
  const base = k * c * h * w;
  let scale = 1;
  if (signed) {
    scale = 1e-12;
    for (let i = 0; i < c * h * w; i++) scale = Math.max(scale, Math.abs(data[base + i]));
  }
  for (let i = 0; i < h * w; i++) {
    for (let ch = 0; ch < 3; ch++) {
      let v = data[base + (c === 1 ? 0 : ch) * h * w + i];
      if (signed) v = 0.5 + 0.5 * v / scale;
      img.data[4 * i + ch] = Math.round(255 * Math.min(1, Math.max(0, v)));
    }
    img.data[4 * i + 3] = 255;
  }
  canvas.getContext("2d").putImageData(img, 0, 0);
}

function figures(container, count, caption) {
  const el = $(container);
  el.replaceChildren();
  return Array.from({ length: count }, (_, k) => {
    const f = document.createElement("figure");
    const cv = document.createElement("canvas");
    cv.className = "img";
    const cap = document.createElement("figcaption");
    cap.textContent = caption(k);
    f.append(cv, cap);
    el.append(f);
    return { canvas: cv, caption: cap };
  });
}

// A line plot on a log y axis (series: arrays of [x, y]).
function logPlot(canvas, series, { xLabel = "iteration", yLabel = "σ_t", logX = false } = {}) {
  const ctx = canvas.getContext("2d");
  const [W, H, L, B] = [canvas.width, canvas.height, 48, 28];
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, W, H);
  const pts = series.flat().filter(([x, y]) => y > 0 && Number.isFinite(y));
  if (!pts.length) return;
  const fx = (x) => (logX ? Math.log10(x) : x);
  let [x0, x1] = [Math.min(...pts.map((p) => fx(p[0]))), Math.max(...pts.map((p) => fx(p[0])))];
  let [y0, y1] = [Math.log10(Math.min(...pts.map((p) => p[1]))), Math.log10(Math.max(...pts.map((p) => p[1])))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 - y0 < 1e-3) { y0 -= 0.5; y1 += 0.5; }
  const px = (x) => L + ((fx(x) - x0) / (x1 - x0)) * (W - L - 8);
  const py = (y) => H - B - ((Math.log10(y) - y0) / (y1 - y0)) * (H - B - 8);
  ctx.strokeStyle = "#999";
  ctx.strokeRect(L, 8, W - L - 8, H - B - 8);
  ctx.fillStyle = "#333";
  ctx.font = "11px sans-serif";
  for (let e = Math.ceil(y0); e <= Math.floor(y1); e++) {
    ctx.fillText(`1e${e}`, 4, py(10 ** e) + 4);
    ctx.fillRect(L - 3, py(10 ** e), 3, 1);
  }
  ctx.fillText(xLabel, W / 2, H - 6);
  ctx.fillText(yLabel, 4, 14);
  const colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
  series.forEach((s, k) => {
    ctx.strokeStyle = colors[k % colors.length];
    ctx.beginPath();
    s.filter(([, y]) => y > 0).forEach(([x, y], i) => (i ? ctx.lineTo(px(x), py(y)) : ctx.moveTo(px(x), py(y))));
    ctx.stroke();
  });
}

function histogram(canvas, values, label) {
  const ctx = canvas.getContext("2d");
  const [W, H] = [canvas.width, canvas.height];
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, W, H);
  if (!values.length) return;
  const [lo, hi] = [Math.min(...values), Math.max(...values)];
  const bins = Math.max(5, Math.min(30, Math.ceil(Math.sqrt(values.length)) * 2));
  const counts = new Array(bins).fill(0);
  for (const v of values) counts[Math.min(bins - 1, Math.floor(((v - lo) / (hi - lo || 1)) * bins))]++;
  const top = Math.max(...counts);
  ctx.fillStyle = "#1f77b4";
  const bw = (W - 20) / bins;
  counts.forEach((c, i) => ctx.fillRect(10 + i * bw, H - 24 - (c / top) * (H - 40), bw - 1, (c / top) * (H - 40)));
  ctx.fillStyle = "#333";
  ctx.font = "11px sans-serif";
  ctx.fillText(lo.toFixed(3), 10, H - 8);
  ctx.fillText(hi.toFixed(3), W - 50, H - 8);
  ctx.fillText(label, W / 2 - 20, H - 8);
}

// ---------------------------------------------------------------- GPU, models
let ready = null; // the adapter description, once the module and WebGPU are up
// When the wasm module and WebGPU first started (performance.now, ms): the
// first paint must come before it (the golden test checks).
let gpuStartMs = null;
// The wasm module, fetched and compiled once (parsing a checkpoint needs it,
// not WebGPU).
let wasmLoading = null;
const wasmModule = () => (wasmLoading ??= wasmInit());
async function start() {
  if (ready === null) {
    gpuStartMs ??= performance.now();
    if (!navigator.gpu) throw new Error("navigator.gpu is undefined: this browser has no WebGPU (or it is disabled)");
    await wasmModule();
    ready = await init();
    // wgpu's browser backend leaves the adapter name empty; ask WebGPU itself.
    const info = (await navigator.gpu.requestAdapter())?.info;
    const words = [info?.vendor, info?.architecture, info?.device, info?.description].filter((s) => s);
    if (words.length) ready += `; WebGPU adapter info: ${words.join(" ")}`;
    $("adapter").textContent = `WebGPU adapter: ${ready}`;
  }
  return ready;
}

const models = new Map(); // key → Model
async function modelFrom(url, files = null) {
  const key = files?.length ? `files:${[...files].map((f) => `${f.name}:${f.size}:${f.lastModified}`).join(",")}` : `url:${url}`;
  if (!models.has(key)) {
    status("loading the checkpoint…");
    await wasmModule();
    let m;
    if (files?.length > 1) {
      m = Model.loadMultiScale(await Promise.all([...files].map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) }))));
    } else if (files?.length === 1) {
      m = Model.load(new Uint8Array(await files[0].arrayBuffer()), files[0].name);
    } else {
      m = Model.load(await fetchBytes(url), url);
    }
    models.set(key, m);
  }
  return models.get(key);
}
// The sample panel offers MALA (`prior sample --method mala`) once an
// energy model is the main model (parsing a checkpoint needs no GPU).
function methodsFor(model) {
  const energy = model.arch === "energy_unet";
  const opt = $("sm-method").querySelector("option[value=mala]");
  opt.disabled = !energy;
  opt.textContent = energy ? "MALA (energy model)" : "MALA (load an energy model)";
  if (!energy) $("sm-method").value = "coarse-to-fine";
  $("sm-mala").hidden = $("sm-method").value !== "mala";
}
async function mainModel() {
  const m = await modelFrom($("ckpt-url").value, $("ckpt-file").files);
  methodsFor(m);
  return m;
}
for (const id of ["ckpt-url", "ckpt-file"]) $(id).addEventListener("change", () => mainModel().catch((e) => status(`${e?.message ?? e}`, true)));
$("sm-method").addEventListener("change", () => { $("sm-mala").hidden = $("sm-method").value !== "mala"; });

let dropped = null;
async function mainImage(channels, size = null) {
  const file = dropped ?? $("img-file").files[0];
  const blob = file ?? new Blob([await fetchBytes($("img-url").value)]);
  return decodeImage(blob, channels, size);
}
document.addEventListener("dragover", (e) => e.preventDefault());
document.addEventListener("drop", (e) => {
  e.preventDefault();
  const files = [...e.dataTransfer.files];
  const ckpts = files.filter((f) => /\.(pt|pth|tar|safetensors)$/i.test(f.name));
  const imgs = files.filter((f) => f.type.startsWith("image/"));
  if (ckpts.length) { const dt = new DataTransfer(); ckpts.forEach((f) => dt.items.add(f)); $("ckpt-file").files = dt.files; }
  if (imgs.length) dropped = imgs[0];
  status(`dropped ${files.map((f) => f.name).join(", ")}`);
});

// One run at a time, with a cancel button, timing and errors in the page.
let controller = null;
const timings = {};
async function running(name, f) {
  for (const b of document.querySelectorAll("[data-run]")) b.disabled = true;
  controller = new AbortController();
  $("cancel").disabled = false;
  const t0 = performance.now();
  try {
    await start();
    await f(controller.signal);
    const s = (performance.now() - t0) / 1000;
    timings[name] = s;
    $("timing").textContent = `${name}: ${s.toFixed(2)} s`;
    log(`${name}: ${s.toFixed(2)} s`);
  } catch (e) {
    const msg = e?.name === "AbortError" ? `${name}: cancelled` : `${name}: ${e?.message ?? e}`;
    status(msg, e?.name !== "AbortError");
    log(`error: ${msg}`);
    console.error(e);
    if (params.has("shots")) throw e;
  } finally {
    controller = null;
    $("cancel").disabled = true;
    for (const b of document.querySelectorAll("[data-run]")) b.disabled = false;
  }
}
$("cancel").onclick = () => controller?.abort();

// ---------------------------------------------------------------- panels
const panels = {};

panels.denoise = (signal) => running("denoise", async () => {
  const model = await mainModel();
  const clean = await mainImage(model.channels, params.has("shots") ? 32 : null);
  // The CLI's generator: this is the noisy image of `prior denoise --add-noise σ --seed 0`.
  const noisy = { ...clean, data: addNoise(clean.data, Number($("dn-sigma").value), 0) };
  draw($("dn-clean"), clean);
  draw($("dn-noisy"), noisy);
  $("dn-noisy-cap").textContent = `noisy σ = ${$("dn-sigma").value}`;
  status(`denoising ${clean.c}×${clean.h}×${clean.w} with ${model.describe()}…`);
  const t0 = performance.now();
  // prior denoise --add-noise σ --seed 0 on this image: the same noise, PSNR and SSIM.
  const r = await model.denoise(clean, { addNoise: Number($("dn-sigma").value), seed: 0 });
  const s = (performance.now() - t0) / 1000;
  draw($("dn-out"), r);
  $("dn-noisy-cap").textContent = `noisy σ = ${r.sigma}: ${r.psnr_input?.toFixed(2)} dB, SSIM ${r.ssim_input?.toFixed(3) ?? "n/a"}`;
  $("dn-out-cap").textContent = `denoised: ${r.psnr_output?.toFixed(2)} dB, SSIM ${r.ssim_output?.toFixed(3) ?? "n/a"}, ${s.toFixed(2)} s`;
  status(`${model.describe()}\n${clean.h}×${clean.w}: ${s.toFixed(2)} s (the first run also compiles the pipelines)`);
});

panels.sample = (signal) => running("sample", async () => {
  const model = await mainModel();
  const n = Number($("sm-n").value);
  const figs = figures("sm-images", n, (k) => `sample ${k}`);
  const history = Array.from({ length: n }, () => []);
  status("sampling…");
  if ($("sm-method").value === "mala") {
    // prior sample --method mala: one readback per noise level.
    const r = await model.sample({
      method: "mala", size: $("sm-size").value, samples: n, seed: Number($("sm-seed").value),
      levels: Number($("sm-levels").value), steps: Number($("sm-steps").value), signal,
      onProgress: (p) => {
        p.sigmas.forEach((s, k) => history[k].push([p.iteration, s]));
        logPlot($("sm-plot"), history);
        status(`level ${p.level + 1}: t ${p.t.toExponential(2)}, ε ${p.eps.toExponential(2)}, acceptance ${p.mean_acceptance.toFixed(3)}`);
      },
    });
    for (let k = 0; k < n; k++) {
      draw(figs[k].canvas, r, k);
      figs[k].caption.textContent = `MALA sample ${k}`;
    }
    status(`${n} MALA sample(s) of ${r.h}×${r.w}: ${r.levels.length} levels, mean acceptance ${r.mean_acceptance.toFixed(3)}, ${r.evaluations} evaluations in ${r.seconds.toFixed(2)} s`);
    return;
  }
  const r = await model.sample({
    size: $("sm-size").value, samples: n, beta: Number($("sm-beta").value), seed: Number($("sm-seed").value),
    maxIters: Number($("sm-iters").value), signal, progressImage: true, every: 5,
    onProgress: (p) => {
      if (p.image) { for (let k = 0; k < n; k++) draw(figs[k].canvas, { c: p.c, h: p.h, w: p.w, data: p.image }, k); return; }
      p.sigmas.forEach((s, k) => history[k].push([p.iteration, s]));
      logPlot($("sm-plot"), history);
      status(`iteration ${p.iteration}: σ_t ${[...p.sigmas].map((s) => s.toFixed(4)).join(", ")}; ${p.running} running`);
    },
  });
  // The y_t images are drawn as they form; the result is x̂(y) of the last one.
  for (let k = 0; k < n; k++) {
    draw(figs[k].canvas, r, k);
    figs[k].caption.textContent = `sample ${k}: ${n === 1 ? r.iterations : r.iterations[k]} iterations`;
  }
  status(`${n} sample(s) of ${r.h}×${r.w}: ${r.seconds.toFixed(2)} s, ${(r.seconds_per_iteration * 1000).toFixed(1)} ms per iteration`);
});

// Inpainting: the mask is painted on the image (1 = known, 0 = hole).
const paint = { img: null, mask: null };
function redrawPaint() {
  const { img, mask } = paint;
  const shown = { ...img, data: img.data.map((v, i) => (mask[i % (img.h * img.w)] ? v : 0.5 + 0.5 * ((i >> 1) & 1))) };
  draw($("ip-canvas"), shown);
}
async function paintImage() {
  const model = await mainModel();
  paint.img = await mainImage(model.channels, 28);
  paint.mask = new Float32Array(28 * 28).fill(1);
  redrawPaint();
}
function brush(e) {
  if (!paint.img || !(e.buttons & 1)) return;
  const cv = $("ip-canvas"), r = cv.getBoundingClientRect();
  const [x, y] = [((e.clientX - r.left) / r.width) * paint.img.w, ((e.clientY - r.top) / r.height) * paint.img.h];
  const b = Number($("ip-brush").value);
  for (let yy = 0; yy < paint.img.h; yy++)
    for (let xx = 0; xx < paint.img.w; xx++) if ((xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= b * b) paint.mask[yy * paint.img.w + xx] = 0;
  redrawPaint();
}
$("ip-canvas").addEventListener("pointerdown", (e) => { $("ip-canvas").setPointerCapture(e.pointerId); brush(e); });
$("ip-canvas").addEventListener("pointermove", brush);
$("ip-clear").onclick = () => { if (paint.mask) { paint.mask.fill(1); redrawPaint(); } };

panels.inpaint = (signal) => running("inpaint", async () => {
  const model = await mainModel();
  if (!paint.img) await paintImage();
  if (paint.mask.every((v) => v === 1)) for (let y = 9; y < 19; y++) for (let x = 9; x < 19; x++) paint.mask[y * 28 + x] = 0;
  redrawPaint();
  const n = Number($("ip-n").value);
  const figs = figures("ip-images", n, (k) => `posterior sample ${k}`);
  const r = await model.solve("inpaint", paint.img, {
    mask: { c: 1, h: paint.img.h, w: paint.img.w, data: paint.mask }, samples: n, seed: Number($("ip-seed").value),
    maxIters: Number(params.get("iters") ?? 3000), signal, progressImage: true, every: 5,
    onProgress: (p) => {
      if (p.image) for (let k = 0; k < n; k++) draw(figs[k].canvas, { c: p.c, h: p.h, w: p.w, data: p.image }, k);
      else status(`iteration ${p.iteration}: σ_t ${[...p.sigmas].map((s) => s.toFixed(4)).join(", ")}`);
    },
  });
  for (let k = 0; k < n; k++) {
    draw(figs[k].canvas, r, k);
    figs[k].caption.textContent = `sample ${k}: ${(n === 1 ? r.psnr : r.psnr[k]).toFixed(2)} dB`;
  }
  status(`${r.operator}: PSNR ${r.psnr_input.toFixed(2)} dB (M x_c) → ${[].concat(r.psnr).map((p) => p.toFixed(2)).join(", ")} dB`);
});

panels.solve = (signal) => running("solve", async () => {
  const model = await mainModel();
  const clean = await mainImage(model.channels, 28);
  const task = $("sv-task").value;
  const opts = { seed: Number($("sv-seed").value), signal, maxIters: Number(params.get("iters") ?? 3000) };
  if (task === "superres") opts.factor = Number($("sv-factor").value);
  else opts.fraction = Number($("sv-fraction").value);
  draw($("sv-clean"), clean);
  const r = await model.solve(task, clean, {
    ...opts, onProgress: (p) => status(`iteration ${p.iteration}: σ_t ${p.sigmas[0].toFixed(4)}`),
  });
  draw($("sv-input"), { ...clean, data: r.input });
  draw($("sv-out"), r);
  $("sv-input-cap").textContent = `M x_c: ${r.psnr_input.toFixed(2)} dB`;
  $("sv-out-cap").textContent = `result: ${r.psnr.toFixed(2)} dB, ${r.iterations} iterations`;
  status(`${r.operator}; ${r.measurements} measurements`);
});

panels.superres = (signal) => running("superres", async () => {
  const dir = $("sr-dir").value;
  const names = $("sr-files").value.split(",").map((s) => s.trim()).filter((s) => s);
  const key = `ms:${dir}:${names}`;
  if (!models.has(key)) {
    status("loading the multi-scale files…");
    models.set(key, Model.loadMultiScale(await Promise.all(names.map(async (name) => ({ name, bytes: await fetchBytes(`${dir}/${name}`) })))));
  }
  const model = models.get(key);
  const k = Number($("sr-levels").value);
  const clean = centreCrop(await mainImage(model.channels), Number($("sr-crop").value));
  // The measurement: 2^k × 2^k block means (the Haar low-pass the model conditions on).
  const f = 1 << k, [h, w] = [Math.floor(clean.h / f), Math.floor(clean.w / f)];
  const low = new Float32Array(h * w);
  for (let y = 0; y < h * f; y++) for (let x = 0; x < w * f; x++) low[Math.floor(y / f) * w + Math.floor(x / f)] += clean.data[y * clean.w + x] / (f * f);
  draw($("sr-low"), { c: 1, h, w, data: low });
  draw($("sr-clean"), clean);
  const r = await model.superResolve({ c: 1, h, w, data: low }, {
    levels: k, signal, maxIters: Number(params.get("iters") ?? 3000),
    onProgress: (p) => status(`level ${p.level}, iteration ${p.iteration}: σ_t ${p.sigmas[0].toFixed(4)}`),
  });
  draw($("sr-out"), r);
  $("sr-out-cap").textContent = `×${r.factor}: ${r.h}×${r.w}, ${r.iterations} iterations`;
  status(`super-resolution ×${r.factor} in ${r.seconds.toFixed(2)} s`);
});

const jac = { img: null };
async function jacobianRun(signal, pixel = null) {
  const model = await mainModel();
  if (!jac.img) jac.img = centreCrop(await mainImage(model.channels, null), Number($("jc-crop").value));
  const opts = { addNoise: Number($("jc-sigma").value), topK: Number($("jc-k").value), vectors: true, signal };
  if (params.has("shots")) Object.assign(opts, { probes: 4, oversample: 2, power: 0 }); // SwiftShader: keep it small
  if (pixel) Object.assign(opts, { pixels: `${pixel[0]},${pixel[1]}`, probes: 2, topK: 1, oversample: 1, power: 0, vectors: false });
  const r = await model.jacobian(jac.img, opts);
  draw($("jc-image"), { ...jac.img, data: r.input });
  if (pixel) {
    draw($("jc-filter"), { c: r.c, h: r.h, w: r.w, data: r.filters[0].data }, 0, true);
    $("jc-filter-cap").textContent = `filter at ${pixel}: sum ${r.filters[0].sum.toFixed(3)}, norm ${r.filters[0].norm.toFixed(3)}`;
    return;
  }
  logPlot($("jc-svals"), [r.singular_values.map((s, i) => [i + 1, s])], { xLabel: "index", yLabel: "s", logX: true });
  $("jc-svals-cap").textContent = `effective dim. Σs² ≈ ${r.sum_sq_singular_values.toFixed(1)}, tr J ≈ ${r.trace.toFixed(1)}`;
  const n = r.c * r.h * r.w;
  const figs = figures("jc-vectors", r.singular_values.length, (k) => `u${k + 1}, s = ${r.singular_values[k].toFixed(3)}`);
  figs.forEach((f, k) => draw(f.canvas, { c: r.c, h: r.h, w: r.w, data: r.vectors.subarray(k * n, (k + 1) * n) }, 0, true));
  status(`${r.model}: ${r.jvps} JVPs, ${r.vjps} VJPs in ${r.seconds.toFixed(2)} s`);
}
panels.jacobian = (signal) => running("jacobian", (s) => jacobianRun(s));
$("jc-image").addEventListener("click", (e) => {
  if (!jac.img || controller) return;
  const r = $("jc-image").getBoundingClientRect();
  const pixel = [Math.floor(((e.clientY - r.top) / r.height) * jac.img.h), Math.floor(((e.clientX - r.left) / r.width) * jac.img.w)];
  running("filter", (s) => jacobianRun(s, pixel));
});

panels.logp = () => running("logp", async (signal) => {
  const model = await modelFrom($("lp-url").value);
  const files = [...$("lp-files").files];
  let images;
  if (files.length) images = await Promise.all(files.map((f) => decodeImage(f, 1, 32)));
  else {
    // No files: five 32×32 crops of the page's image (resized to 96×96).
    const big = await mainImage(1, 96);
    images = [[0, 0], [0, 64], [64, 0], [64, 64], [32, 32]].map(([t, l]) => {
      const c = { c: 1, h: 32, w: 32, data: new Float32Array(32 * 32) };
      for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) c.data[y * 32 + x] = big.data[(t + y) * 96 + l + x];
      return c;
    });
  }
  const z = $("lp-logz").value.trim();
  const dims = images[0].c * images[0].h * images[0].w;
  let r, note = null;
  try {
    r = await model.logp(images, z ? { logZ: Number(z) } : {});
  } catch (e) {
    if (!String(e?.message).includes("no log Z")) throw e;
    // As `prior logp`, no log p without log Z: show the energies U(x, 0)
    // (`score` at t = 0) and the library's message.
    note = e.message;
    const t0 = performance.now();
    const us = [];
    for (const img of images) {
      if (signal?.aborted) throw new DOMException("cancelled", "AbortError");
      us.push((await model.score(img, { t: 0 })).energy);
    }
    r = { log_z: null, seconds: (performance.now() - t0) / 1000, images: us.map((energy, k) => ({ file: k, energy, bits_per_dim: null })) };
  }
  const bits = r.images.map((x) => x.bits_per_dim ?? x.energy / (dims * Math.LN2));
  histogram($("lp-hist"), bits, r.log_z === null ? "U(x,0)/(d ln 2)" : "bits/dim");
  $("lp-hist-cap").textContent = r.log_z === null ? "no log Z: energies per dim (give log Z for bits/dim)" : `log Z = ${r.log_z.toFixed(2)} nats`;
  const rows = r.images.map((x, k) => `<tr><td>${files[k]?.name ?? `crop ${k}`}</td><td>${x.energy.toFixed(2)}</td><td>${x.bits_per_dim?.toFixed(4) ?? "—"}</td></tr>`);
  $("lp-table").innerHTML = `<table><tr><th>image</th><th>U(x, 0) nats</th><th>bits/dim</th></tr>${rows.join("")}</table>`;
  status(`${images.length} image(s) in ${r.seconds.toFixed(2)} s${note ? `\n${note}` : ""}`);
});

for (const b of document.querySelectorAll("[data-run]")) b.addEventListener("click", () => panels[b.dataset.run]());

// ---------------------------------------------------------------- test modes
// ?test=1[&golden=NAME]: denoise tests/golden/NAME/input.npy with the
// checkpoint named in its meta.json and compare with output.npy.
async function goldenTest() {
  const name = params.get("golden") ?? "uip_bsd400_gray";
  const result = { ok: false, golden: name, max_abs_diff: null, adapter: null, seconds: null, seconds_warm: null, error: null };
  try {
    log("test: opening WebGPU");
    result.adapter = await start();
    log(`test: adapter ${result.adapter}`);
    const meta = JSON.parse(new TextDecoder().decode(await fetchBytes(`/golden/${name}/meta.json`)));
    const ckpt = await fetchBytes(`/shared/checkpoints/${meta.checkpoint}`);
    const model = Model.load(ckpt, meta.checkpoint);
    result.model = model.describe();
    log(`test: loaded ${result.model}`);
    const input = parseNpy(await fetchBytes(`/golden/${name}/input.npy`), "input.npy");
    const golden = parseNpy(await fetchBytes(`/golden/${name}/output.npy`), "output.npy");
    const [c, h, w] = input.shape.slice(-3);
    let t0 = performance.now();
    const out = (await model.denoise({ c, h, w, data: input.data })).data;
    result.seconds = (performance.now() - t0) / 1000;
    t0 = performance.now();
    const again = (await model.denoise({ c, h, w, data: input.data })).data;
    result.seconds_warm = (performance.now() - t0) / 1000;
    if (out.length !== golden.data.length) throw new Error(`${out.length} values out, golden has ${golden.data.length}`);
    let max = 0, repeat = 0;
    for (let i = 0; i < out.length; i++) {
      max = Math.max(max, Math.abs(out[i] - golden.data[i]));
      repeat = Math.max(repeat, Math.abs(out[i] - again[i]));
      if (!Number.isFinite(out[i])) max = Infinity;
    }
    result.max_abs_diff = Number.isFinite(max) ? max : null;
    if (!Number.isFinite(max)) throw new Error("the output has non-finite values");
    result.repeat_max_abs_diff = repeat;
    result.shape = [c, h, w];
    // Errors must reach JS as exceptions with a message (not a wasm trap).
    const message = (f) => { try { f(); return null; } catch (e) { return String(e?.message ?? e); } };
    result.bad_checkpoint_error = message(() => Model.load(new Uint8Array([1, 2, 3, 4]), "garbage.pt"));
    result.bad_channels_error = await model.denoise({ c: 3, h, w, data: new Float32Array(3 * h * w) }).then(() => null, (e) => String(e?.message ?? e));
    result.first_paint_ms = firstPaintMs();
    result.gpu_start_ms = gpuStartMs;
    result.still_works = (await model.denoise({ c, h, w, data: input.data })).data.every((v, i) => v === out[i]);
    result.ok = true;
    show("denoise");
    draw($("dn-noisy"), { c, h, w, data: input.data });
    draw($("dn-out"), { c, h, w, data: out });
    draw($("dn-clean"), { c, h, w, data: golden.data });
    $("dn-clean").nextElementSibling.textContent = "golden output (PyTorch)";
  } catch (e) {
    result.error = String(e?.stack ?? e?.message ?? e);
  }
  status(JSON.stringify(result, null, 1), !result.ok);
  window.priorPosted = true;
  await fetch("/result", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(result) });
}

// ?shots=1: every panel once on tiny settings (the screenshot test), then
// POST which canvases hold something other than one flat colour.
async function shots() {
  const out = { ok: false, error: null, timings, canvases: {} };
  try {
    $("sm-iters").value = params.get("iters") ?? "30";
    $("sm-n").value = "2";
    $("jc-k").value = "4";
    $("jc-crop").value = "16";
    $("sr-crop").value = "32";
    $("ip-n").value = "1";
    // The sample panel's MALA option, with the energy fixture as the main
    // model (3 levels × 2 steps); the panels below then use the page's
    // default checkpoint again (which turns the option off).
    const ckpt = $("ckpt-url").value;
    $("ckpt-url").value = $("lp-url").value;
    await mainModel();
    out.mala_option_enabled = !$("sm-method").querySelector("option[value=mala]").disabled;
    const keep = ["sm-size", "sm-n"].map((id) => [id, $(id).value]);
    Object.entries({ "sm-method": "mala", "sm-levels": "3", "sm-steps": "2", "sm-size": "32x32", "sm-n": "1" }).forEach(([id, v]) => { $(id).value = v; });
    show("sample");
    await panels.sample();
    out.mala_status = $("status").textContent;
    $("ckpt-url").value = ckpt;
    keep.forEach(([id, v]) => { $(id).value = v; });
    for (const p of ["denoise", "sample", "inpaint", "solve", "jacobian", "superres", "logp"]) {
      show(p);
      await panels[p]();
      if (p === "jacobian") await running("filter", (s) => jacobianRun(s, [8, 8]));
    }
    for (const cv of document.querySelectorAll("canvas")) {
      if (!cv.id && !cv.closest("div[id]")) continue;
      const id = cv.id || `${cv.closest("div[id]").id}[${[...cv.closest("div[id]").querySelectorAll("canvas")].indexOf(cv)}]`;
      const d = cv.getContext("2d").getImageData(0, 0, cv.width, cv.height).data;
      let distinct = new Set();
      for (let i = 0; i < d.length && distinct.size < 3; i += 4) distinct.add(d[i] * 65536 + d[i + 1] * 256 + d[i + 2]);
      out.canvases[id] = { w: cv.width, h: cv.height, nonblank: distinct.size > 1 };
    }
    for (const s of sections) s.classList.add("on"); // every panel on the screenshot
    out.ok = true;
  } catch (e) {
    out.error = String(e?.stack ?? e?.message ?? e);
  }
  window.priorPosted = true;
  document.title = "prior: shots done";
  await fetch("/result", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(out) });
}

// Do not block the first paint on pipeline creation: nothing above touches
// the wasm module or WebGPU (the module is fetched and compiled, WebGPU
// opened and the pipelines created by the first run, in start()); work that
// starts on load waits for the first frame to be painted (a
// requestAnimationFrame callback runs just before a paint, a timeout queued
// from it just after).
const afterFirstPaint = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
const firstPaintMs = () => {
  const e = performance.getEntriesByType("paint");
  return (e.find((p) => p.name === "first-paint") ?? e.find((p) => p.name === "first-contentful-paint"))?.startTime ?? null;
};
if (params.has("test")) afterFirstPaint().then(goldenTest);
else if (params.has("shots")) afterFirstPaint().then(shots);
else if (params.has("run")) afterFirstPaint().then(() => panels[params.get("tab") ?? "denoise"]()); // ?run=1[&tab=…]: run a panel on load
