"""Measurement helpers shared by the benchmarks: interleaved median timing and saved-tensor bytes."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable

import torch

from tenfold.engine.threads import fixed_threads  # noqa: F401  (moved to the engine; kept importable here)


def median_times(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median wall seconds of each callable, measured interleaved (a, b, c, a, b, c, ...) so that
    drifts in machine load hit every contender alike."""
    samples = interleaved_samples(fns, repeats=repeats, warmup=warmup)
    return {k: statistics.median(v) for k, v in samples.items()}


class SavedTensorBytes:
    """Counts the bytes autograd saves for backward inside the ``with`` block (unique storages).

    ``with SavedTensorBytes() as m: loss = model(x)...``; then ``m.bytes``. Counting storages once
    avoids double counting views of one tensor.
    """

    def __init__(self) -> None:
        self.bytes = 0
        self._seen: set[int] = set()
        self._ctx: contextlib.AbstractContextManager | None = None

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        try:
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key not in self._seen:
                self._seen.add(key)
                self.bytes += storage.nbytes()
        except (RuntimeError, NotImplementedError):
            self.bytes += t.numel() * t.element_size()
        return t

    def __enter__(self) -> "SavedTensorBytes":
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._ctx is not None
        self._ctx.__exit__(*exc)


def target(name: str, value: float, threshold: str, holds: bool) -> dict:
    return {"name": name, "value": float(value), "threshold": threshold, "holds": bool(holds)}


def interleaved_samples(fns: dict[str, Callable[[], object]], repeats: int = 5,
                        warmup: int = 1) -> dict[str, list[float]]:
    """Wall seconds of every repeat of each callable, measured interleaved (a, b, a, b, ...): the raw
    samples behind :func:`median_times`, for medians with their spread and per-repeat ratios."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[key].append(time.perf_counter() - t0)
    return samples


def median_spread(values: list[float]) -> dict[str, float]:
    """Median, min, max and the interquartile range of ``values``."""
    q = statistics.quantiles(values, n=4) if len(values) >= 2 else [values[0]] * 3
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "q1": q[0], "q3": q[2]}
