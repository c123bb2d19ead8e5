"""``tenfold bench lion``: memory of implicit differentiation vs unrolled backprop, and solver steps.

1. Training memory (bytes autograd saves) of LION's pixel-space equilibrium layer (3x32x32 images) when the
   forward runs exactly K = 10 and K = 50 fixed-point iterations: implicit differentiation keeps one f call
   on the tape (target: memory(K=50) / memory(K=10) <= 1.05), unrolled backprop keeps all K (grows ~K).
   Time per training step at K = 50 is measured too (interleaved medians).
2. Forward solver steps to the same relative tolerance: our scale-invariant Anderson, torchdeq's Anderson
   and fixed-point iteration, on the LION layer (a strong contraction: few steps for all) and on a slowly
   contracting map (symmetric, spectral radius 0.95), where acceleration matters.
"""

from __future__ import annotations

import torch

from tenfold.benchmarks.common import SavedTensorBytes, fixed_threads, median_times, target
from tenfold.implicit import EquilibriumSolver, SolverSettings, unrolled_fixed_point
from tenfold.tuning.lion import InputPromptLayer

NAME = "lion"
DESCRIPTION = "LION equilibrium layers: IFT memory flat in iterations vs unrolled; Anderson vs fixed-point steps"


def lion_input_layer(seed: int = 0, channels: int = 3, hidden: int = 8) -> InputPromptLayer:
    """A LION input layer with non-zero U and b (as after training), so z* != 0."""
    g = torch.Generator().manual_seed(seed)
    layer = InputPromptLayer(channels, hidden=hidden, gamma=0.9, generator=g)
    with torch.no_grad():
        layer.u.copy_(torch.randn(layer.u.shape, generator=g) / 3)
        layer.b.copy_(torch.randn(layer.b.shape, generator=g) / 3)
    return layer


def images(batch: int, size: int, seed: int = 1, channels: int = 3) -> torch.Tensor:
    return torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


def training_memory(iterations: int, mode: str, batch: int, size: int) -> int:
    """Saved-tensor bytes of one forward of the layer's fixed point with exactly ``iterations`` f calls."""
    layer = lion_input_layer().train()
    x = images(batch, size)
    if mode == "ift":
        # f_tol below float32 resolution: the solver runs all iterations, as unrolled backprop does.
        layer.solver = EquilibriumSolver(SolverSettings(solver="fixed_point", f_max_iter=iterations, f_tol=1e-30,
                                                        on_nonconvergence="ignore")).train()
    with SavedTensorBytes() as meter:
        if mode == "ift":
            z = layer.prompt(x)
        else:
            z = unrolled_fixed_point(*layer.equation(x), steps=iterations)
    del z
    return meter.bytes


def step_time(iterations: int, mode: str, batch: int, size: int, repeats: int) -> dict[str, float]:
    layer = lion_input_layer().train()
    layer.solver = EquilibriumSolver(SolverSettings(solver="fixed_point", f_max_iter=iterations, f_tol=1e-30,
                                                    on_nonconvergence="ignore")).train()
    x = images(batch, size)

    def ift():
        layer.zero_grad()
        layer.prompt(x).square().sum().backward()

    def unrolled():
        layer.zero_grad()
        unrolled_fixed_point(*layer.equation(x), steps=iterations).square().sum().backward()

    return median_times({"ift": ift, "unrolled": unrolled}, repeats=repeats)


def slow_contraction(dim: int = 64, batch: int = 16, gamma: float = 0.95):
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g))
    a = q @ torch.diag(torch.linspace(-gamma, gamma, dim)) @ q.T
    x = 0.1 * torch.randn(batch, dim, generator=g)
    return (lambda z: torch.tanh(z @ a + x)), torch.zeros(batch, dim)


def solver_steps(f, z0, tol: float) -> dict[str, dict[str, float]]:
    out = {}
    for name in ("anderson", "anderson_torchdeq", "fixed_point"):
        solver = EquilibriumSolver(SolverSettings(solver=name, f_tol=tol, eval_f_max_iter=2000,
                                                  on_nonconvergence="ignore")).eval()
        with torch.no_grad():
            solver(f, z0)
        info = solver.last_info
        out[name] = {"steps": info.mean_steps, "max_residual": info.max_residual, "converged": info.converged}
    return out


def run(quick: bool = False) -> dict:
    batch, size = (8, 16) if quick else (16, 32)
    repeats = 2 if quick else 5
    with fixed_threads(1):
        memory = {mode: {k: training_memory(k, mode, batch, size) for k in (10, 50)} for mode in ("ift", "unrolled")}
        times = step_time(50, "ift", batch, size, repeats)
        layer = lion_input_layer().eval()
        with torch.no_grad():
            lion_problem = layer.equation(images(batch, size))
            steps = {"lion_input_layer": solver_steps(*lion_problem, tol=1e-5),
                     "slow_contraction": solver_steps(*slow_contraction(), tol=1e-5)}
    ift_growth = memory["ift"][50] / memory["ift"][10]
    unrolled_growth = memory["unrolled"][50] / memory["unrolled"][10]
    slow = steps["slow_contraction"]
    lion = steps["lion_input_layer"]
    return {
        "setup": {"images": [batch, 3, size, size], "hidden": 8, "gamma": 0.9, "tolerance": 1e-5},
        "saved_bytes": memory,
        "ift_memory_ratio_50_vs_10": ift_growth,
        "unrolled_memory_ratio_50_vs_10": unrolled_growth,
        "unrolled_over_ift_memory_at_50": memory["unrolled"][50] / memory["ift"][50],
        "step_seconds_at_50": times,
        "unrolled_over_ift_time_at_50": times["unrolled"] / times["ift"],
        "solver_steps": steps,
        # Reported, not a target: on a strong contraction plain iteration converges in a few steps and
        # Anderson's two unmixed start-up iterations make it no faster.
        "anderson_over_fixed_point_steps_lion_layer": lion["anderson"]["steps"] / lion["fixed_point"]["steps"],
        "targets": [
            target("IFT training memory, 50 vs 10 iterations", ift_growth, "<= 1.05", ift_growth <= 1.05),
            target("unrolled training memory, 50 vs 10 iterations", unrolled_growth, ">= 4 (grows with K)",
                   unrolled_growth >= 4),
            target("Anderson / fixed-point steps, slow contraction", slow["anderson"]["steps"]
                   / slow["fixed_point"]["steps"], "< 1", slow["anderson"]["steps"] < slow["fixed_point"]["steps"]),
            target("our Anderson / torchdeq Anderson steps, slow contraction", slow["anderson"]["steps"]
                   / slow["anderson_torchdeq"]["steps"], "< 1",
                   slow["anderson"]["steps"] < slow["anderson_torchdeq"]["steps"]),
        ],
    }
