#!/usr/bin/env python3
"""Figures of the README's learned-measurements section from the outputs of
`prior learn-measurements` (M.npy + M.json sidecars with an `eval` block).

    python3 benches/olm_figures.py DIR OUTDIR

DIR holds {learned,pca,random}_n{N}.{npy,json}; writes OUTDIR/olm_psnr.png
(mean PSNR against n), olm_training.png (the training loss curves) and
olm_vectors.png (learned rows above the PCA rows, n = 16). Needs numpy and
pillow only.
"""
import glob, json, os, re, sys

import numpy as np
from PIL import Image, ImageDraw

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
COL = {"learned": (200, 30, 30), "pca": (30, 90, 200), "random": (110, 110, 110)}


def load(name):
    with open(os.path.join(src, name + ".json")) as f:
        return json.load(f)


def axes(w, h, xr, yr, title, xl, yl):
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    l, r, t, b = 60, w - 20, 30, h - 45
    d.rectangle([l, t, r, b], outline="black")
    d.text((l, 8), title, fill="black")
    d.text(((l + r) // 2 - 20, h - 18), xl, fill="black")
    d.text((4, t - 22), yl, fill="black")
    sx = lambda x: l + (x - xr[0]) / (xr[1] - xr[0]) * (r - l)
    sy = lambda y: b - (y - yr[0]) / (yr[1] - yr[0]) * (b - t)
    for k in range(6):
        y = yr[0] + k * (yr[1] - yr[0]) / 5
        d.line([l - 4, sy(y), l, sy(y)], fill="black")
        d.text((6, sy(y) - 6), f"{y:.3g}", fill="black")
    return im, d, sx, sy


# PSNR against n
res = {}
for p in glob.glob(os.path.join(src, "*_n*.json")):
    m = re.match(r"(learned|pca|random)_n(\d+)\.json", os.path.basename(p))
    j = load(os.path.basename(p)[:-5])
    if m and "eval" in j:
        res.setdefault(m.group(1), []).append((int(m.group(2)), j["eval"]["mean_psnr"], j["eval"]["se_psnr"]))
ns = sorted({n for v in res.values() for n, _, _ in v})
ys = [p for v in res.values() for _, p, _ in v]
im, d, sx, sy = axes(480, 320, (min(ns) * 0.8, max(ns) * 1.2), (min(ys) - 1, max(ys) + 1),
                     "mean PSNR of 64 held-out MNIST digits", "n (measurements)", "PSNR dB")
for n in ns:
    d.text((sx(n) - 6, 320 - 40), str(n), fill="black")
for k, (meth, v) in enumerate(sorted(res.items())):
    v.sort()
    pts = [(sx(n), sy(p)) for n, p, _ in v]
    if len(pts) > 1:
        d.line(pts, fill=COL[meth], width=2)
    for (n, p, se), (x, y) in zip(v, pts):
        d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=COL[meth])
        d.line([x, sy(p - se), x, sy(p + se)], fill=COL[meth])
    d.text((380, 40 + 14 * k), meth, fill=COL[meth])
im.save(os.path.join(out, "olm_psnr.png"))

# training curves
curves = {}
for p in sorted(glob.glob(os.path.join(src, "learned_n*.json"))):
    j = load(os.path.basename(p)[:-5])
    curves[j["count"]] = [c["loss"] / 784 for c in j["loss_curve"]]
allv = [v for c in curves.values() for v in c]
steps = max(len(c) for c in curves.values())
im, d, sx, sy = axes(480, 320, (0, steps + 1), (0, max(allv) * 1.05),
                     "training loss (per-pixel MSE of the batch, thick: running mean of 5)", "Adam step", "MSE")
cc = [(200, 30, 30), (30, 140, 60), (30, 90, 200)]
for k, (n, c) in enumerate(sorted(curves.items())):
    pts = [(sx(i + 1), sy(v)) for i, v in enumerate(c)]
    d.line(pts, fill=cc[k % 3], width=1)
    rm = [np.mean(c[max(0, i - 4):i + 1]) for i in range(len(c))]
    d.line([(sx(i + 1), sy(v)) for i, v in enumerate(rm)], fill=cc[k % 3], width=3)
    d.text((380, 40 + 14 * k), f"n = {n}", fill=cc[k % 3])
im.save(os.path.join(out, "olm_training.png"))

# measurement vectors: learned (top) and PCA (bottom), n = 16
rows = []
for meth in ("learned", "pca"):
    f = os.path.join(src, f"{meth}_n16.npy")
    if os.path.exists(f):
        rows.append((meth, np.load(f)))
z, pad = 3, 2
tile = 28 * z + pad
im = Image.new("RGB", (60 + 16 * tile, len(rows) * tile + 4), "white")
d = ImageDraw.Draw(im)
for r, (meth, m) in enumerate(rows):
    d.text((4, r * tile + tile // 2 - 6), meth, fill="black")
    for k in range(min(16, m.shape[0])):
        v = m[k].reshape(28, 28)
        s = np.abs(v).max() or 1.0
        rgb = np.zeros((28, 28, 3), np.uint8)
        pos, neg = np.clip(v / s, 0, 1), np.clip(-v / s, 0, 1)
        rgb[..., 0] = 255 * (1 - neg)
        rgb[..., 1] = 255 * (1 - pos - neg).clip(0, 1)
        rgb[..., 2] = 255 * (1 - pos)
        t = Image.fromarray(rgb).resize((28 * z, 28 * z), Image.NEAREST)
        im.paste(t, (60 + k * tile, r * tile + 2))
im.save(os.path.join(out, "olm_vectors.png"))
print("wrote", out)
