"""Linear connections of a SPIDE network: their transposes, parameter gradients and the norm cap.

SPIDE (Xiao et al., Neural Networks 2023, Sec. 4; spec snn.md 2.2-2.3). Every connection is an affine map
``y = A z + b`` (Linear, Conv2d, ConvTranspose2d, AvgPool2d, or any bias-plus-linear module). The
backward network needs ``A^T`` (the same for every ``z``, so the bias plays no part), and the weight
update needs ``dL/dA = delta z^T`` for a given output gradient ``delta`` and input ``z``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Transpose = Callable[[torch.Tensor], torch.Tensor]


def transpose_of(op: nn.Module, in_shape: tuple[int, ...], like: torch.Tensor) -> Transpose:
    """A function ``y -> A^T y`` for the linear part of ``op`` acting on inputs of ``in_shape``
    (batch first). Linear and plain convolutions use their closed forms; any other module is
    transposed once with :func:`torch.func.vjp` and the result reused at every step."""
    if isinstance(op, nn.Linear):
        weight = op.weight
        return lambda y: y.reshape(y.shape[0], -1) @ weight
    if isinstance(op, nn.Conv2d) and op.padding_mode == "zeros" and isinstance(op.padding, tuple):
        return lambda y: torch.nn.grad.conv2d_input((y.shape[0], *in_shape[1:]), op.weight, y, op.stride,
                                                    op.padding, op.dilation, op.groups)
    if isinstance(op, nn.ConvTranspose2d) and op.groups == 1 and isinstance(op.padding, tuple):
        return lambda y: F.conv2d(y, op.weight, None, op.stride, op.padding, op.dilation)
    cache: dict[int, Callable] = {}

    def generic(y: torch.Tensor) -> torch.Tensor:
        if y.shape[0] not in cache:  # A^T does not depend on the point: linearise once per batch size
            zero = torch.zeros((y.shape[0], *in_shape[1:]), dtype=like.dtype, device=like.device)
            cache[y.shape[0]] = torch.func.vjp(op, zero)[1]
        return cache[y.shape[0]](y)[0]

    return generic


def param_grads(op: nn.Module, z: torch.Tensor, delta: torch.Tensor) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """``(theta, dL/dtheta)`` for every trainable parameter of ``y = op(z)`` with output gradient ``delta``
    and ``z`` held constant: ``dW = delta z^T``, ``db = sum(delta)`` (SPIDE Eq. 14, spec 2.3).

    Linear layers use the closed form; other layers run their own autograd on the detached input,
    one small graph that is freed at once (no graph through time)."""
    params = [p for p in op.parameters() if p.requires_grad]
    if not params:
        return []
    if isinstance(op, nn.Linear):
        z2, d2 = z.reshape(z.shape[0], -1), delta.reshape(delta.shape[0], -1)
        has_bias = op.bias is not None and op.bias.requires_grad
        grads = ([d2.t() @ z2] if op.weight.requires_grad else []) + ([d2.sum(0)] if has_bias else [])
        params = ([op.weight] if op.weight.requires_grad else []) + ([op.bias] if has_bias else [])
    else:
        with torch.enable_grad():
            out = op(z.detach())
            grads = torch.autograd.grad(out, params, delta.reshape(out.shape))
    return [(p, g.detach()) for p, g in zip(params, grads)]


def accumulate_param_grads(op: nn.Module, z: torch.Tensor, delta: torch.Tensor) -> None:
    """Add :func:`param_grads` to ``theta.grad`` (outside autograd: a lower-level helper; the network's
    backward returns its gradients through autograd instead)."""
    for p, g in param_grads(op, z, delta):
        p.grad = g.clone() if p.grad is None else p.grad + g


def has_params(op: nn.Module | None) -> bool:
    return op is not None and any(True for _ in op.parameters())


@torch.no_grad()
def cap_frobenius_(op: nn.Module, cap: float) -> float:
    """Scale ``op``'s weights so that their joint Frobenius norm is at most ``cap`` (spec 2.3: the
    feedback weight is capped at 2). The norm is computed exactly (cheaper and tighter than the
    random-probe estimate of the official code). Returns the norm after capping."""
    weights = [p for name, p in op.named_parameters() if name.endswith("weight")]
    if not weights:
        return 0.0
    norm = torch.sqrt(sum((w.double() ** 2).sum() for w in weights))
    if norm > cap:
        factor = float(cap / norm) * (1.0 - 1e-6)  # a hair below, so float32 rounding cannot exceed the cap
        for w in weights:
            w.mul_(factor)
        norm = torch.sqrt(sum((w.double() ** 2).sum() for w in weights))
    return float(norm)
