"""Part-aware panoptic predictions: merging a panoptic map with a part-semantic map, and turning
ground truth into (perfect) predictions.

Merge rule (panoptic_parts toolkit ``merge_to_pps`` and Panoptic-PartFormer; ``panoptic_parts.md`` section 1):
for a pixel of a predicted segment of class ``c``

- ``c`` has parts: ``pid`` = the eval pid of the pixel's flat part if that flat part belongs to ``c``,
  else 255 (unknown part);
- ``c`` has no parts: ``pid = 1`` (dummy);
- unpredicted pixels (sid 255): ``(255, 0, 0)``.
"""

from __future__ import annotations

import numpy as np
import torch

from tenfold.errors import DataError
from tenfold.panoptic.format import NO_PREDICTION, UNKNOWN_PART, EvalSpec


def flat_to_sid_pid(spec: EvalSpec) -> np.ndarray:
    """(num_flat + 1,) array: flat part id -> eval sid_pid (0 for background)."""
    out = np.zeros(spec.num_flat + 1, np.int64)
    for sid_pid in np.flatnonzero(spec.flat_lut):
        out[spec.flat_lut[sid_pid]] = sid_pid
    return out


def merge_to_pps(sid, iid, part_flat, spec: EvalSpec):
    """(H, W, 3) part-aware panoptic prediction from (H, W) sid, iid and flat part maps (numpy or torch).

    ``sid`` uses 255 for "no prediction"; ``part_flat`` uses 0 for background. Torch inputs stay on their
    device and give a torch uint8 tensor.
    """
    is_torch = isinstance(sid, torch.Tensor)
    lib = torch if is_torch else np
    if tuple(sid.shape) != tuple(iid.shape) or tuple(sid.shape) != tuple(part_flat.shape):
        raise DataError(f"merge_to_pps: shapes {tuple(sid.shape)}, {tuple(iid.shape)}, {tuple(part_flat.shape)} "
                        "differ: expected three (H, W) maps")
    if bool((iid > 255).any()) or bool((iid < 0).any()):
        raise DataError("merge_to_pps: iid values must lie in 0..255 (at most 255 instances per class)")
    table = flat_to_sid_pid(spec)
    if bool((part_flat < 0).any()) or bool((part_flat >= table.size).any()):
        raise DataError(f"merge_to_pps: flat part ids must lie in 0..{table.size - 1}")
    with_parts = np.zeros(256, bool)
    with_parts[spec.parts_sids] = True
    if is_torch:
        table_t = torch.as_tensor(table, device=sid.device)
        with_parts_t = torch.as_tensor(with_parts, device=sid.device)
        sp = table_t[part_flat.long()]
        parts_cls = with_parts_t[sid.long()]
    else:
        sp = table[np.asarray(part_flat, np.int64)]
        parts_cls = with_parts[np.asarray(sid, np.int64)]
    own = (sp // 100) == sid
    pid = lib.where(parts_cls, lib.where(own & (sp > 0), sp % 100, UNKNOWN_PART), 1)
    none = sid == NO_PREDICTION
    pid = lib.where(none, 0, pid)
    iid = lib.where(none, 0, iid)
    if is_torch:
        return torch.stack([sid, iid, pid], dim=-1).to(torch.uint8)
    return np.stack([sid, iid, pid], axis=-1).astype(np.uint8)


def gt_to_prediction(uids: np.ndarray, spec: EvalSpec) -> np.ndarray:
    """A perfect (H, W, 3) prediction from GT uids: void and crowd -> no prediction; instance ids made
    compact per class (1..n, at most 255); parts keep their eval pid (unlabelled parts -> 255), classes
    without parts get pid 1."""
    from tenfold.panoptic.metrics import gt_labels

    sid, iid, pid = gt_labels(uids, spec)
    evaluated = np.zeros(256, bool)
    evaluated[spec.eval_sids] = True
    things = np.zeros(256, bool)
    things[spec.things] = True
    with_parts = np.zeros(256, bool)
    with_parts[spec.parts_sids] = True
    keep = evaluated[sid] & ~(things[sid] & (iid < 0))
    out_iid = np.zeros_like(sid)
    for s in np.unique(sid[keep & things[sid]]):
        sel = keep & (sid == s)
        ids, inv = np.unique(iid[sel], return_inverse=True)
        if ids.size > 255:
            raise DataError(f"ground truth has {ids.size} instances of class {int(s)}: the PNG prediction "
                            "format holds at most 255 per class")
        out_iid[sel] = inv.reshape(-1) + 1
    out_pid = np.where(with_parts[sid], np.where(pid > 0, pid, UNKNOWN_PART), 1)
    out_sid = np.where(keep, sid, NO_PREDICTION)
    out_pid = np.where(keep, out_pid, 0)
    return np.stack([out_sid, out_iid, out_pid], axis=-1).astype(np.int32)


def gt_part_flat(uids: np.ndarray, spec: EvalSpec) -> np.ndarray:
    """(H, W) flat part ids of GT uids (0 where there is no evaluated part)."""
    from tenfold.panoptic.metrics import gt_labels

    sid, _, pid = gt_labels(uids, spec)
    return np.where(pid > 0, spec.flat_lut[np.clip(sid * 100 + pid, 0, 9999)], 0)


__all__ = ["merge_to_pps", "gt_to_prediction", "gt_part_flat", "flat_to_sid_pid"]
