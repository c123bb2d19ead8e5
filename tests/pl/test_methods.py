"""First-order methods: zero-chain behaviour, the T t/2 bound, Adam vs torch, the quadratic contrast."""

import math

import pytest
import torch

from tenfold.errors import ConfigError
from tenfold.pl import (
    METHODS,
    HardFunction,
    NesterovQuadratic,
    adam,
    chain_blocks_for,
    gd,
    lower_bound_queries,
    relative_value_floor,
    run_method,
)


def _kwargs(name, T):
    return {"GD": {"L": 37.0}, "AGD": {"L": 37.0, "mu": 0.24 / T}, "HB": {"L": 37.0, "mu": 0.24 / T},
            "Adam": {"lr": 0.03}}[name]


def test_accuracy_relation_corrected():
    assert chain_blocks_for(1e-4) == 64 and chain_blocks_for(1e-2) == 30 and chain_blocks_for(1e-8) == 134
    for eps in (1e-1, 1e-2, 1e-4, 1e-6, 1e-8, 1e-12):
        t = chain_blocks_for(eps)
        assert t % 2 == 0
        for T in (1, 2, 32):
            floor = relative_value_floor(T, t)
            assert eps < floor < 2 * eps  # the floor binds: smaller t would not need eps, larger wastes
    assert lower_bound_queries(8, 64) == 256


@pytest.mark.parametrize("eps", [0.0, 1.0, -1e-3, 2.0])
def test_bad_accuracy(eps):
    with pytest.raises(ConfigError, match="^eps="):
        chain_blocks_for(eps)


@pytest.mark.parametrize("name", list(METHODS))
def test_zero_chain_and_lower_bound_every_method(name):
    T, eps = 4, 1e-2
    t = chain_blocks_for(eps)
    g = HardFunction(T, t)
    trace = run_method(METHODS[name](g.value_and_grad, g.start, **_kwargs(name, T)), g.value, g.start, eps=eps,
                       max_queries=5000)
    assert trace.reached
    assert trace.zero_chain_holds()
    assert max(trace.support) >= lower_bound_queries(T, t)  # it had to reach the second half of the chain
    assert trace.queries >= lower_bound_queries(T, t)
    # before T t/2 queries the value stays above the corrected floor
    bound = lower_bound_queries(T, t)
    assert min(trace.values[:bound]) / trace.values[0] >= relative_value_floor(T, t)


def test_untouched_residuals_stay_exactly_zero_along_gd():
    g = HardFunction(3, 10)
    it = gd(g.value_and_grad, g.start, L=37.0)
    for k in range(1, 20):
        x = next(it)
        r = g.residuals(x)
        assert torch.equal(r[k + 1:], torch.zeros_like(r[k + 1:]))  # residual k+1 (0-based) couples x_k, x_{k+1}
        assert torch.equal(x[k:], g.start[k:])


def test_adam_matches_torch_optim():
    g = HardFunction(2, 6)
    ours = adam(g.value_and_grad, g.start, lr=0.02)
    x = g.start.clone()
    opt = torch.optim.Adam([x], lr=0.02)
    for _ in range(25):
        x.grad = g.grad(x.detach())
        opt.step()
        torch.testing.assert_close(next(ours), x.detach(), rtol=1e-12, atol=1e-14)


def test_gd_linear_rate_on_pl_function():
    g = HardFunction(2, 8)
    mu = 1e-6  # far below the measured PL constant; Karimi et al.: (1 - mu/L)^k is an upper envelope
    trace = run_method(gd(g.value_and_grad, g.start, L=37.0), g.value, g.start, eps=1e-3, max_queries=2000)
    for k, v in enumerate(trace.values):
        assert v <= (1 - mu / 37.0) ** k * trace.values[0] + 1e-15


def test_quadratic_gradient_and_optimum():
    f = NesterovQuadratic(50, L=10.0, mu=0.1)
    x = torch.randn(50, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    (auto,) = torch.autograd.grad(f.value(x), x)
    torch.testing.assert_close(auto, f.value_and_grad(x.detach())[1])
    assert f.value_and_grad(f.optimum)[1].abs().max() < 1e-12


def test_agd_speedup_on_quadratic_not_on_pl_instance():
    """AGD beats GD by ~sqrt(kappa) on the quadratic but only by a constant on the PL instance."""
    T, eps = 8, 1e-4
    f = NesterovQuadratic(600, L=37.0, mu=0.24 / T)
    q = {n: run_method(METHODS[n](f.value_and_grad, f.start, **_kwargs(n, T)), f.value, f.start, eps=eps,
                       max_queries=20000, target=f.min_value, track_support=False).queries for n in ("GD", "AGD")}
    g = HardFunction(T, chain_blocks_for(eps))
    p = {n: run_method(METHODS[n](g.value_and_grad, g.start, **_kwargs(n, T)), g.value, g.start, eps=eps,
                       max_queries=20000, track_support=False).queries for n in ("GD", "AGD")}
    assert q["GD"] / q["AGD"] > 0.3 * math.sqrt(37.0 * T / 0.24)
    assert p["GD"] / p["AGD"] < 2.0


@pytest.mark.parametrize("name", ["AGD", "HB"])
def test_momentum_off_is_gd(name):
    """momentum=0 (the ablation of acceleration) makes AGD and heavy ball GD with step 1/L, iterate by iterate;
    momentum=1 is the default (the heavy-ball step (1 + sqrt(beta))^2/L equals 4/(sqrt(L) + sqrt(mu))^2)."""
    g = HardFunction(4, 6)
    off = METHODS[name](g.value_and_grad, g.start, L=37.0, mu=0.01, momentum=0.0)
    plain = gd(g.value_and_grad, g.start, L=37.0)
    for _ in range(30):
        torch.testing.assert_close(next(off), next(plain), rtol=1e-13, atol=1e-15)  # HB: x - (1/L) g, rounded
    on, default = (METHODS[name](g.value_and_grad, g.start, L=37.0, mu=0.01, **kw) for kw in ({"momentum": 1.0}, {}))
    for _ in range(30):
        torch.testing.assert_close(next(on), next(default), rtol=0, atol=0)
    if name == "HB":
        L, mu = 37.0, 0.01
        beta = ((math.sqrt(L) - math.sqrt(mu)) / (math.sqrt(L) + math.sqrt(mu))) ** 2
        assert math.isclose((1 + math.sqrt(beta)) ** 2 / L, 4 / (math.sqrt(L) + math.sqrt(mu)) ** 2, rel_tol=1e-14)


@pytest.mark.parametrize("make,field", [
    (lambda o, x: METHODS["AGD"](o, x, L=1.0, mu=0.1, momentum=1.5), "momentum"),
    (lambda o, x: gd(o, x, L=0.0), "L"),
    (lambda o, x: adam(o, x, lr=-1.0), "lr"),
    (lambda o, x: METHODS["AGD"](o, x, L=1.0, mu=0.0), "mu"),
    (lambda o, x: METHODS["HB"](o, x, L=-2.0, mu=0.1), "L"),
])
def test_bad_step_sizes(make, field):
    g = HardFunction(1, 2)
    with pytest.raises(ConfigError, match=f"^{field}="):
        next(make(g.value_and_grad, g.start))
