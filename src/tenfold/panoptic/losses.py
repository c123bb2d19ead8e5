"""Losses of the part-whole model (Mask2Former defaults, ``panoptic_parts.md`` section 4).

Whole queries: cross-entropy over C classes + no-object (weight ``w_class``, no-object weight
``no_object``) after Hungarian matching; matched masks get BCE (``w_bce``) and Dice (``w_dice``) on
``num_points`` importance-sampled pixel centres. Part queries have a fixed one-to-one assignment to
the flat part classes: a presence BCE (``w_presence``) and mask BCE + Dice where the part is present.
Every decoder layer is supervised (deep supervision); void and crowd pixels are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tenfold.panoptic.matching import assign, matching_cost, pixel_points, point_sample, uncertain_points
from tenfold.panoptic.targets import Targets


@dataclass(frozen=True)
class LossWeights:
    w_class: float = 2.0
    w_bce: float = 5.0
    w_dice: float = 5.0
    no_object: float = 0.1
    w_presence: float = 2.0


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-mask mean BCE over valid points: (N, P) -> (N,)."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * valid
    return loss.sum(-1) / valid.sum(-1).clamp_min(1)


def masked_dice(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-mask Dice loss 1 - (2 sum(m g) + 1) / (sum(m) + sum(g) + 1) over valid points: (N, P) -> (N,)."""
    m = logits.sigmoid() * valid
    g = targets * valid
    return 1 - (2 * (m * g).sum(-1) + 1) / (m.sum(-1) + g.sum(-1) + 1)


class PartWholeCriterion:
    """Total loss over layers and images; returns a dict of the loss terms and ``"loss"``."""

    def __init__(self, num_classes: int, weights: LossWeights = LossWeights(), num_points: int = 1024,
                 oversample: float = 3.0, importance: float = 0.75) -> None:
        self.num_classes = num_classes
        self.w = weights
        self.num_points = num_points
        self.oversample = oversample
        self.importance = importance

    def _mask_terms(self, logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
                    generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed BCE and Dice of N predicted masks (N, h, w) against targets and valid maps (N, H, W),
        on importance-sampled pixel centres: one batched call for the whole batch."""
        if len(targets) == 0:
            zero = logits.sum() * 0
            return zero, zero
        size = tuple(targets.shape[-2:])
        points = uncertain_points(logits, self.num_points, size, self.oversample, self.importance, generator)
        pred = point_sample(logits, points)
        tgt = point_sample(targets, points)
        ok = point_sample(valid.float(), points)
        return masked_bce(pred, tgt, ok).sum(), masked_dice(pred, tgt, ok).sum()

    def layer_loss(self, layer: dict[str, torch.Tensor], targets: list[Targets], match_points: torch.Tensor,
                   gt_points: list[torch.Tensor], part_targets: tuple | None,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Loss terms of one layer. Shared by every layer of one call: ``match_points`` (1, P, 2), the
        targets sampled there (``gt_points``) and ``part_targets`` = (presence (B, P), masks and valid
        maps of the present parts)."""
        class_logits, mask_logits = layer["class_logits"], layer["mask_logits"]
        device = class_logits.device
        b, q, _ = class_logits.shape
        empty_weight = torch.ones(self.num_classes + 1, device=device)
        empty_weight[-1] = self.w.no_object
        target_classes = torch.full((b, q), self.num_classes, dtype=torch.long, device=device)
        with torch.no_grad():
            pred_points = point_sample(mask_logits.detach().flatten(0, 1), match_points).view(b, q, -1)
        preds, tgts, valids = [], [], []
        for i, t in enumerate(targets):
            if len(t.classes) == 0:
                continue
            cost = matching_cost(class_logits[i].detach(), pred_points[i], t.classes, gt_points[i],
                                 self.w.w_class, self.w.w_bce, self.w.w_dice)
            rows, cols = assign(cost)
            target_classes[i, rows.to(device)] = t.classes[cols].to(device)
            preds.append(mask_logits[i, rows.to(device)])
            tgts.append(t.masks[cols])
            valids.append(t.valid.expand(len(cols), -1, -1))
        n_masks = max(sum(len(p) for p in preds), 1)
        if preds:
            bce, dice = self._mask_terms(torch.cat(preds), torch.cat(tgts), torch.cat(valids), generator)
        else:
            bce = dice = mask_logits.sum() * 0
        cls = F.cross_entropy(class_logits.transpose(1, 2), target_classes, weight=empty_weight)
        out = {"class": self.w.w_class * cls, "bce": self.w.w_bce * bce / n_masks,
               "dice": self.w.w_dice * dice / n_masks}
        if part_targets is not None and layer["part_logits"].shape[1] > 0:
            presence_t, parts, part_valid = part_targets
            presence = F.binary_cross_entropy_with_logits(layer["part_logits"], presence_t)
            present = presence_t > 0
            pbce, pdice = self._mask_terms(layer["part_masks"][present], parts, part_valid, generator)
            n_parts = max(int(present.sum()), 1)
            out.update({"presence": self.w.w_presence * presence, "part_bce": self.w.w_bce * pbce / n_parts,
                        "part_dice": self.w.w_dice * pdice / n_parts})
        return out

    def __call__(self, outputs: dict, targets: list[Targets],
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Sum of :meth:`layer_loss` over every supervised layer (deep supervision)."""
        total: dict[str, torch.Tensor] = {}
        size = tuple(targets[0].masks.shape[-2:])
        device = outputs["layers"][0]["mask_logits"].device
        match_points = pixel_points(1, self.num_points, size, generator, device)
        gt_points = [point_sample(t.masks, match_points) if len(t.classes) else t.masks.new_zeros(0, self.num_points)
                     for t in targets]
        part_targets = None
        if targets[0].part_masks.shape[0] > 0:
            stacked = torch.stack([t.part_masks for t in targets]).to(device)
            valid = torch.stack([t.part_valid for t in targets]).to(device)[:, None].expand_as(stacked)
            presence_t = (stacked * valid).flatten(2).amax(2)
            present = presence_t > 0
            part_targets = (presence_t, stacked[present], valid[present])
        for layer in outputs["layers"]:
            for k, v in self.layer_loss(layer, targets, match_points, gt_points, part_targets, generator).items():
                total[k] = total.get(k, 0.0) + v
        total["loss"] = sum(total.values())
        return total
