"""Theorem 6's extension to deterministic methods that are not zero-respecting (Carmon, Duchi, Hinder and
Sidford 2020, Prop. 1): a resisting oracle that builds the rotation as the method runs.

The method sees f(z) = g(y - U^T z) on R^N, z_0 = 0, with U = [u_1 .. u_n] (N x n, orthonormal columns).
The columns are drawn lazily: u_j is revealed only when the zero-chain needs coordinate j (the gradient at
x = U^T z has support 1..j), and it is drawn at random orthogonal to every query made so far and to the
revealed columns. Every unrevealed u_j is then orthogonal to every query, so x_k = U^T z_k has support in
the revealed coordinates, and a query reveals at most one new one: after k queries at most k coordinates
of x have moved, for any deterministic method (Adam, preconditioned GD, ...) in its own coordinates, and
the T t / 2 bound of Theorem 4 applies to it. N must exceed n + the number of queries.

:class:`RandomRotation` is the non-adaptive contrast: f(z) = g(U z) for a Haar U in the same dimension.
"""

from __future__ import annotations

import torch

from tenfold.errors import require
from tenfold.pl.hard_function import HardFunction


class ResistingRotation:
    """The oracle of f(z) = g(y - U^T z) with U built adaptively (see the module docstring)."""

    def __init__(self, base: HardFunction, ambient: int, generator: torch.Generator):
        require(ambient > base.dim, "ambient", ambient, f"an ambient dimension above n = {base.dim}")
        self.base, self.ambient, self.generator = base, ambient, generator
        like = dict(dtype=base.anchors.dtype, device=base.anchors.device)
        self.columns = torch.zeros(ambient, base.dim, **like)  # u_j, zero until revealed
        self.revealed = 0
        self._basis = torch.zeros(ambient, 0, **like)  # orthonormal basis of queries and revealed columns
        self.queries = 0

    @property
    def dim(self) -> int:
        return self.ambient

    @property
    def start(self) -> torch.Tensor:
        return torch.zeros(self.ambient, dtype=self.base.anchors.dtype, device=self.base.anchors.device)

    def _orthogonal(self, v: torch.Tensor) -> torch.Tensor:
        for _ in range(2):  # twice is enough (Kahan-Parlett)
            v = v - self._basis @ (self._basis.T @ v)
        return v

    def _extend(self, v: torch.Tensor) -> None:
        v = self._orthogonal(v)
        norm = v.norm()
        if norm > 1e-10 * max(1.0, float(self._basis.abs().max()) if self._basis.numel() else 1.0):
            self._basis = torch.cat([self._basis, (v / norm)[:, None]], 1)

    def _reveal(self) -> None:
        require(self._basis.shape[1] < self.ambient, "ambient", self.ambient,
                "more dimensions (the oracle ran out of directions orthogonal to the queries)")
        u = self._orthogonal(torch.randn(self.ambient, generator=self.generator, dtype=self._basis.dtype,
                                         device=self._basis.device))
        u = u / u.norm()
        self.columns[:, self.revealed] = u
        self.revealed += 1
        self._basis = torch.cat([self._basis, u[:, None]], 1)

    def point(self, z: torch.Tensor) -> torch.Tensor:
        """x = U^T z (unrevealed coordinates are 0: their columns are orthogonal to every query)."""
        return self.columns.T @ z

    def value(self, z: torch.Tensor) -> torch.Tensor:
        return self.base.value(self.base.anchors - self.point(z))

    def value_and_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.queries += 1
        self._extend(z)
        x = self.point(z)
        _, grad = self.base.value_and_grad(self.base.anchors - x)
        moved = torch.nonzero(grad)
        needed = int(moved[-1]) + 1 if moved.numel() else 0
        while self.revealed < min(needed, self.base.dim):
            self._reveal()
        value, grad = self.base.value_and_grad(self.base.anchors - self.point(z))
        return value, -(self.columns @ grad)

    def moved_coordinates(self, z: torch.Tensor) -> int:
        """Largest 1-based index of x = U^T z that is nonzero (the chain's progress)."""
        x = self.point(z)
        moved = torch.nonzero(x.abs() > 1e-12 * float(self.base.anchors.abs().max()))
        return int(moved[-1]) + 1 if moved.numel() else 0


class RandomRotation:
    """f(z) = g(U z) for a Haar-random orthogonal U in the same dimension, z_0 = U^T y (no adaptivity)."""

    def __init__(self, base: HardFunction, generator: torch.Generator):
        self.base, self.dim = base, base.dim
        a = torch.randn(base.dim, base.dim, generator=generator, dtype=base.anchors.dtype,
                        device=base.anchors.device)
        q, r = torch.linalg.qr(a)
        self.rotation = q * torch.sign(torch.diagonal(r))

    @property
    def start(self) -> torch.Tensor:
        return self.rotation.T @ self.base.anchors

    def value(self, z: torch.Tensor) -> torch.Tensor:
        return self.base.value(self.rotation @ z)

    def value_and_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value, grad = self.base.value_and_grad(self.rotation @ z)
        return value, self.rotation.T @ grad
