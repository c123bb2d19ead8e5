"""A small training loop for tuned models: AdamW on the trainable parameters, linear warm-up then cosine.

A tuned model may define ``tuning_loss(x, y)`` (e.g. KD's distillation loss); otherwise the loss is
cross-entropy on ``model(x)``. A model may also define ``tuning_epoch_end(epoch, epochs)`` (called after
every epoch, e.g. for pruning schedules).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tenfold.errors import ConvergenceError, require

Data = tuple[torch.Tensor, torch.Tensor] | Dataset


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


def batches(data: Data, batch_size: int, device: torch.device,
            generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches of in-memory (x, y) tensors or of a Dataset, shuffled when ``generator`` is given."""
    if isinstance(data, tuple):
        x, y = data
        order = torch.randperm(len(y), generator=generator) if generator is not None else torch.arange(len(y))
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size]
            yield x[idx].to(device), y[idx].to(device)
        return
    loader = DataLoader(data, batch_size=batch_size, shuffle=generator is not None, generator=generator)
    for xb, yb in loader:
        yield xb.to(device), torch.as_tensor(yb).to(device)


def _length(data: Data) -> int:
    return len(data[1]) if isinstance(data, tuple) else len(data)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def train_tuned(model: nn.Module, data: Data, *, epochs: int, batch_size: int, lr: float, weight_decay: float,
                generator: torch.Generator, warmup: float = 0.1) -> list[float]:
    """Train ``model``'s trainable parameters on ``data`` ((x, y) or a Dataset); mean loss of each epoch."""
    require(epochs >= 1, "epochs", epochs, "at least 1")
    params = trainable(model)
    require(len(params) > 0, "model", type(model).__name__, "at least one trainable parameter")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    n, device = _length(data), _device(model)
    steps = epochs * -(-n // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps, int(warmup * steps)))
    loss_of = getattr(model, "tuning_loss", None) or (lambda xb, yb: F.cross_entropy(model(xb), yb))
    history = []
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for xb, yb in batches(data, batch_size, device, generator):
            loss = loss_of(xb, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if hasattr(model, "tuning_after_step"):
                model.tuning_after_step()
            sched.step()
            total += loss.item() * len(yb)
        history.append(total / n)
        if not math.isfinite(history[-1]):
            raise ConvergenceError(f"training loss became {history[-1]} at epoch {epoch + 1}: lower lr={lr}")
        if hasattr(model, "tuning_epoch_end"):
            model.tuning_epoch_end(epoch, epochs)
    model.eval()
    return history


@torch.no_grad()
def accuracy(model: nn.Module, data: Data, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on ``data`` ((x, y) or a Dataset)."""
    model.eval()
    correct = sum(int((model(xb).argmax(-1) == yb).sum()) for xb, yb in batches(data, batch_size, _device(model)))
    return correct / max(1, _length(data))
