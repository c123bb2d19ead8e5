"""The hard PL instance of Yue, Fang and Lin (2023), Section 3.

Separable piece (eq. (9)): for an anchor y > 0 the tent b_y(x) = max(0, y - 32|x - y|) and
v_y'(x) = x - b_y(x), so v_y(x) = x^2/2 - B_y(x) with B_y the integral of the tent. v_y >= 0 with its
minimum 0 at x = 0, and y is a flat, non-minimizing stationary point: v_y(y) = 31 y^2/64, v_y'(y) = 0.

Chain quadratic (eq. (11)): with x_0 := 0 and n = T t coordinates in t blocks of length T,
q(x) = 1/2 sum_k r_k^2 with residuals r_k = c_k x_{k-1} - x_k, c_k = 7/8 at a block start, 1 inside.

Hard function (eq. (12)): g = q + sum_k v_{y_k}(x_k) with anchors y_{qT+b} = (7/8)^q; g* = 0 at 0.
The start is x = y, where g(y) = 1/2 + T (31/15)(1 - (7/8)^(2t)) and grad g(y) = e_1: g(y - z) is a
zero-chain in z, so a first-order method moves one new coordinate per gradient query at most.
Lemma 2: g is 37-smooth and 1/(C3 T)-PL.

Everything is a closed form in the tensors' dtype (float64 recommended); the anchors are built by
repeated multiplication by 0.875 so that untouched cross-block residuals are exactly 0.
"""

from __future__ import annotations

import math

import torch

from tenfold.errors import require

DECAY = 0.875  # 7/8, exact in binary floating point


def tent(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """b_y(x) = max(0, y - 32 |x - y|): a tent of height y on [31y/32, 33y/32]."""
    return torch.relu(y - 32.0 * (x - y).abs())


def _tent_integral(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """B_y(x) = int_{-inf}^x b_y: 0 left of the tent, y^2/32 right of it, two parabolas between."""
    a, c = y * (31.0 / 32.0), y * (33.0 / 32.0)
    left = torch.minimum(torch.maximum(x, a), y) - a
    right = torch.minimum(torch.maximum(x, y), c) - c
    # (y - c)^2 - right^2 is exactly 0 left of the peak, so B = 0 and g(0) = 0 hold exactly
    return 16.0 * (left.square() + (y - c).square() - right.square())


def v_value(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """v_y(x) = x^2/2 - B_y(x) elementwise (paper eq. (9))."""
    return 0.5 * x.square() - _tent_integral(x, y)


def v_grad(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """v_y'(x) = x - b_y(x) elementwise."""
    return x - tent(x, y)


def v_curvature(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """v_y''(x): 1 outside the tent, -31 on its rising side, 33 on its falling side."""
    inside = (x - y).abs() < y / 32.0
    return 1.0 + 32.0 * torch.where(inside, torch.sign(x - y), torch.zeros_like(x))


class HardFunction:
    """g(x) = q(x) + sum_k v_{y_k}(x_k) on R^(T t); ``start`` is the anchor vector y.

    ``value_and_grad(x)`` is the first-order oracle (one call = one gradient query).
    """

    def __init__(self, T: int, t: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
                 tents: bool = True):
        require(isinstance(T, int) and T >= 1, "T", T, "an integer block length >= 1")
        require(isinstance(t, int) and t >= 2 and t % 2 == 0, "t", t, "an even integer number of blocks >= 2")
        self.T, self.t, self.dim = T, t, T * t
        # tents=False is an ablation, not the paper's instance: v_y(x) = x^2/2 without the tent, so g is the
        # strongly convex q + |x|^2/2 (condition number <= 5 whatever T) with no flat stationary points
        self.tents = bool(tents)
        blocks = torch.empty(t, dtype=dtype, device=device)
        blocks[0] = 1.0
        for q in range(1, t):  # repeated multiplication: fl(0.875 * y_{k-1}) == y_k exactly
            blocks[q] = DECAY * blocks[q - 1]
        self.anchors = blocks.repeat_interleave(T)
        coupling = torch.ones(self.dim, dtype=dtype, device=device)
        coupling[::T] = DECAY
        coupling[0] = 0.0  # x_0 := 0
        self.coupling = coupling

    @property
    def start(self) -> torch.Tensor:
        return self.anchors.clone()

    @property
    def start_value(self) -> float:
        """g(y) = 1/2 + T (31/15)(1 - (7/8)^(2t))."""
        return 0.5 + self.T * (31.0 / 15.0) * (1.0 - DECAY ** (2 * self.t))

    def residuals(self, x: torch.Tensor) -> torch.Tensor:
        """r_k = c_k x_{k-1} - x_k (r_1 = -x_1)."""
        prev = torch.cat([x.new_zeros(1), x[:-1]])
        return self.coupling * prev - x

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.residuals(x).square().sum() + self._v(x).sum()

    def _v(self, x: torch.Tensor) -> torch.Tensor:
        return v_value(x, self.anchors) if self.tents else 0.5 * x.square()

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return self.value_and_grad(x)[1]

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.residuals(x)
        ahead = torch.cat([(self.coupling[1:] * r[1:]), r.new_zeros(1)])
        grad = ahead - r + (v_grad(x, self.anchors) if self.tents else x)
        value = 0.5 * r.square().sum() + self._v(x).sum()
        return value, grad

    def hvp(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Hessian-vector product (B + diag v'') u; B is the chain's tridiagonal matrix, 0 <= B <= 4I."""
        ru = self.residuals(u)
        chain = torch.cat([(self.coupling[1:] * ru[1:]), ru.new_zeros(1)]) - ru
        return chain + (v_curvature(x, self.anchors) if self.tents else 1.0) * u


class ScaledHardFunction:
    """The paper's instance gtilde(x) = (L D^2 / (37 T)) g(y - sqrt(T) x / D), started at x = 0.

    gtilde is L-smooth and L/(37 C3 T)-PL (Lemma 2 with the chain rule); |x_0 - x*| is at most D.
    """

    def __init__(self, T: int, t: int, L: float, D: float, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu"):
        require(L > 0, "L", L, "a positive smoothness constant")
        require(D > 0, "D", D, "a positive distance")
        self.base = HardFunction(T, t, dtype=dtype, device=device)
        self.L, self.D = float(L), float(D)
        self.dim = self.base.dim
        self._scale = self.L * self.D**2 / (37.0 * T)
        self._inner = math.sqrt(T) / self.D

    @property
    def start(self) -> torch.Tensor:
        return torch.zeros_like(self.base.anchors)

    def _point(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.anchors - self._inner * x

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self._scale * self.base.value(self._point(x))

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value, grad = self.base.value_and_grad(self._point(x))
        return self._scale * value, -self._scale * self._inner * grad

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return self.value_and_grad(x)[1]
