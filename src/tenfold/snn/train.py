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

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from tenfold.errors import ConfigError, require
from tenfold.snn.loss import check_loss, per_step_loss
from tenfold.snn.rules import parse_rule  # re-exported: tenfold.snn.train.parse_rule
from tenfold.snn.neurons import _is_spikingjelly_memory, detach_states, reset_states, spiking_neurons, temporal_mode

RULES = ("bptt", "sltt", "sltt-k")
PRECISIONS = ("32", "16-mixed", "bf16-mixed")


def normalize_rule(rule: str, k: int | None) -> tuple[str, int | None]:
    """The rule and K from the user's spelling: ``("sltt-2", None)`` and ``("sltt-k", 2)`` both give
    ("sltt-k", 2); a K that the rule would ignore, or two different K, is a one-line ConfigError."""
    if not isinstance(rule, str):
        raise ConfigError(f"rule={rule!r} is invalid: expected bptt, sltt, sltt-k or sltt-K (e.g. sltt-2)")
    if rule == "sltt-k":
        return rule, k
    if rule not in ("bptt", "sltt") and not (rule.startswith("sltt-") and rule[5:].isdigit()):
        raise ConfigError(f"rule={rule!r} is invalid: expected one of {', '.join(RULES)} or sltt-K (e.g. sltt-2)")
    base, named_k = parse_rule(rule)
    if named_k is None:
        if k is not None:
            raise ConfigError(f"k={k!r} is invalid with rule={rule!r}: K is used only by SLTT-K "
                              f"(rule='sltt-k' with k={k}, or rule='sltt-{k}')")
        return base, None
    if k is not None and k != named_k:
        raise ConfigError(f"k={k!r} is invalid with rule={rule!r}: the rule's name already says K={named_k}")
    return base, named_k


def check_rule(rule: str, T: int, k: int | None) -> None:
    """One-line ConfigErrors for T < 1, an unknown rule, or K outside 1..T."""
    require(isinstance(T, int) and not isinstance(T, bool) and T >= 1, "T", T, "an integer number of time steps >= 1")
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


def logits_of(out, where: str = "the model") -> torch.Tensor:
    """The logits of one step's output: a tensor, or the first element of a tuple/list (e.g. ``(logits,
    aux)``); anything else is a one-line ConfigError."""
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"output of {where} is a {type(out).__name__}: expected the step's logits as a tensor "
                          "(or a tuple whose first element is the logits)")
    return out


def _full(t: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (under autocast) in float32 for the loss and the sum; others unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _batch_xy(batch, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, dict) and "x" in batch and "y" in batch:
        return batch["x"], batch["y"]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ConfigError(f"a batch of {where} is a {type(batch).__name__}: expected (x, y) pairs")


def _no_sync_of(model: nn.Module) -> Callable[[], AbstractContextManager] | None:
    """DDP's ``no_sync`` when ``model`` is a DistributedDataParallel (plain or inside Fabric's wrapper)."""
    inner = getattr(model, "_forward_module", model)
    for m in (model, inner):
        if isinstance(m, torch.nn.parallel.DistributedDataParallel):
            return m.no_sync
    return None


class SNNTrainer:
    """Computes a batch's gradients under ``rule`` and (with an optimizer) takes the update.

    - ``rule``: "bptt", "sltt", "sltt-k" (with ``k``) or "sltt-K" (e.g. "sltt-2"). The model's neurons
      are put in the rule's temporal mode for each call only and restored afterwards, so several
      trainers may share one model.
    - ``loss``: the per-step loss ``l(o[t], y)``; default the paper's ``(1 - lam_l) CE + lam_l MSE``.
    - ``backward`` defaults to ``loss.backward()``; pass ``ctx.backward`` to route it through the engine
      (Fabric). ``no_sync``: a context-manager factory suspending the DDP gradient all-reduce (default:
      the model's own ``no_sync`` when it is a DDP module); every step's forward and backward but the
      last one that gets a backward runs inside it, so gradients are reduced once per batch.
    - ``precision``: "32", "16-mixed" (autocast float16 + GradScaler, as the official SLTT-K) or
      "bf16-mixed" (autocast bfloat16, no scaler). ``scaler`` overrides the GradScaler.
    - ``online=False`` (SLTT, SLTT-K): the same gradient from one backward of the summed step losses
      after the last step, so every step's graph is held at once: SLTT without its memory saving (an
      ablation; the gradient equals the online one).
    - ``generator`` seeds SLTT-K's step draws. ``static=True`` feeds ``x`` at every step; otherwise
      ``x`` is (B, T, ...) and frame t is fed at step t.

    The model is a one-step network: it must contain a spiking neuron (ours or SpikingJelly's in
    step_mode 's'); SpikingJelly neurons are reset per batch and detached per step under SLTT.
    """

    # BPTT through tenfold.snn.multistep (layers once over T x B, one LIF node per layer) where the network
    # allows it; False keeps the one-step loop (same gradients).
    multistep: bool = True

    def __init__(self, model: nn.Module, T: int, rule: str = "sltt", k: int | None = None,
                 optimizer: torch.optim.Optimizer | None = None, lam_l: float = 0.05, mse_target: str = "ones",
                 generator: torch.Generator | None = None, static: bool = True,
                 backward: Callable[[torch.Tensor], None] | None = None,
                 loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 precision: str = "32", scaler: torch.amp.GradScaler | None = None,
                 no_sync: Callable[[], AbstractContextManager] | None = None, online: bool = True) -> None:
        rule, k = normalize_rule(rule, k)
        check_rule(rule, T, k)
        if loss is None:
            check_loss(lam_l, mse_target)
        elif not callable(loss):
            raise ConfigError(f"loss={loss!r} is invalid: expected a callable loss(logits, labels) -> scalar tensor")
        if precision not in PRECISIONS:
            raise ConfigError(f"precision={precision!r} is invalid: expected one of {', '.join(PRECISIONS)}")
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model={type(model).__name__} is invalid: expected a torch.nn.Module")
        neurons = spiking_neurons(model)
        if not neurons:
            raise ConfigError(f"model={type(model).__name__} has no spiking neuron: expected LIFNeuron layers "
                              "(tenfold.snn) or SpikingJelly neurons in step_mode 's'")
        multi = [m for m in neurons if getattr(m, "step_mode", "s") != "s"]
        if multi:
            raise ConfigError(f"model has a SpikingJelly neuron in step_mode={multi[0].step_mode!r}: SNNTrainer calls "
                              "the model once per time step; expected step_mode 's' (functional.set_step_mode)")
        self.model, self.T, self.rule, self.k = model, T, rule, k
        self.optimizer, self.lam_l, self.mse_target = optimizer, lam_l, mse_target
        self.loss_fn = loss
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.static = static
        self._backward = backward or (lambda loss: loss.backward())
        self.no_sync = no_sync if no_sync is not None else _no_sync_of(model)
        self.precision = precision
        self.online = bool(online)
        if precision == "16-mixed" and scaler is None:
            scaler = torch.amp.GradScaler(self._device().type)
        self.scaler = scaler

    @property
    def temporal(self) -> str:
        return "bptt" if self.rule == "bptt" else "sltt"

    def _device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def _autocast(self, x: torch.Tensor) -> AbstractContextManager:
        if self.precision == "32":
            return nullcontext()
        dtype = torch.float16 if self.precision == "16-mixed" else torch.bfloat16
        return torch.autocast(x.device.type, dtype=dtype)

    def _check_input(self, x, y=None) -> None:
        if not isinstance(x, torch.Tensor) or (y is not None and not isinstance(y, torch.Tensor)):
            what = type(x).__name__ if not isinstance(x, torch.Tensor) else type(y).__name__
            raise ConfigError(f"a batch of {what} is invalid: expected tensors x, y (iterate a DataLoader with "
                              "trainer.fit_epoch(loader) or pass it to trainer.accuracy)")
        if not self.static and (x.dim() < 2 or x.shape[1] < self.T):
            raise ConfigError(f"event input of shape {tuple(x.shape)} has fewer than T={self.T} frames in dim 1")

    def draw_steps(self) -> list[int]:
        """The steps that get a backward this batch (all of them except under SLTT-K)."""
        if self.rule != "sltt-k":
            return list(range(self.T))
        return sorted(torch.randperm(self.T, generator=self.generator)[: self.k].tolist())

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, scale: bool = True) -> torch.Tensor:
        """``l(o[t], y) / T`` (``scale=False``: ``l(o[t], y)``, for BPTT's one division of the sum)."""
        if self.loss_fn is not None:
            value = self.loss_fn(logits, y)
            if not isinstance(value, torch.Tensor) or value.dim() != 0:
                raise ConfigError(f"loss returned {type(value).__name__} of shape {tuple(getattr(value, 'shape', ()))}: "
                                  "expected a scalar tensor")
        else:
            value = per_step_loss(_full(logits), y, self.lam_l, self.mse_target)
        return value / self.T if scale else value

    def _run_backward(self, loss: torch.Tensor) -> None:
        self._backward(self.scaler.scale(loss) if self.scaler is not None else loss)

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> BatchResult:
        """Accumulate this batch's gradients into ``.grad`` (the caller zeroes them). Under AMP with a
        GradScaler the gradients are scaled (``self.scaler.unscale_`` or ``step`` undoes it)."""
        self._check_input(x, y)
        with temporal_mode(self.model, self.temporal):
            reset_states(self.model)
            try:
                if self.multistep and self.rule == "bptt":
                    from tenfold.snn.multistep import multistep_bptt_gradients

                    result = multistep_bptt_gradients(self, x, y)  # None: the network needs the one-step loop
                    if result is not None:
                        return result
                return self._gradients(x, y)
            finally:
                reset_states(self.model)  # drop the last step's graph and state

    def _gradients(self, x: torch.Tensor, y: torch.Tensor) -> BatchResult:
        steps = self.draw_steps()
        chosen = set(steps)
        offline = self.rule == "bptt" or not self.online
        last = self.T - 1 if offline else steps[-1]
        logits_sum, total, calls, bptt_loss = None, None, 0, None
        memories = [m for m in self.model.modules() if _is_spikingjelly_memory(m)] if self.rule != "bptt" else []
        for t in range(self.T):
            xt = step_input(x, t, self.static)
            sync = nullcontext() if (self.no_sync is None or t >= last) else self.no_sync()
            with sync:
                with torch.set_grad_enabled(t in chosen and torch.is_grad_enabled()), self._autocast(xt):
                    logits = logits_of(self.model(xt))
                    loss_t = self._loss(logits, y, scale=not offline)  # offline: the sum is divided once
                for m in memories:
                    detach_states(m)  # SpikingJelly neurons: no temporal graph under SLTT
                if offline:
                    if t in chosen:
                        bptt_loss = loss_t if bptt_loss is None else bptt_loss + loss_t
                elif t in chosen:
                    self._run_backward(loss_t)
                    calls += 1
            total = loss_t.detach() if total is None else total + loss_t.detach()  # one .item() per batch
            logits_sum = _full(logits.detach()) if logits_sum is None else logits_sum + _full(logits.detach())
        if bptt_loss is not None:
            self._run_backward(bptt_loss / self.T)
            calls += 1
        if offline:
            total = total / self.T
        return BatchResult(float(total), logits_sum, calls, steps)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> BatchResult:
        """zero_grad, gradients, one optimizer step (through the GradScaler under "16-mixed")."""
        if self.optimizer is None:
            raise ConfigError("optimizer=None is invalid for SNNTrainer.step: expected a torch optimizer")
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        result = self.gradients(x, y)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return result

    def fit_epoch(self, loader: Iterable) -> list[BatchResult]:
        """One :meth:`step` per (x, y) batch of ``loader`` (a DataLoader or any iterable of pairs), moved
        to the model's device."""
        device = self._device()
        out = []
        for batch in loader:
            x, y = _batch_xy(batch, type(loader).__name__)
            out.append(self.step(x.to(device), y.to(device)))
        return out

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_t o[t]`` in eval mode."""
        self._check_input(x)
        was_training = self.model.training
        self.model.eval()
        reset_states(self.model)
        try:
            out = None
            for t in range(self.T):
                xt = step_input(x, t, self.static)
                with self._autocast(xt):
                    o = _full(logits_of(self.model(xt)))
                out = o if out is None else out + o
        finally:
            reset_states(self.model)
            self.model.train(was_training)
        return out

    def accuracy(self, data, batch_size: int = 256, device: torch.device | str | None = None) -> float:
        """Test accuracy of ``argmax sum_t o[t]`` over a dataset of (x, y) pairs or a DataLoader (any
        iterable of (x, y) batches)."""
        if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
            loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
        elif isinstance(data, Iterable):
            loader = data
        else:
            raise ConfigError(f"data={type(data).__name__} is invalid: expected a Dataset of (x, y) or a DataLoader")
        device = torch.device(device) if device is not None else self._device()
        correct = total = 0
        for batch in loader:
            x, y = _batch_xy(batch, type(data).__name__)
            x, y = x.to(device), y.to(device)
            correct += int((self.predict(x).argmax(1) == y).sum())
            total += len(y)
        return correct / max(total, 1)


def sltt_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              optimizer: torch.optim.Optimizer | None = None, *, T: int | None = None, rule: str = "sltt",
              k: int | None = None, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
              generator: torch.Generator | None = None, static: bool | None = None, precision: str = "32",
              backward: Callable[[torch.Tensor], None] | None = None, **trainer_kwargs) -> BatchResult:
    """One batch of BPTT / SLTT / SLTT-K for a user's own loop (a functional form of :class:`SNNTrainer`,
    as SpikingJelly's ``functional``): the step owns the sequence, so the model's neuron states are reset
    before and after it (a forgotten reset cannot leak a graph into the next batch).

    - ``model``: a one-step network (``model(x_t) -> logits``) with LIFNeuron or SpikingJelly neurons.
    - ``T=None``: ``x`` is a sequence (B, T, ...) and frame t is fed at step t; ``T=n``: static ``x`` fed at
      each of n steps (``static=False`` with ``T`` feeds the first T frames of a sequence).
    - ``rule``: "bptt", "sltt", "sltt-k" (with ``k``) or "sltt-K"; ``loss``: the per-step ``l(o[t], y)``
      (default the paper's ``0.95 CE + 0.05 MSE``, ``trainer_kwargs`` ``lam_l``/``mse_target``).
    - ``optimizer``: zero_grad, the gradients, one step; None: only accumulate the gradients into ``.grad``.
    - ``generator``: SLTT-K's step draws (default: seeded from torch's global generator, so
      ``torch.manual_seed`` makes runs repeat and successive batches draw different steps).

    Returns the :class:`BatchResult` (loss, summed logits, backward calls, steps that got a backward).
    """
    if T is None:
        require(isinstance(x, torch.Tensor) and x.dim() >= 2, "x", tuple(getattr(x, "shape", ())),
                "a sequence (batch, T, ...) when T is not given (or pass T=n to feed a static x n times)")
        T, static = int(x.shape[1]), False if static is None else static
    elif static is None:
        static = True
    if generator is None and normalize_rule(rule, k)[0] == "sltt-k":
        generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))
    trainer = SNNTrainer(model, T, rule, k, optimizer=optimizer, generator=generator, static=static, loss=loss,
                         precision=precision, backward=backward, **trainer_kwargs)
    return trainer.step(x, y) if optimizer is not None else trainer.gradients(x, y)


def parameter_grads(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter's ``.grad`` (zeros where None), by parameter name."""
    return {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
            for n, p in model.named_parameters()}


def grad_cosines(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    """Cosine similarity of two gradients, parameter by parameter (weights of each layer)."""
    return {n: float(torch.nn.functional.cosine_similarity(a[n].flatten().double(), b[n].flatten().double(),
                                                             dim=0)) for n in a}
