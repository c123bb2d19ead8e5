"""Panoptic part segmentation (PanopticPartFormer++, arXiv:2301.00954).

Public API (``from tenfold.panoptic import ...``):

- evaluation: :class:`PartPQEvaluator` (``reset`` / ``process(gt, pred)`` / ``evaluate() -> dict``, as
  detectron2's ``DatasetEvaluator``), :func:`evaluate_arrays` (pairs in memory), :func:`evaluate_folders`
  (the ``tenfold eval-parts`` folders), :class:`EvalSpec` (the evaluation spec file, or a shipped name);
- format: :func:`decode_uids` / :func:`encode_ids` (the ``sid_iid_pid`` uid codec), :func:`merge_to_pps`
  (panoptic + flat part maps -> the (H, W, 3) ``(sid, iid, pid)`` prediction);
- COCO panoptic: :func:`to_coco_panoptic` (a prediction -> segment ids for the RGB PNG + ``segments_info``,
  for panopticapi / detectron2 / Mask2Former tools) and :func:`from_coco_panoptic` (their predictions -> ours);
- model: :class:`PartFormerConfig`, :class:`PartWholeFormer`, :func:`predict`, :class:`InferenceConfig`;
- data: :class:`PartsFolderDataset` (on-demand training data) and its :func:`collate`.

Submodules hold the rest: ``format`` (spec files, label/prediction files), ``metrics`` (PQ, PartPQ,
part mIoU, PWQ (provisional) from one joint histogram per image), ``evaluator``, ``merge``, ``corrupt``
(systematic prediction errors), ``oracle`` (adapter to the panoptic_parts reference), ``model``,
``losses``, ``matching``, ``targets``, ``inference``, ``dataset``, ``visualize`` (colour PNGs), ``coco``
(COCO panoptic export and import, the ``tenfold export-coco`` folders).
The names this package exported before (``builtin_spec``, ``image_stats``, ``gt_to_prediction``, ...) still
import from it with a ``DeprecationWarning`` naming their submodule.
"""

import importlib
import warnings

from tenfold.panoptic.coco import from_coco_panoptic, to_coco_panoptic
from tenfold.panoptic.dataset import PartsFolderDataset, collate
from tenfold.panoptic.evaluator import PartPQEvaluator, evaluate_folders
from tenfold.panoptic.format import EvalSpec, decode_uids, encode_ids
from tenfold.panoptic.inference import InferenceConfig, predict
from tenfold.panoptic.merge import merge_to_pps
from tenfold.panoptic.metrics import evaluate_arrays
from tenfold.panoptic.model import PartFormerConfig, PartWholeFormer

__all__ = [
    "PartPQEvaluator", "evaluate_arrays", "evaluate_folders", "EvalSpec",
    "decode_uids", "encode_ids", "merge_to_pps", "to_coco_panoptic", "from_coco_panoptic",
    "PartFormerConfig", "PartWholeFormer", "predict", "InferenceConfig",
    "PartsFolderDataset", "collate",
]

# Names exported here before the public API was narrowed: still importable, from their submodules.
_MOVED = {
    "DatasetSpec": "format", "builtin_spec": "format", "read_gt": "format", "read_prediction": "format",
    "write_gt": "format", "write_prediction": "format", "format_table": "evaluator",
    "part_map": "inference", "whole_segments": "inference", "flat_to_pid_table": "merge",
    "gt_part_flat": "merge", "gt_to_prediction": "merge", "PartStats": "metrics", "combine": "metrics",
    "image_stats": "metrics", "part_miou": "metrics", "summarize": "metrics",
    "PanopticPartsDataset": "dataset",
}


def __getattr__(name: str):
    if name in _MOVED:
        module = f"tenfold.panoptic.{_MOVED[name]}"
        warnings.warn(f"tenfold.panoptic.{name} is no longer public API here: import it from {module}",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'tenfold.panoptic' has no attribute {name!r}")
