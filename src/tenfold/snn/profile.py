"""Activation memory of a training rule: the most bytes autograd holds for backward at any moment.

Autograd frees a graph's saved tensors when that graph is back-propagated, so the live saved
memory peaks right before a backward call. :func:`peak_saved_bytes` counts the bytes saved (unique
storages, parameters excluded, via ``torch.autograd.graph.saved_tensors_hooks``) between consecutive backward calls of an
:class:`~tenfold.snn.train.SNNTrainer` batch and returns the largest window: all T steps for BPTT,
one step for SLTT and SLTT-K.
"""

from __future__ import annotations

import torch

from tenfold.snn.train import SNNTrainer


class _Window:
    """Bytes saved since the last :meth:`close` (unique storages, ``exclude`` pointers skipped) and the peak."""

    def __init__(self, exclude: set[int] | None = None) -> None:
        self.bytes, self.peak, self.seen = 0, 0, set()
        self.exclude = exclude or set()

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in self.seen and storage.data_ptr() not in self.exclude:
            self.seen.add(storage.data_ptr())
            self.bytes += storage.nbytes()
        return t

    def close(self) -> None:
        self.peak = max(self.peak, self.bytes)
        self.bytes, self.seen = 0, set()


def parameter_pointers(model: torch.nn.Module) -> set[int]:
    return {p.untyped_storage().data_ptr() for p in model.parameters()}


def peak_saved_bytes(trainer: SNNTrainer, x: torch.Tensor, y: torch.Tensor) -> int:
    """Peak saved activation bytes of one ``trainer.gradients(x, y)`` call (gradients accumulate as
    usual). Parameters that autograd saves (e.g. a Linear's weight) are not counted: they are held
    anyway and do not grow with T."""
    window = _Window(parameter_pointers(trainer.model))
    inner = trainer._backward

    def backward(loss: torch.Tensor) -> None:
        window.close()
        inner(loss)

    trainer._backward = backward
    try:
        with torch.autograd.graph.saved_tensors_hooks(window.pack, lambda t: t):
            trainer.gradients(x, y)
    finally:
        trainer._backward = inner
    window.close()
    return window.peak
