"""First-order methods as small loops over one oracle ``value_and_grad(x) -> (g(x), grad g(x))``.

Each method is a generator of iterates ``method(oracle, x0, **params)``: the built-in ones yield ``x_k``
after their k-th gradient query; a user's method may query the oracle several times per iterate (a line
search). ``run_method`` drives it, counting the *oracle calls* (it wraps the oracle in a
:class:`CountingOracle`) and the iterates, recording g(x_k) and the support (largest coordinate index,
1-based, that has moved from the start) until g(x_k) <= eps g(x_0) or the query budget is spent.

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

from tenfold.errors import ConfigError, ConvergenceError, require

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
_BY_FUNCTION_NAME = {f.__name__: f for f in METHODS.values()}  # "gd", "agd", "heavy_ball", "adam"
# the built-in methods make exactly one oracle call per iterate (tested), so an iterator built from one of
# them with an unwrapped oracle is still counted right
_ONE_CALL_PER_ITERATE = {f.__code__ for f in METHODS.values()}


def method_by_name(name: str) -> Callable[..., Iterator[torch.Tensor]]:
    """A built-in method by its ``METHODS`` key ("GD", "AGD", "HB", "Adam") or function name ("gd", "agd",
    "heavy_ball", "adam")."""
    found = METHODS.get(name, _BY_FUNCTION_NAME.get(name))
    if found is None:
        raise ConfigError(f"method={name!r} is invalid: expected one of {', '.join([*METHODS, *_BY_FUNCTION_NAME])} "
                          "or a callable method(oracle, x0, **params)")
    return found


class CountingOracle:
    """``value_and_grad`` that counts its calls: one call is one first-order query (value and gradient)."""

    def __init__(self, oracle: Oracle) -> None:
        require(callable(oracle), "oracle", oracle, "a callable value_and_grad(x) -> (g(x), grad g(x))")
        self.oracle = oracle
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        return self.oracle(x)


@dataclass
class Trace:
    """What a run recorded: ``values[k]`` = g(x_k) (k = 0 is the start), ``support[k]`` = the largest
    1-based coordinate index moved from x_0 at iterate k (0 if none), ``calls[k]`` = oracle calls made up
    to iterate k; ``queries`` = oracle calls used in all (each a value and gradient query), ``iterations``
    = iterates produced, ``reached`` = whether g(x_k) <= eps g(x_0) happened. For the built-in methods
    ``queries == iterations``; a line search makes ``queries`` larger."""

    queries: int = 0
    reached: bool = False
    values: list[float] = field(default_factory=list)
    support: list[int] = field(default_factory=list)
    iterations: int = 0
    calls: list[int] = field(default_factory=list)

    def zero_chain_holds(self) -> bool:
        """After k oracle queries no coordinate beyond index k has moved."""
        calls = self.calls if len(self.calls) == len(self.support) else range(len(self.support))
        return all(s <= k for k, s in zip(calls, self.support))


def _support(x: torch.Tensor, x0: torch.Tensor, known: int) -> int:
    """Largest moved 1-based index; checks the whole vector (``known`` only speeds up nothing wrong)."""
    moved = torch.nonzero(x != x0)
    return int(moved[-1]) + 1 if moved.numel() else 0


def _iterates_and_counter(method, x0: torch.Tensor, oracle, params: dict) -> tuple[Iterator[torch.Tensor],
                                                                                    Callable[[int], int]]:
    """The iterator to drive and a function (iterates so far -> oracle calls so far)."""
    if isinstance(method, str):
        method = method_by_name(method)
    if isinstance(method, Iterator):
        if params:
            raise ConfigError(f"{', '.join(params)}: method parameters are given to the method, not to run_method, "
                              "when it is an iterator already (or pass the method itself: run_method(agd, ..., L=37))")
        if isinstance(oracle, CountingOracle):
            return method, lambda k: oracle.calls
        if oracle is None and getattr(method, "gi_code", None) in _ONE_CALL_PER_ITERATE:
            return method, lambda k: k
        raise ConfigError("run_method cannot count the oracle calls of this iterator: pass the method and its "
                          "oracle, run_method(my_method, g.value, g.start, oracle=g.value_and_grad, ...), or build it "
                          "on o = CountingOracle(g.value_and_grad) and pass oracle=o")
    if not callable(method):
        raise ConfigError(f"method={method!r} is invalid: expected a method(oracle, x0, **params), its name, or its "
                          "iterator")
    if oracle is None:
        raise ConfigError("oracle=None is invalid: run_method(method, value, x0, oracle=value_and_grad, ...) needs "
                          "the oracle to give the method (and to count its calls)")
    counter = oracle if isinstance(oracle, CountingOracle) else CountingOracle(oracle)
    start = counter.calls
    return method(counter, x0, **params), lambda k: counter.calls - start


def run_method(method, value: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, *, eps: float,
               max_queries: int, oracle: Oracle | None = None, target: float | None = None,
               track_support: bool = True, **params) -> Trace:
    """Drive a first-order method until value(x_k) - target <= eps (value(x_0) - target) or ``max_queries``
    oracle calls have been made.

    ``method`` is a method ``method(oracle, x0, **params)`` (a built-in such as :func:`agd`, its name
    "AGD"/"agd", or your own), run on ``oracle`` wrapped in a :class:`CountingOracle`; or an iterator
    already built on a :class:`CountingOracle` passed as ``oracle`` (or built from a built-in method,
    one call per iterate). ``value`` is for monitoring (its calls are not queries). ``target`` is the
    optimal value (0 for the hard function). Non-finite values raise ConvergenceError.
    """
    require(0.0 < eps < 1.0, "eps", eps, "a relative accuracy in (0, 1)")
    require(max_queries >= 1, "max_queries", max_queries, "a positive query budget")
    iterates, calls_after = _iterates_and_counter(method, x0, oracle, params)
    target = 0.0 if target is None else float(target)
    gap0 = float(value(x0)) - target
    trace = Trace(values=[gap0 + target], support=[0], calls=[0])
    for k, x in enumerate(iterates, start=1):
        current = float(value(x))
        trace.iterations = k
        trace.queries = calls_after(k)
        trace.calls.append(trace.queries)
        if not math.isfinite(current):
            raise ConvergenceError(f"method diverged: value {current} at iterate {k} ({trace.queries} oracle calls)")
        trace.values.append(current)
        if track_support:
            trace.support.append(_support(x, x0, trace.support[-1]))
        if current - target <= eps * gap0:
            trace.reached = True
            break
        if max(trace.queries, k) >= max_queries:  # k: a method that stops querying still ends
            break
    return trace
