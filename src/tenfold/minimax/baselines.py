"""Baselines for mixed Nash equilibria (spec 1.6). Each returns final particles (and weights) and calls
``callback(step, x, y, wx, wy)`` every ``every`` steps so that experiments can measure them over time.

- Pure GDA: x -= eta grad_x f(x, y), y += eta grad_y f(x, y) for one pure pair.
- MFL-DA (Ma & Ying 2022; Lu 2022): mean-field Langevin descent-ascent at temperature 1 on (f + lam1|.|^2)/lam2,
  x_i -= iota_x [grad_x mean_j f(x_i, y_j) + 2 lam1 x_i]/lam2 + sqrt(2 iota_x) xi,
  y_j += iota_y [grad_y mean_i f(x_i, y_j) - 2 lam1 y_j]/lam2 + sqrt(2 iota_y) xi';
  a simultaneous (Jacobi) update: both drifts at the same (x, y); single timescale (ratio 1), two timescales
  (iota_y = ratio iota_x), quasistatic (``y_steps`` y-steps per x-step).
- WFR-DA / conic particle mirror-prox (Domingo-Enrich et al. 2020; Wang & Chizat): multiplicative weight
  updates w_i ∝ w_i exp(-eta_w sum_j omega_j f(x_i, y_j)), omega_j ∝ omega_j exp(eta_w sum_i w_i f(x_i, y_j)), and
  weighted gradient steps on positions; gradients taken at a ghost (extrapolated) point.
- Weight-only: the same with frozen positions, i.e. entropic mirror-prox on the matrix F_ij = f(x_i, y_j).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from tenfold.errors import ConvergenceError, require
from tenfold.minimax.games import Game
from tenfold.minimax.papal import check_regularization, confinement_grad

Callback = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]


def _uniform(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)


def _wrap(game: Game, z: torch.Tensor) -> torch.Tensor:
    return torch.remainder(z, 1.0) if game.torus else z


def _check_finite(name: str, step: int, *tensors: torch.Tensor) -> None:
    if not all(torch.isfinite(t).all() for t in tensors):
        raise ConvergenceError(f"{name} became non-finite at step {step}: lower the step size")


def gda(game: Game, x: torch.Tensor, y: torch.Tensor, *, step: float, steps: int, every: int = 1,
        callback: Callback | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Simultaneous pure gradient descent-ascent on one pair (x: (1, m), y: (1, n))."""
    require(step > 0, "step", step, "a positive step size")
    require(steps >= 1, "steps", steps, "a positive number of steps")
    one = _uniform(1, x)
    for k in range(1, steps + 1):
        gx, gy = game.grad_x(x, y, one), game.grad_y(x, y, one)
        x, y = _wrap(game, x - step * gx), _wrap(game, y + step * gy)
        if x.device.type != "meta":
            _check_finite("GDA", k, x, y)
        if callback is not None and k % every == 0:
            callback(k, x, y, one, one)
    return x, y


def mfl_da(game: Game, x: torch.Tensor, y: torch.Tensor, *, lam1: float, lam2: float, step: float, steps: int,
           generator: torch.Generator, ratio: float = 1.0, y_steps: int = 1, every: int = 1,
           callback: Callback | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-field Langevin descent-ascent; ``ratio`` = iota_y / iota_x, ``y_steps`` y-updates per x-update.

    The update is simultaneous (Jacobi), as in Ma & Ying (2022) and Lu (2022): both drifts of a step are
    evaluated at the same (x, y). With ``y_steps`` = K > 1 (quasistatic) the x-step and the first of the K
    y-steps start from the same state, and the remaining K - 1 y-steps follow against that x; the next x-step
    sees the y they produced. On the torus the confinement is the periodic V of
    :func:`tenfold.minimax.papal.confinement`. Noise is drawn by ``generator`` on the particles' device.
    """
    check_regularization(lam1, lam2, game.torus)
    require(step > 0, "step", step, "a positive step size")
    require(ratio > 0, "ratio", ratio, "a positive timescale ratio")
    require(steps >= 1 and y_steps >= 1, "steps", (steps, y_steps), "positive step counts")
    step_y = ratio * step
    wx, wy = _uniform(len(x), x), _uniform(len(y), y)
    meta = x.device.type == "meta"

    def y_move(x_, y_):
        drift = (game.grad_y(x_, y_, wx) - lam1 * confinement_grad(y_, game.torus)) / lam2
        noise = torch.randn(y_.shape, generator=generator, dtype=y_.dtype, device=y_.device)
        return _wrap(game, y_ + step_y * drift + math.sqrt(2 * step_y) * noise)

    for k in range(1, steps + 1):
        drift_x = (game.grad_x(x, y, wy) + lam1 * confinement_grad(x, game.torus)) / lam2  # at the old (x, y)
        y = y_move(x, y)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x_new = _wrap(game, x - step * drift_x + math.sqrt(2 * step) * noise)
        for _ in range(y_steps - 1):  # quasistatic: y keeps tracking the old x within the step
            y = y_move(x, y)
        x = x_new
        if k % every == 0 or k == steps:
            if not meta:
                _check_finite("MFL-DA", k, x, y)
            if callback is not None and k % every == 0:
                callback(k, x, y, wx, wy)
    return x, y


def wfr_da(game: Game, x: torch.Tensor, y: torch.Tensor, *, weight_step: float, position_step: float, steps: int,
           every: int = 1, callback: Callback | None = None
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Conic particle mirror-prox; ``position_step = 0`` gives the weight-only entropic mirror-prox."""
    require(weight_step > 0, "weight_step", weight_step, "a positive mirror step size")
    require(position_step >= 0, "position_step", position_step, "a non-negative position step size")
    require(steps >= 1, "steps", steps, "a positive number of steps")
    wx, wy = _uniform(len(x), x), _uniform(len(y), y)
    log_wx, log_wy = wx.log(), wy.log()

    def field(x_, y_, wx_, wy_):
        F = game.payoff(x_, y_)
        out = (F @ wy_, wx_ @ F)
        if position_step > 0:
            out += (game.grad_x(x_, y_, wy_), game.grad_y(x_, y_, wx_))
        return out

    def move(lx, ly, x_, y_, grads):
        lx = torch.log_softmax(lx - weight_step * grads[0], 0)
        ly = torch.log_softmax(ly + weight_step * grads[1], 0)
        if position_step > 0:
            x_ = _wrap(game, x_ - position_step * grads[2])
            y_ = _wrap(game, y_ + position_step * grads[3])
        return lx, ly, x_, y_

    for k in range(1, steps + 1):
        ghost = move(log_wx, log_wy, x, y, field(x, y, wx, wy))
        grads = field(ghost[2], ghost[3], ghost[0].exp(), ghost[1].exp())
        log_wx, log_wy, x, y = move(log_wx, log_wy, x, y, grads)
        wx, wy = log_wx.exp(), log_wy.exp()
        if k % every == 0 or k == steps:
            if x.device.type != "meta":
                _check_finite("WFR-DA", k, x, y, wx, wy)
            if callback is not None and k % every == 0:
                callback(k, x, y, wx, wy)
    return x, y, wx, wy
