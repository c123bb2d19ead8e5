"""Dot-regression (DR) loss against fixed ETF prototypes (NC-FSCIL, Sec. 3.2, Eq. 6).

``L = 1/2 (w_y^T mu_hat - 1)^2`` with ``mu_hat = mu / ||mu||``. Its gradient
``dL/dmu = (c - 1)(w_y - c mu_hat)/||mu||`` (``c = w_y^T mu_hat``) only pulls a feature toward its
own prototype; unlike cross-entropy it never pushes away from other classes' prototypes, so
fine-tuning on a few novel classes does not disturb the base classes' geometry.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def prototype_cosine(features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """``c_i = w_{y_i}^T mu_hat_i`` for features (B, d), labels (B,) and prototypes (d, K)."""
    mu_hat = F.normalize(features, dim=1)
    return (mu_hat * prototypes[:, labels].T).sum(dim=1)


def balance_weights(labels: torch.Tensor) -> torch.Tensor:
    """Class-balancing factors ``r_y^2 = (B / #labels in batch) / n_y`` (their mean over the batch is 1)."""
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    batch, present = labels.numel(), counts.numel()
    return (batch / present) / counts[inverse].to(torch.get_default_dtype())


def dot_regression_loss(features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor,
                        balanced: bool = False, reduction: str = "mean") -> torch.Tensor:
    """Batch mean of ``1/2 r_y^2 (w_y^T mu_hat - 1)^2``; ``r_y = 1`` unless ``balanced``.

    ``reduction="none"`` gives the per-sample terms (B,) instead of their mean."""
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction={reduction!r}: expected 'mean' or 'none'")
    per_sample = 0.5 * (prototype_cosine(features, labels, prototypes) - 1.0) ** 2
    if balanced:
        per_sample = per_sample * balance_weights(labels).to(per_sample.dtype)
    return per_sample.mean() if reduction == "mean" else per_sample


def mixed_loss(loss_fn, outputs: torch.Tensor, labels_a: torch.Tensor, labels_b: torch.Tensor,
               lam: float, **kwargs) -> torch.Tensor:
    """``lam L(y_a) + (1 - lam) L(y_b)``: the loss of a Mixup/CutMix batch (Zhang et al.; Yun et al.)."""
    return lam * loss_fn(outputs, labels_a, **kwargs) + (1.0 - lam) * loss_fn(outputs, labels_b, **kwargs)
