"""LARS (You, Gitman & Ginsburg 2017) and the linear warm-up + cosine schedule of the MPCL recipe.

The official SimCLR-Attn code (PKU-ML/Message-Passing-Contrastive-Learning, GRAPH-ATTENTION, built on
AndrewAtanov/simclr-pytorch) wraps ``torch.optim.SGD(momentum=0.9)`` in a LARS step and uses lr 1.0,
wd 1e-6, trust coefficient 0.001, 1% linear warm-up then cosine annealing, stepped every iteration.
Per parameter of an *adapted* group (weights; biases and BatchNorm parameters are excluded from
both weight decay and adaptation)::

    d   = g + wd * w
    d  *= eta * ||w|| / ||d||                 (trust="official": the norm of the decayed gradient)
    d  *= eta * ||w|| / (||g|| + wd ||w||)    (trust="paper": You et al. Eq. 6, solo-learn / Lightning Bolts)
    buf = momentum * buf + d                  (torch SGD convention: buf = d at the first step)
    w  -= lr * buf

Excluded parameters get plain momentum SGD without weight decay. The ratio is 1 when ``||w||`` or
``||g||`` is 0 (both codes). Departures: solo-learn adds ``eps = 1e-8`` to its denominator (here too,
with trust="paper") and can clip the ratio (not done here); the official code excludes parameters by
name ('bn'/'bias'), here by shape (every 1-d parameter: biases and norm affine weights), which is the
same set on the ResNet-18 and projector used here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from tenfold.errors import require

TRUST_FORMS = ("official", "paper")


class LARS(torch.optim.Optimizer):
    """Momentum SGD with layer-wise trust ratios; groups carry ``layer_adaptation`` (default True).

    Its state (``momentum_buffer`` per parameter) and hyper-parameters go through ``state_dict()``
    like any torch optimizer, so a :class:`~tenfold.engine.stage.Stage` checkpoints and resumes it.
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 1e-3, trust: str = "official", eps: float = 1e-8) -> None:
        require(lr >= 0, "lr", lr, "a non-negative learning rate")
        require(0 <= momentum < 1, "momentum", momentum, "a momentum in [0, 1)")
        require(weight_decay >= 0, "weight_decay", weight_decay, "a non-negative weight decay")
        require(eta > 0, "eta", eta, "a positive trust coefficient")
        require(trust in TRUST_FORMS, "trust", trust, f"one of {', '.join(TRUST_FORMS)}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, trust=trust, eps=eps,
                        layer_adaptation=True)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            wd, mom, lr = group["weight_decay"], group["momentum"], group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                d = g.add(p, alpha=wd) if wd != 0 else g.clone()
                if group["layer_adaptation"]:
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    if group["trust"] == "official":
                        denom = torch.linalg.vector_norm(d)
                    else:
                        denom = g_norm + wd * w_norm + group["eps"]
                    ratio = torch.where((w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / denom,
                                        torch.ones_like(w_norm))
                    d.mul_(ratio)
                if mom != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d.detach().clone()
                    else:
                        buf.mul_(mom).add_(d)
                    d = buf
                p.add_(d, alpha=-lr)
        return loss


def is_excluded(name: str, p: torch.nn.Parameter) -> bool:
    """Biases and normalisation parameters (every 1-d parameter): no weight decay, no adaptation."""
    return p.ndim <= 1


def lars_param_groups(named: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float,
                      exclude: Callable[[str, torch.nn.Parameter], bool] = is_excluded, **extra) -> list[dict]:
    """Two groups as the official ``configure_optimizers``: adapted and decayed weights, then the excluded
    parameters with ``weight_decay=0`` and ``layer_adaptation=False`` (empty groups are dropped).
    ``extra`` options (e.g. ``lr``) go into both groups."""
    kept, skipped = [], []
    for name, p in named:
        if p.requires_grad:
            (skipped if exclude(name, p) else kept).append(p)
    groups = [{"params": kept, "weight_decay": weight_decay, "layer_adaptation": True, **extra},
              {"params": skipped, "weight_decay": 0.0, "layer_adaptation": False, **extra}]
    return [g for g in groups if g["params"]]


class WarmupCosine:
    """``lr(t) / base = (t + 1) / (W + 1)`` for ``t <= W`` then ``(1 + cos(pi (t - W) / (T - W))) / 2``,
    with ``W = int(warmup * T)``: the closed form of the official ``LinearWarmupAndCosineAnneal``
    (0 at ``t = T``). A class, not a lambda, so that it pickles."""

    def __init__(self, total_steps: int, warmup: float) -> None:
        require(total_steps >= 1, "total_steps", total_steps, "at least one step")
        require(0 <= warmup < 1, "warmup", warmup, "a warm-up fraction in [0, 1)")
        self.total = int(total_steps)
        self.warm = int(warmup * total_steps)

    def __call__(self, t: int) -> float:
        if t <= self.warm:
            return (t + 1) / (self.warm + 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(t - self.warm, self.total - self.warm) / (self.total - self.warm)))


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float = 0.01
                  ) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepped once per iteration with :class:`WarmupCosine` (``warmup``: fraction of steps)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(total_steps, warmup))
