"""Nesterov's worst-case quadratic with smoothness L and strong convexity mu (Nesterov 2004, Section 2.1.4).

f(x) = (L - mu)/8 [x_1^2 + sum_i (x_i - x_{i+1})^2 - 2 x_1] + mu |x|^2 / 2.
On it AGD and heavy ball need O(sqrt(kappa) log(1/eps)) queries, GD O(kappa log(1/eps)): the contrast to
the PL instance, where no first-order method beats O(kappa log(1/eps)).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.linalg import solveh_banded

from tenfold.errors import require


class NesterovQuadratic:
    """f above on R^dim; ``optimum`` is computed once by a banded Cholesky solve (float64)."""

    def __init__(self, dim: int, L: float, mu: float, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu"):
        require(isinstance(dim, int) and dim >= 2, "dim", dim, "an integer dimension >= 2")
        require(L > 0, "L", L, "a positive smoothness constant")
        require(0 < mu < L, "mu", mu, f"a strong-convexity constant in (0, L={L})")
        self.dim, self.L, self.mu = dim, float(L), float(mu)
        self._a = (self.L - self.mu) / 4.0  # f = a/2 x^T A x - a x_1 + mu/2 |x|^2, A tridiagonal
        self.dtype, self.device = dtype, device
        diag = np.full(dim, 2.0)
        diag[-1] = 1.0
        banded = np.zeros((2, dim))
        banded[0, 1:] = -self._a
        banded[1] = self._a * diag + self.mu
        rhs = np.zeros(dim)
        rhs[0] = self._a
        self.optimum = torch.as_tensor(solveh_banded(banded, rhs), dtype=dtype, device=device)
        self.min_value = float(self.value(self.optimum))

    @property
    def start(self) -> torch.Tensor:
        return torch.zeros(self.dim, dtype=self.dtype, device=self.device)

    def _Ax(self, x: torch.Tensor) -> torch.Tensor:
        diff = x[:-1] - x[1:]
        out = torch.cat([diff, diff.new_zeros(1)]) - torch.cat([diff.new_zeros(1), diff])
        out[0] += x[0]
        return out

    def value(self, x: torch.Tensor) -> torch.Tensor:
        chain = x[0].square() + (x[:-1] - x[1:]).square().sum() - 2.0 * x[0]
        return self._a / 2.0 * chain + self.mu / 2.0 * x.square().sum()

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grad = self._a * self._Ax(x) + self.mu * x
        grad[0] -= self._a
        return self.value(x), grad
