"""Batch mixing used by NC-FSCIL: Mixup and CutMix in the base session, feature mixup afterwards.

Each returns the mixed batch, the two label sets and the weight ``lam`` of the first, so the loss is
``lam L(y_a) + (1 - lam) L(y_b)``. ``rng`` is a seeded NumPy generator (Beta draws), ``generator`` a
seeded torch generator (pairings).
"""

from __future__ import annotations

import numpy as np
import torch


def mixup(x: torch.Tensor, y: torch.Tensor, lam: float, generator: torch.Generator):
    """``lam x + (1 - lam) x[perm]`` (Zhang et al., 2018)."""
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    return lam * x + (1.0 - lam) * x[perm], y, y[perm], float(lam)


def cutmix(x: torch.Tensor, y: torch.Tensor, lam: float, generator: torch.Generator, rng: np.random.Generator):
    """Paste a box of area ``(1 - lam)`` from ``x[perm]``; ``lam`` is corrected to the box actually pasted
    (Yun et al., 2019). Needs images (B, C, H, W)."""
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    h, w = x.shape[-2:]
    cut = np.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    out = x.clone()
    out[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
    lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    return out, y, y[perm], float(lam)


def mix_batch(x: torch.Tensor, y: torch.Tensor, *, mixup_p: float, mixup_alpha: float, cutmix_p: float,
              cutmix_alpha: float, generator: torch.Generator, rng: np.random.Generator):
    """With probability ``mixup_p`` Mixup (lam ~ Beta(a, a)), else with ``cutmix_p`` CutMix (images only),
    else the batch unchanged (``lam = 1``)."""
    u = rng.random()
    if u < mixup_p:
        return mixup(x, y, rng.beta(mixup_alpha, mixup_alpha), generator)
    if u < mixup_p + cutmix_p and x.dim() == 4:
        return cutmix(x, y, rng.beta(cutmix_alpha, cutmix_alpha), generator, rng)
    return x, y, y, 1.0
