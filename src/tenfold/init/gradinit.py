"""GradInit (Zhu, Ni, Xu, Kong, Huang, Goldstein, NeurIPS 2021, arXiv:2102.08098): learn one positive
scalar per weight/bias tensor so that ONE step of the target optimizer from the rescaled initialization
lowers the loss as much as possible, under a bound on the initial gradient norm. NIO's first baseline.

Each tensor NIO rescales (:func:`tenfold.init.nio.scaled_parameters`: trainable, named ``weight`` or
``bias``, BatchNorm included, initial norm > 0) gets a multiplier ``alpha_l`` (init 1),
``theta_l = alpha_l theta0_l``. Per iteration (Algorithm 1; the official ``gradinit_utils.gradinit``)
three half-batches ``S0, S1, S2`` are drawn from ``data`` (``S2`` only when it is needed) and

    g = grad_theta L(S0 u S1; theta),     ||g||_A = ||g||_2 (SGD) or ||g||_1 (Adam),

- if ``||g||_A > gamma`` (constraint step): descend on ``||g||_A`` (which needs ``create_graph``);
- else (objective step): take the target optimizer's first step and descend on the loss after it,

      theta' = theta - eta A[g],   A[g] = g / ||g||_2 (SGD, ``normalize_grad``), g (SGD), sign(g) (Adam),
      J(alpha) = L(S0 u S2; theta') / eta.

  As the official code (``take_opt_step``: ``m.weight - trust * grad.detach()``, the paper's "simple
  approximation"), ``A[g]`` is held constant in the meta-gradient by default, so
  ``dJ/dalpha_l = <grad_theta' L(S0 u S2; theta'), theta0_l> / eta``; ``second_order=True``
  differentiates through ``g`` as well (a Hessian-vector product; for Adam ``sign`` has zero gradient
  and both agree). ``batch_no_overlap=True`` draws a fresh half-batch in place of ``S0`` for ``J``.

The meta-gradient of a multiplier is ``<grad_theta_l J, theta_l> / alpha_l`` (autograd through
``alpha_l theta0_l``), clipped to ``[-clip, clip]``; the step is the official ``RescaleAdam`` (the same
as NIO's, :class:`tenfold.init.nio.RescaleAdamState`: separate first moments for the two kinds of
step, one shared second moment), then ``alpha <- max(alpha - step, alpha_min)`` (``alpha_min`` 0.01
for weights, 0 for biases). Tensors the model has but that are not rescaled (a zero-initialised bias)
still take the lookahead step ``theta'`` (they are in the official ``get_ordered_params``), at their
current value. BatchNorm runs on batch statistics without touching its running statistics; dropout is
off (``statistic_mode``).

Defaults are the official CIFAR launch script (``launch/run_gradinit.sh``): SGD, ``eta = 0.1``,
``gamma = 1``, normalized gradient, ``alpha_min = 0.01``, clip 1, 390 iterations (one epoch at batch
128, half-batches of 64); its multiplier learning rate is per network (1e-2 VGG-19 without BN, 1e-1
with BN, 5e-2 ResNet-110 without BN, 1e-3 with BN; the argument default is 1e-3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from tenfold.errors import require
from tenfold.init.gradcosine import check_loss, statistic_mode
from tenfold.init.nio import RescaleAdamState, _batches, _math_attention, rescale_step, scaled_parameters


@dataclass
class GradInitHistory:
    """Per iteration: ``||g||_A`` on ``S0 u S1``, whether it was a constraint step, the loss before the
    step (on ``S0 u S1``) and after it (on ``S0 u S2``, NaN on constraint steps), the scales after it."""

    norm: list[float] = field(default_factory=list)
    constraint: list[bool] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lookahead_loss: list[float] = field(default_factory=list)
    alphas: list[dict[str, float]] = field(default_factory=list)


def stepped_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The tensors the lookahead step moves: every trainable ``weight``/``bias`` (zero-norm ones included)."""
    return {k: p for k, p in model.named_parameters() if p.requires_grad and ("weight" in k or "bias" in k)}


def gradient_norm(grads: list[torch.Tensor], optimizer: str) -> torch.Tensor:
    """``||g||_2`` for SGD, ``||g||_1`` for Adam (the dual norm of its sign step), differentiable."""
    if optimizer == "adam":
        return sum(g.abs().sum() for g in grads)
    return sum(g.square().sum() for g in grads).sqrt()


def _first_batch(model: nn.Module, theta0: dict[str, torch.Tensor], alphas: dict[str, torch.Tensor],
                 first: tuple[torch.Tensor, torch.Tensor], optimizer: str, loss_fn: Callable):
    """``theta(alpha)``, the names of the stepped tensors, ``g`` (with ``create_graph``), ``||g||_A`` and
    ``L(first)``."""
    current = stepped_parameters(model)
    params = {k: alphas[k] * theta0[k] for k in theta0}
    params |= {k: p.detach().clone().requires_grad_(True) for k, p in current.items() if k not in params}
    names = list(current)
    loss0 = check_loss(loss_fn(functional_call(model, params, (first[0],)), first[1]), loss_fn)
    grads = torch.autograd.grad(loss0, [params[k] for k in names], create_graph=True, allow_unused=True)
    grads = [g if g is not None else torch.zeros_like(params[k]) for g, k in zip(grads, names)]
    return params, names, grads, gradient_norm(grads, optimizer), loss0


def _after_step(model: nn.Module, params: dict, names: list[str], grads: list[torch.Tensor], norm: torch.Tensor,
                second: tuple[torch.Tensor, torch.Tensor], eta: float, optimizer: str, normalize_grad: bool,
                second_order: bool, loss_fn: Callable) -> torch.Tensor:
    """``L(second; theta - eta A[g]) / eta``."""
    if optimizer == "adam":
        steps = [g.sign() for g in grads]
    elif normalize_grad:
        steps = [g / norm.clamp_min(torch.finfo(norm.dtype).tiny) for g in grads]
    else:
        steps = grads
    if not second_order:  # the official approximation: A[g] is a constant of the meta-gradient
        steps = [s.detach() for s in steps]
    moved = dict(params) | {k: params[k] - eta * s for k, s in zip(names, steps)}
    return check_loss(loss_fn(functional_call(model, moved, (second[0],)), second[1]), loss_fn) / eta


def lookahead_loss(model: nn.Module, theta0: dict[str, torch.Tensor], alphas: dict[str, torch.Tensor],
                   first: tuple[torch.Tensor, torch.Tensor], second: tuple[torch.Tensor, torch.Tensor],
                   eta: float = 0.1, optimizer: str = "sgd", normalize_grad: bool = True,
                   second_order: bool = False, loss_fn: Callable = F.cross_entropy
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(J, ||g||_A, L(first))`` at ``theta_l = alpha_l theta0_l`` (see the module docstring), all
    differentiable in ``alphas``: ``J = L(second; theta - eta A[g(first)]) / eta``.

    ``model`` supplies the tensors that are not scaled (at their current value). Call it inside
    :func:`tenfold.init.gradcosine.statistic_mode` for BatchNorm networks."""
    params, names, grads, norm, loss0 = _first_batch(model, theta0, alphas, first, optimizer, loss_fn)
    target = _after_step(model, params, names, grads, norm, second, eta, optimizer, normalize_grad, second_order,
                         loss_fn)
    return target, norm, loss0


def gradinit(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor] | Iterable, gamma: float = 1.0,
             iterations: int = 390, lr: float = 1e-3, eta: float = 0.1,
             optimizer: Literal["sgd", "adam"] = "sgd", normalize_grad: bool = True,
             alpha_min_weight: float = 0.01, alpha_min_bias: float = 0.0, clip: float = 1.0,
             betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, second_order: bool = False,
             batch_no_overlap: bool = False, loss_fn: Callable = F.cross_entropy,
             on_iteration: Callable[[int, float, bool], None] | None = None
             ) -> tuple[nn.Module, GradInitHistory]:
    """Learn the per-tensor multipliers of ``model`` in place (see the module docstring).

    ``data``: one ``(x, y)`` half-batch (reused as ``S0``, ``S1`` and ``S2``) or an iterable of
    half-batches (cycled; the official loader gives half the training batch). ``loss_fn(outputs, targets)``
    returns the mean loss as a scalar (torch's convention, as in :func:`~tenfold.init.nio.nio`; a
    per-sample loss is refused). Returns the rescaled model (same object, modes restored) and the history.
    """
    require(gamma > 0, "gamma", gamma, "a positive gradient-norm bound")
    require(iterations >= 1, "iterations", iterations, "at least one iteration")
    require(lr > 0, "lr", lr, "a positive learning rate")
    require(eta > 0, "eta", eta, "a positive step of the target optimizer")
    require(clip > 0, "clip", clip, "a positive clipping bound")
    require(optimizer in ("sgd", "adam"), "optimizer", optimizer, "sgd or adam")
    require(alpha_min_weight >= 0 and alpha_min_bias >= 0, "alpha_min", (alpha_min_weight, alpha_min_bias),
            "non-negative lower bounds")
    named = scaled_parameters(model)
    theta0 = {k: p.detach().clone() for k, p in named.items()}
    alpha_min = {k: alpha_min_weight if "weight" in k else alpha_min_bias for k in named}
    alphas = {k: 1.0 for k in named}
    adam = RescaleAdamState(betas, eps)
    history = GradInitHistory()
    stream = _batches(data)
    cat = lambda a, b: (torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]]))  # noqa: E731
    with statistic_mode(model), _math_attention():
        for it in range(iterations):
            s0, s1 = next(stream), next(stream)
            leaves = {k: torch.tensor(a, dtype=theta0[k].dtype, device=theta0[k].device, requires_grad=True)
                      for k, a in alphas.items()}
            first = cat(s0, s1)
            params, names, grads, norm, loss0 = _first_batch(model, theta0, leaves, first, optimizer, loss_fn)
            constraint = bool(norm.detach() > gamma)
            if constraint:
                target, after = norm, float("nan")
            else:
                s2 = next(stream)
                base = next(stream) if batch_no_overlap else s0
                target = _after_step(model, params, names, grads, norm, cat(base, s2), eta, optimizer,
                                     normalize_grad, second_order, loss_fn)
                after = float(target.detach()) * eta
            alphas = rescale_step(target, leaves, alphas, adam, lr=lr, clip=clip, alpha_min=alpha_min,
                                  constraint=constraint, where=f"GradInit iteration {it}")
            history.norm.append(float(norm.detach()))
            history.constraint.append(constraint)
            history.loss.append(float(loss0.detach()))
            history.lookahead_loss.append(after)
            history.alphas.append(dict(alphas))
            if on_iteration is not None:
                on_iteration(it, history.norm[-1], constraint)
    with torch.no_grad():
        for k, p in named.items():
            p.copy_(alphas[k] * theta0[k])
    return model, history
