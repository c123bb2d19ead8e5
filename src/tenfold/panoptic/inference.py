"""Inference of the part-whole model: whole segments by Mask2Former's panoptic rule, the part map,
and the merge into the part-aware panoptic format (``panoptic_parts.md`` sections 1 and 4).

Whole segments (Mask2Former's ``panoptic_inference``): keep queries whose best class is not no-object
and whose score exceeds ``score_threshold``; each pixel goes to argmax_q score_q * sigmoid(m_q); a query
keeps its segment when (its argmax area) / (its pixels with m_q >= 0.5) >= ``overlap_threshold`` and
pastes the pixels it won that also have m_q >= 0.5 (the mask threshold applies only when pasting); stuff
segments of one class merge. Parts: argmax over part queries of presence * sigmoid(mask) where the maximum is
>= 0.5, else background (0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tenfold.panoptic.format import NO_PREDICTION, EvalSpec
from tenfold.panoptic.merge import merge_to_pps


@dataclass(frozen=True)
class InferenceConfig:
    """Thresholds of Mask2Former's panoptic inference (keep a query, paste its pixels) and of the part masks."""

    score_threshold: float = 0.5     # Mask2Former's object_mask_threshold is 0.8 (the tiny models use 0.5)
    overlap_threshold: float = 0.8   # Mask2Former's overlap_threshold
    part_threshold: float = 0.5
    mask_threshold: float = 0.5      # Mask2Former pastes pixels with sigmoid(mask) >= 0.5


@torch.no_grad()
def whole_segments(class_logits: torch.Tensor, mask_logits: torch.Tensor, spec: EvalSpec,
                   cfg: InferenceConfig = InferenceConfig()) -> tuple[np.ndarray, np.ndarray]:
    """(sid, iid) maps of one image from (Q, C+1) class logits and (Q, H, W) mask logits at full size."""
    h, w = mask_logits.shape[-2:]
    sid_map = np.full((h, w), NO_PREDICTION, np.int32)
    iid_map = np.zeros((h, w), np.int32)
    probs = class_logits.softmax(-1)
    scores, labels = probs[:, :-1].max(-1)
    keep = (probs.argmax(-1) != probs.shape[-1] - 1) & (scores > cfg.score_threshold)
    if not keep.any():
        return sid_map, iid_map
    masks = mask_logits[keep].sigmoid()
    scores, labels = scores[keep], labels[keep]
    owner = (scores[:, None, None] * masks).argmax(0)
    stuff_iid: dict[int, int] = {}
    next_iid: dict[int, int] = {}
    things = set(spec.things)
    for k in range(len(scores)):
        sid = spec.eval_sids[int(labels[k])]
        won = owner == k
        region = won & (masks[k] >= cfg.mask_threshold)        # the mask threshold applies when pasting
        area, original = int(won.sum()), int((masks[k] >= cfg.mask_threshold).sum())
        if area == 0 or original == 0 or not bool(region.any()) or area / original < cfg.overlap_threshold:
            continue
        region_np = region.cpu().numpy()
        if sid in things:
            next_iid[sid] = next_iid.get(sid, 0) + 1
            if next_iid[sid] > 255:
                continue  # the PNG format holds at most 255 instances per class
            iid = next_iid[sid]
        else:
            iid = stuff_iid.setdefault(sid, 0)
        sid_map[region_np] = sid
        iid_map[region_np] = iid
    return sid_map, iid_map


@torch.no_grad()
def part_map(part_logits: torch.Tensor, part_masks: torch.Tensor, cfg: InferenceConfig = InferenceConfig()) -> np.ndarray:
    """(H, W) flat part ids (0 = background) from (P,) presence logits and (P, H, W) mask logits."""
    if part_masks.shape[0] == 0:
        return np.zeros(part_masks.shape[-2:], np.int32)
    prob = part_logits.sigmoid()[:, None, None] * part_masks.sigmoid()
    best, idx = prob.max(0)
    return torch.where(best >= cfg.part_threshold, idx + 1, 0).cpu().numpy().astype(np.int32)


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, spec: EvalSpec,
            cfg: InferenceConfig = InferenceConfig()) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each image: the (H, W, 3) part-aware panoptic prediction (sid, iid, pid) and the (H, W)
    flat part map (used for the part mIoU term of PWQ)."""
    was_training = model.training
    model.eval()
    out = model(images)["layers"][-1]
    model.train(was_training)
    size = images.shape[-2:]
    masks = F.interpolate(out["mask_logits"], size=size, mode="bilinear", align_corners=False)
    parts = F.interpolate(out["part_masks"], size=size, mode="bilinear", align_corners=False)
    results = []
    for i in range(images.shape[0]):
        sid, iid = whole_segments(out["class_logits"][i], masks[i], spec, cfg)
        flat = part_map(out["part_logits"][i], parts[i], cfg)
        results.append((merge_to_pps(sid, iid, flat, spec).astype(np.int32), flat))
    return results
