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


def base_augment(x: torch.Tensor, generator: torch.Generator, scale: tuple[float, float] = (0.6, 1.0),
                 jitter: float = 0.4) -> torch.Tensor:
    """The official base-session train pipeline on a batch of images (B, C, H, W) in [0, 1]:
    RandomResizedCrop (area ``scale``, aspect 3/4..4/3, resized back bilinearly), horizontal flip with
    probability 0.5, and brightness/contrast/saturation jitter by factors in ``[1 - jitter, 1 + jitter]``.
    Inputs that are not images (MLP features) are returned unchanged. Seeded by ``generator``."""
    if x.dim() != 4:
        return x
    import math

    import torch.nn.functional as F

    b, c, h, w = x.shape
    u = torch.rand(b, 7, generator=generator).to(x.device, x.dtype)
    out = torch.empty_like(x)
    for i in range(b):
        area = (scale[0] + (scale[1] - scale[0]) * float(u[i, 0])) * h * w
        ratio = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * float(u[i, 1]))
        ch = max(1, min(h, int(round(math.sqrt(area / ratio)))))
        cw = max(1, min(w, int(round(math.sqrt(area * ratio)))))
        top = int(float(u[i, 2]) * (h - ch + 1))
        left = int(float(u[i, 3]) * (w - cw + 1))
        crop = x[i:i + 1, :, top:top + ch, left:left + cw]
        out[i] = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)[0]
    flip = u[:, 4] < 0.5
    out[flip] = out[flip].flip(-1)
    factors = 1.0 + jitter * (2.0 * torch.rand(b, 3, generator=generator) - 1.0)
    factors = factors.to(x.device, x.dtype).view(b, 3, 1, 1, 1)
    out = out * factors[:, 0]  # brightness
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * factors[:, 1] + mean  # contrast
    if c == 3:
        grey = out.mean(dim=1, keepdim=True)
        out = (out - grey) * factors[:, 2] + grey  # saturation
    return out.clamp(0.0, 1.0)
