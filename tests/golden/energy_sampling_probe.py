"""Why the MNIST energy fixture does not sample digits: measurements in PyTorch.

Not a golden writer: a diagnostic whose figures the README quotes
("Sampling with the energy model"). It rebuilds the fixture
(dual_score_matching/mnist32_gray_tiny) with make_golden.py's definition
(prior matches it to <= 2.3e-5 on grad_y U) and measures, on CPU float32:

1. the denoiser x^ = y - t grad U(y, t) on noisy held-out digits (sound), and
   |t grad U| at the clean digits themselves (far too large: the score was
   only ever trained on the shell of noisy images);
2. annealed Langevin (eps = c t, K steps per level, t geometric 1 -> 1e-4),
   unconstrained: U is unbounded below and the chains run away;
3. the same inside the box [-4 sqrt(t), 1 + 4 sqrt(t)] per pixel, and the
   reverse-diffusion (ancestral) sampler in that box: chains reach states the
   model rates far more probable than noisy digits at the same t (spurious
   modes), which score badly at t = 0;
4. annealed Langevin started at noisy held-out digits (t = 0.01): even there
   the chains leave the digits.

    python3 tests/golden/energy_sampling_probe.py    # ~3 min on 2 cores
"""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_golden as mg  # noqa: E402

torch.set_num_threads(max(1, os.cpu_count() or 1))
LOGZ, D = 3551.7, 1024


def load():
    sd, _ = mg.load_checkpoint("dual_score_matching/mnist32_gray_tiny/model.pth.tar")
    m = mg.energy_model_from(sd).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def energy_and_grad(m, y, t):
    y = y.clone().requires_grad_(True)
    u = 0.5 * (y * m(y, t)).sum(dim=(1, 2, 3))
    (g,) = torch.autograd.grad(u.sum(), y)
    return u.detach(), g.detach()


def bits_per_dim(m, x):
    with torch.no_grad():
        u = 0.5 * (x * m(x, torch.zeros(len(x)))).sum(dim=(1, 2, 3))
    return 8 + (u.double() + LOGZ) / (D * math.log(2))


def held(n, start):
    d = mg.mnist()[start:start + n].astype(np.float32) / 255
    return torch.from_numpy(np.pad(d, ((0, 0), (2, 2), (2, 2)))[:, None])


def langevin(m, y, ts, c, k, box):
    n = len(y)
    for t in ts:
        tt = torch.full((n,), float(t))
        for _ in range(k):
            u, g = energy_and_grad(m, y, tt)
            y = y - c * t * g + math.sqrt(2 * c * t) * torch.randn_like(y)
            if box:
                y = y.clamp(-4 * math.sqrt(t), 1 + 4 * math.sqrt(t))
    u, g = energy_and_grad(m, y, tt)
    return y - ts[-1] * g, u


def main():
    m = load()
    torch.manual_seed(0)
    x = held(16, 9100)
    print(f"held-out digits 9100..9115: {bits_per_dim(m, x).mean():.2f} bits/dim")
    print("1. denoiser on x + sqrt(t) z, and |t grad U| at the clean x")
    for t in [1, 0.1, 0.01, 1e-3, 1e-4]:
        z = torch.randn_like(x)
        y = x + math.sqrt(t) * z
        tt = torch.full((16,), t)
        _, g = energy_and_grad(m, y, tt)
        r = t * g
        mse = ((y - r - x) ** 2).mean().item() / t
        _, g0 = energy_and_grad(m, x, tt)
        at_clean = (t * g0).norm().item() / math.sqrt(t * D * 16)
        print(f"   t {t:g}: mse/t {mse:.3f}, |residual|/|noise| {r.norm() / (math.sqrt(t) * z).norm():.3f}, "
              f"|t grad U(x)|/sqrt(t D) {at_clean:.1f}")
    with torch.no_grad():
        for t in [0.1, 0.03, 0.01]:
            y = x + math.sqrt(t) * torch.randn_like(x)
            u = 0.5 * (y * m(y, torch.full((16,), t))).sum(dim=(1, 2, 3))
            print(f"   U(noisy digit, t = {t}) = {u.mean():.0f}")
    ts = 1.0 * (1e-4 / 1.0) ** (np.arange(40) / 39)
    for box in [False, True]:
        torch.manual_seed(0)
        y = 0.1 + torch.randn(16, 1, 32, 32)
        out, u = langevin(m, y, ts, 0.1, 4, box)
        b = bits_per_dim(m, out)
        print(f"2/3. annealed Langevin from 0.1 + z, 40 levels x 4 steps, c = 0.1, box {box}: "
              f"final U {u.mean():.3g}, max |y| {out.abs().max():.3g}, {b.mean():.2f} bits/dim")
    torch.manual_seed(0)
    y = 0.1 + torch.randn(16, 1, 32, 32)
    tl = list(1.0 * (1e-4 / 1.0) ** (np.arange(160) / 159)) + [0.0]
    low = None
    for i in range(160):
        t, tn = tl[i], tl[i + 1]
        u, g = energy_and_grad(m, y, torch.full((16,), float(t)))
        if abs(t - 0.055) < 0.004:
            low = (t, u.mean().item())
        y = y - (t - tn) * g + math.sqrt(t - tn) * torch.randn_like(y)
        y = y.clamp(-4 * math.sqrt(tn), 1 + 4 * math.sqrt(tn))
    print(f"3. reverse diffusion in the box, 160 steps: U at t = {low[0]:.3f} is {low[1]:.0f}; "
          f"result {bits_per_dim(m, y).mean():.2f} bits/dim")
    torch.manual_seed(0)
    y = x + 0.1 * torch.randn_like(x)
    out, _ = langevin(m, y, 0.01 * (1e-4 / 0.01) ** (np.arange(30) / 29), 0.1, 4, False)
    print(f"4. annealed Langevin from noisy held-out digits (t = 0.01 -> 1e-4): {bits_per_dim(m, out).mean():.2f} bits/dim, "
          f"range [{out.min():.2f}, {out.max():.2f}]")


if __name__ == "__main__":
    main()
