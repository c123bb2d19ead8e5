"""CallableGame accepts the natural payoffs (broadcast batches, (M, N, 1) results, one pair at a time) and
refuses anything else in one line naming the expected shapes."""

import pytest
import torch

from tenfold.errors import ConfigError
from tenfold.minimax import CallableGame, SinusoidGame, ni_error, papal

D = torch.float64


def _points(m, d, seed):
    return torch.rand(m, d, dtype=D, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _sinusoid(x, y):  # the spec's game written elementwise: on broadcast batches it returns (M, N, 1)
    return (2 / 3) * (torch.sin(2 * x + 0.5) * torch.cos(3 * y) + 0.5 * torch.cos(x - y + 0.7))


PAYOFFS = {
    "broadcast, reduced": (lambda x, y: torch.tanh((x * y).sum(-1)), 3),
    "broadcast, trailing 1": (_sinusoid, 1),
    "one pair, scalar": (lambda x, y: torch.tanh(torch.dot(x, y)), 3),
    "one pair, (1,)": (lambda x, y: torch.tanh(x @ y)[None], 3),
}


def _reference(fn, x, y):
    return torch.stack([torch.stack([fn(xi, yj).reshape(()) for yj in y]) for xi in x])


@pytest.mark.parametrize("name", list(PAYOFFS))
def test_payoff_and_gradients_of_each_natural_form(name):
    fn, d = PAYOFFS[name]
    game = CallableGame(fn, d, d)
    x, y = _points(5, d, 0), _points(4, d, 1)
    wx, wy = torch.full((5,), 0.2, dtype=D), torch.full((4,), 0.25, dtype=D)
    ref = _reference(fn, x, y)
    torch.testing.assert_close(game.payoff(x, y), ref)
    xg, yg = x.clone().requires_grad_(), y.clone().requires_grad_()
    torch.testing.assert_close(game.grad_x(x, y, wy), torch.autograd.grad((_reference(fn, xg, y) @ wy).sum(), xg)[0])
    torch.testing.assert_close(game.grad_y(x, y, wx), torch.autograd.grad((wx @ _reference(fn, x, yg)).sum(), yg)[0])


def test_elementwise_sinusoid_runs_papal_like_the_builtin_game():
    kwargs = dict(lam1=0.05, lam2=0.1, particles=30, outer_steps=3, inner_steps=5, step=0.01, low_rank=False)
    ours = papal(CallableGame(_sinusoid), generator=torch.Generator().manual_seed(0), **kwargs)
    builtin = papal(SinusoidGame(), generator=torch.Generator().manual_seed(0), **kwargs)
    torch.testing.assert_close(ours.x, builtin.x)
    assert abs(ni_error(CallableGame(_sinusoid), *ours.mixture(2)) - ni_error(SinusoidGame(), *builtin.mixture(2))) < 1e-9


@pytest.mark.parametrize("fn", [lambda x, y: x + y, lambda x, y: torch.ones(3, dtype=D), lambda x, y: 1.0])
def test_other_shapes_are_one_line_errors_naming_the_expected_shapes(fn):
    game = CallableGame(fn, 2, 2)
    with pytest.raises(ConfigError, match=r"expected fn\(x, y\) -> \(M, N\) = \(5, 4\)") as info:
        game.payoff(_points(5, 2, 0), _points(4, 2, 1))
    assert "\n" not in str(info.value) and "(5, 1, 2)" in str(info.value) and "x (2,)" in str(info.value)


def test_positions_of_the_wrong_dimension_are_refused():
    game = CallableGame(lambda x, y: (x * y).sum(-1), 2, 2)
    with pytest.raises(ConfigError, match=r"^CallableGame: x of shape \(5, 3\) is invalid: expected \(particles, 2\)"):
        game.payoff(_points(5, 3, 0), _points(4, 2, 1))
