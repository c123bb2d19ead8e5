"""Activation memory of a training rule: the most bytes autograd holds for backward at any moment.

Autograd frees a graph's saved tensors when that graph is back-propagated, so the live saved
memory peaks right before a backward call. :func:`peak_saved_bytes` counts the bytes saved (unique
storages, via ``torch.autograd.graph.saved_tensors_hooks``) between consecutive backward calls of an
:class:`~tenfold.snn.train.SNNTrainer` batch and returns the largest window: all T steps for BPTT,
one step for SLTT and SLTT-K.
"""

from __future__ import annotations

import torch

from tenfold.snn.train import SNNTrainer


class _Window:
    def __init__(self) -> None:
        self.bytes, self.peak, self.seen = 0, 0, set()

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in self.seen:
            self.seen.add(storage.data_ptr())
            self.bytes += storage.nbytes()
        return t

    def close(self) -> None:
        self.peak = max(self.peak, self.bytes)
        self.bytes, self.seen = 0, set()


def peak_saved_bytes(trainer: SNNTrainer, x: torch.Tensor, y: torch.Tensor) -> int:
    """Peak saved-tensor bytes of one ``trainer.gradients(x, y)`` call (gradients accumulate as usual)."""
    window = _Window()
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
