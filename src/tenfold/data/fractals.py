"""Formula-driven pre-training images: FractalDB-style iterated-function-system (IFS) fractals.

Kataoka et al., "Pre-training without Natural Images" (ACCV 2020, sec. 3): a category is one IFS
``{(A_j, t_j, p_j)}_{j=1..N}``, 2 <= N <= 8 affine maps ``w_j(x) = A_j x + t_j`` with entries drawn from
U(-1, 1) and chosen with probability ``p_j = |det A_j| / sum_k |det A_k|``. Its attractor is rendered by
the chaos game ``x_{t+1} = w_{j_t}(x_t)``, ``j_t ~ p``. A category is kept when its attractor fills at least
``min_fill`` of the canvas (the paper's filling-rate filter, which drops degenerate lines and dots).
Instances of one category differ by an intra-category variation in the paper's spirit (it scales one
parameter by a factor in [0.8, 1.2]; here each map's parameters are scaled by their own factor drawn from
``1 +- variation``), a horizontal flip, the margin, the colour of the points and a noisy background, so that
neither colour nor position tells the categories apart: only shape does.

Ours, not the paper's: maps whose largest singular value is >= ``max_sigma`` are redrawn, which keeps every
attractor bounded (the paper relies on its filter for that); rendering at 32 px instead of 362 px; points
coloured per instance. Everything comes from one seeded generator, so the same seed gives the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tenfold.data.base import ArrayDataset
from tenfold.errors import DataError


@dataclass(frozen=True)
class IFS:
    """``maps``: (N, 2, 3) rows ``[A_j | t_j]``; ``probs``: (N,) map probabilities ``|det A_j|`` normalised."""

    maps: torch.Tensor
    probs: torch.Tensor


def _draw_ifs(generator: torch.Generator, max_sigma: float) -> IFS:
    n = int(torch.randint(2, 9, (1,), generator=generator))
    maps = torch.empty(n, 2, 3, dtype=torch.float64)
    for j in range(n):
        while True:   # redraw expanding maps: a bounded attractor needs contractions
            m = torch.rand(2, 3, generator=generator, dtype=torch.float64) * 2 - 1
            if torch.linalg.matrix_norm(m[:, :2], ord=2) < max_sigma:
                break
        maps[j] = m
    det = torch.linalg.det(maps[:, :, :2]).abs()
    return IFS(maps, det / det.sum() if det.sum() > 0 else torch.full((n,), 1.0 / n, dtype=torch.float64))


def chaos_game(ifs: list[IFS], points: int, generator: torch.Generator, burn_in: int = 20) -> torch.Tensor:
    """(B, points, 2) attractor samples of each IFS in ``ifs`` (vectorised over the batch)."""
    width = max(len(f.probs) for f in ifs)
    maps = torch.zeros(len(ifs), width, 6, dtype=torch.float64)
    probs = torch.zeros(len(ifs), width, dtype=torch.float64)
    for b, f in enumerate(ifs):
        maps[b, :len(f.probs)] = f.maps.reshape(-1, 6)
        probs[b, :len(f.probs)] = f.probs
    picks = torch.multinomial(probs, burn_in + points, replacement=True, generator=generator)   # (B, T)
    # the maps of every step, gathered once: (T, 6, B) rows a, b, e, c, d, f of [[a, b, e], [c, d, f]]
    a, b, e, c, d, f = torch.gather(maps, 1, picks.unsqueeze(-1).expand(-1, -1, 6)).permute(2, 1, 0).float()
    u = torch.zeros(len(ifs))
    v = torch.zeros(len(ifs))
    out = torch.empty(burn_in + points, 2, len(ifs))
    for t in range(burn_in + points):
        u, v = a[t] * u + b[t] * v + e[t], c[t] * u + d[t] * v + f[t]
        out[t, 0], out[t, 1] = u, v
    return out[burn_in:].permute(2, 0, 1)


def _raster(pts: torch.Tensor, size: int, margin: torch.Tensor | float = 0.1) -> torch.Tensor:
    """(B, size, size) point counts of each point cloud, scaled to its bounding box inside ``margin``."""
    lo, hi = pts.amin(1, keepdim=True), pts.amax(1, keepdim=True)
    span = (hi - lo).amax(-1, keepdim=True).clamp_min(1e-9)          # keep the aspect ratio
    margin = torch.as_tensor(margin, dtype=pts.dtype).reshape(-1, 1, 1)
    centred = (pts - (lo + hi) / 2) / span                             # in [-1/2, 1/2]
    uv = ((centred * (1 - 2 * margin) + 0.5) * size).floor().long().clamp(0, size - 1)
    b = torch.arange(len(pts)).unsqueeze(1).expand_as(uv[..., 0])
    img = torch.zeros(len(pts), size, size)
    img.index_put_((b.reshape(-1), uv[..., 1].reshape(-1), uv[..., 0].reshape(-1)),
                   torch.ones(b.numel()), accumulate=True)
    return img


def fill_rates(ifs: list[IFS], generator: torch.Generator, size: int = 32, points: int = 4000) -> torch.Tensor:
    """Fraction of a ``size`` x ``size`` canvas that each attractor covers (the paper's filling rate)."""
    img = _raster(chaos_game(ifs, points, generator), size, 0.0)
    return (img > 0).float().mean((1, 2))


def fractal_categories(num_classes: int, seed: int = 0, min_fill: float = 0.15,
                       max_sigma: float = 0.95) -> list[IFS]:
    """``num_classes`` IFS categories that pass the filling-rate filter, drawn from ``seed``."""
    if num_classes < 1:
        raise DataError(f"num_classes={num_classes} is invalid: expected at least 1")
    if not 0 <= min_fill < 1:
        raise DataError(f"min_fill={min_fill} is invalid: expected a fraction in [0, 1)")
    g = torch.Generator().manual_seed(int(seed))
    out: list[IFS] = []
    drawn = 0
    while len(out) < num_classes:
        if drawn >= 200 * num_classes:
            raise DataError(f"min_fill={min_fill} is invalid: only {len(out)} of {num_classes} categories passed "
                            f"in {drawn} draws; lower it")
        batch = [_draw_ifs(g, max_sigma) for _ in range(256)]   # candidates in order: the first that pass
        drawn += len(batch)
        out += [f for f, rate in zip(batch, fill_rates(batch, g).tolist()) if rate >= min_fill]
    return out[:num_classes]


def render_fractals(categories: list[IFS], labels: torch.Tensor, size: int, generator: torch.Generator,
                    points: int = 1500, variation: float = 0.2, noise: float = 0.05) -> torch.Tensor:
    """Images (N, 3, size, size) in [0, 1] of the categories ``labels`` (one instance each)."""
    g = generator
    n = len(labels)
    varied = []
    for c in labels.tolist():   # intra-category variation: each map's parameters scaled by its own factor
        f = categories[c]
        k = len(f.probs)
        factor = 1 + variation * (torch.rand(k, 1, 1, generator=g, dtype=torch.float64) * 2 - 1)
        maps = f.maps * factor
        det = torch.linalg.det(maps[:, :, :2]).abs()
        varied.append(IFS(maps, det / det.sum() if det.sum() > 0 else f.probs))
    margin = 0.05 + 0.15 * torch.rand(n, generator=g)
    density = _raster(chaos_game(varied, points, g), size, margin)
    ink = 1 - torch.exp(-density / 2)                                  # saturating point density
    flip = torch.rand(n, generator=g) < 0.5
    ink[flip] = ink[flip].flip(-1)
    colour = 0.4 + 0.6 * torch.rand(n, 3, 1, 1, generator=g)
    bg = 0.05 + 0.2 * torch.rand(n, 1, 1, 1, generator=g)
    img = bg + (colour - bg) * ink.unsqueeze(1) + noise * torch.randn(n, 3, size, size, generator=g)
    return img.clamp(0, 1)


def fractals(num_classes: int = 100, per_class: int = 100, size: int = 32, seed: int = 0,
             category_seed: int | None = None, chunk: int = 1024, **kwargs) -> ArrayDataset:
    """A balanced FractalDB-style dataset: ``per_class`` instances of ``num_classes`` IFS categories.

    ``category_seed`` (default ``seed``) fixes the categories; ``seed`` the instances, so two datasets of the
    same categories with different ``seed`` are a train / held-out pair.
    """
    if not 8 <= size <= 256:
        raise DataError(f"size={size} is invalid: expected 8 to 256 pixels")
    if per_class < 1:
        raise DataError(f"per_class={per_class} is invalid: expected at least 1")
    categories = fractal_categories(num_classes, seed if category_seed is None else category_seed)
    g = torch.Generator().manual_seed(int(seed) + 7919)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    labels = labels[torch.randperm(len(labels), generator=g)]
    images = torch.cat([render_fractals(categories, labels[i:i + chunk], size, g, **kwargs)
                        for i in range(0, len(labels), chunk)])
    return ArrayDataset(images, labels, [f"fractal {c}" for c in range(num_classes)])
