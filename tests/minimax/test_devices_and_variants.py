"""Any device and dtype (meta, float32, float64), MFL-DA's simultaneous update, the exact loop's optimism,
the torus game with a confinement, and the paper's other inner loops (weights-only ablation, the proximal
sampler of Algorithm 3, stochastic potentials) against the exact loop on the grid game."""

import math

import pytest
import torch

from tenfold.minimax import (
    GaussianProxyGame,
    MatchingPennies,
    SinusoidGame,
    exact_outer_loop,
    gda,
    mfl_da,
    momentum,
    ni_error,
    papal,
    regularized_gap,
    wasserstein1,
    wfr_da,
)
from tenfold.minimax.papal import confinement, confinement_grad, proximal_sampler

D = torch.float64
KW = dict(lam1=0.05, lam2=0.1, particles=16, outer_steps=3, inner_steps=4, step=0.01)


@pytest.mark.parametrize("game", [SinusoidGame(), GaussianProxyGame(torch.tensor([0.5, -0.2], dtype=D)),
                                  MatchingPennies()])
@pytest.mark.parametrize("inner", ["langevin", "weights", "proximal"])
def test_papal_runs_on_the_meta_device(game, inner):
    """No tensor is created on the CPU behind the caller's back: a meta run keeps everything on meta."""
    res = papal(game, generator=torch.Generator(), device="meta", inner=inner, dtype=torch.float32,
                batch=4 if inner == "langevin" else None, **KW)
    for z in (*res.xs, *res.ys, *res.wxs, *res.wys):
        assert z.device.type == "meta" and z.dtype == torch.float32
    x, y, wx, wy = res.mixture(2)
    assert x.device.type == "meta" and wx.shape == (32,)
    value = ni_error(game, res.x, res.y, res.wx, res.wy)
    assert isinstance(value, torch.Tensor) and value.device.type == "meta"


def test_baselines_run_on_the_meta_device():
    game = SinusoidGame()
    x = torch.empty(8, 1, device="meta", dtype=torch.float32)
    y = torch.empty(8, 1, device="meta", dtype=torch.float32)
    mx, my = mfl_da(game, x, y, lam1=0.05, lam2=0.1, step=0.01, steps=3, generator=torch.Generator(), y_steps=2)
    out = wfr_da(game, x, y, weight_step=0.5, position_step=0.05, steps=3)
    gx, gy = gda(game, x[:1], y[:1], step=0.1, steps=3)
    assert all(t.device.type == "meta" for t in (mx, my, *out, gx, gy))
    xs = torch.empty(11, device="meta", dtype=torch.float32)
    F = game.payoff(xs[:, None], xs[:, None])
    hist = exact_outer_loop(F, xs, xs, lam1=0.05, lam2=0.1, steps=2)
    gap = regularized_gap(F, hist.a[-1], hist.b[-1], xs, xs, lam1=0.05, lam2=0.1)
    assert gap.device.type == "meta"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_papal_and_ni_in_both_dtypes(dtype):
    game = SinusoidGame()
    res = papal(game, generator=torch.Generator().manual_seed(0), dtype=dtype, **KW)
    assert res.x.dtype == dtype and res.wx.dtype == dtype
    ni = ni_error(game, res.x, res.y)
    assert isinstance(ni, float) and 0 <= ni <= 2
    ni64 = ni_error(game, res.x.double(), res.y.double())
    assert abs(ni - ni64) < (1e-4 if dtype == torch.float32 else 1e-12)


def test_mfl_da_update_is_simultaneous():
    """One step equals the Jacobi update with both drifts at (x0, y0) and the same noise draws (y first)."""
    game = SinusoidGame()
    gen = torch.Generator().manual_seed(3)
    x0, y0 = torch.randn(7, 1, generator=gen, dtype=D), torch.randn(7, 1, generator=gen, dtype=D)
    lam1, lam2, step = 0.05, 0.1, 0.01
    x1, y1 = mfl_da(game, x0, y0, lam1=lam1, lam2=lam2, step=step, steps=1, generator=torch.Generator().manual_seed(9))
    ref = torch.Generator().manual_seed(9)
    w = torch.full((7,), 1 / 7, dtype=D)
    ny, nx = torch.randn(7, 1, generator=ref, dtype=D), torch.randn(7, 1, generator=ref, dtype=D)
    y_ref = y0 + step * (game.grad_y(x0, y0, w) - 2 * lam1 * y0) / lam2 + math.sqrt(2 * step) * ny
    x_ref = x0 - step * (game.grad_x(x0, y0, w) + 2 * lam1 * x0) / lam2 + math.sqrt(2 * step) * nx
    torch.testing.assert_close(y1, y_ref, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(x1, x_ref, rtol=1e-14, atol=1e-14)  # Gauss-Seidel would use y1 here
    x_gs = x0 - step * (game.grad_x(x0, y_ref, w) + 2 * lam1 * x0) / lam2 + math.sqrt(2 * step) * nx
    assert (x1 - x_gs).abs().max() > 1e-6


def test_periodic_confinement():
    z = torch.tensor([[0.0], [0.01], [0.5], [1.0]], dtype=D)
    v = confinement(z, torus=True)
    assert abs(float(v[0])) < 1e-15 and abs(float(v[3])) < 1e-15
    assert abs(float(v[1]) - 0.01**2) < 1e-6  # |z|^2 to second order at 0
    zz = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(confinement(zz, True).sum(), zz)
    torch.testing.assert_close(confinement_grad(z, True), grad)


def _torus_grid(n=400):
    xs = torch.arange(n, dtype=D) / n
    return xs, MatchingPennies().payoff(xs[:, None], xs[:, None])


def _kl(p, q):
    return float((p * (p.log() - q.log())).sum())


def test_torus_equilibrium_with_confinement_is_not_the_prior_and_optimism_matters():
    """lam1 > 0 on the torus: the regularized MNE differs from the prior; the last-iterate bound
    KL(p*||p_t) + KL(q*||q_t)/2 <= mu^t [KL(p*||p_0) + KL(q*||q_0)] holds with the extrapolation term and
    fails without it (lam1 = .2, lam2 = .03)."""
    xs, F = _torus_grid()
    lam1, lam2 = 0.2, 0.03
    mu = momentum(lam2)
    ref = exact_outer_loop(F, xs, xs, lam1=lam1, lam2=lam2, steps=400, torus=True)
    a, b = ref.a[-1], ref.b[-1]
    assert regularized_gap(F, a, b, xs, xs, lam1=lam1, lam2=lam2, torus=True) < 1e-12
    assert _kl(a, ref.a[0]) > 0.02  # not the prior: its first Fourier coefficients are far from zero
    coef = lambda p: float((p * torch.exp(2j * math.pi * xs)).sum().abs())  # noqa: E731
    assert coef(ref.a[0]) + coef(ref.b[0]) > 10 * (coef(a) + coef(b))
    ratios = {}
    for e in (1.0, 0.0):
        h = exact_outer_loop(F, xs, xs, lam1=lam1, lam2=lam2, steps=100, torus=True, extrapolation=e)
        d0 = _kl(a, h.a[0]) + _kl(b, h.b[0])
        ratios[e] = max((_kl(a, p) + 0.5 * _kl(b, q)) / (mu**t * d0) for t, (p, q) in enumerate(zip(h.a, h.b)))
    assert ratios[1.0] <= 1.0 < ratios[0.0]


@pytest.fixture(scope="module")
def reference():
    game = SinusoidGame()
    xs = torch.linspace(-7, 7, 701, dtype=D)
    hist = exact_outer_loop(game.payoff(xs[:, None], xs[:, None]), xs, xs, lam1=0.05, lam2=0.1, steps=100)
    return game, xs, hist.a[-1], hist.b[-1]


def _w1(res, xs, a, b, last=5):
    return sum(wasserstein1(res.xs[t], xs, a, res.wxs[t]) + wasserstein1(res.ys[t], xs, b, res.wys[t])
               for t in range(len(res.xs) - last, len(res.xs))) / (2 * last)


@pytest.mark.slow
def test_weights_only_ablation_never_moves_and_matches_in_one_dimension(reference):
    """inner="weights": the prior draws stay put; in 1-D self-normalized weights still follow the exact loop."""
    game, xs, a, b = reference
    res = papal(game, lam1=0.05, lam2=0.1, particles=400, outer_steps=30, inner_steps=1, step=0.01,
                generator=torch.Generator().manual_seed(0), inner="weights")
    assert all(x is res.xs[0] for x in res.xs)
    assert abs(float(res.wx.sum()) - 1) < 1e-12
    start = (wasserstein1(res.xs[0], xs, a) + wasserstein1(res.ys[0], xs, b)) / 2
    assert _w1(res, xs, a, b) < 0.3 * start


def test_proximal_sampler_targets_the_gaussian():
    s = 0.7
    gen = torch.Generator().manual_seed(0)
    z0 = 3 * torch.randn(4000, 1, generator=gen, dtype=D)
    z = proximal_sampler(z0, lambda z: z[:, 0] ** 2 / (2 * s * s), lambda z: z / (s * s), eta=0.5, steps=40,
                         inner_steps=5, inner_step=0.1, generator=gen)
    assert abs(float(z.std()) / s - 1) < 0.04 and abs(float(z.mean())) < 0.04


@pytest.mark.slow
@pytest.mark.parametrize("variant", [dict(inner="proximal", inner_steps=20, step=0.05),
                                     dict(batch=32, inner_steps=200, step=0.01),
                                     dict(batch=32, inner_steps=200, step=0.01, low_rank=False, particles=100)])
def test_other_inner_loops_follow_the_exact_loop(reference, variant):
    """Algorithm 3 (proximal sampler with MALA) and stochastic (minibatch) potentials land close to the exact
    loop's regularized equilibrium, like the exact-potential ULA run of the same size."""
    game, xs, a, b = reference
    kw = dict(lam1=0.05, lam2=0.1, particles=300, outer_steps=25, generator=torch.Generator().manual_seed(1)) | variant
    res = papal(game, **kw)
    start = (wasserstein1(res.xs[0], xs, a) + wasserstein1(res.ys[0], xs, b)) / 2
    assert _w1(res, xs, a, b) < 0.35 * start


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_baselines_and_gap_keep_the_dtype(dtype):
    game = SinusoidGame()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, generator=gen, dtype=dtype)
    y = torch.randn(8, 1, generator=gen, dtype=dtype)
    mx, my = mfl_da(game, x, y, lam1=0.05, lam2=0.1, step=0.01, steps=3, generator=gen)
    out = wfr_da(game, x, y, weight_step=0.5, position_step=0.05, steps=3)
    gx, gy = gda(game, x[:1], y[:1], step=0.1, steps=3)
    assert all(t.dtype == dtype for t in (mx, my, *out, gx, gy))
    xs = torch.linspace(-7, 7, 101, dtype=dtype)
    F = game.payoff(xs[:, None], xs[:, None])
    hist = exact_outer_loop(F, xs, xs, lam1=0.05, lam2=0.1, steps=30)
    assert hist.a[-1].dtype == dtype
    gap = regularized_gap(F, hist.a[-1], hist.b[-1], xs, xs, lam1=0.05, lam2=0.1)
    assert isinstance(gap, float) and 0 <= gap < 1e-3
    assert 0 <= ni_error(game, mx, my) <= 2
