"""The per-step SLTT loss (Meng et al. 2023, Sec. 4.3; spec snn.md 1.2).

``l(o[t], y) = (1 - lam_L) * CE(o[t], y) + lam_L * MSE(o[t], phi)``, ``phi`` all-ones (TET-style) or
one-hot. The training loss is ``L = (1/T) sum_t l(o[t], y)``; a loss on the time-averaged output
would force every step's graph to be kept and defeat SLTT.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tenfold.errors import ConfigError, require

TARGETS = ("ones", "onehot")


def check_loss(lam_l: float, target: str) -> None:
    require(0.0 <= lam_l <= 1.0, "lam_l", lam_l, "a mixing weight in [0, 1]")
    if target not in TARGETS:
        raise ConfigError(f"mse_target={target!r} is invalid: expected one of {', '.join(TARGETS)}")


def per_step_loss(logits: torch.Tensor, labels: torch.Tensor, lam_l: float = 0.05,
                  target: str = "ones") -> torch.Tensor:
    """``(1 - lam_L) CE(o, y) + lam_L MSE(o, phi)`` for one step's logits ``o`` (B, C)."""
    ce = F.cross_entropy(logits, labels)
    if lam_l == 0.0:
        return ce
    if target == "ones":
        phi = torch.ones_like(logits)
    else:
        phi = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    return (1.0 - lam_l) * ce + lam_l * F.mse_loss(logits, phi)
