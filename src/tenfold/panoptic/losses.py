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

from tenfold.panoptic.matching import match, point_sample, uncertain_points
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
        size = tuple(targets.shape[-2:])
        points = uncertain_points(logits, self.num_points, size, self.oversample, self.importance, generator)
        pred = point_sample(logits, points)
        tgt = point_sample(targets, points)
        ok = point_sample(valid.float().unsqueeze(0).expand(len(targets), -1, -1), points)
        return masked_bce(pred, tgt, ok).sum(), masked_dice(pred, tgt, ok).sum()

    def layer_loss(self, layer: dict[str, torch.Tensor], targets: list[Targets],
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        class_logits, mask_logits = layer["class_logits"], layer["mask_logits"]
        device = class_logits.device
        b, q, _ = class_logits.shape
        empty_weight = torch.ones(self.num_classes + 1, device=device)
        empty_weight[-1] = self.w.no_object
        target_classes = torch.full((b, q), self.num_classes, dtype=torch.long, device=device)
        bce = dice = torch.zeros((), device=device)
        n_masks = 0
        for i, t in enumerate(targets):
            rows, cols = match(class_logits[i].detach(), mask_logits[i].detach(), t.classes, t.masks,
                               num_points=self.num_points, w_class=self.w.w_class, w_bce=self.w.w_bce,
                               w_dice=self.w.w_dice, generator=generator)
            if len(rows):
                target_classes[i, rows.to(device)] = t.classes[cols].to(device)
                b_i, d_i = self._mask_terms(mask_logits[i, rows.to(device)], t.masks[cols], t.valid, generator)
                bce, dice = bce + b_i, dice + d_i
                n_masks += len(rows)
        cls = F.cross_entropy(class_logits.transpose(1, 2), target_classes, weight=empty_weight)
        n_masks = max(n_masks, 1)
        out = {"class": self.w.w_class * cls, "bce": self.w.w_bce * bce / n_masks,
               "dice": self.w.w_dice * dice / n_masks}
        if "part_logits" in layer and layer["part_logits"].shape[1] > 0:
            presence_t = torch.stack([(t.part_masks * t.part_valid).flatten(1).amax(1) for t in targets]).to(device)
            presence = F.binary_cross_entropy_with_logits(layer["part_logits"], presence_t)
            pbce = pdice = torch.zeros((), device=device)
            n_parts = 0
            for i, t in enumerate(targets):
                present = presence_t[i] > 0
                if present.any():
                    b_i, d_i = self._mask_terms(layer["part_masks"][i, present], t.part_masks[present.cpu()],
                                                t.part_valid, generator)
                    pbce, pdice = pbce + b_i, pdice + d_i
                    n_parts += int(present.sum())
            n_parts = max(n_parts, 1)
            out.update({"presence": self.w.w_presence * presence, "part_bce": self.w.w_bce * pbce / n_parts,
                        "part_dice": self.w.w_dice * pdice / n_parts})
        return out

    def __call__(self, outputs: dict, targets: list[Targets],
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Sum of :meth:`layer_loss` over every supervised layer (deep supervision)."""
        total: dict[str, torch.Tensor] = {}
        for layer in outputs["layers"]:
            for k, v in self.layer_loss(layer, targets, generator).items():
                total[k] = total.get(k, 0.0) + v
        total["loss"] = sum(total.values())
        return total
