"""Equilibrium solver: exact gradients (float64), convergence reporting, bad settings."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from tenfold.errors import ConfigError, ConvergenceError
from tenfold.implicit import (
    EquilibriumSolver,
    NonConvergenceWarning,
    SolverSettings,
    conv_lipschitz_bound,
    normalize_conv,
    normalize_linear,
    unrolled_fixed_point,
)

D64 = torch.float64


def contraction(gamma: float = 0.5, dim: int = 6, inputs: int = 4, batch: int = 3, seed: int = 0):
    """f(z) = tanh(gamma A z + B x) with ||A||_2 = 1: a gamma-contraction; B is the parameter."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=g, dtype=D64)
    a = gamma * a / torch.linalg.matrix_norm(a, ord=2)
    b = torch.randn(dim, inputs, generator=g, dtype=D64).requires_grad_()
    x = torch.randn(batch, inputs, generator=g, dtype=D64)
    w = torch.randn(batch, dim, generator=g, dtype=D64)  # loss = <w, z*>

    def f(z, b=b):
        return torch.tanh(z @ a.T + x @ b.T)

    return f, b, w, torch.zeros(batch, dim, dtype=D64)


def precise(**kw) -> SolverSettings:
    base = dict(f_tol=1e-13, f_max_iter=200, eval_f_max_iter=200, b_tol=1e-13, b_max_iter=300)
    return SolverSettings(**{**base, **kw})


def ift_grad(solver_name: str = "anderson") -> torch.Tensor:
    f, b, w, z0 = contraction()
    solver = EquilibriumSolver(precise(solver=solver_name, b_solver=solver_name)).train()
    (solver(f, z0) * w).sum().backward()
    return b.grad.clone()


@pytest.mark.parametrize("solver_name", ["anderson", "broyden", "fixed_point"])
def test_ift_gradient_matches_200_step_unrolled_backprop(solver_name):
    f, b, w, z0 = contraction()
    (unrolled_fixed_point(f, z0, 200) * w).sum().backward()
    reference = b.grad.clone()
    got = ift_grad(solver_name)
    assert (got - reference).norm() / reference.norm() < 1e-6


def test_ift_gradient_matches_central_finite_differences():
    f, b, w, z0 = contraction()
    got = ift_grad()
    solver = EquilibriumSolver(precise()).eval()
    eps = 1e-6
    fd = torch.zeros_like(b)
    with torch.no_grad():
        for idx in range(b.numel()):
            delta = torch.zeros_like(b).view(-1)
            delta[idx] = eps
            delta = delta.view_as(b)
            plus = (solver(lambda z: f(z, b + delta), z0) * w).sum()
            minus = (solver(lambda z: f(z, b - delta), z0) * w).sum()
            fd.view(-1)[idx] = (plus - minus) / (2 * eps)
    assert (got - fd).norm() / fd.norm() < 1e-4


@pytest.mark.parametrize("steps", [1, 3])
def test_phantom_gradient_points_along_the_true_gradient(steps):
    true = ift_grad()
    f, b, w, z0 = contraction()
    solver = EquilibriumSolver(precise(backward="phantom", phantom_steps=steps)).train()
    (solver(f, z0) * w).sum().backward()
    cosine = F.cosine_similarity(b.grad.flatten(), true.flatten(), dim=0)
    assert cosine > 0.5
    # more phantom steps approach the implicit gradient
    if steps == 3:
        assert (b.grad - true).norm() / true.norm() < 0.2


@pytest.mark.parametrize("backward,expected", [("ift", 1), ("phantom", 1)])
def test_only_one_f_call_is_on_the_autograd_tape(backward, expected):
    f, b, w, z0 = contraction()
    taped = []

    def counting(z):
        taped.append(torch.is_grad_enabled())
        return f(z)

    solver = EquilibriumSolver(precise(backward=backward)).train()
    out = solver(counting, z0)
    assert sum(taped) == expected and len(taped) > 5  # the solver's many calls ran without a graph
    assert out.requires_grad


@pytest.mark.parametrize("solver_name", ["anderson", "broyden", "fixed_point"])
def test_every_sample_converges_to_the_tolerance_at_eval(solver_name):
    f, _, _, z0 = contraction(gamma=0.9, batch=16, dim=12)
    solver = EquilibriumSolver(SolverSettings(solver=solver_name, f_tol=1e-4, eval_f_max_iter=100)).eval()
    with torch.no_grad():
        z = solver(f, z0)
    info = solver.last_info
    assert info.residual.shape == (16,) and info.converged
    assert (info.residual <= 1e-4).all()
    rel = (f(z) - z).norm(dim=1) / f(z).norm(dim=1)
    assert (rel <= 1e-4).all()


def slow_contraction(gamma: float = 0.95, dim: int = 32, batch: int = 8):
    """f(z) = tanh(A z + x) with symmetric A of spectral radius gamma: fixed-point iteration is slow."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=D64))
    a = q @ torch.diag(torch.linspace(-gamma, gamma, dim, dtype=D64)) @ q.T
    x = 0.1 * torch.randn(batch, dim, generator=g, dtype=D64)
    return (lambda z: torch.tanh(z @ a + x)), torch.zeros(batch, dim, dtype=D64)


def test_anderson_needs_fewer_steps_than_fixed_point_iteration_and_torchdeqs_anderson():
    f, z0 = slow_contraction()
    steps = {}
    for name in ("anderson", "fixed_point", "anderson_torchdeq"):
        solver = EquilibriumSolver(SolverSettings(solver=name, f_tol=1e-6, eval_f_max_iter=1000)).eval()
        with torch.no_grad():
            solver(f, z0)
        assert solver.last_info.converged, name
        steps[name] = solver.last_info.mean_steps
    assert steps["anderson"] < 0.5 * steps["fixed_point"]
    assert steps["anderson"] < steps["anderson_torchdeq"]


def expanding_map():
    """Not a contraction: z <- 2 z + 1 has its fixed point at -1 but iteration runs away from it."""
    return lambda z: 2 * z + 1, torch.zeros(2, 3)


def test_nonconvergence_warns_by_default_and_info_says_so():
    f, z0 = expanding_map()
    solver = EquilibriumSolver(SolverSettings(solver="fixed_point", eval_f_max_iter=5)).eval()
    with pytest.warns(NonConvergenceWarning, match="did not converge"):
        solver(f, z0)
    assert not solver.last_info.converged


def test_nonconvergence_can_raise_or_be_ignored():
    f, z0 = expanding_map()
    solver = EquilibriumSolver(SolverSettings(solver="fixed_point", eval_f_max_iter=5, on_nonconvergence="raise"))
    with pytest.raises(ConvergenceError, match="f_tol=0.0001"):
        solver.eval()(f, z0)
    quiet = EquilibriumSolver(SolverSettings(solver="fixed_point", eval_f_max_iter=5, on_nonconvergence="ignore"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet.eval()(f, z0)
    assert not quiet.last_info.converged


@pytest.mark.parametrize("field,value,expected", [
    ("solver", "newton", "one of anderson, broyden, fixed_point, anderson_torchdeq"),
    ("b_solver", "lbfgs", "one of anderson"),
    ("f_tol", 0.0, "a tolerance > 0"),
    ("b_tol", -1e-6, "a tolerance > 0"),
    ("f_max_iter", 0, "an integer >= 1"),
    ("backward", "unrolled", "one of ift, phantom"),
    ("tau", 1.5, "(0, 1]"),
    ("on_nonconvergence", "shout", "warn"),
])
def test_bad_settings_are_one_line_errors(field, value, expected):
    with pytest.raises(ConfigError) as err:
        SolverSettings(**{field: value})
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{field}={value!r}") and expected in message


def test_conv_bound_is_above_the_true_operator_norm_and_normalisation_caps_it():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(8, 3, 3, 3, generator=g, dtype=D64)
    x = torch.randn(1, 3, 12, 12, generator=g, dtype=D64)
    for _ in range(300):  # power iteration on the actual convolution operator
        x = F.conv_transpose2d(F.conv2d(x, w, padding=1), w, padding=1)
        x = x / x.norm()
    operator_norm = F.conv2d(x, w, padding=1).norm()
    assert operator_norm <= conv_lipschitz_bound(w) * (1 + 1e-9)
    assert conv_lipschitz_bound(normalize_conv(w)) <= 1 + 1e-9
    small = 0.01 * w[:, :, 1:2, 1:2]
    assert torch.equal(normalize_conv(small), small)  # already 1-Lipschitz: left alone
    m = torch.randn(5, 7, generator=g, dtype=D64)
    assert torch.linalg.matrix_norm(normalize_linear(m), ord=2) <= 1 + 1e-12


def _conv_operator_norm(w, size, iterations=400):
    x = torch.randn(1, w.shape[1], *size, generator=torch.Generator().manual_seed(3), dtype=w.dtype)
    for _ in range(iterations):  # power iteration on the actual zero-padded convolution
        x = F.conv_transpose2d(F.conv2d(x, w, padding=1), w, padding=1)
        x = x / x.norm()
    return float(F.conv2d(x, w, padding=1).norm())


@pytest.mark.parametrize("shape,size", [((4, 1, 3, 3), (8, 8)), ((1, 4, 3, 3), (8, 8)), ((8, 3, 3, 3), (12, 12))])
def test_fft_conv_bound_is_an_upper_bound_within_10_percent_and_scaling_makes_it_one(shape, size):
    """Issue 21: the input layer's contraction bound must be tight, so gamma is what the layer gets."""
    from tenfold.implicit import conv_operator_bound, scale_conv

    w = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=D64)
    true = _conv_operator_norm(w, size)
    bound = float(conv_operator_bound(w, size))
    assert true <= bound * (1 + 1e-9) and bound <= 1.1 * true
    scaled = scale_conv(w, size)
    assert float(conv_operator_bound(scaled, size)) == pytest.approx(1.0, abs=1e-12)
    assert _conv_operator_norm(scaled, size) >= 0.9  # the old sqrt(k h k w) normalisation gave 0.35-0.7 here


def test_jacobian_norm_matches_a_linear_map_and_ift_backward_stats_are_recorded():
    from tenfold.implicit import jacobian_norm

    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g, dtype=D64)
    a = 0.8 * a / torch.linalg.matrix_norm(a, ord=2)
    assert jacobian_norm(lambda z: z @ a.T, torch.zeros(1, 6, dtype=D64), iterations=200) == pytest.approx(0.8, rel=1e-6)
    theta = torch.nn.Parameter(torch.randn(6, generator=g, dtype=D64))
    solver = EquilibriumSolver(SolverSettings(solver="fixed_point", backward="ift", b_solver="fixed_point",
                                              b_tol=1e-8, b_max_iter=200, f_tol=1e-10, f_max_iter=200)).train()
    z = solver(lambda z: torch.tanh(z @ a.T + theta), torch.zeros(3, 6, dtype=D64))
    assert solver.last_backward_info is None
    z.sum().backward()
    info = solver.last_backward_info
    assert info is not None and info.max_residual <= 1e-8 and info.mean_steps >= 2
