"""PAPAL and baselines: Langevin correctness, low-rank = generic, the spec's tiny-scale claims, bad input."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from tenfold.errors import ConfigError, ConvergenceError
from tenfold.minimax import (
    CallableGame,
    MatchingPennies,
    SinusoidGame,
    exact_outer_loop,
    gda,
    langevin,
    mfl_da,
    ni_error,
    ni_matching_pennies,
    papal,
    wasserstein1,
    wfr_da,
)

D = torch.float64


@pytest.mark.parametrize("sampler,step,tol", [("ula", 1e-3, 0.03), ("mala", 0.2, 0.03)])
def test_langevin_targets_gibbs_on_quadratic(sampler, step, tol):
    """U(z) = z^2/(2 s^2): ULA with a small step (and MALA at any step) sample N(0, s^2)."""
    s = 0.7
    gen = torch.Generator().manual_seed(0)
    z0 = 3 * torch.randn(4000, 1, generator=gen, dtype=D)
    z = langevin(z0, lambda z: z[:, 0] ** 2 / (2 * s * s), lambda z: z / (s * s), step=step,
                 steps=int(4 / step) if sampler == "ula" else 200, generator=gen, sampler=sampler)
    assert abs(float(z.std()) / s - 1) < tol
    assert stats.kstest(z[:, 0].numpy() / s, "norm").pvalue > 1e-3


def test_ula_bias_grows_with_step():
    """ULA's stationary variance on the quadratic is s^2/(1 - step/(2 s^2)): the step -> 0 limit is exact."""
    gen = torch.Generator().manual_seed(1)
    z0 = torch.randn(20000, 1, generator=gen, dtype=D)
    z = langevin(z0, lambda z: z[:, 0] ** 2 / 2, lambda z: z, step=0.5, steps=60, generator=gen)
    assert abs(float(z.var()) - 1 / (1 - 0.25)) < 0.05


def test_low_rank_and_generic_paths_agree():
    kw = dict(lam1=0.05, lam2=0.1, particles=30, outer_steps=4, inner_steps=20, step=0.01)
    a = papal(SinusoidGame(), generator=torch.Generator().manual_seed(5), low_rank=True, **kw)
    b = papal(SinusoidGame(), generator=torch.Generator().manual_seed(5), low_rank=False, **kw)
    torch.testing.assert_close(a.x, b.x, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(a.y, b.y, rtol=1e-9, atol=1e-9)


def test_pool_horizon_prunes_old_sets():
    kw = dict(lam1=0.05, lam2=0.1, particles=10, outer_steps=6, inner_steps=2, step=0.01, low_rank=False)
    seen = []
    from tenfold.minimax.papal import OpponentAverage

    pot = OpponentAverage(SinusoidGame(), "y", horizon=2, low_rank=False)
    for k in range(5):
        pot.decay(0.9)
        pot.add(torch.full((3, 1), float(k), dtype=D), 1.0)
        seen.append(len(pot.pool))
    assert seen == [1, 2, 3, 3, 3] and [e[2] for e in pot.pool] == [2, 1, 0]
    assert math.isclose(pot.pool[0][1], 0.81)
    papal(SinusoidGame(), generator=torch.Generator().manual_seed(0), horizon=2, **kw)  # runs with pruning


def test_output_options_and_mixture():
    res = papal(SinusoidGame(), lam1=0.05, lam2=0.1, particles=20, outer_steps=5, inner_steps=5, step=0.01,
                generator=torch.Generator().manual_seed(0), output="random")
    assert 1 <= res.chosen_step <= 5 and res.x is res.xs[res.chosen_step]
    x, y, wx, wy = res.mixture(3)
    assert len(x) == 60 and math.isclose(float(wx.sum()), 1.0) and float(wx[-1]) > float(wx[0])


@pytest.mark.slow
def test_particle_papal_reaches_the_grid_reference():
    """Spec 1.8.2 at M = 600: W1 < .12 per player, |NI - .266| < .03 (mixture of the last 10 iterates)."""
    game = SinusoidGame()
    xs = torch.linspace(-7, 7, 1401, dtype=D)
    hist = exact_outer_loop(game.payoff(xs[:, None], xs[:, None]), xs, xs, lam1=0.05, lam2=0.1, steps=100)
    w1 = []
    res = papal(game, lam1=0.05, lam2=0.1, particles=600, outer_steps=40, inner_steps=300, step=0.01,
                generator=torch.Generator().manual_seed(0),
                callback=lambda t, x, y, *_: w1.append((wasserstein1(x, xs, hist.a[-1]), wasserstein1(y, xs, hist.b[-1]))))
    w1 = np.array(w1)
    assert w1[0].min() > 0.3 or w1[0].max() > 0.5  # it starts far from the reference
    assert (w1[-10:].mean(0) < 0.12).all()
    assert abs(ni_error(game, *res.mixture(10)) - 0.266) < 0.03


def test_torus_gda_cycles_and_papal_reaches_sampling_floor():
    game = MatchingPennies()
    gen = torch.Generator().manual_seed(0)
    x, y = gda(game, torch.tensor([[0.1]], dtype=D), torch.tensor([[0.7]], dtype=D), step=0.01, steps=300)
    assert abs(ni_matching_pennies(x, y) - 2.0) < 1e-12
    M = 200
    res = papal(game, lam1=0.0, lam2=0.1, particles=M, outer_steps=10, inner_steps=100, step=0.01, generator=gen)
    assert ni_matching_pennies(res.x, res.y) < 3 * math.sqrt(math.pi / M)
    assert ((res.x >= 0) & (res.x < 1)).all()


def test_baselines_move_toward_equilibrium():
    game = SinusoidGame()
    gen = torch.Generator().manual_seed(0)
    x0, y0 = torch.randn(100, 1, generator=gen, dtype=D), torch.randn(100, 1, generator=gen, dtype=D)
    start = ni_error(game, x0, y0)
    mx, my = mfl_da(game, x0, y0, lam1=0.05, lam2=0.1, step=0.005, steps=800, generator=gen)
    assert ni_error(game, mx, my) < start
    out = wfr_da(game, x0, y0, weight_step=0.5, position_step=0.05, steps=400)
    assert ni_error(game, *out) < 0.6 * start
    wx = wfr_da(game, x0, y0, weight_step=0.5, position_step=0.0, steps=200)
    torch.testing.assert_close(wx[0], x0)  # weight-only never moves particles
    assert ni_error(game, *wx) < start


@pytest.mark.parametrize("kwargs,field", [
    (dict(lam2=0.0), "lam2"), (dict(lam1=-0.1), "lam1"), (dict(step=0.0), "step"), (dict(particles=0), "M"),
    (dict(inner_steps=0), "inner_steps"), (dict(output="best"), "output"), (dict(sampler="hmc"), "sampler"),
])
def test_bad_papal_arguments(kwargs, field):
    args = dict(lam1=0.05, lam2=0.1, particles=5, outer_steps=1, inner_steps=1, step=0.01,
                generator=torch.Generator().manual_seed(0)) | kwargs
    with pytest.raises(ConfigError, match=f"^{field}="):
        papal(SinusoidGame(), **args)


def test_payoff_out_of_range_warns_with_range():
    game = CallableGame(lambda x, y: 3 * torch.cos(x - y).squeeze(-1))
    with pytest.warns(UserWarning, match=r"leaves \[-1, 1\].*observed range \[-3"):
        papal(game, lam1=0.05, lam2=0.1, particles=50, outer_steps=1, inner_steps=1, step=0.01,
              generator=torch.Generator().manual_seed(0), low_rank=False)


def test_divergence_raises_convergence_error_with_step():
    with pytest.raises(ConvergenceError, match="outer step 1"):
        papal(SinusoidGame(), lam1=0.05, lam2=0.1, particles=5, outer_steps=3, inner_steps=400, step=50.0,
              generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConvergenceError, match="step"):
        mfl_da(SinusoidGame(), torch.ones(3, 1, dtype=D), torch.ones(3, 1, dtype=D), lam1=0.05, lam2=0.1, step=1e3,
               steps=400, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("ratio,y_steps", [(1.0, 1), (10.0, 1), (1.0, 5)])
def test_mfl_da_timescales_and_quasistatic(ratio, y_steps):
    """Single timescale, two timescales (iota_y = 10 iota_x) and quasistatic (5 y-steps per x-step)."""
    game = SinusoidGame()
    gen = torch.Generator().manual_seed(2)
    x0, y0 = torch.randn(100, 1, generator=gen, dtype=D), torch.randn(100, 1, generator=gen, dtype=D)
    x, y = mfl_da(game, x0, y0, lam1=0.05, lam2=0.1, step=0.003, steps=600, generator=gen, ratio=ratio,
                  y_steps=y_steps)
    assert ni_error(game, x, y) < ni_error(game, x0, y0)


def test_papal_with_mala_inner_loop():
    game = SinusoidGame()
    xs = torch.linspace(-7, 7, 701, dtype=D)
    hist = exact_outer_loop(game.payoff(xs[:, None], xs[:, None]), xs, xs, lam1=0.05, lam2=0.1, steps=30)
    res = papal(game, lam1=0.05, lam2=0.1, particles=200, outer_steps=12, inner_steps=60, step=0.05,
                generator=torch.Generator().manual_seed(0), sampler="mala")
    start = wasserstein1(res.xs[0], xs, hist.a[-1])
    assert wasserstein1(res.x, xs, hist.a[-1]) < 0.6 * start
