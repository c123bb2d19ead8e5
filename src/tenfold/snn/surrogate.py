"""Spike functions with surrogate gradients (SLTT, Meng et al. 2023, Sec. 3; spec snn.md 1.1).

Forward: the Heaviside step ``s = H(x)`` of ``x = u - v_th`` (``s = 1`` where ``x >= 0``, as in
SpikingJelly). Backward: ``ds/dx`` is replaced by a surrogate ``sigma'(x)`` of width ``w``:

- ``triangle`` (default; SpikingJelly ``PiecewiseQuadratic(alpha=1/w)``): ``max(0, 1 - |x|/w) / w``
- ``rectangle``: ``1/w`` where ``|x| < w/2``, else 0
- ``sigmoid`` (SpikingJelly ``Sigmoid(alpha=4/w)``): ``a*g*(1-g)`` with ``g = sigmoid(a*x)``, ``a = 4/w``
- ``atan`` (SpikingJelly ``ATan(alpha=2/w)``): ``(a/2) / (1 + (pi/2 * a * x)^2)``, ``a = 2/w``
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from tenfold.errors import ConfigError, require
from tenfold.second_order import second_order


def _triangle(x: torch.Tensor, w: float) -> torch.Tensor:
    if w == 1.0:  # the paper's width: two kernels fewer per backward
        return (1.0 - x.abs()).clamp_min_(0.0)
    return (1.0 - x.abs() / w).clamp_min_(0.0) / w


def _rectangle(x: torch.Tensor, w: float) -> torch.Tensor:
    return (x.abs() < w / 2).to(x.dtype) / w


def _sigmoid(x: torch.Tensor, w: float) -> torch.Tensor:
    a = 4.0 / w
    g = torch.sigmoid(a * x)
    return a * g * (1.0 - g)


def _atan(x: torch.Tensor, w: float) -> torch.Tensor:
    a = 2.0 / w
    return (a / 2) / (1.0 + (math.pi / 2 * a * x) ** 2)


SURROGATES: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "triangle": _triangle,
    "rectangle": _rectangle,
    "sigmoid": _sigmoid,
    "atan": _atan,
}


def surrogate_of_membrane(u: torch.Tensor, v_th: float, surrogate: str, width: float) -> torch.Tensor:
    """``sigma'(u - v_th)`` as a new tensor; the triangle (the default) in place on one temporary
    (one allocation and four in-place kernels instead of three allocations). Under ``create_graph=True``
    autograd records these in-place kernels too (the saved ``u`` carries its graph), so ``sigma''``
    reaches the second backward (gradgradcheck, tests/test_second_order.py)."""
    x = u - v_th
    if surrogate != "triangle":
        return SURROGATES[surrogate](x, width)
    if width == 1.0:
        return x.abs_().neg_().add_(1.0).clamp_min_(0.0)
    return x.abs_().mul_(-1.0 / width).add_(1.0).clamp_min_(0.0).div_(width)


def check_surrogate(surrogate: str, width: float = 1.0) -> None:
    """Raise a one-line ConfigError for an unknown surrogate name or a non-positive width."""
    if surrogate not in SURROGATES:
        raise ConfigError(f"surrogate={surrogate!r} is invalid: expected one of {', '.join(SURROGATES)}")
    require(isinstance(width, (int, float)) and width > 0 and math.isfinite(width), "width", width,
            "a positive finite surrogate width")


def surrogate_grad(x: torch.Tensor, surrogate: str = "triangle", width: float = 1.0) -> torch.Tensor:
    """The surrogate derivative ``sigma'(x)`` itself (no autograd), e.g. for tests and plots."""
    check_surrogate(surrogate, width)
    return SURROGATES[surrogate](x, float(width))


@second_order("exact")
class _Spike(torch.autograd.Function):
    """``H(x)`` forward, ``grad * sigma'(x)`` backward. Under ``create_graph=True`` autograd records the
    backward's operations (the saved ``x`` carries its graph): the second derivative is ``grad * sigma''(x)``
    (and ``sigma'(x)`` for the incoming gradient), the exact derivative of the surrogate gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: str, width: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate, ctx.width = surrogate, width
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        return SURROGATES[ctx.surrogate](x, ctx.width).mul_(grad_out), None, None


def spike(x: torch.Tensor, surrogate: str = "triangle", width: float = 1.0) -> torch.Tensor:
    """``H(x)`` forward, ``grad * sigma'(x)`` backward; ``x = u - v_th``."""
    check_surrogate(surrogate, width)
    return _Spike.apply(x, surrogate, float(width))
