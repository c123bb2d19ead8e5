"""The lower bound T t / 2, the (corrected) accuracy relation and numerical checks of Lemma 2.

Theorem 4 (Yue, Fang and Lin 2023): a zero-respecting method needs at least T t / 2 gradient queries
to reach g(x) <= eps g(y) on the hard function, where T ~ kappa / (37 C3) and t ~ 2 log_{8/7}(1/eps).

Erratum (spec section 2.4): eq. (20) writes (7/8)^(t/2); the blocks i >= t/2 that no method can have
touched after fewer than T t / 2 queries keep their stationary value
sum_{i >= t/2} T (31/64) (7/8)^(2i) = T (31/15)(r - r^2) with r = (7/8)^t, so
g(x_k)/g(y) >= T (31/15)(r - r^2) / (1/2 + T (31/15)(1 - r^2)) ~ 0.8 r.
We take t = the smallest even integer >= log_{8/7}(1/(2 eps)), for which this floor exceeds eps.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from tenfold.errors import require

C3 = 21344400.0 / 1083.0  # Lemma 2: g is 1/(C3 T)-PL
SMOOTHNESS = 37.0          # Lemma 2: g is 37-smooth


def _check_eps(eps: float) -> None:
    require(0.0 < eps < 1.0, "eps", eps, "a relative accuracy in (0, 1)")


def chain_blocks_for(eps: float) -> int:
    """t = the smallest even integer >= log_{8/7}(1/(2 eps)) (corrected relation, section 2.4)."""
    _check_eps(eps)
    t = math.ceil(math.log(1.0 / (2.0 * eps)) / math.log(8.0 / 7.0) - 1e-12)
    t = max(t, 2)
    return t + (t % 2)


def lower_bound_queries(T: int, t: int) -> int:
    """Theorem 4: at least T t / 2 gradient queries."""
    require(isinstance(T, int) and T >= 1, "T", T, "an integer block length >= 1")
    require(isinstance(t, int) and t >= 2 and t % 2 == 0, "t", t, "an even integer number of blocks >= 2")
    return T * t // 2


def relative_value_floor(T: int, t: int) -> float:
    """The corrected floor on g(x_k)/g(y) for every k < T t / 2: T(31/15)(r - r^2)/(1/2 + T(31/15)(1 - r^2))."""
    lower_bound_queries(T, t)
    r = (7.0 / 8.0) ** t
    stuck = T * (31.0 / 15.0) * (r - r * r)
    return stuck / (0.5 + T * (31.0 / 15.0) * (1.0 - r * r))


def pl_ratio(value_and_grad: Callable, x: torch.Tensor) -> float:
    """|grad g(x)|^2 / (2 g(x)) with g* = 0: the largest mu for which the PL inequality holds at x."""
    value, grad = value_and_grad(x)
    return float(grad.square().sum() / (2.0 * value))


def hessian_norm(hvp: Callable, x: torch.Tensor, generator: torch.Generator, iters: int = 200) -> float:
    """Largest |eigenvalue| of the Hessian at x by power iteration on Hessian-vector products."""
    require(iters >= 1, "iters", iters, "a positive number of power iterations")
    u = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    u = u / u.norm()
    norm = 0.0
    for _ in range(iters):
        w = hvp(x, u)
        norm = float(w.norm())
        if norm == 0.0:
            return 0.0
        u = w / norm
    return norm


def pl_constant(g, points: int = 1001) -> tuple[float, float]:
    """The smallest PL ratio |grad g|^2/(2 g) found on the hard function, and where: (ratio, s).

    The ratio is ~0.24/T at the start y, but lower where the first coordinate has moved alone: on the family
    x = y with x_1 = s y_1 it equals ((3s - 1)^2 + (1 - s)^2)/(2 g(x)) for T >= 2, smallest at s = 0.4
    (~0.097/T). We scan s in [0, 1] (``points`` values) and return the minimum, an upper bound on the true
    PL constant (Lemma 2 proves 1/(C3 T) below it); gradient searches from perturbed starts found nothing
    lower (docs/pl-lower-bound.md).
    """
    require(points >= 2, "points", points, "at least two scan points")
    start = g.start
    best, where = pl_ratio(g.value_and_grad, start), 1.0
    for s in torch.linspace(0.0, 1.0, points, dtype=start.dtype).tolist():
        x = start.clone()
        x[0] = s * start[0]
        if s == 0.0 and g.value(x) == 0:
            continue
        ratio = pl_ratio(g.value_and_grad, x)
        if ratio < best:
            best, where = ratio, s
    return best, where
