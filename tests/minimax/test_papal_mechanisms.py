"""Break each PAPAL mechanism and see the property it carries fail (fast, small sizes).

- no extrapolation term: the exact outer loop on torus matching pennies (lam2 = .03) no longer converges at
  the linear rate (gap 0.02 at t = 60 against 5e-10);
- particles that do not move (the Langevin inner loop replaced by the identity): the iterates stay prior draws,
  far from the regularized MNE in W1, while the real inner loop reaches the i.i.d. sampling floor;
- the exact inner loop (M i.i.d. draws from each Gibbs target, inner="exact") is what the bars are measured
  with: its W1 to the exact loop's equilibrium sits at the sampling floor.
(Momentum off in the PL methods: tests/pl/test_pl_cli.py::test_ablations_make_their_claims_fail.)
"""

import importlib

import pytest
import torch

from tenfold.errors import ConfigError
from tenfold.minimax import MatchingPennies, SinusoidGame, exact_outer_loop, papal, regularized_gap, wasserstein1


def _torus_gap(extrapolation: float) -> float:
    ts = torch.arange(200, dtype=torch.float64) / 200
    F = MatchingPennies().payoff(ts[:, None], ts[:, None])
    h = exact_outer_loop(F, ts, ts, lam1=0.2, lam2=0.03, steps=60, extrapolation=extrapolation, torus=True)
    return regularized_gap(F, h.a[-1], h.b[-1], ts, ts, lam1=0.2, lam2=0.03, torus=True)


def test_without_extrapolation_the_exact_loop_misses_the_linear_rate():
    assert _torus_gap(1.0) < 1e-8
    assert _torus_gap(0.0) > 1e-3


@pytest.fixture(scope="module")
def reference():
    xs = torch.linspace(-7, 7, 701, dtype=torch.float64)
    F = SinusoidGame().payoff(xs[:, None], xs[:, None])
    h = exact_outer_loop(F, xs, xs, lam1=0.05, lam2=0.1, steps=100)
    gen = torch.Generator().manual_seed(123)
    m = 300
    floor = sum(wasserstein1(xs[torch.multinomial(h.a[-1], m, replacement=True, generator=gen)], xs, h.a[-1])
                for _ in range(20)) / 20
    return xs, h.a[-1], floor


def _w1_last(reference, **kw) -> float:
    xs, a, _ = reference
    res = papal(SinusoidGame(), lam1=0.05, lam2=0.1, particles=300, outer_steps=20,
                generator=torch.Generator().manual_seed(0), **kw)
    return sum(wasserstein1(res.xs[t], xs, a, res.wxs[t]) for t in range(-5, 0)) / 5


@pytest.mark.slow
def test_particles_that_do_not_move_stay_far_from_the_equilibrium(reference, monkeypatch):
    floor = reference[2]
    moving = _w1_last(reference, inner_steps=100, step=0.02)
    assert moving < 1.5 * floor
    papal_module = importlib.import_module("tenfold.minimax.papal")  # the package's `papal` is the function
    monkeypatch.setattr(papal_module, "langevin", lambda z, *args, **kwargs: z)  # frozen prior draws
    frozen = _w1_last(reference, inner_steps=100, step=0.02)
    assert frozen > 3 * floor


@pytest.mark.slow
def test_exact_inner_loop_sits_at_the_sampling_floor(reference):
    xs, _, floor = reference
    exact = _w1_last(reference, inner_steps=1, step=0.01, inner="exact", grid=xs)
    assert exact < 1.5 * floor


def test_exact_inner_loop_needs_a_grid():
    with pytest.raises(ConfigError, match="^grid="):
        papal(SinusoidGame(), lam1=0.05, lam2=0.1, particles=10, outer_steps=2, inner_steps=1, step=0.01,
              generator=torch.Generator().manual_seed(0), inner="exact")
