// The parity checks of crates/web/tests/browser.rs: runs the JS API on the
// inputs the test wrote to /parity/ and POSTs every output to /result; the
// test compares them with the native CLI/library on lavapipe. Each check is
// tiny (SwiftShader runs ~2 GFLOP/s).
import { parseNpy, fetchBytes } from "./npy.js";

const log = (text) => {
  document.getElementById("log").textContent += text + "\n";
  fetch("/log", { method: "POST", body: text }).catch(() => {});
};
const arr = (x) => Array.from(x);
const ckpt = (p) => fetchBytes(`/shared/checkpoints/${p}`);
const npy = async (name) => parseNpy(await fetchBytes(`/parity/${name}`), name);
const time = async (label, f) => {
  const t0 = performance.now();
  const r = await f();
  const s = (performance.now() - t0) / 1000;
  log(`${label}: ${s.toFixed(2)} s`);
  return [r, s];
};

const out = { ok: false, error: null, timings: {} };
try {
  // The "done when", verbatim: no init(), Model.load before any GPU.
  const wasm = await import("./pkg/prior_web.js");
  await wasm.default();
  const { Model } = wasm;
  const mnist = Model.load(await ckpt("universal_inverse_problem/mnist_gray/model.pt"), "model.pt");
  out.loaded_before_gpu = mnist.describe();
  const [s, ts] = await time("sample 28x28, 10 iterations", () =>
    mnist.sample({ size: "28x28", seed: 3, beta: 0.5, maxIters: 10 }));
  out.sample = { data: arr(s.data), n: s.n, c: s.c, h: s.h, w: s.w, iterations: s.iterations, final_sigma: s.final_sigma,
                 keys: Object.keys(s).sort() };
  out.timings.sample_seconds = ts;
  out.timings.sample_seconds_per_iteration = s.seconds_per_iteration;
  out.adapter = await wasm.init();

  const input = await npy("input28.npy");
  const image = { c: 1, h: 28, w: 28, data: input.data };
  out.noise = arr(wasm.addNoise(input.data, 25, 7)); // the CLI's --add-noise 25 --seed 7
  const [d1, td1] = await time("denoise 28x28 (first)", () => mnist.denoise(image));
  const [, td2] = await time("denoise 28x28 (warm)", () => mnist.denoise(image));
  out.denoise = arr(d1.data);
  // prior denoise --add-noise 25 --seed 7 --json: the same noise, PSNR and SSIM keys.
  const dn = await mnist.denoise(image, { addNoise: 25, seed: 7 });
  out.denoise_noisy = { data: arr(dn.data), input: arr(dn.input), n: dn.n, c: dn.c, h: dn.h, w: dn.w,
                        json: Object.fromEntries(Object.entries(dn).filter(([k]) => !["data", "input"].includes(k))) };
  // precision "f16" as --precision f16: SwiftShader lacks shader-f16, so f32 runs (the same output).
  const d16 = await mnist.denoise(image, { precision: "f16" });
  out.denoise_f16_fallback_same = d16.data.every((v, i) => v === d1.data[i]);
  try {
    await mnist.denoise(image, { precision: "f8" });
    out.precision_error = null;
  } catch (e) {
    out.precision_error = String(e?.message ?? e);
  }
  out.timings.denoise_first_seconds = td1;
  out.timings.denoise_warm_seconds = td2;

  // Inpainting with a given mask (1 = known).
  const mask = await npy("mask28.npy");
  const [inp] = await time("solve inpaint (mask), 5 iterations", () =>
    mnist.solve("inpaint", image, { mask: { c: 1, h: 28, w: 28, data: mask.data }, seed: 1, maxIters: 5 }));
  out.inpaint = { data: arr(inp.data), psnr: inp.psnr, psnr_input: inp.psnr_input, task: inp.task, iterations: inp.iterations };

  // Any measurement matrix (100 × 784 rows, orthonormalised by the library's QR).
  const mat = await npy("matrix.npy");
  const [mt] = await time("solve matrix, 2 iterations", () =>
    mnist.solve("matrix", image, { matrix: mat.data, seed: 1, maxIters: 2 }));
  out.matrix = { data: arr(mt.data), measurements: mt.measurements };

  // Adaptive filter at one pixel (a row of J by VJP).
  const [jac] = await time("jacobian", () =>
    mnist.jacobian(image, { pixels: "14,14", topK: 1, probes: 1, oversample: 0, power: 0 }));
  out.jacobian = { row: arr(jac.filters[0].data), singular_values: jac.singular_values, trace: jac.trace };

  // Cancel mid-run: abort from onProgress at iteration 3 of 1000.
  const ac = new AbortController();
  let seen = 0;
  const t0 = performance.now();
  try {
    await mnist.sample({ size: "28x28", maxIters: 1000, signal: ac.signal,
                         onProgress: (p) => { seen = p.iteration; if (p.iteration === 3) ac.abort(); } });
    out.cancel = { rejected: false };
  } catch (e) {
    out.cancel = { rejected: true, name: e.name, message: e.message, last_iteration: seen,
                   seconds: (performance.now() - t0) / 1000 };
  }
  // The same 10 iterations again: the model works after the cancelled run,
  // gives the same numbers, and the pipelines are warm (per-iteration time).
  const [s2, ts2] = await time("sample again (warm)", () =>
    mnist.sample({ size: "28x28", seed: 3, beta: 0.5, maxIters: 10 }));
  out.timings.sample_warm_seconds = ts2;
  out.timings.sample_warm_seconds_per_iteration = s2.seconds_per_iteration;
  out.sample_repeat_equal = s2.data.every((v, i) => v === s.data[i]);
  out.cancel.usable_after = out.sample_repeat_equal;

  // log p under the energy fixture (t = 0), log Z given.
  const energy = Model.load(await ckpt("dual_score_matching/mnist32_gray_tiny/model.pth.tar"), "model.pth.tar");
  const in32 = await npy("input32.npy");
  const [lp] = await time("logp 32x32", () => energy.logp([{ c: 1, h: 32, w: 32, data: in32.data }], { logZ: 0 }));
  out.logp = lp.images[0];
  // Without log Z (the fixture has no calibration) logp refuses, as the CLI.
  out.logp_no_logz_error = await energy.logp([{ c: 1, h: 32, w: 32, data: in32.data }], {})
    .then(() => null, (e) => String(e?.message ?? e));
  // prior sample --method mala: 3 levels × 2 steps of 16×16 (tiny: SwiftShader).
  const levelsSeen = [];
  const [ml, tml] = await time("sample mala 16x16, 3 levels x 2 steps", () =>
    energy.sample({ method: "mala", size: "16x16", seed: 4, levels: 3, steps: 2,
                    onProgress: (p) => levelsSeen.push(p.level) }));
  out.mala = { data: arr(ml.data), h: ml.h, w: ml.w, method: ml.method, evaluations: ml.evaluations,
               mean_acceptance: ml.mean_acceptance, levels: ml.levels, progress_levels: levelsSeen };
  out.timings.mala_seconds = tml;
  // Cancel MALA after its first level; then the same run gives the same sample.
  const acm = new AbortController();
  out.mala_cancel = await energy.sample({ method: "mala", size: "16x16", seed: 4, levels: 20, steps: 2, signal: acm.signal,
                                          onProgress: () => acm.abort() })
    .then(() => ({ rejected: false }), (e) => ({ rejected: true, name: e.name }));
  const again = await energy.sample({ method: "mala", size: "16x16", seed: 4, levels: 3, steps: 2 });
  out.mala_cancel.usable_after = again.data.every((v, i) => v === ml.data[i]);
  try {
    await mnist.sample({ method: "mala", size: "28x28" });
    out.mala_on_denoiser_error = null;
  } catch (e) {
    out.mala_on_denoiser_error = String(e?.message ?? e);
  }

  // Multi-scale super-resolution: an 8×8 low-pass → 32×32 (two levels), set of files.
  const dir = "local_probability_models/multi_scale_160_rf9";
  const names = ["low_40x40.pt", "rf9_scale_0.pt", "rf9_scale_1.pt"];
  const files = await Promise.all(names.map(async (name) => ({ name, bytes: await ckpt(`${dir}/${name}`) })));
  const ms = Model.loadMultiScale(files);
  const low = await npy("low8.npy");
  const [sr] = await time("superResolve 8x8 -> 32x32", () =>
    ms.superResolve({ c: 1, h: 8, w: 8, data: low.data }, { levels: 2, seed: 2, maxIters: 4 }));
  out.superres = { data: arr(sr.data), h: sr.h, w: sr.w, levels: sr.levels.length };
  out.ok = true;
} catch (e) {
  out.error = String(e?.stack ?? e?.message ?? e);
  log(`error: ${out.error}`);
}
window.priorPosted = true;
await fetch("/result", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(out) });
