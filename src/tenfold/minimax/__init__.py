"""Mixed Nash equilibria of nonconvex-nonconcave games: PAPAL (Ding et al., JMLR 2024), baselines, measures.

- :mod:`~tenfold.minimax.games`: payoffs and gradients in batch, low-rank games, the spec's test games.
- :mod:`~tenfold.minimax.papal`: the exact outer loop on a grid and the particle algorithm (ULA / MALA).
- :mod:`~tenfold.minimax.baselines`: pure GDA, mean-field Langevin DA, WFR-DA mirror-prox, weight-only.
- :mod:`~tenfold.minimax.equilibrium`: NI error, exact regularized gap, 1-D Wasserstein-1.
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

__all__ = [
    "CallableGame", "Game", "GaussianProxyGame", "GridHistory", "LowRankGame", "MatchingPennies",
    "OpponentAverage", "PapalResult", "SinusoidGame", "exact_outer_loop", "gda", "langevin", "mfl_da",
    "momentum", "ni_error", "ni_matching_pennies", "papal", "regularized_gap", "sample_prior", "wasserstein1",
    "wfr_da",
]
