"""Systematic corruptions of part-aware panoptic predictions (for probing what each metric sees).

Each function takes an (H, W, 3) int prediction (sid, iid, pid), the eval spec, the fraction of thing
segments to corrupt and a seeded ``numpy.random.Generator``, and returns a corrupted copy:

- :func:`swap_parts`: inside chosen segments of classes with parts, exchange the first two part labels;
- :func:`split_instances`: chosen thing segments get a new instance id on their right half (parts intact);
- :func:`drop_instances`: chosen thing segments become "no prediction" (255, 0, 0);
- :func:`shift_instances`: chosen thing segments move ``shift`` pixels right (vacated pixels unpredicted).
"""

from __future__ import annotations

import numpy as np

from tenfold.errors import ConfigError
from tenfold.panoptic.format import NO_PREDICTION, EvalSpec


def thing_segments(pred: np.ndarray, spec: EvalSpec, parts_only: bool = False) -> list[tuple[int, int]]:
    """Sorted (sid, iid) of the predicted thing segments (optionally only classes with parts)."""
    sids = spec.parts_sids if parts_only else spec.things
    sel = np.isin(pred[..., 0], [s for s in sids if s in spec.things])
    keys = np.unique(pred[..., 0][sel].astype(np.int64) * 256 + pred[..., 1][sel])
    return [(int(k // 256), int(k % 256)) for k in keys]


def _choose(segments: list, fraction: float, rng: np.random.Generator) -> list:
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"fraction={fraction!r} is invalid: expected a number in [0, 1]")
    n = int(round(fraction * len(segments)))
    idx = rng.permutation(len(segments))[:n]
    return [segments[i] for i in sorted(idx)]


def _mask(pred, sid, iid):
    return (pred[..., 0] == sid) & (pred[..., 1] == iid)


def swap_parts(pred, spec, fraction, rng):
    out = pred.copy()
    for sid, iid in _choose(thing_segments(pred, spec, parts_only=True), fraction, rng):
        a, b = spec.sid2pids[sid][:2]
        m = _mask(pred, sid, iid)
        pid = pred[..., 2]
        out[..., 2] = np.where(m & (pid == a), b, np.where(m & (pid == b), a, out[..., 2]))
    return out


def split_instances(pred, spec, fraction, rng):
    out = pred.copy()
    for sid, iid in _choose(thing_segments(pred, spec), fraction, rng):
        m = _mask(pred, sid, iid)
        cols = np.flatnonzero(m.any(0))
        mid = (cols[0] + cols[-1] + 1) // 2
        free = int(out[..., 1][out[..., 0] == sid].max()) + 1
        if free > 255:
            raise ConfigError(f"cannot split an instance of class {sid}: more than 255 instances")
        right = m & (np.arange(m.shape[1])[None, :] >= mid)
        out[..., 1][right] = free
    return out


def drop_instances(pred, spec, fraction, rng):
    out = pred.copy()
    for sid, iid in _choose(thing_segments(pred, spec), fraction, rng):
        out[_mask(pred, sid, iid)] = (NO_PREDICTION, 0, 0)
    return out


def shift_instances(pred, spec, fraction, rng, shift: int = 4):
    out = pred.copy()
    for sid, iid in _choose(thing_segments(pred, spec), fraction, rng):
        m = _mask(pred, sid, iid)
        vals = pred[m]
        out[m] = (NO_PREDICTION, 0, 0)
        ys, xs = np.nonzero(m)
        keep = xs + shift < pred.shape[1]
        out[ys[keep], xs[keep] + shift] = vals[keep]
    return out


CORRUPTIONS = {"part swap": swap_parts, "instance split": split_instances, "dropped instance": drop_instances,
               "shifted mask": shift_instances}
