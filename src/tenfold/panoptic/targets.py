"""Training targets of the part-whole model from panoptic-parts ground truth.

One GT uid map gives (``panoptic_parts.md`` section 4):
- whole segments: one per thing instance ``(sid, iid)`` and one per stuff class, each with its class
  index in ``spec.eval_sids`` order and a binary mask;
- part targets: one binary mask per flat part class (``eval_sid_pid2eval_pid_flat``), fixed
  one-to-one with the part queries; a part is *present* when its mask is not empty;
- ignore masks: void and crowd pixels for whole masks; additionally unlabelled part pixels
  (pid 0 inside a class with parts) for part masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tenfold.errors import DataError
from tenfold.panoptic.format import EvalSpec
from tenfold.panoptic.merge import gt_part_flat
from tenfold.panoptic.metrics import gt_labels


@dataclass
class Targets:
    classes: torch.Tensor      # (n,) whole-class index in 0..C-1
    masks: torch.Tensor        # (n, H, W) float {0, 1}
    part_masks: torch.Tensor   # (P, H, W) float {0, 1}, one per flat part class
    valid: torch.Tensor        # (H, W) bool: pixels that supervise whole masks
    part_valid: torch.Tensor   # (H, W) bool: pixels that supervise part masks

    def to(self, device: torch.device) -> "Targets":
        return Targets(*(t.to(device) for t in (self.classes, self.masks, self.part_masks, self.valid,
                                                self.part_valid)))


def class_index(spec: EvalSpec) -> dict[int, int]:
    """Eval sid -> contiguous whole-class index (the order of ``spec.eval_sids``)."""
    return {sid: k for k, sid in enumerate(spec.eval_sids)}


def make_targets(uids: np.ndarray, spec: EvalSpec, where: str = "labels") -> Targets:
    """Targets of one image; a class that the spec does not know is a DataError naming ``where``."""
    sid, iid, pid = gt_labels(uids, spec, where)
    index = class_index(spec)
    n_dataset = len(spec.dataset.scene_classes)  # sids 0..n-1 exist; the eval spec may ignore some
    unknown = sorted(s for s in np.unique(sid).tolist() if s >= n_dataset)
    if unknown:
        raise DataError(f"{where}: class sid {unknown[0]} is not in dataset spec {spec.dataset.path} "
                        f"(expected sids 0..{n_dataset - 1})")
    things = set(spec.things)
    evaluated = np.isin(sid, spec.eval_sids)
    crowd = np.isin(sid, list(things)) & (iid < 0)
    valid = evaluated & ~crowd
    classes, masks = [], []
    for s in spec.eval_sids:
        in_class = valid & (sid == s)
        if not in_class.any():
            continue
        if s in things:
            for i in np.unique(iid[in_class]):
                classes.append(index[s])
                masks.append(in_class & (iid == i))
        else:
            classes.append(index[s])
            masks.append(in_class)
    flat = gt_part_flat(uids, spec)
    with_parts = np.isin(sid, spec.parts_sids)
    part_valid = valid & ~(with_parts & (flat == 0))
    part_masks = np.stack([flat == k for k in range(1, spec.num_flat + 1)]) if spec.num_flat else \
        np.zeros((0,) + uids.shape, bool)
    h, w = uids.shape
    return Targets(
        classes=torch.tensor(classes, dtype=torch.long),
        masks=torch.from_numpy(np.stack(masks)).float() if masks else torch.zeros(0, h, w),
        part_masks=torch.from_numpy(part_masks).float(),
        valid=torch.from_numpy(valid),
        part_valid=torch.from_numpy(part_valid),
    )
