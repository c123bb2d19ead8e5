"""Panoptic part segmentation (PanopticPartFormer++, arXiv:2301.00954).

Data and metrics: ``format`` (uid codec, spec files, label/prediction files), ``metrics`` (PQ, PartPQ,
part mIoU, PWQ (provisional) from one joint histogram per image), ``evaluator`` (folders, processes,
the ``tenfold eval-parts`` command), ``merge`` (panoptic + parts -> part-aware panoptic), ``corrupt``
(systematic prediction errors), ``oracle`` (adapter to the panoptic_parts reference). Model: ``model``
(the part-whole query model), ``losses``, ``matching``, ``targets``, ``inference``, ``dataset``
(on-demand training data with Mask2Former's augmentation), ``visualize`` (colour PNGs).

The names below are the public API; submodules hold the rest.
"""

from tenfold.panoptic.dataset import PanopticPartsDataset, PartsFolderDataset, collate
from tenfold.panoptic.evaluator import evaluate_folders, format_table
from tenfold.panoptic.format import (DatasetSpec, EvalSpec, builtin_spec, decode_uids, encode_ids, read_gt,
                                     read_prediction, write_gt, write_prediction)
from tenfold.panoptic.inference import InferenceConfig, part_map, predict, whole_segments
from tenfold.panoptic.merge import flat_to_pid_table, gt_part_flat, gt_to_prediction, merge_to_pps
from tenfold.panoptic.metrics import PartStats, combine, evaluate_arrays, image_stats, part_miou, summarize
from tenfold.panoptic.model import PartFormerConfig, PartWholeFormer

__all__ = [
    "DatasetSpec", "EvalSpec", "InferenceConfig", "PanopticPartsDataset", "PartFormerConfig", "PartStats",
    "PartWholeFormer", "PartsFolderDataset", "builtin_spec", "collate", "combine", "decode_uids", "encode_ids",
    "evaluate_arrays", "evaluate_folders", "flat_to_pid_table", "format_table", "gt_part_flat",
    "gt_to_prediction", "image_stats", "merge_to_pps", "part_map", "part_miou", "predict", "read_gt",
    "read_prediction", "summarize", "whole_segments", "write_gt", "write_prediction",
]
