"""Batched, seeded augmentations for small images (SimCLR recipe: crop, flip, colour jitter, grey).

Each sample gets its own parameters drawn from the ``generator`` passed in, and the whole batch is
transformed at once on its own device (one ``grid_sample`` for crop + flip), so augmentation costs
little next to the encoder on CPU and GPU alike. torchvision's v2 transforms draw one set of parameters
per call from the global RNG; we use its functional ops (grey conversion) but draw parameters here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from tenfold.errors import require


@dataclass(frozen=True)
class AugmentConfig:
    """``crop_scale``: area range of the random resized crop; ``strength``: colour-jitter strength ``s``
    (brightness/contrast/saturation ``0.8 s``, applied with ``p_jitter``); ``p_gray``; ``noise``: Gaussian std."""

    crop_scale: tuple[float, float] = (0.2, 1.0)
    flip: bool = True
    strength: float = 0.5
    p_jitter: float = 0.8
    p_gray: float = 0.2
    noise: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        require(0 < lo <= hi <= 1, "crop_scale", self.crop_scale, "0 < low <= high <= 1")
        require(self.strength >= 0, "strength", self.strength, "a non-negative jitter strength")
        require(0 <= self.p_jitter <= 1 and 0 <= self.p_gray <= 1, "p_jitter/p_gray", (self.p_jitter, self.p_gray),
                "probabilities in [0, 1]")
        require(self.noise >= 0, "noise", self.noise, "a non-negative noise std")


def _rand(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator).to(device)


def random_resized_crop(x: torch.Tensor, scale: tuple[float, float], flip: bool, generator: torch.Generator
                        ) -> torch.Tensor:
    """Per-sample crop of area fraction in ``scale``, aspect ratio in [3/4, 4/3], resized back; optional h-flip."""
    n, dev = x.shape[0], x.device
    area = scale[0] + (scale[1] - scale[0]) * _rand(n, generator, dev)
    log_r = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * _rand(n, generator, dev)
    ratio = log_r.exp()
    w = (area * ratio).sqrt().clamp(max=1.0)
    h = (area / ratio).sqrt().clamp(max=1.0)
    cx = (1 - w) * (2 * _rand(n, generator, dev) - 1)
    cy = (1 - h) * (2 * _rand(n, generator, dev) - 1)
    sign = torch.where(_rand(n, generator, dev) < 0.5, -1.0, 1.0) if flip else torch.ones(n, device=dev)
    theta = torch.zeros(n, 2, 3, device=dev, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = w * sign, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def colour_jitter(x: torch.Tensor, strength: float, p: float, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and (RGB) saturation factors in ``[1 - 0.8 s, 1 + 0.8 s]`` per sample, prob. ``p``."""
    n, dev = x.shape[0], x.device
    amp = 0.8 * strength
    on = (_rand(n, generator, dev) < p).to(x.dtype).view(-1, 1, 1, 1)

    def factor() -> torch.Tensor:
        f = 1 + amp * (2 * _rand(n, generator, dev) - 1)
        return (on * f.view(-1, 1, 1, 1) + (1 - on)).to(x.dtype)

    x = x * factor()
    grey = TF.rgb_to_grayscale(x) if x.shape[1] == 3 else x
    mean = grey.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor() + mean
    if x.shape[1] == 3:
        grey = TF.rgb_to_grayscale(x)
        x = grey + (x - grey) * factor()
    return x.clamp(0, 1)


def random_grayscale(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    if x.shape[1] != 3 or p == 0:
        return x
    on = (_rand(x.shape[0], generator, x.device) < p).view(-1, 1, 1, 1)
    return torch.where(on, TF.rgb_to_grayscale(x, num_output_channels=3), x)


def augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """One random view of each image in the batch ``x`` (B, C, H, W) in [0, 1]."""
    require(x.dim() == 4, "x", tuple(x.shape), "a batch of images (B, C, H, W)")
    x = random_resized_crop(x, cfg.crop_scale, cfg.flip, generator)
    x = colour_jitter(x, cfg.strength, cfg.p_jitter, generator)
    x = random_grayscale(x, cfg.p_gray, generator)
    if cfg.noise > 0:
        x = x + cfg.noise * torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    return x
