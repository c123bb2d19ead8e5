"""The PL lower bound (Yue, Fang and Lin, COLT 2023): the hard function, first-order methods, the bound.

- :mod:`~tenfold.pl.hard_function`: the separable tent piece v_y, the chain quadratic, the hard function g
  and its scaled version (Section 3, eqs. (9)-(14)).
- :mod:`~tenfold.pl.lower_bound`: the bound T t / 2, the corrected accuracy relation, constants and checks.
- :mod:`~tenfold.pl.methods`: GD, Nesterov AGD, heavy ball and Adam behind one first-order interface.
- :mod:`~tenfold.pl.quadratic`: Nesterov's worst-case quadratic for contrast.
"""

from tenfold.pl.hard_function import HardFunction, ScaledHardFunction, tent, v_grad, v_value
from tenfold.pl.lower_bound import (
    C3,
    chain_blocks_for,
    hessian_norm,
    lower_bound_queries,
    pl_constant,
    pl_ratio,
    relative_value_floor,
)
from tenfold.pl.methods import METHODS, CountingOracle, Trace, adam, agd, gd, heavy_ball, method_by_name, run_method
from tenfold.pl.quadratic import NesterovQuadratic
from tenfold.pl.rotation import RandomRotation, ResistingRotation

__all__ = [
    "C3", "METHODS", "CountingOracle", "HardFunction", "NesterovQuadratic", "RandomRotation", "ResistingRotation", "ScaledHardFunction", "Trace", "adam", "agd",
    "chain_blocks_for", "gd", "heavy_ball", "hessian_norm", "lower_bound_queries", "method_by_name", "pl_constant", "pl_ratio",
    "relative_value_floor", "run_method", "tent", "v_grad", "v_value",
]
