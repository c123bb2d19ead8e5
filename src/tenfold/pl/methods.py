"""First-order methods as small loops over one oracle ``value_and_grad(x) -> (g(x), grad g(x))``.

Each method is a generator of iterates: it yields ``x_k`` after its k-th gradient query. ``run_method``
drives it, counting queries, recording g(x_k) and the support (largest coordinate index, 1-based, that
has moved from the start) until g(x_k) <= eps g(x_0) or the query budget is spent.

- GD: x_{k+1} = x_k - grad g(x_k)/L (Karimi et al. 2016: linear rate 1 - mu/L under PL).
- Nesterov AGD, constant momentum for a given mu: x_{k+1} = z_k - grad g(z_k)/L,
  z_{k+1} = x_{k+1} + beta (x_{k+1} - x_k), beta = (sqrt(L) - sqrt(mu))/(sqrt(L) + sqrt(mu)).
- Heavy ball (Polyak; Danilova et al. 2020 parameters): x_{k+1} = x_k - alpha grad g(x_k) + beta (x_k - x_{k-1}),
  alpha = 4/(sqrt(L) + sqrt(mu))^2 = (1 + sqrt(beta))^2 / L, beta = ((sqrt(L) - sqrt(mu))/(sqrt(L) + sqrt(mu)))^2.
- ``momentum`` (AGD and heavy ball, default 1) scales beta; heavy ball keeps alpha = (1 + sqrt(beta))^2 / L, so
  ``momentum=0`` turns both into GD with step 1/L (the ablation of acceleration).
- Adam (torch.optim.Adam with zero-initialized moments: coordinatewise, hence zero-respecting).
All four are zero-respecting: a coordinate moves only after some queried gradient was nonzero there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from tenfold.errors import ConvergenceError, require

Oracle = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def gd(oracle: Oracle, x0: torch.Tensor, *, L: float) -> Iterator[torch.Tensor]:
    require(L > 0, "L", L, "a positive smoothness constant (step size 1/L)")
    x = x0.clone()
    while True:
        _, grad = oracle(x)
        x = x - grad / L
        yield x


def _momentum(momentum: float) -> float:
    require(0.0 <= momentum <= 1.0, "momentum", momentum, "a scale of the momentum coefficient in [0, 1]")
    return float(momentum)


def agd(oracle: Oracle, x0: torch.Tensor, *, L: float, mu: float, momentum: float = 1.0) -> Iterator[torch.Tensor]:
    require(L > 0, "L", L, "a positive smoothness constant (step size 1/L)")
    require(0 < mu <= L, "mu", mu, f"a PL constant in (0, L={L}]")
    beta = _momentum(momentum) * (math.sqrt(L) - math.sqrt(mu)) / (math.sqrt(L) + math.sqrt(mu))
    x, z = x0.clone(), x0.clone()
    while True:
        _, grad = oracle(z)
        x_next = z - grad / L
        z = x_next + beta * (x_next - x)
        x = x_next
        yield x


def heavy_ball(oracle: Oracle, x0: torch.Tensor, *, L: float, mu: float,
               momentum: float = 1.0) -> Iterator[torch.Tensor]:
    require(L > 0, "L", L, "a positive smoothness constant")
    require(0 < mu <= L, "mu", mu, f"a PL constant in (0, L={L}]")
    beta = _momentum(momentum) * ((math.sqrt(L) - math.sqrt(mu)) / (math.sqrt(L) + math.sqrt(mu))) ** 2
    alpha = (1.0 + math.sqrt(beta)) ** 2 / L  # = 4/(sqrt(L) + sqrt(mu))^2 at momentum 1; 1/L at momentum 0
    x_prev, x = x0.clone(), x0.clone()
    while True:
        _, grad = oracle(x)
        x, x_prev = x - alpha * grad + beta * (x - x_prev), x
        yield x


def adam(oracle: Oracle, x0: torch.Tensor, *, lr: float, betas: tuple[float, float] = (0.9, 0.999),
         eps: float = 1e-8) -> Iterator[torch.Tensor]:
    """Adam (Kingma and Ba 2015) exactly as ``torch.optim.Adam`` computes it (tested against it), written
    out because the optimizer object's per-step overhead dominates on these small vectors:
    m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, x -= lr (m / (1 - b1^k)) / (sqrt(v / (1 - b2^k)) + eps)."""
    require(lr > 0, "lr", lr, "a positive step size")
    require(0 <= betas[0] < 1 and 0 <= betas[1] < 1, "betas", betas, "two numbers in [0, 1)")
    x = x0.clone()
    m, v = torch.zeros_like(x), torch.zeros_like(x)
    b1, b2 = betas
    k = 0
    while True:
        _, grad = oracle(x)
        k += 1
        m.mul_(b1).add_(grad, alpha=1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (v / (1 - b2**k)).sqrt_().add_(eps)
        x = x - (lr / (1 - b1**k)) * m / denom
        yield x


METHODS: dict[str, Callable[..., Iterator[torch.Tensor]]] = {"GD": gd, "AGD": agd, "HB": heavy_ball, "Adam": adam}


@dataclass
class Trace:
    """What a run recorded: ``values[k]`` = g(x_k) (k = 0 is the start), ``support[k]`` = the largest
    1-based coordinate index moved from x_0 after k queries (0 if none), ``queries`` = queries used,
    ``reached`` = whether g(x_k) <= eps g(x_0) happened."""

    queries: int = 0
    reached: bool = False
    values: list[float] = field(default_factory=list)
    support: list[int] = field(default_factory=list)

    def zero_chain_holds(self) -> bool:
        """After k queries no coordinate beyond index k has moved."""
        return all(s <= k for k, s in enumerate(self.support))


def _support(x: torch.Tensor, x0: torch.Tensor, known: int) -> int:
    """Largest moved 1-based index; checks the whole vector (``known`` only speeds up nothing wrong)."""
    moved = torch.nonzero(x != x0)
    return int(moved[-1]) + 1 if moved.numel() else 0


def run_method(iterates: Iterator[torch.Tensor], value: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor,
               *, eps: float, max_queries: int, target: float | None = None, track_support: bool = True) -> Trace:
    """Drive ``iterates`` until value(x_k) - target <= eps (value(x_0) - target) or ``max_queries``.

    ``target`` is the optimal value (0 for the hard function). Non-finite values raise ConvergenceError.
    """
    require(0.0 < eps < 1.0, "eps", eps, "a relative accuracy in (0, 1)")
    require(max_queries >= 1, "max_queries", max_queries, "a positive query budget")
    target = 0.0 if target is None else float(target)
    gap0 = float(value(x0)) - target
    trace = Trace(values=[gap0 + target], support=[0])
    for k, x in enumerate(iterates, start=1):
        current = float(value(x))
        if not math.isfinite(current):
            raise ConvergenceError(f"method diverged: value {current} at query {k}")
        trace.values.append(current)
        if track_support:
            trace.support.append(_support(x, x0, trace.support[-1]))
        trace.queries = k
        if current - target <= eps * gap0:
            trace.reached = True
            break
        if k >= max_queries:
            break
    return trace
