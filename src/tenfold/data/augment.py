"""Image augmentations of the CIFAR recipes, every draw from a generator passed in (so a run resumes exactly).

- :func:`augment_image`: random crop (pad 4), horizontal flip and Cutout of one image (SLTT's recipe).
- :func:`crop_flip_batch`: random crop (pad 4) and horizontal flip of a batch (SPIDE's recipe).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment_image(img: torch.Tensor, generator: torch.Generator, cutout: int = 16) -> torch.Tensor:
    """Random crop (pad 4), horizontal flip and Cutout (one ``cutout`` x ``cutout`` hole, DeVries &
    Taylor 2017) of one (C, H, W) image, every draw from ``generator``."""
    h, w = img.shape[-2:]
    padded = F.pad(img, (4, 4, 4, 4))
    dy, dx = torch.randint(0, 9, (2,), generator=generator).tolist()
    out = padded[:, dy:dy + h, dx:dx + w]
    if torch.rand((), generator=generator) < 0.5:
        out = out.flip(-1)
    if cutout > 0:
        cy = torch.randint(0, h, (1,), generator=generator).item()
        cx = torch.randint(0, w, (1,), generator=generator).item()
        out = out.clone()
        out[:, max(0, cy - cutout // 2):cy + cutout // 2, max(0, cx - cutout // 2):cx + cutout // 2] = 0.0
    return out


def crop_flip_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop with 4-pixel zero padding and horizontal flip of each (C, H, W) sample of ``x``."""
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dy, dx = torch.randint(0, 9, (2, n), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    out[flip] = out[flip].flip(-1)
    return out
