"""Adapter to the panoptic_parts 2.0rc6 reference PartPQ on in-memory arrays (oracle for tests and benchmark).

Its import needs ``platform.python_version`` patched on Python >= 3.10 (it parses "3.11"[:3] as a float)
and scikit-learn (used but not declared).
"""

from __future__ import annotations

import platform
from unittest import mock

import numpy as np


def import_reference():
    """The reference modules, or raise ImportError when panoptic_parts is not installed."""
    with mock.patch.object(platform, "python_version", lambda: "3.9.0"):
        from panoptic_parts.specs.eval_spec import PartPQEvalSpec
        from panoptic_parts.utils import evaluation_PartPQ as ev
    return PartPQEvalSpec, ev


def reference_spec(spec_path):
    """The reference's ``PartPQEvalSpec`` of an eval spec file."""
    PartPQEvalSpec, _ = import_reference()
    return PartPQEvalSpec(str(spec_path))


def reference_image_stats(spec, gt, pred):
    """The reference's PQStat of one ``(gt_uids, pred)`` pair (its evaluate_single_core's per-image work,
    file reading excluded); ``spec`` from :func:`reference_spec`."""
    _, ev = import_reference()
    cat_def = spec.cat_definition
    gt = np.asarray(gt, np.int32)
    pred = np.asarray(pred, np.int32)
    gt_dict, extra = ev.annotation_parsing(spec, gt)
    pred_dict = ev.prediction_parsing(cat_def, pred[..., 0], pred[..., 1], pred[..., 2])
    ignore = ev.generate_ignore_info_tiff(gt, spec)
    ignore[extra != 0] = extra[extra != 0]
    crowd = ev.ignore_img_parsing(ignore, cat_def)
    return ev.pq_part(pred_dict, gt_dict, crowd, cat_def, spec.ignore_label)


def reference_stats(spec_path, pairs):
    """PQStat of the reference summed over ``(gt_uids, pred)`` pairs (its evaluate_single_core, minus I/O)."""
    _, ev = import_reference()
    spec = reference_spec(spec_path)
    total = ev.PQStat()
    for gt, pred in pairs:
        total += reference_image_stats(spec, gt, pred)
    return spec, total


def per_class(spec, total) -> dict[int, tuple[int, int, int, float]]:
    """{sid: (tp, fp, fn, iou_sum)} of a reference PQStat."""
    out = {}
    for cat_id, cat in enumerate(spec.cat_definition["cat_def"]):
        s = total[cat_id]
        out[cat["sem_cls"][0]] = (s.tp, s.fp, s.fn, s.iou)
    return out


def reference_per_class(spec_path, pairs) -> dict[int, tuple[int, int, int, float]]:
    """{sid: (tp, fp, fn, iou_sum)} from the reference."""
    return per_class(*reference_stats(spec_path, pairs))
