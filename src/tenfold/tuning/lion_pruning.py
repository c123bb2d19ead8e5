"""Lottery-ticket pruning of LION's implicit layers (spec sec. 3; our reading of the paper's rule).

Scope: the weight tensors ``PRUNABLE`` of both equilibrium layers, ranked globally; biases are exempt.

Soft phase (:class:`LotteryPruner`), repeated every epoch:
- score each weight by |theta * dL/dtheta| (GSM-style; the gradient summed over the epoch) or by |theta|;
  ``score="random"`` is the ablation of the lottery selection: one seeded uniform draw per weight, fixed for
  the whole run, so the kept set is a random subset of exactly the same size (same sparsity, same soft
  phase and schedule, same finalisation), chosen without looking at the weights or the loss;
- keep the top n - floor(rho n); kept weights take the optimiser's (AdamW) update;
- the others get no gradient and decay, theta <- theta (1 - lr lambda_s), with lambda_s >> weight decay.
Finalisation writes the kept set into the layers' mask buffers and zeroes the rest: exactly floor(rho n)
zeros that later steps cannot revive (weights are used as weight * mask).

Iterative magnitude pruning with rewinding (Frankle & Carbin 2019) is the alternative:
:func:`imp_zero_counts` gives the per-round targets (prune ``rate`` of the survivors each round) and
:meth:`LotteryPruner.prune_magnitude` extends the mask; the caller rewinds and retrains between rounds.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tenfold.errors import require

SCORES = ("gsm", "magnitude", "random")


def check_rho(rho: float) -> None:
    require(isinstance(rho, (int, float)) and 0 <= rho < 1, "rho", rho, "a pruned fraction in [0, 1)")


def prunable_weights(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """``{qualified name: (layer, attribute)}`` of every prunable weight in ``model``'s implicit layers."""
    found = {}
    for prefix, module in model.named_modules():
        for attr in getattr(module, "PRUNABLE", ()):
            found[f"{prefix}.{attr}" if prefix else attr] = (module, attr)
    require(bool(found), "model", type(model).__name__, "a model with LION implicit layers (PRUNABLE weights)")
    return found


def imp_zero_counts(n: int, rho: float, rate: float = 0.2) -> list[int]:
    """Zeros after each round of iterative magnitude pruning: prune ``rate`` of the survivors per round
    until floor(rho n) zeros (the last round stops exactly there)."""
    check_rho(rho)
    require(0 < rate < 1, "rate", rate, "a per-round pruning fraction in (0, 1)")
    target, zeros, counts = math.floor(rho * n), 0, []
    while zeros < target:
        zeros = min(target, zeros + max(1, math.floor(rate * (n - zeros))))
        counts.append(zeros)
    return counts


class LotteryPruner:
    """Global soft lottery pruning of ``model``'s implicit layers to sparsity ``rho``."""

    def __init__(self, model: nn.Module, rho: float, score: str = "gsm", decay: float = 50.0,
                 generator: torch.Generator | None = None) -> None:
        check_rho(rho)
        require(score in SCORES, "score", score, f"one of {', '.join(SCORES)}")
        require(decay >= 0, "decay", decay, "a decay strength >= 0")
        self.rho, self.score, self.decay = float(rho), score, float(decay)
        self.weights = prunable_weights(model)
        # score="random": one draw per weight for the whole run (CPU generator: the same ranking on any device)
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        self.random_scores = ({k: torch.rand(self._param(k).shape, generator=g).to(self._param(k).device)
                               for k in self.weights} if score == "random" else {})
        self.keep = {k: torch.ones_like(self._param(k), dtype=torch.bool) for k in self.weights}
        self.grad_sum = {k: torch.zeros_like(self._param(k)) for k in self.weights}
        self._before: dict[str, torch.Tensor] = {}
        self.finalized = False

    def _param(self, key: str) -> torch.Tensor:
        module, attr = self.weights[key]
        return getattr(module, attr)

    @property
    def size(self) -> int:
        return sum(m.numel() for m in self.keep.values())

    @property
    def zeros_target(self) -> int:
        return math.floor(self.rho * self.size)

    # soft phase ----------------------------------------------------------------------------------
    def after_backward(self) -> None:
        """Record this step's gradients for the scores, then cut them for the non-kept weights."""
        for key in self.weights:
            p = self._param(key)
            if p.grad is None:
                continue
            self.grad_sum[key] += p.grad.detach()
            p.grad.mul_(self.keep[key])

    def before_step(self) -> None:
        self._before = {k: self._param(k).detach().clone() for k in self.weights}

    @torch.no_grad()
    def after_step(self, lr: float) -> None:
        """Non-kept weights: undo the optimiser's move (momentum, weight decay) and decay them instead."""
        factor = max(0.0, 1.0 - lr * self.decay)
        for key, old in self._before.items():
            p = self._param(key)
            drop = ~self.keep[key]
            p[drop] = old[drop] * factor
        self._before = {}

    def scores(self) -> dict[str, torch.Tensor]:
        out = {}
        if self.score == "random":
            return dict(self.random_scores)
        for key in self.weights:
            theta = self._param(key).detach()
            out[key] = (theta * self.grad_sum[key]).abs() if self.score == "gsm" else theta.abs()
        return out

    def recompute(self) -> None:
        """New kept set from the scores: global top n - floor(rho n) (ties broken by position)."""
        self.keep = self._top(self.scores(), self.size - self.zeros_target)
        for g in self.grad_sum.values():
            g.zero_()

    def _top(self, scores: dict[str, torch.Tensor], keep_count: int,
             allowed: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        keys = list(scores)
        flat = torch.cat([scores[k].flatten().float() for k in keys])
        if allowed is not None:  # already-pruned entries can never come back
            flat = torch.where(torch.cat([allowed[k].flatten() for k in keys]), flat, torch.full_like(flat, -1.0))
        chosen = torch.zeros_like(flat, dtype=torch.bool)
        chosen[torch.topk(flat, keep_count, sorted=False).indices] = True
        out, start = {}, 0
        for k in keys:
            n = scores[k].numel()
            out[k] = chosen[start:start + n].view_as(scores[k])
            start += n
        return out

    # hard masks ------------------------------------------------------------------------------------
    @torch.no_grad()
    def finalize(self) -> None:
        """Write the kept set into the layers' masks and zero every other weight (exactly floor(rho n))."""
        for key, (module, attr) in self.weights.items():
            mask = self.keep[key].to(getattr(module, f"{attr}_mask").dtype)
            getattr(module, f"{attr}_mask").copy_(mask)
            getattr(module, attr).mul_(mask)
        self.finalized = True

    @torch.no_grad()
    def prune_magnitude(self, zeros: int) -> None:
        """IMP round: among the surviving weights keep the largest |theta| (``score="random"``: the largest
        random scores) so that ``zeros`` are pruned, then finalise (the caller rewinds and retrains)."""
        require(0 <= zeros < self.size, "zeros", zeros, f"a count in [0, {self.size})")
        theta = (dict(self.random_scores) if self.score == "random"
                 else {k: self._param(k).detach().abs() for k in self.weights})
        self.keep = self._top(theta, self.size - zeros, allowed=self.keep)
        self.finalize()

    def zero_count(self) -> int:
        """Zeros among the effective (masked) prunable weights."""
        return sum(int((module.masked(attr) == 0).sum()) for module, attr in self.weights.values())


@torch.no_grad()
def rewind(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """IMP rewinding: load the saved implicit-layer weights ``state`` (from init or an early step k) into
    ``model``, keeping the current masks."""
    for key, (module, attr) in prunable_weights(model).items():
        getattr(module, attr).copy_(state[key])


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the prunable weights, for :func:`rewind`."""
    return {k: getattr(m, a).detach().clone() for k, (m, a) in prunable_weights(model).items()}


@torch.no_grad()
def hard_pruned_copy(model: nn.Module) -> nn.Module:
    """A deep copy with masks folded into the weights (weight * mask) and masks reset to ones."""
    import copy

    clone = copy.deepcopy(model)
    for module, attr in prunable_weights(clone).values():
        getattr(module, attr).copy_(module.masked(attr))
        getattr(module, f"{attr}_mask").fill_(1)
    return clone
