"""Neural Initialization Optimization (NIO, Sec. 4, Alg. 1): rescale each parameter tensor of an
initialized network so that GradCosine rises while the gradient norm stays bounded.

Every supported tensor gets a scale ``alpha_l`` (init 1) with ``theta_l = alpha_l theta0_l``. Each
iteration takes a batch, computes the sub-batch gradients ``G_i`` (with ``create_graph``) and

- if ``mean ||G_i|| > gamma``: descends on ``mean ||G_i||`` (its own Adam moments);
- else descends on ``J = -GC - lambda * sum_i ||G_i||``.

The gradient w.r.t. a scale is ``dJ/dalpha_l = <grad_theta_l J, theta_l> / alpha_l`` (autograd through
``alpha_l theta0_l``). It is clipped to ``[-clip, clip]``, an Adam step is taken, and
``alpha <- max(alpha - step, alpha_min)`` (``alpha_min`` 0.01 for weights, 0 for biases).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call

from tenfold.errors import ConvergenceError, require
from tenfold.init.gradcosine import (cosine_statistics, per_sample_cross_entropy, statistic_mode, sub_batch_bounds,
                                     sub_batch_gradients, supported_parameters)


@dataclass
class NIOHistory:
    """Per iteration: GC, mean gradient norm, whether it was a constraint step, and the scales after it."""

    gc: list[float] = field(default_factory=list)
    norm: list[float] = field(default_factory=list)
    constraint: list[bool] = field(default_factory=list)
    alphas: list[dict[str, float]] = field(default_factory=list)


@dataclass
class _Adam:
    """Adam moments for one phase (the constraint phase keeps its own)."""

    betas: tuple[float, float]
    eps: float
    m: dict[str, torch.Tensor] = field(default_factory=dict)
    v: dict[str, torch.Tensor] = field(default_factory=dict)
    t: int = 0

    def step(self, grads: dict[str, torch.Tensor], lr: float) -> dict[str, torch.Tensor]:
        self.t += 1
        b1, b2 = self.betas
        out = {}
        for k, g in grads.items():
            self.m[k] = b1 * self.m.get(k, torch.zeros_like(g)) + (1 - b1) * g
            self.v[k] = b2 * self.v.get(k, torch.zeros_like(g)) + (1 - b2) * g * g
            m_hat = self.m[k] / (1 - b1 ** self.t)
            v_hat = self.v[k] / (1 - b2 ** self.t)
            out[k] = lr * m_hat / (v_hat.sqrt() + self.eps)
        return out


def _math_attention():
    """Fused attention kernels lack double backward on CPU; the math kernel has it (ViT/Swin)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def _batches(data) -> Iterator:
    """One fixed ``(x, y)`` batch forever, an iterator as is, or an iterable (e.g. a DataLoader) re-iterated."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        while True:
            yield data
    if isinstance(data, Iterator):
        yield from data
        return
    while True:
        empty = True
        for item in data:
            empty = False
            yield item
        require(not empty, "data", type(data).__name__, "a non-empty iterable of (x, y) batches")


def scale_statistics(model: nn.Module, theta0: dict[str, torch.Tensor], alphas: dict[str, torch.Tensor],
                     batch: tuple[torch.Tensor, torch.Tensor], loss_fn: Callable, bounds: list[tuple[int, int]]):
    """GC, norms (differentiable in ``alphas``) of the model with ``theta_l = alpha_l theta0_l``."""
    x, y = batch
    params = {k: alphas[k] * theta0[k] for k in theta0}
    losses = loss_fn(functional_call(model, params, (x,)), y)
    require(losses.dim() == 1 and len(losses) == len(x), "loss_fn", getattr(loss_fn, "__name__", loss_fn),
            f"a function returning one loss per sample (shape ({len(x)},))")
    grads = sub_batch_gradients(losses, list(params.values()), bounds, create_graph=True)
    return cosine_statistics(grads), grads.norm(dim=1)


def nio(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor] | Iterable, gamma: float = 5.0,
        iterations: int = 100, lr: float = 0.05, D: int = 2, overlap: float = 0.0, norm_weight: float = 1.0,
        alpha_min_weight: float = 0.01, alpha_min_bias: float = 0.0, clip: float = 1.0,
        betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = per_sample_cross_entropy,
        on_iteration: Callable[[int, float, float, bool], None] | None = None) -> tuple[nn.Module, NIOHistory]:
    """Optimize the per-tensor scales of ``model``'s Conv/Linear/LayerNorm parameters in place.

    ``data`` is one ``(x, y)`` batch (reused every iteration) or an iterable of batches (cycled).
    ``norm_weight`` is ``lambda`` (1 in the released config; 0 gives the plain ``J = -GC``). Returns the
    rescaled model (same object, modes restored) and the history.
    """
    require(gamma > 0, "gamma", gamma, "a positive gradient-norm bound")
    require(iterations >= 1, "iterations", iterations, "at least one iteration")
    require(lr > 0, "lr", lr, "a positive learning rate")
    require(clip > 0, "clip", clip, "a positive clipping bound")
    require(alpha_min_weight >= 0 and alpha_min_bias >= 0, "alpha_min", (alpha_min_weight, alpha_min_bias),
            "non-negative lower bounds")
    named = supported_parameters(model)
    theta0 = {k: p.detach().clone() for k, p in named.items()}
    alpha_min = {k: alpha_min_bias if k.endswith("bias") else alpha_min_weight for k in named}
    alphas = {k: torch.ones((), dtype=p.dtype, device=p.device) for k, p in named.items()}
    adam = {True: _Adam(betas, eps), False: _Adam(betas, eps)}
    history = NIOHistory()
    stream = _batches(data)
    with statistic_mode(model), _math_attention():
        for it in range(iterations):
            batch = next(stream)
            bounds = sub_batch_bounds(len(batch[0]), D, overlap)
            leaves = {k: a.clone().requires_grad_(True) for k, a in alphas.items()}
            stats, norms = scale_statistics(model, theta0, leaves, batch, loss_fn, bounds)
            constraint = bool(stats.norm.detach() > gamma)
            objective = stats.norm if constraint else -stats.gc - norm_weight * norms.sum()
            if not torch.isfinite(objective):
                raise ConvergenceError(f"NIO iteration {it}: the objective became {float(objective)}; "
                                       "lower lr or gamma")
            grads = torch.autograd.grad(objective, list(leaves.values()), allow_unused=True)
            grads = {k: (g if g is not None else torch.zeros_like(leaves[k])).clamp(-clip, clip)
                     for k, g in zip(leaves, grads)}
            steps = adam[constraint].step(grads, lr)
            alphas = {k: torch.clamp(alphas[k] - steps[k], min=alpha_min[k]) for k in alphas}
            history.gc.append(float(stats.gc.detach()))
            history.norm.append(float(stats.norm.detach()))
            history.constraint.append(constraint)
            history.alphas.append({k: float(a) for k, a in alphas.items()})
            if on_iteration is not None:
                on_iteration(it, history.gc[-1], history.norm[-1], constraint)
    with torch.no_grad():
        for k, p in named.items():
            p.copy_(alphas[k] * theta0[k])
    return model, history
