"""Stateful leaky integrate-and-fire neurons with a BPTT / SLTT temporal-gradient switch.

SLTT (Meng et al., ICCV 2023, Sec. 3-4; spec snn.md 1.1-1.2). One call of :class:`LIFNeuron` is one
time step::

    u[t] = lam * (u[t-1] - (v_th - u_rest) * s[t-1]) + I[t],   lam = 1 - 1/tau
    s[t] = H(u[t] - v_th)                                        (surrogate gradient backward)

with ``u[0] = 0``. The input is not decayed. ``tau = inf`` gives IF (``lam = 1``). ``u_rest = 0`` is the
usual soft reset (subtract ``v_th``); SPIDE uses ``u_rest = -v_th`` (subtract ``2 v_th``).

``temporal="bptt"`` keeps the graph through ``u[t-1]`` and ``s[t-1]`` (gradient flows back in time);
``temporal="sltt"`` detaches both, which sets every temporal factor ``eps[t] = dL/du[t+1] du[t+1]/du[t]``
to zero: only spatial gradients remain, and each step's graph is independent of earlier steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from torch.optim.optimizer import register_optimizer_step_post_hook

from tenfold.errors import ConfigError, require
from tenfold.second_order import second_order
from tenfold.snn.surrogate import check_surrogate, surrogate_of_membrane

TEMPORAL_MODES = ("bptt", "sltt")


def check_temporal(temporal: str) -> None:
    if temporal not in TEMPORAL_MODES:
        raise ConfigError(f"temporal={temporal!r} is invalid: expected one of {', '.join(TEMPORAL_MODES)}")


def leak(tau: float) -> float:
    """``lam = 1 - 1/tau`` (1 for ``tau = inf``)."""
    return 1.0 if math.isinf(tau) else 1.0 - 1.0 / tau


@second_order("exact")
class _FirstSpike(torch.autograd.Function):
    """The first step's spike ``s = H(u - v_th)`` of ``u = I`` as one node (no separate subtraction).
    Under ``create_graph=True`` autograd records the backward (second derivative ``grad sigma''``)."""

    @staticmethod
    def forward(ctx, u, v_th, surrogate, width):
        ctx.save_for_backward(u)
        ctx.v_th, ctx.surrogate, ctx.width = v_th, surrogate, width
        return u.ge(v_th).to(u.dtype)

    @staticmethod
    def backward(ctx, grad_s):
        (u,) = ctx.saved_tensors
        return surrogate_of_membrane(u, ctx.v_th, ctx.surrogate, ctx.width).mul_(grad_s), None, None, None


@second_order("exact")
class _LIFStep(torch.autograd.Function):
    """One LIF step after the first as one autograd node (the membrane update and the spike fused):
    ``u = I + lam u_prev - lam (v_th - u_rest) s_prev``, ``s = H(u - v_th)``. Saves only ``u``; the backward
    is ``g = sigma'(u - v_th) dL/ds + dL/du`` for ``I`` and ``lam g``, ``-lam (v_th - u_rest) g`` for the
    state (skipped when the state is detached, as under SLTT). Fewer kernels and autograd nodes than
    the same step in separate ops (measured in ``tenfold bench sltt``; docs/sltt.md)."""

    @staticmethod
    def forward(ctx, current, u_prev, s_prev, lam, reset, v_th, surrogate, width):
        u = torch.add(current, u_prev, alpha=lam).add_(s_prev, alpha=-lam * reset)
        s = u.ge(v_th).to(u.dtype)
        ctx.save_for_backward(u)
        ctx.lam, ctx.reset, ctx.v_th, ctx.surrogate, ctx.width = lam, reset, v_th, surrogate, width
        return s, u

    @staticmethod
    def backward(ctx, grad_s, grad_u):
        (u,) = ctx.saved_tensors
        g = surrogate_of_membrane(u, ctx.v_th, ctx.surrogate, ctx.width)
        g = g.mul_(grad_s) if grad_s is not None else g.zero_()
        if grad_u is not None:
            g = g.add_(grad_u)
        need = ctx.needs_input_grad
        return (g if need[0] else None, g * ctx.lam if need[1] else None,
                g * (-ctx.lam * ctx.reset) if need[2] else None, None, None, None, None, None)


_OPTIMIZER_STEPS = [0]  # optimizer steps taken in this process (any optimizer), counted once LIFNeuron runs
_STEP_HOOK: list = []


def _bump_optimizer_steps(optimizer, args, kwargs) -> None:
    _OPTIMIZER_STEPS[0] += 1


def _watch_optimizer_steps() -> None:
    """Count every optimizer step (a global post-hook, registered once): a neuron whose sequence spans an
    optimizer step is a user's loop that forgot the reset between batches (see :class:`LIFNeuron`)."""
    if not _STEP_HOOK:
        _STEP_HOOK.append(register_optimizer_step_post_hook(_bump_optimizer_steps))


class LIFNeuron(nn.Module):
    """One LIF layer, stateful over time steps; call :meth:`reset_state` (or :func:`reset_states`) per batch.

    ``forward(I)`` takes the input current ``I[t]`` of any shape and returns the spikes ``s[t]``; the
    membrane after the step is in ``self.u`` (before reset, i.e. ``u[t]`` above).

    A user's loop that forgets the reset between batches gets a one-line ConfigError naming
    :func:`reset_states` instead of a silently continued membrane or PyTorch's "backward through the graph
    a second time": when the state holds a graph whose backward has run (BPTT), when the batch shape
    changes, or when an optimizer step ran since the sequence began (SLTT, whose state holds no graph).
    ``updates_in_sequence=True`` allows optimizer steps inside a sequence (online learning that updates
    the weights at every time step). ``model.train()`` / ``model.eval()`` that changes the mode starts a
    new sequence (resets the state): no sequence spans training and evaluation.
    """

    def __init__(self, tau: float = 2.0, v_th: float = 1.0, surrogate: str = "triangle", width: float = 1.0,
                 temporal: str = "bptt", u_rest: float = 0.0, updates_in_sequence: bool = False) -> None:
        super().__init__()
        require(isinstance(tau, (int, float)) and not math.isnan(tau) and tau >= 1, "tau", tau,
                "a membrane time constant >= 1 (float('inf') for IF)")
        require(isinstance(v_th, (int, float)) and math.isfinite(v_th) and v_th > 0, "v_th", v_th,
                "a positive threshold")
        require(isinstance(u_rest, (int, float)) and math.isfinite(u_rest) and u_rest < v_th, "u_rest", u_rest,
                "a reset potential below v_th")
        check_surrogate(surrogate, width)
        check_temporal(temporal)
        self.tau, self.v_th, self.u_rest = float(tau), float(v_th), float(u_rest)
        self.surrogate, self.width, self.temporal = surrogate, float(width), temporal
        self.lam = leak(self.tau)
        self.updates_in_sequence = bool(updates_in_sequence)
        self.u: torch.Tensor | None = None
        self.s: torch.Tensor | None = None
        self._sequence_start = 0  # the optimizer-step count when the current sequence began
        _watch_optimizer_steps()

    def train(self, mode: bool = True) -> "LIFNeuron":
        """A change between training and evaluation starts a new sequence (the state is reset)."""
        if mode != self.training:
            self.reset_state()
        return super().train(mode)

    def reset_state(self) -> None:
        """Forget the membrane and last spikes (and with them any graph they hold)."""
        self.u = None
        self.s = None

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        state = self.__dict__  # plain attributes (u, s are no parameters or buffers): skips Module.__setattr__
        if self.u is None:
            u = current
            s = _FirstSpike.apply(u, self.v_th, self.surrogate, self.width)  # arguments validated at construction
            if not _STEP_HOOK:  # a neuron unpickled in a fresh process
                _watch_optimizer_steps()
            state["_sequence_start"] = _OPTIMIZER_STEPS[0]
        else:
            if self.s.grad_fn is not None:  # also under no_grad: an evaluation must not continue a trained batch
                self._check_state_graph()
            if _OPTIMIZER_STEPS[0] != self._sequence_start and not self.updates_in_sequence:
                raise ConfigError("LIFNeuron state continues a sequence across an optimizer step: call "
                                  "tenfold.snn.reset_states(model) before each new batch (sltt_step and SNNTrainer "
                                  "reset for you; LIFNeuron(updates_in_sequence=True) if you update weights "
                                  "inside a sequence on purpose)")
            if self.u.shape != current.shape:
                raise ConfigError(f"input shape {tuple(current.shape)} differs from the neuron state "
                                  f"{tuple(self.u.shape)}: call reset_states(model) before a new batch")
            s, u = _LIFStep.apply(current, self.u, self.s, self.lam, self.v_th - self.u_rest, self.v_th,
                                  self.surrogate, self.width)
        if self.temporal == "sltt":  # no temporal gradient: keep only detached state
            state["u"], state["s"] = u.detach(), s.detach()
        else:
            state["u"], state["s"] = u, s
        return s

    def _check_state_graph(self) -> None:
        """A one-line ConfigError instead of PyTorch's "backward through the graph a second time" when the
        state still holds a graph that a backward has already freed (a user's loop that forgot to reset
        between batches). A graph kept with ``retain_graph=True`` is still alive and passes."""
        try:
            _ = self.s.grad_fn.saved_tensors  # our Functions' nodes: freed saved tensors raise on access
        except RuntimeError:
            raise ConfigError("LIFNeuron state holds the graph of a sequence whose backward has already run: call "
                              "tenfold.snn.reset_states(model) before each new batch (sltt_step and SNNTrainer "
                              "reset for you)") from None

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, v_th={self.v_th}, u_rest={self.u_rest}, surrogate={self.surrogate!r}, "
                f"width={self.width}, temporal={self.temporal!r}"
                + (", updates_in_sequence=True" if self.updates_in_sequence else ""))


def _is_spikingjelly_memory(m: nn.Module) -> bool:
    """A SpikingJelly ``base.MemoryModule`` (neuron, stateful dropout...), recognised without importing it."""
    return callable(getattr(m, "register_memory", None)) and callable(getattr(m, "reset", None)) \
        and isinstance(getattr(m, "_memories", None), dict)


def is_spiking_neuron(m: nn.Module) -> bool:
    """Our :class:`LIFNeuron` or a SpikingJelly neuron (a memory module with a ``v_threshold``)."""
    return isinstance(m, LIFNeuron) or (_is_spikingjelly_memory(m) and hasattr(m, "v_threshold"))


def spiking_neurons(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if is_spiking_neuron(m)]


def stateful_modules(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if callable(getattr(m, "reset_state", None)) or _is_spikingjelly_memory(m)]


def reset_states(module: nn.Module) -> None:
    """Reset every stateful module in ``module``: ours (``reset_state``) and SpikingJelly's memory modules
    (``reset``), e.g. a user's network built from ``spikingjelly.activation_based.neuron.LIFNode``. The
    trainer calls this before and after every batch."""
    for m in stateful_modules(module):
        if callable(getattr(m, "reset_state", None)):
            m.reset_state()
        else:
            m.reset()


def detach_states(module: nn.Module) -> None:
    """Cut the temporal graph of SpikingJelly memory modules (their tensors are replaced by detached
    copies, not detached in place). Our :class:`LIFNeuron` under ``temporal='sltt'`` does this itself; the
    trainer calls this after every SLTT step so that SpikingJelly neurons follow the same rule."""
    for m in module.modules():
        if _is_spikingjelly_memory(m):
            for key, value in m._memories.items():
                if isinstance(value, torch.Tensor):
                    m._memories[key] = value.detach()


def set_temporal(module: nn.Module, temporal: str) -> None:
    """Switch every :class:`LIFNeuron` in ``module`` to ``temporal`` ('bptt' or 'sltt')."""
    check_temporal(temporal)
    for m in module.modules():
        if isinstance(m, LIFNeuron):
            m.temporal = temporal


@contextmanager
def temporal_mode(module: nn.Module, temporal: str) -> Iterator[None]:
    """Every :class:`LIFNeuron` of ``module`` in ``temporal`` mode inside the block; each neuron's own
    mode is restored afterwards (also on error), so two trainers can share one model."""
    check_temporal(temporal)
    neurons = [m for m in module.modules() if isinstance(m, LIFNeuron)]
    before = [m.temporal for m in neurons]
    try:
        for m in neurons:
            m.temporal = temporal
        yield
    finally:
        for m, mode in zip(neurons, before):
            m.temporal = mode


def run_steps(neuron: nn.Module, currents: torch.Tensor) -> torch.Tensor:
    """Feed ``currents`` of shape (T, ...) step by step from a fresh state; return spikes (T, ...)."""
    reset_states(neuron)
    return torch.stack([neuron(c) for c in currents])
