"""Mixed Nash equilibria of nonconvex-nonconcave games: PAPAL (Ding et al., JMLR 2024), baselines, measures.

- :mod:`~tenfold.minimax.games`: payoffs and gradients in batch, low-rank games, the spec's test games.
- :mod:`~tenfold.minimax.papal`: the exact outer loop on a grid and the particle algorithm (ULA / MALA).
- :mod:`~tenfold.minimax.baselines`: pure GDA, mean-field Langevin DA, WFR-DA mirror-prox, weight-only.
- :mod:`~tenfold.minimax.equilibrium`: NI error, exact regularized gap, 1-D Wasserstein-1.
- :mod:`~tenfold.minimax.solve`: ``solve(game, method)``, the entry point for your own game: a Solution
  with particles, weights, NI error, regularized gap estimate and a Trajectory (JSON, plot).
"""

from tenfold.minimax.baselines import gda, mfl_da, wfr_da
from tenfold.minimax.equilibrium import ni_error, ni_matching_pennies, regularized_gap, wasserstein1
from tenfold.minimax.games import (
    CallableGame,
    Game,
    GaussianProxyGame,
    LowRankGame,
    MatchingPennies,
    SinusoidGame,
)
from tenfold.minimax.papal import (
    GridHistory,
    OpponentAverage,
    PapalResult,
    exact_outer_loop,
    langevin,
    momentum,
    papal,
    sample_prior,
)
from tenfold.minimax.solve import Solution, Trajectory, plot_trajectory, solve

__all__ = [
    "CallableGame", "Game", "GaussianProxyGame", "GridHistory", "LowRankGame", "MatchingPennies",
    "OpponentAverage", "PapalResult", "SinusoidGame", "exact_outer_loop", "gda", "langevin", "mfl_da",
    "momentum", "ni_error", "ni_matching_pennies", "papal", "plot_trajectory", "regularized_gap", "sample_prior",
    "Solution", "solve", "Trajectory", "wasserstein1", "wfr_da",
]
