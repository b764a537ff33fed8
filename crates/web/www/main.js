// The demo page of prior-web and its test mode (?test=1: golden check,
// result POSTed to /result; see crates/web/tests/browser.rs).
import wasmInit, { init, Model } from "./pkg/prior_web.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

function status(text, isError = false) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

// Progress lines also go to the serving origin (printed by the test).
function log(text) {
  console.log(text);
  if (params.has("test") || params.has("run")) fetch("/log", { method: "POST", body: text }).catch(() => {});
}

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

// NumPy .npy (v1–v3, little-endian f4 or f8, C order) → { shape, data: Float32Array }.
function parseNpy(bytes, name = "array") {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
  if (!magic.every((b, i) => bytes[i] === b)) throw new Error(`${name}: not a .npy file`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  const [len, start] = major === 1 ? [view.getUint16(8, true), 10] : [view.getUint32(8, true), 12];
  const header = new TextDecoder().decode(bytes.subarray(start, start + len));
  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw new Error(`${name}: bad .npy header ${header}`);
  if (fortran === "True") throw new Error(`${name}: Fortran-order arrays are not supported`);
  const shape = shapeText.split(",").map((s) => s.trim()).filter((s) => s).map(Number);
  const n = shape.reduce((a, b) => a * b, 1);
  const body = bytes.slice(start + len); // copy: aligned for the typed arrays
  let data;
  if (descr === "<f4") data = new Float32Array(body.buffer, 0, n);
  else if (descr === "<f8") data = Float32Array.from(new Float64Array(body.buffer, 0, n));
  else throw new Error(`${name}: dtype ${descr} (need <f4 or <f8)`);
  return { shape, data };
}

// Image → planar (c, h, w) floats in [0, 1]; gray when the model takes 1 channel.
async function decodeImage(blob, channels) {
  const bmp = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const { width: w, height: h } = bmp;
  const cv = new OffscreenCanvas(w, h);
  const ctx = cv.getContext("2d");
  ctx.drawImage(bmp, 0, 0);
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const data = new Float32Array(channels * h * w);
  for (let i = 0; i < h * w; i++) {
    const [r, g, b] = [rgba[4 * i], rgba[4 * i + 1], rgba[4 * i + 2]];
    if (channels === 1) data[i] = (0.299 * r + 0.587 * g + 0.114 * b) / 255;
    else for (let k = 0; k < 3; k++) data[k * h * w + i] = rgba[4 * i + k] / 255;
  }
  return { c: channels, h, w, data };
}

function draw(canvas, { c, h, w, data }) {
  canvas.width = w;
  canvas.height = h;
  const img = new ImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let k = 0; k < 3; k++) {
      const v = data[(c === 1 ? 0 : k) * h * w + i];
      img.data[4 * i + k] = Math.round(255 * Math.min(1, Math.max(0, v)));
    }
    img.data[4 * i + 3] = 255;
  }
  canvas.getContext("2d").putImageData(img, 0, 0);
}

function psnr(a, b) {
  let se = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.min(1, Math.max(0, a[i])) - b[i];
    se += d * d;
  }
  return 10 * Math.log10(a.length / se);
}

// Gaussian noise from a seeded generator (mulberry32 + Box–Muller); not the
// CLI's generator, so PSNRs differ slightly from `prior denoise --add-noise`.
function addNoise(x, sigma, seed = 1) {
  let s = seed >>> 0;
  const u = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const y = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const g = Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
    y[i] = x[i] + sigma * g;
  }
  return y;
}

let ready = null; // the adapter description, once init() resolved
async function start() {
  if (ready === null) {
    if (!navigator.gpu) throw new Error("navigator.gpu is undefined: this browser has no WebGPU (or it is disabled)");
    await wasmInit();
    ready = await init();
    // wgpu's browser backend leaves the adapter name empty; ask WebGPU itself.
    const info = (await navigator.gpu.requestAdapter())?.info;
    const words = [info?.vendor, info?.architecture, info?.device, info?.description].filter((s) => s);
    if (words.length) ready += `; WebGPU adapter info: ${words.join(" ")}`;
    $("adapter").textContent = `WebGPU adapter: ${ready}`;
  }
  return ready;
}

let cached = { key: null, model: null };
async function loadModel() {
  const file = $("ckpt-file").files[0];
  const key = file ? `file:${file.name}:${file.size}:${file.lastModified}` : `url:${$("ckpt-url").value}`;
  if (cached.key !== key) {
    status("loading the checkpoint…");
    const bytes = file ? new Uint8Array(await file.arrayBuffer()) : await fetchBytes($("ckpt-url").value);
    cached.model?.free();
    cached = { key, model: Model.load(bytes, file ? file.name : $("ckpt-url").value) };
  }
  return cached.model;
}

async function demo() {
  const button = $("run");
  button.disabled = true;
  try {
    await start();
    const model = await loadModel();
    const file = $("img-file").files[0];
    const blob = file ?? new Blob([await fetchBytes($("img-url").value)]);
    const clean = await decodeImage(blob, model.channels);
    const sigma = Number($("sigma").value) / 255;
    const noisy = { ...clean, data: addNoise(clean.data, sigma) };
    draw($("clean"), clean);
    draw($("noisy"), noisy);
    $("noisy-cap").textContent = `noisy σ = ${$("sigma").value}: PSNR ${psnr(noisy.data, clean.data).toFixed(2)} dB`;
    status(`denoising ${clean.c}×${clean.h}×${clean.w} with ${model.describe()}…`);
    const t0 = performance.now();
    const out = await model.denoise(clean.c, clean.h, clean.w, noisy.data);
    const seconds = (performance.now() - t0) / 1000;
    draw($("denoised"), { ...clean, data: out });
    $("denoised-cap").textContent = `denoised: PSNR ${psnr(out, clean.data).toFixed(2)} dB`;
    const line = `${model.describe()}\n${clean.h}×${clean.w}: ${seconds.toFixed(2)} s (the first run also compiles the pipelines); PSNR ${psnr(noisy.data, clean.data).toFixed(2)} → ${psnr(out, clean.data).toFixed(2)} dB`;
    status(line);
    log(`demo: ${line}`);
  } catch (e) {
    status(String(e?.message ?? e), true);
    log(`demo error: ${e?.message ?? e}`);
    console.error(e);
  } finally {
    button.disabled = false;
  }
}

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
    const out = await model.denoise(c, h, w, input.data);
    result.seconds = (performance.now() - t0) / 1000;
    t0 = performance.now();
    const again = await model.denoise(c, h, w, input.data);
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
    result.bad_channels_error = await model.denoise(3, h, w, new Float32Array(3 * h * w)).then(() => null, (e) => String(e?.message ?? e));
    result.still_works = (await model.denoise(c, h, w, input.data)).every((v, i) => v === out[i]);
    result.ok = true;
    draw($("noisy"), { c, h, w, data: input.data });
    draw($("denoised"), { c, h, w, data: out });
    draw($("clean"), { c, h, w, data: golden.data });
    $("clean").nextElementSibling.textContent = "golden output (PyTorch)";
  } catch (e) {
    result.error = String(e?.stack ?? e?.message ?? e);
  }
  status(JSON.stringify(result, null, 1), !result.ok);
  window.priorPosted = true;
  await fetch("/result", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(result) });
}

$("run").addEventListener("click", demo);
if (params.has("test")) goldenTest();
else if (params.has("run")) demo(); // ?run=1: denoise the defaults on load
