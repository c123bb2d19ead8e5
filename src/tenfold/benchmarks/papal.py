"""``tenfold bench papal``: the cost of particle PAPAL with the low-rank path against the generic path.

1. The spec's particle run (1.8.2: M = 1000, T = 60, K = 1500, iota = .005) with the low-rank path, timed
   end to end (wall and CPU seconds; target <= 10 s wall on a 2-core laptop).
2. One Langevin gradient of the potential with a pool of P past sets: the low-rank path (K feature means,
   O(M K)) against the generic path (O(P M^2) payoffs); the generic full-run time is extrapolated from it,
   because running it (about 2 T K gradients of up to 1000 x 60000 payoffs) is out of reach on a CPU.
3. Growth of the low-rank run's time in M (slope of log time against log M, close to 1).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from tenfold.benchmarks.common import fixed_threads, median_times, target
from tenfold.minimax import OpponentAverage, SinusoidGame, momentum, papal

NAME = "papal"
DESCRIPTION = "particle PAPAL: low-rank vs generic potential gradients, full-run time, growth in M"


def _run(M: int, T: int, K: int, step: float = 0.005, seed: int = 0) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    papal(SinusoidGame(), lam1=0.05, lam2=0.1, particles=M, outer_steps=T, inner_steps=K, step=step,
          generator=torch.Generator().manual_seed(seed))
    return time.perf_counter() - t0, time.process_time() - c0


def _potentials(M: int, pool: int) -> tuple[OpponentAverage, OpponentAverage]:
    game, gen = SinusoidGame(), torch.Generator().manual_seed(0)
    mu = momentum(0.1)
    fast, slow = OpponentAverage(game, "y", 100, True), OpponentAverage(game, "y", 100, False)
    for _ in range(pool):
        x = torch.randn(M, 1, generator=gen, dtype=torch.float64)
        for pot in (fast, slow):
            pot.decay(mu)
            pot.add(x, -0.1)
    return fast, slow


def run(quick: bool = False) -> dict:
    M, T, K = 1000, (10 if quick else 60), 1500
    with fixed_threads(1):
        wall, cpu = _run(M, T, K)
        pool = 10 if quick else 60
        fast, slow = _potentials(M, pool)
        y = torch.randn(M, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        assert torch.allclose(fast.grad(y), slow.grad(y), atol=1e-10)  # both paths compute the same gradient
        per_grad = median_times({"low_rank": lambda: fast.grad(y), "generic": lambda: slow.grad(y)},
                                repeats=3 if quick else 5)
        sizes = [4000, 16000, 64000] if not quick else [4000, 16000]
        times = [median_times({"run": lambda m=m: _run(m, 3, 100)}, repeats=1 if quick else 3, warmup=0)["run"]
                 for m in sizes]
    slope = float(np.polyfit(np.log(sizes), np.log(times), 1)[0])
    gradients = 2 * T * K
    generic_extrapolated = per_grad["generic"] * gradients  # pools of up to 10/lam2 = 100 sets; T sets here
    return {
        "config": {"M": M, "T": T, "K": K, "iota": 0.005, "lam1": 0.05, "lam2": 0.1, "threads": 1},
        "low_rank_run_wall_s": wall,
        "low_rank_run_cpu_s": cpu,
        "gradient_s": per_grad,
        "pool_sets": pool,
        "generic_over_low_rank_per_gradient": per_grad["generic"] / per_grad["low_rank"],
        "generic_run_extrapolated_s": generic_extrapolated,
        "growth": {"M": sizes, "seconds": times, "slope_log_time_vs_log_M": slope},
        "targets": [
            target(f"low-rank run M={M}, T={T}, K={K}: wall seconds", wall, "<= 10", wall <= 10.0),
            target("generic / low-rank time per potential gradient", per_grad["generic"] / per_grad["low_rank"],
                   ">= 10", per_grad["generic"] / per_grad["low_rank"] >= 10),
            target("slope of log time vs log M (low-rank path)", slope, "in [0.8, 1.2]", 0.8 <= slope <= 1.2),
        ],
    }
