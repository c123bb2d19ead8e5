"""Procedural shapes: 200 classes from 10 shapes x 5 textures x 4 colours, any size 8-64 px.

Each image is drawn from per-sample random parameters (position, scale, rotation, colour jitter,
background noise) taken from one seeded generator, so the same seed gives the same pixels. Drawing
is vectorized over the batch on a coordinate grid: 10,000 images of 32 px take well under a second.

Class ``c`` is ``(shape, texture, colour) = (c // 20, (c // 4) % 5, c % 4)``.
"""

from __future__ import annotations

import math

import torch

from tenfold.data.base import ArrayDataset
from tenfold.errors import DataError

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring", "star", "hexagon", "half-disc", "ellipse")
TEXTURES = ("solid", "h-stripes", "v-stripes", "checker", "dots")
COLOURS = {"red": (0.9, 0.15, 0.1), "green": (0.1, 0.8, 0.2), "blue": (0.15, 0.3, 0.95), "yellow": (0.95, 0.85, 0.1)}
NUM_CLASSES = len(SHAPES) * len(TEXTURES) * len(COLOURS)


def class_name(c: int) -> str:
    s, t, k = c // 20, (c // 4) % 5, c % 4
    return f"{list(COLOURS)[k]} {TEXTURES[t]} {SHAPES[s]}"


def _shape_mask(shape: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Soft-free binary masks for each sample's shape id on its (rotated, scaled) grid u, v."""
    r = torch.sqrt(u**2 + v**2)
    theta = torch.atan2(v, u)
    masks = torch.stack([
        r <= 1.0,
        torch.maximum(u.abs(), v.abs()) <= 0.8,
        (v >= -0.7) & (v <= 0.9 - 1.6 * u.abs()),
        u.abs() + v.abs() <= 1.0,
        ((u.abs() <= 0.3) & (v.abs() <= 0.95)) | ((v.abs() <= 0.3) & (u.abs() <= 0.95)),
        (r <= 1.0) & (r >= 0.55),
        r <= 0.55 + 0.4 * torch.cos(5 * theta),
        torch.maximum(u.abs() * 0.866 + v.abs() * 0.5, v.abs()) <= 0.87,
        (r <= 1.0) & (v >= -0.15),
        (u / 1.0) ** 2 + (v / 0.5) ** 2 <= 1.0,
    ], dim=0)  # (10, N, S, S)
    return masks.gather(0, shape.view(1, -1, 1, 1).expand(1, *u.shape)).squeeze(0)


def _texture(texture: torch.Tensor, u: torch.Tensor, v: torch.Tensor, freq: torch.Tensor) -> torch.Tensor:
    """1 on the texture's bright parts, 0 on its dark parts."""
    k = freq.view(-1, 1, 1)
    pats = torch.stack([
        torch.ones_like(u, dtype=torch.bool),
        torch.sin(k * v) > 0,
        torch.sin(k * u) > 0,
        torch.sin(k * u) * torch.sin(k * v) > 0,
        (torch.cos(k * u) + torch.cos(k * v)) < 0.6,
    ], dim=0)
    return pats.gather(0, texture.view(1, -1, 1, 1).expand(1, *u.shape)).squeeze(0)


def render(labels: torch.Tensor, size: int, generator: torch.Generator, noise: float = 0.05) -> torch.Tensor:
    """Images (N, 3, size, size) in [0, 1] for the class ``labels``, drawn with ``generator``."""
    n = len(labels)
    shape, texture, colour = labels // 20, (labels // 4) % 5, labels % 4
    g = generator
    scale = 0.45 + 0.25 * torch.rand(n, generator=g)           # radius as a fraction of the half-width
    cx = (torch.rand(n, generator=g) - 0.5) * 2 * (1 - scale) * 0.8
    cy = (torch.rand(n, generator=g) - 0.5) * 2 * (1 - scale) * 0.8
    angle = (torch.rand(n, generator=g) - 0.5) * (math.pi / 6)
    freq = 7.0 + 3.0 * torch.rand(n, generator=g)
    jitter = 1.0 + 0.15 * (torch.rand(n, 3, generator=g) - 0.5)
    bg = 0.1 + 0.25 * torch.rand(n, 1, generator=g)
    pix = torch.randn(n, 3, size, size, generator=g) * noise

    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    x0 = xx.unsqueeze(0) - cx.view(-1, 1, 1)
    y0 = yy.unsqueeze(0) - cy.view(-1, 1, 1)
    ca, sa = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    s = scale.view(-1, 1, 1)
    u = (ca * x0 + sa * y0) / s
    v = (-sa * x0 + ca * y0) / s

    inside = _shape_mask(shape, u, v)
    bright = _texture(texture, u, v, freq)
    rgb = torch.tensor(list(COLOURS.values()))[colour] * jitter              # (N, 3)
    fg = rgb.view(n, 3, 1, 1) * torch.where(bright, 1.0, 0.35).unsqueeze(1)
    img = torch.where(inside.unsqueeze(1), fg, bg.view(n, 1, 1, 1).expand(n, 3, 1, 1))
    return (img + pix).clamp(0, 1)


def shapes(num_classes: int = 100, size: int = 32, per_class: int = 50, seed: int = 0,
           classes: list[int] | None = None, noise: float = 0.05, chunk: int = 4096) -> ArrayDataset:
    """A balanced dataset of ``per_class`` images for each class (the first ``num_classes`` or ``classes``).

    Labels are relabelled to 0..k-1 in the order of ``classes``; ``class_names`` holds the names.
    """
    if not 8 <= size <= 64:
        raise DataError(f"size={size} is invalid: expected 8 to 64 pixels")
    if classes is None:
        if not 1 <= num_classes <= NUM_CLASSES:
            raise DataError(f"num_classes={num_classes} is invalid: expected 1 to {NUM_CLASSES}")
        classes = list(range(num_classes))
    bad = [c for c in classes if not 0 <= int(c) < NUM_CLASSES]
    if bad:
        raise DataError(f"classes={bad[:5]} are invalid: expected class ids in 0..{NUM_CLASSES - 1}")
    if per_class < 1:
        raise DataError(f"per_class={per_class} is invalid: expected at least 1")
    g = torch.Generator().manual_seed(int(seed))
    cls = torch.tensor(classes, dtype=torch.long)
    labels = torch.arange(len(classes)).repeat_interleave(per_class)
    images = torch.cat([render(cls[labels[i:i + chunk]], size, g, noise) for i in range(0, len(labels), chunk)])
    return ArrayDataset(images, labels, [class_name(int(c)) for c in classes])
