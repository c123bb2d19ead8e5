"""Equilibrium (DEQ) layers on torchdeq: solve z* = f(z*) and differentiate through the fixed point.

Forward (Bai et al. 2019, Sec. 3): a root solver (Anderson acceleration, Broyden, or plain fixed-point
iteration) runs without autograd until the relative residual ||f(z) - z|| / ||f(z)|| <= f_tol or the
iteration cap is hit. Backward, two options:

- implicit differentiation (IFT): one call f(z*) is put on the tape and its backward solves
  g = J_f(z*)^T g + dL/dz* for g, so dL/dtheta = g^T df/dtheta; memory does not grow with iterations;
- phantom gradients (Geng et al. 2021): backprop through k damped steps z <- tau f(z) + (1 - tau) z
  started at z*; k = 1, tau = 1 is Jacobian-free backpropagation (Fung et al. 2022).

The solver's statistics (per-sample relative residual, steps) of the last call are kept in
:attr:`EquilibriumSolver.last_info`; a residual above ``f_tol`` is reported by a warning
(:class:`NonConvergenceWarning`) or a :class:`~tenfold.errors.ConvergenceError`, as configured.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torchdeq.core import DEQIndexing

from tenfold.errors import ConvergenceError, require
from tenfold.implicit import anderson as _anderson
from tenfold.second_order import refuse_second_order, second_order

# "anderson" is our scale-invariant Anderson (see tenfold.implicit.anderson); "anderson_torchdeq" is
# torchdeq's own, kept for comparison.
SOLVERS = {"anderson": _anderson.NAME, "broyden": "broyden", "fixed_point": "fixed_point_iter",
           "anderson_torchdeq": "anderson"}
ANDERSON = ("anderson", "anderson_torchdeq")
BACKWARDS = ("ift", "phantom")
ON_NONCONVERGENCE = ("warn", "raise", "ignore")


class NonConvergenceWarning(RuntimeWarning):
    """The forward solver stopped with a relative residual above ``f_tol``."""


@dataclass(frozen=True)
class SolverSettings:
    """How an equilibrium layer is solved and differentiated.

    ``f_max_iter`` caps the forward solver in training, ``eval_f_max_iter`` in evaluation.
    ``backward="ift"`` uses implicit differentiation (``b_solver`` to ``b_tol`` within ``b_max_iter``);
    ``backward="phantom"`` backpropagates through ``phantom_steps`` steps damped by ``tau``.
    """

    solver: str = "anderson"
    f_max_iter: int = 30
    eval_f_max_iter: int = 50
    f_tol: float = 1e-4
    anderson_m: int = 5
    backward: str = "ift"
    phantom_steps: int = 1
    tau: float = 1.0
    b_solver: str = "anderson"
    b_max_iter: int = 30
    b_tol: float = 1e-6
    on_nonconvergence: str = "warn"

    def __post_init__(self) -> None:
        require(self.solver in SOLVERS, "solver", self.solver, f"one of {', '.join(SOLVERS)}")
        require(self.b_solver in SOLVERS, "b_solver", self.b_solver, f"one of {', '.join(SOLVERS)}")
        require(self.backward in BACKWARDS, "backward", self.backward, f"one of {', '.join(BACKWARDS)}")
        require(self.on_nonconvergence in ON_NONCONVERGENCE, "on_nonconvergence", self.on_nonconvergence,
                f"one of {', '.join(ON_NONCONVERGENCE)}")
        for name in ("f_max_iter", "eval_f_max_iter", "b_max_iter", "phantom_steps"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1, name, value, "an integer >= 1")
        # Anderson keeps two initial iterates before mixing; fewer than 3 iterations never mixes.
        require(self.anderson_m >= 2, "anderson_m", self.anderson_m, "an integer >= 2")
        for name in ("f_tol", "b_tol"):
            value = getattr(self, name)
            require(value > 0, name, value, "a tolerance > 0")
        require(0 < self.tau <= 1, "tau", self.tau, "a damping factor in (0, 1]")


@dataclass
class SolverInfo:
    """Statistics of one forward solve: per-sample relative residual and steps, and the tolerance."""

    residual: torch.Tensor
    steps: torch.Tensor
    f_tol: float

    @property
    def max_residual(self) -> float:
        return float(self.residual.max())

    @property
    def converged(self) -> bool:
        return self.max_residual <= self.f_tol

    @property
    def mean_steps(self) -> float:
        return float(self.steps.float().mean())


@second_order("refuses", alternative="the IFT backward solves J^T g = g + dL/dz* without a graph; for second "
              "derivatives use SolverSettings(backward='phantom') (plain autograd through the phantom steps) "
              "or unrolled_fixed_point")
class _IFTOutput(torch.autograd.Function):
    """Identity on z*; its backward stops ``create_graph=True`` before torchdeq's IFT backward, whose
    adjoint solve is not recorded (second derivatives through it would silently miss every term of
    the solve)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        return z.view_as(z)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        refuse_second_order(_IFTOutput)
        return grad


class EquilibriumSolver(nn.Module):
    """Solves z* = f(z*) with torchdeq and returns z* wired for the chosen backward.

    ``f`` is any callable mapping a tensor to one of the same shape (close over the input x, e.g.
    ``solver(lambda z: layer.f(z, x), z0)``). In training the returned tensor is ``f(z*)`` on the
    autograd tape (the only f call recorded there); in evaluation it is z* without a graph to the solver.
    Under ``backward="ift"`` a second derivative (``create_graph=True``) is refused with a one-line
    SecondOrderError; ``backward="phantom"`` is plain autograd and has exact second derivatives.
    """

    def __init__(self, settings: SolverSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or SolverSettings()
        self.deq = self._make_deq(self.settings)
        self.last_info: SolverInfo | None = None
        self.last_backward_info: SolverInfo | None = None  # the IFT backward solve's (set during backward)

    @staticmethod
    def _make_deq(s: SolverSettings) -> DEQIndexing:
        grad = {"ift": {"ift": True}, "phantom": {"grad": s.phantom_steps, "tau": s.tau}}[s.backward]
        return DEQIndexing(
            f_solver=SOLVERS[s.solver], b_solver=SOLVERS[s.b_solver], f_max_iter=s.f_max_iter,
            eval_f_max_iter=s.eval_f_max_iter, f_tol=s.f_tol, f_stop_mode="rel", b_max_iter=s.b_max_iter,
            b_tol=s.b_tol, b_stop_mode="rel", **grad,
        )

    def __getstate__(self) -> dict:
        # torchdeq's DEQIndexing keeps closures (its backward functions), which pickle cannot store; it is
        # rebuilt from the settings (it has no tensors), so torch.save(model) of a model using it works.
        state = super().__getstate__().copy()
        state["_modules"] = {k: v for k, v in state["_modules"].items() if k != "deq"}
        state.pop("deq", None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.deq = self._make_deq(self.settings)

    def _backward_writer(self, info: dict) -> None:
        self.last_backward_info = SolverInfo(residual=info["rel_lowest"].detach(), steps=info["nstep"].detach(),
                                             f_tol=self.settings.b_tol)

    def forward(self, f: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor) -> torch.Tensor:
        s = self.settings
        kwargs = {"m": s.anderson_m} if s.solver in ANDERSON else {}
        trajectory, info = self.deq(f, z0, solver_kwargs=kwargs, backward_writer=self._backward_writer)
        self.last_info = SolverInfo(residual=info["rel_lowest"].detach(), steps=info["nstep"].detach(), f_tol=s.f_tol)
        self._report(self.last_info)
        z = trajectory[-1]
        if s.backward == "ift" and z.requires_grad:
            z = _IFTOutput.apply(z)
        return z

    def _report(self, info: SolverInfo) -> None:
        if info.converged or self.settings.on_nonconvergence == "ignore":
            return
        cap = self.deq.f_max_iter if self.training else self.deq.eval_f_max_iter
        message = (f"equilibrium solver '{self.settings.solver}' did not converge: relative residual "
                   f"{info.max_residual:.3g} > f_tol={self.settings.f_tol:g} after {cap} iterations")
        if self.settings.on_nonconvergence == "raise":
            raise ConvergenceError(message)
        warnings.warn(message, NonConvergenceWarning, stacklevel=2)


def unrolled_fixed_point(f: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, steps: int) -> torch.Tensor:
    """z_{k+1} = f(z_k) for ``steps`` steps, all on the autograd tape (the memory-hungry reference
    that implicit differentiation replaces)."""
    require(steps >= 1, "steps", steps, "an integer >= 1")
    z = z0
    for _ in range(steps):
        z = f(z)
    return z


def jacobian_norm(f: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, iterations: int = 30,
                  seed: int = 0) -> float:
    """||J_f(z)||_2 by power iteration on J^T J (jvp then vjp; a lower estimate that converges to the
    norm). For a batch, f acts per sample and this is the largest sample's norm."""
    from torch.func import jvp, vjp

    g = torch.Generator().manual_seed(seed)
    v = torch.randn(z.shape, generator=g).to(z)
    v = v / v.norm()
    _, pullback = vjp(f, z)
    sigma = 0.0
    for _ in range(iterations):
        with warnings.catch_warnings():
            # forward-mode AD scripts torch's own jvp decompositions on first use, and torch then warns that
            # torch.jit.script is deprecated: nothing a user can act on
            warnings.filterwarnings("ignore", r".*torch\.jit\.script.* is deprecated", FutureWarning)
            jv = jvp(f, (z,), (v,))[1]
        sigma = float(jv.norm())
        w = pullback(jv)[0]
        if float(w.norm()) == 0.0:
            return 0.0
        v = w / w.norm()
    return sigma
