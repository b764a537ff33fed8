#!/usr/bin/env python3
"""PyTorch counterpart of benches/olm.rs: one training step of learned
measurements (forward through the unrolled sampler, autograd backward to M)
on MNIST digits with the mnist BF-CNN, the same computation as
crates/algos/src/olm.rs (make_golden.py's olm_unrolled). Prints
`SECONDS_PER_STEP 0`.

    python3 benches/olm_torch.py --ckpt MODEL.pt --mnist IDX.gz [--batch 2 --average 1 --unroll 4 --count 16 --reps 2]

PRIOR_TORCH_DEVICE=cuda runs it on CUDA; PRIOR_TORCH_THREADS sets the CPU threads.
"""
import argparse, gzip, importlib.util, os, time

import numpy as np
import torch

p = argparse.ArgumentParser()
p.add_argument("--ckpt", required=True)
p.add_argument("--mnist", required=True)
p.add_argument("--batch", type=int, default=2)
p.add_argument("--average", type=int, default=1)
p.add_argument("--unroll", type=int, default=4)
p.add_argument("--count", type=int, default=16)
p.add_argument("--reps", type=int, default=2)
a = p.parse_args()
if os.environ.get("PRIOR_TORCH_THREADS"):
    torch.set_num_threads(int(os.environ["PRIOR_TORCH_THREADS"]))
dev = os.environ.get("PRIOR_TORCH_DEVICE", "cpu")
here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("mg", os.path.join(here, "..", "tests", "golden", "make_golden.py"))
mg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mg)
torch.set_num_threads(int(os.environ.get("PRIOR_TORCH_THREADS", os.cpu_count())))
net = mg.bfcnn_uip(torch.load(a.ckpt, map_location="cpu", weights_only=True)).to(dev).eval()
for q in net.parameters():
    q.requires_grad_(False)
with gzip.open(a.mnist, "rb") as f:
    raw = f.read()
digits = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28 * 28).astype(np.float32) / 255
xs = torch.tensor(digits[: a.batch], device=dev)
e = torch.tensor(digits[100:164].mean(0), device=dev)
d = 28 * 28
q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((d, a.count)))
runs = a.batch * a.average
zs = torch.randn(a.unroll + 1, runs, d, device=dev)


def step():
    M = torch.tensor(q.T, dtype=torch.float32, device=dev, requires_grad=True)
    loss, _ = mg.olm_unrolled(net, M, xs, e, zs, (1, 28, 28), 0.1, 0.2, 1.0, a.unroll, a.average)
    loss.backward()
    if dev == "cuda":
        torch.cuda.synchronize()
    return M.grad


step()  # warm-up
t = time.perf_counter()
for _ in range(a.reps):
    step()
print((time.perf_counter() - t) / a.reps, 0)
