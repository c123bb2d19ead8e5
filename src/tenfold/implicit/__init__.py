"""Implicit (equilibrium) layers: fixed-point solvers, implicit and phantom gradients, contractive maps."""

from tenfold.implicit.deq import (
    EquilibriumSolver,
    NonConvergenceWarning,
    SolverInfo,
    SolverSettings,
    jacobian_norm,
    unrolled_fixed_point,
)
from tenfold.implicit.lipschitz import (conv_lipschitz_bound, conv_operator_bound, normalize_conv, normalize_linear,
                                        scale_conv, scale_linear)

__all__ = [
    "EquilibriumSolver", "NonConvergenceWarning", "SolverInfo", "SolverSettings", "jacobian_norm", "unrolled_fixed_point",
    "conv_lipschitz_bound", "conv_operator_bound", "normalize_conv", "normalize_linear", "scale_conv", "scale_linear",
]
