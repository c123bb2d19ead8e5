"""A small training loop for tuned models: AdamW on the trainable parameters, linear warm-up then cosine.

A tuned model may define ``tuning_loss(x, y)`` (e.g. KD's distillation loss); otherwise the loss is
cross-entropy on ``model(x)``. A model may also define ``tuning_epoch_end(epoch, epochs)`` (called after
every epoch, e.g. for pruning schedules).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tenfold.errors import ConvergenceError, require


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """lr factor: linear warm-up to 1, then cosine decay to 0."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return factor


def train_tuned(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int, lr: float,
                weight_decay: float, generator: torch.Generator, warmup: float = 0.1) -> list[float]:
    """Train ``model``'s trainable parameters on (x, y); returns the mean loss of each epoch."""
    require(epochs >= 1, "epochs", epochs, "at least 1")
    params = trainable(model)
    require(len(params) > 0, "model", type(model).__name__, "at least one trainable parameter")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps = epochs * -(-len(y) // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps, int(warmup * steps)))
    loss_of = getattr(model, "tuning_loss", None) or (lambda xb, yb: F.cross_entropy(model(xb), yb))
    history = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=generator)
        total = 0.0
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size]
            loss = loss_of(x[idx], y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        history.append(total / len(y))
        if not math.isfinite(history[-1]):
            raise ConvergenceError(f"training loss became {history[-1]} at epoch {epoch + 1}: lower lr={lr}")
        if hasattr(model, "tuning_epoch_end"):
            model.tuning_epoch_end(epoch, epochs)
    model.eval()
    return history


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on (x, y)."""
    model.eval()
    correct = sum(int((model(x[i:i + batch_size]).argmax(-1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(y), batch_size))
    return correct / max(1, len(y))
