"""GradCosine (GC): the cosine similarity of sub-batch gradients at initialization (NIO, Sec. 3).

Sample-wise: ``GC = 1/(n(n-1)) sum_{i != j} cos(g_i, g_j)`` with ``g_i = grad_theta l_i``. Batch form
(Sec. 4, the code): the batch is cut into ``D`` contiguous sub-batches with overlap ``r``; with the
integer ``L = int(B/D)`` (as the official ``batch_settings``) sub-batch ``i`` spans
``[int((1-r) L i), int((1+r) L (i+1)))``, the first from 0 and the last to ``B`` (so the last one takes
the remainder); ``G_i`` is the gradient of that sub-batch's mean loss, ``GC`` the mean off-diagonal
cosine of the ``G_i`` and the norm statistic ``mean_i ||G_i||``. One forward pass serves all sub-batches.

Gradients are taken for the weights and biases of Conv, Linear and LayerNorm layers (the official
``get_ordered_params``); NIO rescales more tensors than that (BatchNorm too, see :mod:`tenfold.init.nio`).
BatchNorm runs on batch statistics without touching its running statistics, and dropout is off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tenfold.errors import ConfigError, require

SUPPORTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.LayerNorm)


def supported_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """``name -> parameter`` for the weights and biases of Conv, Linear and LayerNorm layers."""
    found: dict[str, nn.Parameter] = {}
    for mod_name, module in model.named_modules():
        if isinstance(module, SUPPORTED):
            for p_name, p in module.named_parameters(recurse=False):
                if p.requires_grad:
                    found[f"{mod_name}.{p_name}" if mod_name else p_name] = p
    if not found:
        raise ConfigError(f"model={type(model).__name__} is invalid: expected at least one Conv, Linear or LayerNorm "
                          "layer with trainable parameters (GradCosine is defined on those)")
    return found


def sub_batch_bounds(batch: int, parts: int, overlap: float = 0.0) -> list[tuple[int, int]]:
    """``[start, stop)`` of the ``parts`` sub-batches of a batch of ``batch`` samples with overlap ``r``."""
    require(isinstance(parts, int) and parts >= 2, "D", parts, "an integer >= 2 sub-batches")
    require(0.0 <= overlap < 1.0, "overlap", overlap, "a fraction in [0, 1)")
    require(batch >= parts, "batch", batch, f"at least D={parts} samples (one per sub-batch)")
    length = int(batch / parts)  # an integer sub-batch length, as the official code (not B/D as a float)
    bounds = []
    for i in range(parts):
        start = 0 if i == 0 else int((1 - overlap) * length * i)
        stop = batch if i == parts - 1 else min(batch, int((1 + overlap) * length * (i + 1)))
        bounds.append((start, stop))
    return bounds


@contextlib.contextmanager
def statistic_mode(model: nn.Module) -> Iterator[None]:
    """Dropout off and BatchNorm on batch statistics with its running statistics untouched; every
    module's mode and buffers are restored on exit."""
    modes = {m: m.training for m in model.modules()}
    saved = []
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.running_mean, m.running_var))
            m.running_mean, m.running_var = None, None  # forces batch statistics, no updates
    try:
        yield
    finally:
        for m, mean, var in saved:
            m.running_mean, m.running_var = mean, var
        for m, mode in modes.items():
            m.training = mode


LOSS_FN_SIGNATURE = ("loss_fn(outputs, targets) -> the mean loss as a scalar tensor (like "
                     "torch.nn.functional.cross_entropy or nn.CrossEntropyLoss())")


def per_sample_cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy (``reduction="none"``); NOT a ``loss_fn`` of this package (those return the mean)."""
    return F.cross_entropy(output, target, reduction="none")


def check_loss(loss, loss_fn) -> torch.Tensor:
    """``loss`` if it is a scalar tensor, else a one-line error naming the expected ``loss_fn`` signature.

    NIO, GradCosine and GradInit share ONE convention, torch's: ``loss_fn(outputs, targets)`` returns the
    mean loss of the samples it is given (GradCosine calls it once per sub-batch, on that sub-batch's rows
    of the outputs); a per-sample loss (``reduction="none"``) is refused, not averaged silently."""
    if isinstance(loss, torch.Tensor) and loss.dim() == 0:
        return loss
    got = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
    raise ConfigError(f"loss_fn={getattr(loss_fn, '__name__', type(loss_fn).__name__)} returned {got}: expected "
                      f"{LOSS_FN_SIGNATURE}; per-sample losses (reduction='none') are not accepted")


def _rows(value, start: int, stop: int, batch: int):
    """Rows ``start:stop`` of every tensor in ``value`` whose first dimension is the batch."""
    if isinstance(value, torch.Tensor):
        return value[start:stop] if value.dim() > 0 and value.shape[0] == batch else value
    if isinstance(value, (tuple, list)):
        return type(value)(_rows(v, start, stop, batch) for v in value)
    if isinstance(value, dict):
        return {k: _rows(v, start, stop, batch) for k, v in value.items()}
    raise ConfigError(f"model output or target of type {type(value).__name__} is invalid: expected a tensor, "
                      "or a tuple/list/dict of tensors, with the batch in dimension 0")


def sub_batch_losses(loss_fn: Callable, outputs, targets, bounds: list[tuple[int, int]], batch: int
                     ) -> list[torch.Tensor]:
    """``loss_fn`` on each sub-batch's rows of the outputs of ONE forward pass (so BatchNorm sees the
    whole batch): the mean loss ``L_i`` of sub-batch ``i``, whose gradient is ``G_i``."""
    return [check_loss(loss_fn(_rows(outputs, a, b, batch), _rows(targets, a, b, batch)), loss_fn)
            for a, b in bounds]


@dataclass
class GradCosine:
    """GC (mean off-diagonal cosine), ``norm`` (mean sub-batch gradient norm), the cosine matrix, the
    per-sub-batch norms and the gradient variance ``sum_p var_i(G_ip)`` (population variance over the
    ``D`` sub-batches, summed over coordinates: the official ``cal_grad_variance(...).sum()``)."""

    gc: torch.Tensor
    norm: torch.Tensor
    cosines: torch.Tensor
    norms: torch.Tensor | None = None
    variance: torch.Tensor | None = None


def cosine_statistics(grads: torch.Tensor) -> GradCosine:
    """GC, the mean norm and the variance of the rows of ``grads`` (D x P), differentiable."""
    norms = grads.norm(dim=1)
    unit = grads / norms.clamp_min(torch.finfo(grads.dtype).tiny).unsqueeze(1)
    cos = unit @ unit.T
    d = len(grads)
    off = cos.sum() - cos.diagonal().sum()
    # sum_j Var_i(G_ij) (biased), as deviations from the row mean: torch's var(dim=0) over a D x P tensor with
    # P ~ 1e7 walks columns with Welford's update and took 1.46 s per call on ResNet-18 (this form: 0.12 s)
    variance = (grads - grads.mean(dim=0, keepdim=True)).square().sum() / d
    return GradCosine(off / (d * (d - 1)), norms.mean(), cos, norms, variance)


def sub_batch_gradients(losses: list[torch.Tensor], params: list[torch.Tensor], create_graph: bool = False
                        ) -> torch.Tensor:
    """``G_i``: the flattened gradient of each sub-batch's mean loss ``losses[i]`` w.r.t. ``params`` (D x P)."""
    rows = []
    for loss in losses:
        grads = torch.autograd.grad(loss, params, retain_graph=True,
                                    create_graph=create_graph, allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)]))
    return torch.stack(rows)


def gradcosine(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
               loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
               D: int = 2, overlap: float = 0.0, sample_wise: bool = False) -> GradCosine:
    """GC and the mean gradient norm of ``model`` on ``batch = (x, y)``.

    ``loss_fn(outputs, targets)`` returns the mean loss as a scalar (torch's convention, default
    ``F.cross_entropy``); it is called on each sub-batch's rows of one forward pass. ``sample_wise`` uses
    every sample as its own sub-batch (``D = B``, the definition); otherwise ``D`` sub-batches with overlap
    ``overlap``.
    """
    x, y = batch
    bounds = sub_batch_bounds(len(x), len(x) if sample_wise else D, 0.0 if sample_wise else overlap)
    params = list(supported_parameters(model).values())
    with statistic_mode(model):
        losses = sub_batch_losses(loss_fn, model(x), y, bounds, len(x))
        grads = sub_batch_gradients(losses, params)
    stats = cosine_statistics(grads.detach())
    return stats
