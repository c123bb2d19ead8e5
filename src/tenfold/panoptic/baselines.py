"""Non-learned baselines for the procedural scenes (what a learned part-whole model must beat).

- :func:`colour_rule`: each pixel takes the (class, part) of the nearest palette colour of
  :mod:`tenfold.data.panoptic_scenes`; thing instances are the connected components of each class;
  stuff is one segment per class. It knows the generator's palette, so it is a strong rule where every
  class has its own colours and a weak one where persons wear car colours (``shared_part_colours``).
- :func:`majority_stuff`: every pixel of row ``y`` gets the stuff class most frequent at row ``y`` in
  the training labels; no things, so all of its PartPQ comes from stuff.
"""

from __future__ import annotations

import numpy as np

from tenfold.data.panoptic_scenes import BALL, CAR, COLOURS, GROUND, PERSON, SKY
from tenfold.panoptic.format import NO_PREDICTION, EvalSpec
from tenfold.panoptic.metrics import gt_labels

# (sid, pid) of each palette entry; pid 1 for classes without parts. Car parts come before person parts,
# so a colour both classes use is read as a car part.
_ENTRIES = [((SKY, 1), COLOURS["sky"]), ((GROUND, 1), COLOURS["ground"]), ((BALL, 1), COLOURS["ball"])] + \
    [((CAR, p), COLOURS[(CAR, p)]) for p in (1, 2, 3)] + [((PERSON, p), COLOURS[(PERSON, p)]) for p in (1, 2, 3)]


def colour_rule(image: np.ndarray, spec: EvalSpec) -> np.ndarray:
    """(H, W, 3) (sid, iid, pid) prediction of an (H, W, 3) float image by nearest palette colour."""
    from scipy import ndimage

    palette = np.array([c for _, c in _ENTRIES], np.float32)
    labels = np.array([e for e, _ in _ENTRIES], np.int64)
    d = ((image[:, :, None, :] - palette[None, None]) ** 2).sum(-1)
    best = labels[d.argmin(-1)]
    sid, pid = best[..., 0], best[..., 1]
    iid = np.zeros_like(sid)
    for thing in spec.things:
        comps, n = ndimage.label(sid == thing)
        iid = np.where(sid == thing, np.minimum(comps, 255), iid)
    out = np.stack([sid, iid, pid], -1)
    out[~np.isin(sid, spec.eval_sids)] = (NO_PREDICTION, 0, 0)
    return out.astype(np.int32)


class MajorityStuff:
    """Per-row majority stuff class of the training labels (rows resampled to the image height)."""

    def __init__(self, train_uids: list[np.ndarray], spec: EvalSpec, rows: int = 64) -> None:
        counts = np.zeros((rows, 256), np.int64)
        for uids in train_uids:
            sid, _, _ = gt_labels(uids, spec)
            r = (np.arange(sid.shape[0]) * rows // sid.shape[0])
            for s in spec.stuff:
                counts[:, s] += np.bincount(r, weights=(sid == s).sum(1), minlength=rows).astype(np.int64)
        self.row_class = np.where(counts.max(1) > 0, counts.argmax(1), NO_PREDICTION)
        self.rows = rows

    def __call__(self, shape: tuple[int, int]) -> np.ndarray:
        h, w = shape
        sid = np.repeat(self.row_class[np.arange(h) * self.rows // h][:, None], w, 1)
        return np.stack([sid, np.zeros_like(sid), np.where(sid == NO_PREDICTION, 0, 1)], -1).astype(np.int32)


__all__ = ["colour_rule", "MajorityStuff"]
