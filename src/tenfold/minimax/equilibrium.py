"""Distance to a mixed Nash equilibrium (spec 1.7).

- NI error of (weighted) particle sets: NI = max_y E_p f(., y) - min_x E_q f(x, .) >= 0, zero exactly at an
  unregularized MNE. Found by a grid (1-D) or random multistart (higher d) plus L-BFGS refinement from the
  best grid points and from every particle; every point found is feasible, so it is a lower bound.
- The exact regularized gap of grid densities: Gap = lam2 [KL(a || ahat(b)) + KL(b || bhat(a))] with
  ahat ∝ exp(-((F b)_i + lam1 x_i^2)/lam2) and bhat ∝ exp(((a^T F)_j - lam1 y_j^2)/lam2).
- 1-D Wasserstein-1 between particles and a reference measure (SciPy).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import wasserstein_distance

from tenfold.errors import require
from tenfold.minimax.games import Game
from tenfold.minimax.papal import confinement


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of probability vectors; 0 log 0 = 0 (no boolean indexing: works on every device)."""
    return torch.where(p > 0, p * (p.clamp_min(torch.finfo(p.dtype).tiny).log() - q.log()), 0.0).sum()


def regularized_gap(F: torch.Tensor, a: torch.Tensor, b: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, *,
                    lam1: float, lam2: float, torus: bool = False) -> float:
    """max_q L(a, q) - min_p L(p, b) on the grid, in closed form from the two Gibbs best responses.

    ``xs``, ``ys``: 1-D grids or (points, d) grids of the product space; ``torus``: the periodic confinement.
    """
    require(lam2 > 0, "lam2", lam2, "a positive entropy weight")
    vx = confinement(xs.reshape(len(xs), -1), torus)
    vy = confinement(ys.reshape(len(ys), -1), torus)
    a_hat = torch.softmax(-((F @ b) + lam1 * vx) / lam2, 0)
    b_hat = torch.softmax(((a @ F) - lam1 * vy) / lam2, 0)
    return _number(lam2 * (_kl(a, a_hat) + _kl(b, b_hat)))


def _number(t: torch.Tensor):
    """A python float, except on the meta device (no values there): the 0-d tensor itself."""
    return t if t.device.type == "meta" else float(t)


def _best_value(objective, starts: torch.Tensor, iters: int) -> torch.Tensor:
    """min of a separable objective (z_s -> phi(z_s)) over ``starts`` refined jointly by L-BFGS (0-d tensor).

    On the meta device (shapes only) the refinement, whose line search reads values, is skipped."""
    with torch.no_grad():
        start_best = objective(starts).min()
    if starts.device.type == "meta" or iters == 0:
        return start_best
    z = starts.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([z], lr=1, max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = objective(z).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        refined = objective(z).min()
        return torch.where(torch.isfinite(refined), torch.minimum(refined, start_best), start_best)


def ni_error(game: Game, x: torch.Tensor, y: torch.Tensor, wx: torch.Tensor | None = None,
             wy: torch.Tensor | None = None, *, box: float = 7.0, grid_step: float = 5e-3, top_k: int = 10,
             starts: int = 256, iters: int = 25, from_particles: bool = True,
             generator: torch.Generator | None = None) -> float:
    """NI = max_y sum_i wx_i f(x_i, y) - min_x sum_j wy_j f(x, y_j) (a lower bound, see module doc).

    1-D players: a grid on [-box, box] (or [0, 1) on the torus) with ``grid_step``; higher d: ``starts``
    uniform points in the box; then L-BFGS from the ``top_k`` best and (``from_particles``) from every particle.
    Every tensor lives on the particles' device and dtype (``generator``, for d > 1, on that device; default
    seed 0); a python float comes back (a 0-d tensor on the meta device, where nothing is refined).
    """
    require(grid_step > 0, "grid_step", grid_step, "a positive grid spacing")
    x, y = x.detach(), y.detach()
    like = dict(dtype=x.dtype, device=x.device)
    wx = torch.full((len(x),), 1 / len(x), **like) if wx is None else wx.detach()
    wy = torch.full((len(y),), 1 / len(y), **like) if wy is None else wy.detach()

    def x_cost(z):  # E_q f(z, .), minimized by the x player
        return game.mean_over_y(z, y, wy)

    def y_gain(z):  # -E_p f(., z), minimized = the y player's best response
        return -game.mean_over_x(x, z, wx)

    def candidates(dim: int, own: torch.Tensor, objective) -> torch.Tensor:
        if dim == 1:
            lo, hi = (0.0, 1.0) if game.torus else (-box, box)
            grid = torch.arange(lo, hi + grid_step / 2, grid_step, **like)[:, None]
        else:
            gen = generator
            if gen is None:
                gen = torch.Generator(device="cpu" if x.device.type == "meta" else x.device).manual_seed(0)
            grid = (2 * torch.rand(starts, dim, generator=gen, **like) - 1) * box
        with torch.no_grad():
            values = torch.cat([objective(chunk) for chunk in grid.split(4096)])
        best = grid[values.argsort()[:top_k]]
        return torch.cat([best, own]) if from_particles else best

    best_x = _best_value(x_cost, candidates(game.dim_x, x, x_cost), iters)
    best_y = -_best_value(y_gain, candidates(game.dim_y, y, y_gain), iters)
    return _number((best_y - best_x).clamp_min(0.0))


def ni_matching_pennies(x: torch.Tensor, y: torch.Tensor) -> float:
    """Closed form on the torus game f = cos(2 pi (x - y)): |E_p e^(2 pi i x)| + |E_q e^(2 pi i y)|."""
    def modulus(z: torch.Tensor) -> float:
        a = 2 * math.pi * z[:, 0]
        return torch.hypot(torch.cos(a).mean(), torch.sin(a).mean())

    return _number(modulus(x) + modulus(y))


def wasserstein1(samples: torch.Tensor, points: torch.Tensor, weights: torch.Tensor | None = None,
                 sample_weights: torch.Tensor | None = None) -> float:
    """1-D W1 = int |CDF_samples - CDF_ref| between (weighted) particles and a (weighted) reference measure."""
    require(samples.ndim == 1 or samples.shape[-1] == 1, "samples", tuple(samples.shape), "1-D particles")

    def array(t: torch.Tensor | None):
        return None if t is None else np.clip(t.detach().reshape(-1).cpu().numpy(), 0, None)

    u, v = samples.detach().reshape(-1).cpu().numpy(), points.detach().reshape(-1).cpu().numpy()
    return float(wasserstein_distance(u, v, array(sample_weights), array(weights)))
