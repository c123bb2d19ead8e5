"""Exact math: game gradients, mu, the exact outer loop's gap, the measures."""

import math

import pytest
import torch

from tenfold.minimax import (
    CallableGame,
    Game,
    GaussianProxyGame,
    MatchingPennies,
    SinusoidGame,
    exact_outer_loop,
    momentum,
    ni_error,
    ni_matching_pennies,
    regularized_gap,
    wasserstein1,
)

D = torch.float64


def _pairs(dim_x=1, dim_y=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(6, dim_x, generator=gen, dtype=D) * 2, torch.randn(5, dim_y, generator=gen, dtype=D) * 2,
            torch.rand(5, generator=gen, dtype=D), torch.rand(6, generator=gen, dtype=D))


@pytest.mark.parametrize("game,dim", [(SinusoidGame(), 1), (MatchingPennies(), 1),
                                      (GaussianProxyGame(torch.tensor([0.3, -1.0, 0.5], dtype=D)), 3)])
def test_closed_form_gradients_match_autograd(game, dim):
    x, y, wy, wx = _pairs(dim, dim)
    torch.testing.assert_close(game.grad_x(x, y, wy), Game.grad_x(game, x, y, wy))
    torch.testing.assert_close(game.grad_y(x, y, wx), Game.grad_y(game, x, y, wx))


def test_low_rank_payoffs_equal_their_formulas():
    x, y, _, _ = _pairs()
    ref = (2 / 3) * (torch.sin(2 * x + 0.5) * torch.cos(3 * y.T) + 0.5 * torch.cos(x - y.T + 0.7))
    torch.testing.assert_close(SinusoidGame().payoff(x, y), ref)
    torch.testing.assert_close(MatchingPennies().payoff(x, y), torch.cos(2 * math.pi * (x - y.T)))
    user = CallableGame(lambda a, b: torch.sin(a - b).sum(-1))
    torch.testing.assert_close(user.payoff(x, y), torch.sin(x - y.T))
    torch.testing.assert_close(user.grad_x(x, y, torch.ones(5, dtype=D)), torch.cos(x - y.T).sum(1, keepdim=True))


def test_momentum_is_the_root():
    for lam2 in (0.01, 0.1, 1.0, 3.0):
        mu = momentum(lam2)
        assert 0 < mu < 1 and abs(mu**2 - (2 + lam2**2) * mu + 1) < 1e-12
    assert abs(momentum(0.1) - 0.9049) < 1e-4


@pytest.fixture(scope="module")
def grid_run():
    game = SinusoidGame()
    xs = torch.linspace(-7, 7, 1401, dtype=D)
    F = game.payoff(xs[:, None], xs[:, None])
    hist = exact_outer_loop(F, xs, xs, lam1=0.05, lam2=0.1, steps=160)
    gaps = [regularized_gap(F, a, b, xs, xs, lam1=0.05, lam2=0.1) for a, b in zip(hist.a, hist.b)]
    return game, xs, F, hist, gaps


def test_exact_outer_loop_gap_rate(grid_run):
    _, _, _, _, gaps = grid_run
    assert 0.09 < gaps[1] < 0.13 and gaps[80] < 1e-8 and gaps[160] < 1e-13
    log_mu = math.log(momentum(0.1))
    for t0, t1 in ((10, 40), (40, 80)):
        assert (math.log(gaps[t1]) - math.log(gaps[t0])) / (t1 - t0) <= log_mu


def test_gap_is_a_closed_form_duality_gap(grid_run):
    """lam2 [KL(a||ahat) + KL(b||bhat)] equals max_q L(a, q) - min_p L(p, b) computed by log-sum-exp."""
    _, xs, F, hist, _ = grid_run
    lam1, lam2 = 0.05, 0.1
    a, b = hist.a[3], hist.b[3]

    def R(p, z):
        return (p * (lam1 * z**2 + lam2 * torch.log(p))).sum()

    # max_q <a, F q> - R(q) = lam2 logsumexp((a^T F - lam1 y^2)/lam2); min_p likewise
    max_q = lam2 * torch.logsumexp((a @ F - lam1 * xs**2) / lam2, 0) + R(a, xs)
    min_p = -lam2 * torch.logsumexp(-(F @ b + lam1 * xs**2) / lam2, 0) - R(b, xs)
    assert math.isclose(float(max_q - min_p), regularized_gap(F, a, b, xs, xs, lam1=lam1, lam2=lam2), rel_tol=1e-9)


def test_gap_zero_at_equilibrium_and_reference_ni(grid_run):
    game, xs, F, hist, gaps = grid_run
    a, b = hist.a[-1], hist.b[-1]
    assert abs(regularized_gap(F, a, b, xs, xs, lam1=0.05, lam2=0.1)) < 1e-13
    assert gaps[0] > 0.1  # the prior is not the equilibrium of this (non-odd) game
    ni = ni_error(game, xs[:, None], xs[:, None], a, b, from_particles=False)
    assert abs(ni - 0.266) < 0.002
    assert abs(float(a @ xs) - 0.318) < 0.002 and abs(float(b @ xs) - 0.401) < 0.002


def test_odd_game_pitfall_prior_is_the_equilibrium():
    """f odd in x and in y makes the (symmetric) prior the regularized MNE (spec 1.8.4): a trivial test case.
    Odd in one player only is not enough: the other player's response to the prior is not the prior."""
    xs = torch.linspace(-7, 7, 701, dtype=D)

    def gap_at_prior(fn):
        F = CallableGame(fn).payoff(xs[:, None], xs[:, None])
        hist = exact_outer_loop(F, xs, xs, lam1=0.05, lam2=0.1, steps=5)
        return regularized_gap(F, hist.a[0], hist.b[0], xs, xs, lam1=0.05, lam2=0.1), hist

    gap, hist = gap_at_prior(lambda x, y: (torch.sin(x) * torch.sin(3 * y)).squeeze(-1))
    assert gap < 1e-12
    torch.testing.assert_close(hist.a[-1], hist.a[0])
    gap_one_sided, _ = gap_at_prior(lambda x, y: (torch.sin(x) * torch.cos(2 * y)).squeeze(-1))
    assert gap_one_sided > 1e-3


def test_ni_matching_pennies_closed_form_and_generic_agree():
    gen = torch.Generator().manual_seed(3)
    x, y = torch.rand(40, 1, generator=gen, dtype=D), torch.rand(30, 1, generator=gen, dtype=D)
    closed = ni_matching_pennies(x, y)
    assert abs(ni_error(MatchingPennies(), x, y) - closed) < 1e-8
    uniform = (torch.arange(100, dtype=D) / 100)[:, None]
    assert ni_matching_pennies(uniform, uniform) < 1e-12  # the MNE set: zero first Fourier coefficients


def test_ni_is_zero_only_at_equilibrium_of_pure_pairs():
    game = SinusoidGame()
    x, y = torch.zeros(1, 1, dtype=D), torch.zeros(1, 1, dtype=D)
    grid = torch.linspace(-7, 7, 140001, dtype=D)[:, None]  # 1e-4 spacing, brute force
    brute = float(game.payoff(x, grid).max() - game.payoff(grid, y).min())
    assert abs(ni_error(game, x, y) - brute) < 1e-6


def test_wasserstein1_known_values():
    assert math.isclose(wasserstein1(torch.zeros(5), torch.ones(3)), 1.0)
    pts = torch.tensor([0.0, 1.0], dtype=D)
    assert math.isclose(wasserstein1(torch.zeros(4), pts, torch.tensor([0.5, 0.5], dtype=D)), 0.5)
