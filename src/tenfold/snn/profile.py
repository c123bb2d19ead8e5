"""Activation memory of a training rule: the most bytes autograd holds *alive* for backward at any moment.

:class:`LiveSaved` hooks ``torch.autograd.graph.saved_tensors_hooks``: every tensor autograd saves is
wrapped in a small holder kept by the graph; the holder's bytes count while it lives and stop counting
when autograd frees it (when that graph is back-propagated or dropped). The peak of the live sum is the
activation memory:

- a view counts its own bytes (the span of memory it addresses), not the whole storage behind it, so a
  batch ``x[:n]`` of a dataset or the frame ``x[:, t]`` of an event tensor is not charged for the rest;
- tensors that live anyway are excluded: the parameters and the inputs (any tensor sharing storage with
  them, e.g. a Linear's saved weight or the first layer's saved input frame);
- the same memory saved twice (e.g. by two ops) counts once while any holder of it lives.

For BPTT the peak is reached right before the one backward (all T steps alive); for SLTT and SLTT-K it
is one step's graph, independent of T.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

import torch

from tenfold.snn.train import SNNTrainer


def view_bytes(t: torch.Tensor) -> int:
    """Bytes of memory a tensor addresses: ``numel * itemsize`` for a dense view, the addressed span for
    expanded (stride-0) ones, never more than the storage."""
    if t.numel() == 0:
        return 0
    span = 1 + sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride()))
    return min(t.numel(), span) * t.element_size()


class _Held:
    """What the graph keeps instead of the saved tensor; counting ends when the graph frees it."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class LiveSaved:
    """Live bytes of autograd's saved tensors and their peak (see the module docstring)."""

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        self.excluded = {t.untyped_storage().data_ptr() for t in exclude if isinstance(t, torch.Tensor)}
        self.live = 0
        self.peak = 0
        self._refs: dict[tuple, int] = {}

    def _release(self, key: tuple, nbytes: int) -> None:
        self._refs[key] -= 1
        if self._refs[key] == 0:
            del self._refs[key]
            self.live -= nbytes

    def pack(self, t: torch.Tensor) -> Any:
        if t.untyped_storage().data_ptr() in self.excluded or t.device.type == "meta":
            return t
        nbytes = view_bytes(t)
        key = (t.data_ptr(), nbytes, t.dtype, t.device)
        held = _Held(t)
        if key not in self._refs:
            self._refs[key] = 0
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        self._refs[key] += 1
        weakref.finalize(held, self._release, key, nbytes)
        return held

    @staticmethod
    def unpack(obj: Any) -> torch.Tensor:
        return obj.tensor if isinstance(obj, _Held) else obj

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


def peak_live_saved(fn: Callable[[], Any], exclude: Iterable[torch.Tensor] = ()) -> int:
    """Peak live saved-tensor bytes while ``fn()`` runs (``exclude``: parameters, inputs)."""
    counter = LiveSaved(exclude)
    with counter.hooks():
        fn()
    return counter.peak


def peak_saved_bytes(trainer: SNNTrainer, x: torch.Tensor, y: torch.Tensor) -> int:
    """Peak live saved activation bytes of one ``trainer.gradients(x, y)`` call (gradients accumulate
    as usual). Parameters and the input ``x`` are not counted: they are held anyway and do not grow
    with T."""
    return peak_live_saved(lambda: trainer.gradients(x, y), [*trainer.model.parameters(), *trainer.model.buffers(), x])
