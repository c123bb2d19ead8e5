"""Two-player zero-sum games f(x, y) for mixed Nash equilibria; x minimizes, y maximizes.

A game gives the payoff matrix F_ij = f(x_i, y_j) of two particle sets and the weighted gradients the
particle methods need: grad_x sum_j w_j f(x_i, y_j) for every x_i, and grad_y sum_i w_i f(x_i, y_j).
The generic path uses autograd on the M x N matrix (cost O(M N)). A :class:`LowRankGame`,
f = sum_k u_k(x) v_k(y), reduces an opponent average to K feature means (cost O((M + N) K)), the path
that makes PAPAL cheap on a CPU (spec 1.3).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from tenfold.errors import ConfigError, require


class Game:
    """f: R^dim_x x R^dim_y -> [-1, 1]. ``torus``: positions live on [0, 1)^d and wrap."""

    dim_x: int = 1
    dim_y: int = 1
    torus: bool = False

    def payoff(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """F_ij = f(x_i, y_j) for x (M, dim_x), y (N, dim_y)."""
        raise NotImplementedError

    def mean_over_y(self, x: torch.Tensor, y: torch.Tensor, wy: torch.Tensor) -> torch.Tensor:
        """(M,): sum_j wy_j f(x_i, y_j), the x player's cost against the mixed strategy (y, wy)."""
        return self.payoff(x, y) @ wy

    def mean_over_x(self, x: torch.Tensor, y: torch.Tensor, wx: torch.Tensor) -> torch.Tensor:
        """(N,): sum_i wx_i f(x_i, y_j), the y player's gain against (x, wx)."""
        return wx @ self.payoff(x, y)

    def grad_x(self, x: torch.Tensor, y: torch.Tensor, wy: torch.Tensor) -> torch.Tensor:
        """(M, dim_x): grad_x sum_j wy_j f(x_i, y_j) for every i."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.payoff(xg, y.detach()) @ wy, xg,
                                          torch.ones(len(x), dtype=x.dtype, device=x.device))
        return grad

    def grad_y(self, x: torch.Tensor, y: torch.Tensor, wx: torch.Tensor) -> torch.Tensor:
        """(N, dim_y): grad_y sum_i wx_i f(x_i, y_j) for every j."""
        with torch.enable_grad():
            yg = y.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(wx @ self.payoff(x.detach(), yg), yg,
                                          torch.ones(len(y), dtype=y.dtype, device=y.device))
        return grad


class LowRankGame(Game):
    """f(x, y) = sum_k u_k(x) v_k(y). Subclasses give the features and their Jacobians (or use autograd)."""

    rank: int = 1

    def u(self, x: torch.Tensor) -> torch.Tensor:  # (M, K)
        raise NotImplementedError

    def v(self, y: torch.Tensor) -> torch.Tensor:  # (N, K)
        raise NotImplementedError

    def du(self, x: torch.Tensor) -> torch.Tensor:
        """(M, K, dim_x) Jacobian of u; autograd by default."""
        return _rowwise_jacobian(self.u, x)

    def dv(self, y: torch.Tensor) -> torch.Tensor:
        return _rowwise_jacobian(self.v, y)

    def payoff(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.u(x) @ self.v(y).T

    def u_grad_dot(self, x: torch.Tensor, coef) -> torch.Tensor:
        """(M, dim_x): grad_x sum_k coef_k u_k(x) (``coef``: K numbers, a tensor or a list); built-in games
        override it with a fused closed form, the innermost operation of every Langevin step."""
        return torch.einsum("mkd,k->md", self.du(x), torch.as_tensor(coef, dtype=x.dtype, device=x.device))

    def v_grad_dot(self, y: torch.Tensor, coef) -> torch.Tensor:
        return torch.einsum("nkd,k->nd", self.dv(y), torch.as_tensor(coef, dtype=y.dtype, device=y.device))

    def mean_over_y(self, x, y, wy):
        return self.u(x) @ (wy @ self.v(y))

    def mean_over_x(self, x, y, wx):
        return self.v(y) @ (wx @ self.u(x))

    def grad_x(self, x, y, wy):
        return self.u_grad_dot(x, wy @ self.v(y))

    def grad_y(self, x, y, wx):
        return self.v_grad_dot(y, wx @ self.u(x))


def _split(coef) -> list:
    """K coefficients as python floats (a list, the CPU fast path) or 0-d tensors (a tensor on any device,
    so that nothing is read back from an accelerator or the meta device)."""
    return [float(c) for c in coef] if isinstance(coef, list | tuple) else list(coef.unbind())


def _rowwise_jacobian(fn: Callable, z: torch.Tensor) -> torch.Tensor:
    return torch.func.vmap(torch.func.jacrev(lambda row: fn(row[None])[0]))(z)


class SinusoidGame(LowRankGame):
    """The spec's 1-D test game (section 1.8.1), rank 3:
    f = (2/3)[sin(2x + .5) cos(3y) + .5 cos(x - y + .7)], with cos(x - y + .7) = cos(x+.7)cos y + sin(x+.7) sin y."""

    rank = 3

    def u(self, x):
        x = x[:, 0]
        return torch.stack([torch.sin(2 * x + 0.5), torch.cos(x + 0.7) / 3, torch.sin(x + 0.7) / 3], 1)

    def v(self, y):
        y = y[:, 0]
        return torch.stack([2 * torch.cos(3 * y) / 3, torch.cos(y), torch.sin(y)], 1)

    def du(self, x):
        x = x[:, 0]
        return torch.stack([2 * torch.cos(2 * x + 0.5), -torch.sin(x + 0.7) / 3, torch.cos(x + 0.7) / 3], 1)[..., None]

    def dv(self, y):
        y = y[:, 0]
        return torch.stack([-2 * torch.sin(3 * y), -torch.sin(y), torch.cos(y)], 1)[..., None]

    def v_grad_dot(self, y, coef):
        # sin 3y = 3 sin y - 4 sin^3 y: two transcendental calls per Langevin step instead of three
        c0, c1, c2 = _split(coef)
        s = torch.sin(y)
        return torch.addcmul(torch.cos(y).mul_(c2), s, s.square().mul_(8 * c0).sub_(6 * c0 + c1))

    def u_grad_dot(self, x, coef):
        c0, c1, c2 = _split(coef)
        return (2 * c0) * torch.cos(2 * x + 0.5) + (c2 / 3) * torch.cos(x + 0.7) - (c1 / 3) * torch.sin(x + 0.7)


class MatchingPennies(LowRankGame):
    """Torus matching pennies f = cos(2 pi (x - y)) on [0, 1) (spec 1.8.3): value 0, the MNE set is
    {first Fourier coefficients zero}, NI = |E_p e^(2 pi i x)| + |E_q e^(2 pi i y)|."""

    rank = 2
    torus = True

    def u(self, x):
        a = 2 * math.pi * x[:, 0]
        return torch.stack([torch.cos(a), torch.sin(a)], 1)

    v = u

    def du(self, x):
        a = 2 * math.pi * x[:, 0]
        return (2 * math.pi * torch.stack([-torch.sin(a), torch.cos(a)], 1))[..., None]

    dv = du

    def u_grad_dot(self, x, coef):
        a = (2 * math.pi) * x
        c0, c1 = _split(coef)
        return (2 * math.pi) * (c1 * torch.cos(a) - c0 * torch.sin(a))

    v_grad_dot = u_grad_dot


class GaussianProxyGame(Game):
    """The "GAN" proxy of spec 1.5: f(x, y) = tanh(<y, x - m*>) in dimension d. The generator x matches
    the target mean m* against the linear discriminator y; error |mean X - m*|^2 / 2."""

    def __init__(self, target: torch.Tensor):
        require(target.ndim == 1 and target.numel() >= 1, "target", tuple(target.shape), "a 1-D mean vector")
        self.target = target
        self.dim_x = self.dim_y = target.numel()

    def payoff(self, x, y):
        return torch.tanh((x - self.target.to(x)) @ y.T)

    def grad_x(self, x, y, wy):
        s = (1 - torch.tanh((x - self.target.to(x)) @ y.T).square()) * wy  # (M, N)
        return s @ y

    def grad_y(self, x, y, wx):
        s = (1 - torch.tanh((x - self.target.to(x)) @ y.T).square()) * wx[:, None]  # (M, N)
        return s.T @ (x - self.target.to(x))


class CallableGame(Game):
    """A user-supplied payoff f(x, y), in either of two natural forms (detected on the first call):

    - **broadcast batches**: ``fn(x[:, None, :], y[None, :, :])`` returns the (M, N) matrix, e.g.
      ``lambda x, y: (x * y).sum(-1)``; an (M, N, 1) result (``lambda x, y: torch.sin(x) * torch.cos(y)``
      in one dimension) is squeezed;
    - **one pair**: ``fn(x_i, y_j)`` of x (dim_x,) and y (dim_y,) returns a scalar, e.g.
      ``lambda x, y: torch.dot(x, y)``; it is vectorised over every pair with ``torch.func.vmap``.

    Anything else is a one-line ConfigError naming the shapes given and expected. Positions whose last
    dimension is not (dim_x, dim_y) are refused the same way.
    """

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], dim_x: int = 1, dim_y: int = 1,
                 torus: bool = False):
        require(callable(fn), "fn", fn, "a callable f(x, y)")
        require(isinstance(dim_x, int) and isinstance(dim_y, int) and dim_x >= 1 and dim_y >= 1, "dims",
                (dim_x, dim_y), "positive integer dimensions")
        self.fn, self.dim_x, self.dim_y, self.torus = fn, dim_x, dim_y, torus
        self.form: str | None = None  # "broadcast" or "pair", set by the first call

    def _broadcast(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fn(x[:, None, :], y[None, :, :])

    def _pairs(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        over_y = torch.func.vmap(self.fn, in_dims=(None, 0))
        return torch.func.vmap(over_y, in_dims=(0, None))(x, y)

    @staticmethod
    def _matrix(out, m: int, n: int) -> torch.Tensor | None:
        if isinstance(out, torch.Tensor) and out.shape in ((m, n), (m, n, 1)):
            return out.reshape(m, n)
        return None

    def payoff(self, x, y):
        for name, z, dim in (("x", x, self.dim_x), ("y", y, self.dim_y)):
            if z.dim() != 2 or z.shape[1] != dim:
                raise ConfigError(f"CallableGame: {name} of shape {tuple(z.shape)} is invalid: expected (particles, "
                                  f"{dim}) (dim_{name}={dim})")
        m, n = len(x), len(y)
        if self.form is not None:
            out = self._matrix(self._broadcast(x, y) if self.form == "broadcast" else self._pairs(x, y), m, n)
            if out is None:
                raise self._shape_error(m, n, "a call after the first one returned another shape")
            return out
        reasons = []
        for form, call in (("broadcast", self._broadcast), ("pair", self._pairs)):
            try:
                out = call(x, y)
            except Exception as exc:  # noqa: BLE001 - any failure of one form means: try the other form
                reasons.append(f"{form}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                continue
            matrix = self._matrix(out, m, n)
            if matrix is not None:
                self.form = form
                return matrix
            reasons.append(f"{form}: returned {type(out).__name__} of shape {tuple(getattr(out, 'shape', ()))}")
        raise self._shape_error(m, n, "; ".join(reasons))

    def _shape_error(self, m: int, n: int, why: str) -> ConfigError:
        return ConfigError(f"CallableGame fn is invalid: expected fn(x, y) -> (M, N) = ({m}, {n}) for broadcast batches "
                           f"x ({m}, 1, {self.dim_x}), y (1, {n}, {self.dim_y}), or a scalar for one pair x "
                           f"({self.dim_x},), y ({self.dim_y},) [{why}]")
