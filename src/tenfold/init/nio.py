"""Neural Initialization Optimization (NIO, Sec. 4, Alg. 1): rescale each parameter tensor of an
initialized network so that GradCosine rises while the gradient norm stays bounded.

Every tensor the official ``RescaleAdam`` scales gets a scale ``alpha_l`` (init 1) with
``theta_l = alpha_l theta0_l``: each trainable parameter whose name contains ``weight`` or ``bias``,
BatchNorm's ``gamma``/``beta`` included (on a BatchNorm network under batch statistics a conv scale
alone does not change the forward pass, the BatchNorm scales do). Tensors whose initial norm is 0 are
left alone, as the official code does. GC is computed on the Conv/Linear/LayerNorm gradients only
(:func:`tenfold.init.gradcosine.supported_parameters`, the official ``get_ordered_params``).

Each iteration takes a batch, computes the sub-batch gradients ``G_i`` (with ``create_graph``) and

- if ``mean ||G_i|| > gamma``: descends on ``mean ||G_i||`` (a constraint step);
- else descends on the objective (the official ``opt_target``; ``lambda`` is ``norm_weight``,
  ``w`` is ``gc_weight``, 1 in the paper, 0 for the ablation that leaves only the norm term):

  ====================  ===========================================
  ``gc_gn_sqrt``        ``-w GC - lambda sum_i ||G_i||`` (released)
  ``gc_gn``             ``-w GC - lambda sum_i ||G_i||^2``
  ``gc``                ``-w GC``
  ``gv_gn_sqrt``        ``w V - lambda sum_i ||G_i||``
  ``gv_gn``             ``w V - lambda sum_i ||G_i||^2``
  ``gv``                ``w V``  (``V = sum_p var_i G_ip``)
  ====================  ===========================================

The gradient w.r.t. a scale is ``dJ/dalpha_l = <grad_theta_l J, theta_l> / alpha_l`` (autograd through
``alpha_l theta0_l``). It is clipped to ``[-clip, clip]`` and an Adam step is taken as ``RescaleAdam``
does: separate first moments and step counts for the two kinds of step, ONE second moment shared by
both, whose bias correction counts all steps; then ``alpha <- max(alpha - step, alpha_min)``
(``alpha_min`` 0.01 for weights, 0 for biases). A tensor whose scale reaches 0 stays at 0 (the official
code skips tensors of norm 0).
"""

from __future__ import annotations

import math

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from tenfold.errors import ConfigError, ConvergenceError, require
from tenfold.init.gradcosine import (GradCosine, cosine_statistics, statistic_mode, sub_batch_bounds,
                                     sub_batch_gradients, sub_batch_losses, supported_parameters)

OBJECTIVES = ("gc_gn_sqrt", "gc_gn", "gc", "gv_gn_sqrt", "gv_gn", "gv")


@dataclass
class NIOHistory:
    """Per iteration: GC, mean gradient norm, whether it was a constraint step, and the scales after it."""

    gc: list[float] = field(default_factory=list)
    norm: list[float] = field(default_factory=list)
    constraint: list[bool] = field(default_factory=list)
    alphas: list[dict[str, float]] = field(default_factory=list)
    variance: list[float] = field(default_factory=list)


def scaled_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """``name -> parameter`` of the tensors NIO rescales: trainable, name containing ``weight`` or ``bias``
    (the official ``RescaleAdam`` groups, BatchNorm included), initial norm > 0."""
    found = {k: p for k, p in model.named_parameters()
             if p.requires_grad and ("weight" in k or "bias" in k) and float(p.detach().norm()) > 0}
    if not found:
        raise ConfigError(f"model={type(model).__name__} is invalid: expected trainable weight or bias tensors "
                          "of non-zero norm (NIO rescales those)")
    return found


def objective_value(objective: str, stats: GradCosine, gc_weight: float = 1.0, norm_weight: float = 1.0
                    ) -> torch.Tensor:
    """The quantity a non-constraint NIO step descends on (the official ``opt_target``)."""
    require(objective in OBJECTIVES, "objective", objective, f"one of {', '.join(OBJECTIVES)}")
    stat = -stats.gc if objective.startswith("gc") else stats.variance
    norms = stats.norms
    if objective.endswith("_gn_sqrt"):
        return gc_weight * stat - norm_weight * norms.sum()
    if objective.endswith("_gn"):
        return gc_weight * stat - norm_weight * norms.square().sum()
    return gc_weight * stat


@dataclass
class RescaleAdamState:
    """Adam on the scales as the official ``RescaleAdam``: per tensor, first moments ``m`` (free steps)
    and ``m_cons`` (constraint steps) with their own step counts, and one second moment ``v`` shared by
    both kinds of step, bias-corrected with the total step count."""

    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    m: dict[str, float] = field(default_factory=dict)
    m_cons: dict[str, float] = field(default_factory=dict)
    v: dict[str, float] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    cons_steps: dict[str, int] = field(default_factory=dict)

    def step(self, grads: dict[str, float], lr: float, constraint: bool) -> dict[str, float]:
        """The step ``lr * m_hat / (sqrt(v_hat) + eps)`` for each tensor in ``grads`` (others untouched)."""
        b1, b2 = self.betas
        out = {}
        for k, g in grads.items():
            if constraint:
                self.cons_steps[k] = self.cons_steps.get(k, 0) + 1
                self.m_cons[k] = self.m_cons.get(k, 0.0) * b1 + g * (1 - b1)
                t, m = self.cons_steps[k], self.m_cons[k]
            else:
                self.steps[k] = self.steps.get(k, 0) + 1
                self.m[k] = self.m.get(k, 0.0) * b1 + g * (1 - b1)
                t, m = self.steps[k], self.m[k]
            self.v[k] = self.v.get(k, 0.0) * b2 + g * g * (1 - b2)
            total = self.steps.get(k, 0) + self.cons_steps.get(k, 0)
            denom = (self.v[k] / (1 - b2 ** total)) ** 0.5 + self.eps
            out[k] = (lr / (1 - b1 ** t)) * m / denom
        return out


def rescale_step(target: torch.Tensor, leaves: dict[str, torch.Tensor], alphas: dict[str, float],
                 adam: RescaleAdamState, *, lr: float, clip: float, alpha_min: dict[str, float], constraint: bool,
                 where: str) -> dict[str, float]:
    """One step of the scales on ``target`` (NIO's and GradInit's shared update, the official ``RescaleAdam``):
    ``g_k = d target / d alpha_k`` clipped to ``[-clip, clip]``, ``alpha_k <- max(alpha_k - adam_k(g),
    alpha_min_k)``. A scale at 0 is skipped (official), and so is one the objective does not reach (no
    gradient: RescaleAdam skips ``p.grad is None``). A non-finite ``target`` stops with a ConvergenceError."""
    if not torch.isfinite(target):
        raise ConvergenceError(f"{where}: the objective became {float(target)}; lower lr or gamma")
    active = [k for k in leaves if alphas[k] != 0.0]
    grads = torch.autograd.grad(target, [leaves[k] for k in active], allow_unused=True)
    clipped = {k: max(min(float(g), clip), -clip) for k, g in zip(active, grads) if g is not None}
    steps = adam.step(clipped, lr, constraint)
    return {k: (max(a - steps[k], alpha_min[k]) if k in steps else a) for k, a in alphas.items()}


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
                     batch: tuple[torch.Tensor, torch.Tensor], loss_fn: Callable, bounds: list[tuple[int, int]],
                     gc_names: list[str] | None = None) -> tuple[GradCosine, torch.Tensor]:
    """GC, variance and norms (differentiable in ``alphas``) of the model with ``theta_l = alpha_l theta0_l``.

    ``gc_names``: the tensors whose gradients enter GC (default: the Conv/Linear/LayerNorm ones); those
    not scaled enter at their current value."""
    x, y = batch
    gc_names = list(supported_parameters(model)) if gc_names is None else gc_names
    current = dict(model.named_parameters())
    params = {k: alphas[k] * theta0[k] for k in theta0}
    for k in gc_names:
        if k not in params:  # e.g. a zero-initialised bias: not rescaled, but its gradient is part of GC
            params[k] = current[k].detach().clone().requires_grad_(True)
    losses = sub_batch_losses(loss_fn, functional_call(model, params, (x,)), y, bounds, len(x))
    grads = sub_batch_gradients(losses, [params[k] for k in gc_names], create_graph=True)
    stats = cosine_statistics(grads)
    return stats, stats.norms


def nio(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor] | Iterable, gamma: float = 5.0,
        iterations: int = 100, lr: float = 0.05, D: int = 2, overlap: float = 0.0, norm_weight: float = 1.0,
        alpha_min_weight: float = 0.01, alpha_min_bias: float = 0.0, clip: float = 1.0,
        betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
        on_iteration: Callable[[int, float, float, bool], None] | None = None, objective: str = "gc_gn_sqrt",
        gc_weight: float = 1.0) -> tuple[nn.Module, NIOHistory]:
    """Optimize the per-tensor scales of ``model``'s weights and biases in place (see the module docstring).

    ``data`` is one ``(x, y)`` batch (reused every iteration) or an iterable of batches (cycled).
    ``loss_fn(outputs, targets)`` returns the mean loss as a scalar (torch's convention, as in
    :func:`~tenfold.init.gradinit.gradinit`; a per-sample loss is refused); it is called on each
    sub-batch's rows of one forward pass.
    ``objective`` is the official ``opt_target`` (default ``gc_gn_sqrt``, the released config),
    ``norm_weight`` its ``lambda`` (``gn_mul``, 1 in the released config), ``gc_weight`` the weight of its
    GC (or variance) term (0: the ablation without GradCosine). Returns the rescaled model (same object,
    modes restored) and the history.
    """
    require(gamma > 0, "gamma", gamma, "a positive gradient-norm bound")
    require(iterations >= 1, "iterations", iterations, "at least one iteration")
    require(lr > 0, "lr", lr, "a positive learning rate")
    require(clip > 0, "clip", clip, "a positive clipping bound")
    require(objective in OBJECTIVES, "objective", objective, f"one of {', '.join(OBJECTIVES)}")
    require(gc_weight >= 0 and norm_weight >= 0, "gc_weight/norm_weight", (gc_weight, norm_weight),
            "non-negative weights")
    require(alpha_min_weight >= 0 and alpha_min_bias >= 0, "alpha_min", (alpha_min_weight, alpha_min_bias),
            "non-negative lower bounds")
    gc_names = list(supported_parameters(model))
    named = scaled_parameters(model)
    theta0 = {k: p.detach().clone() for k, p in named.items()}
    alpha_min = {k: alpha_min_weight if "weight" in k else alpha_min_bias for k in named}
    alphas = {k: 1.0 for k in named}
    adam = RescaleAdamState(betas, eps)
    history = NIOHistory()
    stream = _batches(data)
    with statistic_mode(model), _math_attention():
        for it in range(iterations):
            batch = next(stream)
            bounds = sub_batch_bounds(len(batch[0]), D, overlap)
            leaves = {k: torch.tensor(a, dtype=theta0[k].dtype, device=theta0[k].device, requires_grad=True)
                      for k, a in alphas.items()}
            stats, norms = scale_statistics(model, theta0, leaves, batch, loss_fn, bounds, gc_names)
            constraint = bool(stats.norm.detach() > gamma)
            target = stats.norm if constraint else objective_value(objective, stats, gc_weight, norm_weight)
            alphas = rescale_step(target, leaves, alphas, adam, lr=lr, clip=clip, alpha_min=alpha_min,
                                  constraint=constraint, where=f"NIO iteration {it}")
            history.gc.append(float(stats.gc.detach()))
            history.norm.append(float(stats.norm.detach()))
            history.variance.append(float(stats.variance.detach()))
            history.constraint.append(constraint)
            history.alphas.append(dict(alphas))
            if on_iteration is not None:
                on_iteration(it, history.gc[-1], history.norm[-1], constraint)
    with torch.no_grad():
        for k, p in named.items():
            p.copy_(alphas[k] * theta0[k])
    return model, history


def uniform_rescale(model: nn.Module, target_norm: float, batch: tuple[torch.Tensor, torch.Tensor], D: int = 2,
                    overlap: float = 0.0, steps: int = 24, low: float = 1e-2, high: float = 1e2
                    ) -> tuple[nn.Module, float]:
    """Scale every tensor NIO rescales by ONE factor ``c`` so that the mean sub-batch gradient norm on
    ``batch`` equals ``target_norm``: the norm-matched baseline of NIO (same gradient norm, no GradCosine).

    ``c`` is found by bisection on ``log c`` in ``[low, high]`` (the norm grows with ``c`` on the
    networks used here; a target outside the bracket ends at its edge). Modifies ``model`` in place and
    returns it and ``c``.
    """
    from tenfold.init.gradcosine import gradcosine

    require(target_norm > 0, "target_norm", target_norm, "a positive gradient norm")
    named = scaled_parameters(model)
    theta0 = {k: p.detach().clone() for k, p in named.items()}

    def norm_at(c: float) -> float:
        with torch.no_grad():
            for k, p in named.items():
                p.copy_(c * theta0[k])
        return float(gradcosine(model, batch, D=D, overlap=overlap).norm)

    lo, hi = math.log(low), math.log(high)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if norm_at(math.exp(mid)) < target_norm:
            lo = mid
        else:
            hi = mid
    c = math.exp(0.5 * (lo + hi))
    norm_at(c)
    return model, c
