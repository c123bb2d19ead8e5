"""One trainer, three rules: BPTT, SLTT and SLTT-K (Meng et al., ICCV 2023, Sec. 4; spec snn.md 1.2).

The model is a *one-step* network: ``model(x_t)`` advances every neuron by one time step and returns
the logits ``o[t]``. Per batch (states reset first, so graphs and memory never leak across batches):

- ``bptt``: run all T steps keeping the graph through the membranes; one backward of
  ``L = (1/T) sum_t l(o[t], y)``.
- ``sltt``: neurons detach ``u[t-1]``; after each step, backward of ``l(o[t], y) / T`` at once (its
  graph is freed); gradients accumulate, one optimizer step per batch. Activation memory is that of
  one step, independent of T.
- ``sltt-k``: as ``sltt``, but only K steps drawn by ``randperm(T)[:K]`` from a seeded generator get a
  backward; the other steps run under ``no_grad`` and still update membranes, BatchNorm running
  statistics and the output sum. The loss is still divided by T.

Prediction is ``argmax sum_t o[t]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from tenfold.errors import ConfigError, require
from tenfold.snn.loss import check_loss, per_step_loss
from tenfold.snn.neurons import reset_states, set_temporal

RULES = ("bptt", "sltt", "sltt-k")


def parse_rule(name: str) -> tuple[str, int | None]:
    """``"bptt"`` -> ("bptt", None), ``"sltt"`` -> ("sltt", None), ``"sltt-2"`` -> ("sltt-k", 2)."""
    if name in ("bptt", "sltt"):
        return name, None
    head, _, tail = name.rpartition("-")
    if head == "sltt" and tail.isdigit():
        return "sltt-k", int(tail)
    raise ConfigError(f"rule={name!r} is invalid: expected bptt, sltt or sltt-K with an integer K (e.g. sltt-2)")


def check_rule(rule: str, T: int, k: int | None) -> None:
    """One-line ConfigErrors for T < 1, an unknown rule, or K outside 1..T."""
    require(isinstance(T, int) and T >= 1, "T", T, "an integer number of time steps >= 1")
    if rule not in RULES:
        raise ConfigError(f"rule={rule!r} is invalid: expected one of {', '.join(RULES)}")
    if rule == "sltt-k":
        require(isinstance(k, int) and 1 <= k <= T, "K", k, f"an integer number of backward steps in 1..T={T}")


@dataclass
class BatchResult:
    loss: float             # (1/T) sum_t l(o[t], y), summed over all T steps (also the no-grad ones)
    logits_sum: torch.Tensor  # sum_t o[t], detached, (B, C)
    backward_calls: int
    grad_steps: list[int]   # time steps that received a backward


def step_input(x: torch.Tensor, t: int, static: bool) -> torch.Tensor:
    """The input at step t: the static image itself, or frame t of a (B, T, ...) sequence."""
    return x if static else x[:, t]


class SNNTrainer:
    """Computes a batch's gradients under ``rule`` and (with an optimizer) takes the update.

    ``backward`` defaults to ``loss.backward()``; pass ``ctx.backward`` to route it through the engine
    (Fabric, DDP). ``generator`` seeds SLTT-K's step draws. ``static=True`` feeds ``x`` at every step;
    otherwise ``x`` is (B, T, ...) and frame t is fed at step t.
    """

    def __init__(self, model: nn.Module, T: int, rule: str = "sltt", k: int | None = None,
                 optimizer: torch.optim.Optimizer | None = None, lam_l: float = 0.05, mse_target: str = "ones",
                 generator: torch.Generator | None = None, static: bool = True,
                 backward: Callable[[torch.Tensor], None] | None = None) -> None:
        check_rule(rule, T, k)
        check_loss(lam_l, mse_target)
        self.model, self.T, self.rule, self.k = model, T, rule, k
        self.optimizer, self.lam_l, self.mse_target = optimizer, lam_l, mse_target
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.static = static
        self._backward = backward or (lambda loss: loss.backward())
        set_temporal(model, "bptt" if rule == "bptt" else "sltt")

    def _check_input(self, x: torch.Tensor) -> None:
        if not self.static and (x.dim() < 2 or x.shape[1] < self.T):
            raise ConfigError(f"event input of shape {tuple(x.shape)} has fewer than T={self.T} frames in dim 1")

    def draw_steps(self) -> list[int]:
        """The steps that get a backward this batch (all of them except under SLTT-K)."""
        if self.rule != "sltt-k":
            return list(range(self.T))
        return sorted(torch.randperm(self.T, generator=self.generator)[: self.k].tolist())

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return per_step_loss(logits, y, self.lam_l, self.mse_target) / self.T

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> BatchResult:
        """Accumulate this batch's gradients into ``.grad`` (the caller zeroes them)."""
        self._check_input(x)
        reset_states(self.model)
        steps = self.draw_steps()
        chosen = set(steps)
        logits_sum, total, calls, bptt_loss = None, 0.0, 0, None
        for t in range(self.T):
            xt = step_input(x, t, self.static)
            with torch.set_grad_enabled(t in chosen and torch.is_grad_enabled()):
                logits = self.model(xt)
                loss_t = self._loss(logits, y)
            if self.rule == "bptt":
                bptt_loss = loss_t if bptt_loss is None else bptt_loss + loss_t
            elif t in chosen:
                self._backward(loss_t)
                calls += 1
            total += float(loss_t.detach())
            logits_sum = logits.detach() if logits_sum is None else logits_sum + logits.detach()
        if bptt_loss is not None:
            self._backward(bptt_loss)
            calls += 1
        reset_states(self.model)  # drop the last step's graph and state
        return BatchResult(total, logits_sum, calls, steps)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> BatchResult:
        """zero_grad, gradients, one optimizer step."""
        if self.optimizer is None:
            raise ConfigError("optimizer=None is invalid for SNNTrainer.step: expected a torch optimizer")
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        result = self.gradients(x, y)
        self.optimizer.step()
        return result

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_t o[t]`` in eval mode."""
        self._check_input(x)
        was_training = self.model.training
        self.model.eval()
        reset_states(self.model)
        out = sum(self.model(step_input(x, t, self.static)) for t in range(self.T))
        reset_states(self.model)
        self.model.train(was_training)
        return out

    def accuracy(self, dataset, batch_size: int = 256, device: torch.device | str = "cpu") -> float:
        """Test accuracy of ``argmax sum_t o[t]`` over a (x, y) dataset."""
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
        correct = total = 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            correct += int((self.predict(x).argmax(1) == y).sum())
            total += len(y)
        return correct / max(total, 1)


def parameter_grads(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter's ``.grad`` (zeros where None), by parameter name."""
    return {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
            for n, p in model.named_parameters()}


def grad_cosines(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    """Cosine similarity of two gradients, parameter by parameter (weights of each layer)."""
    return {n: float(torch.nn.functional.cosine_similarity(a[n].flatten().double(), b[n].flatten().double(),
                                                             dim=0)) for n in a}
