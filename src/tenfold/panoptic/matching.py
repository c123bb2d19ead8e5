"""Point sampling and Hungarian matching of whole queries to GT segments (Mask2Former, section 4).

Matching cost for query q and segment g, on points sampled uniformly in the image:
``C = w_cls * (-p_q(class_g)) + w_bce * BCE(m_q, g) + w_dice * Dice(m_q, g)``, solved by
``scipy.optimize.linear_sum_assignment``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


def point_sample(masks: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``masks`` (N, H, W) at ``points`` (N or 1, P, 2) in [0, 1]^2 (x, y) -> (N, P)."""
    grid = (2.0 * points - 1.0).unsqueeze(1)  # (N, 1, P, 2)
    if grid.shape[0] != masks.shape[0]:
        grid = grid.expand(masks.shape[0], -1, -1, -1)
    return F.grid_sample(masks.unsqueeze(1), grid, align_corners=False).squeeze(1).squeeze(1)


def pixel_points(n: int, num_points: int, size: tuple[int, int], generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """(n, P, 2) random *pixel centres* of an image of ``size`` = (H, W), in [0, 1]^2 (x, y).

    Sampling targets at pixel centres reads their exact (binary) values, so a perfect prediction has
    exactly zero mask loss; predictions at a coarser stride are interpolated bilinearly there.
    """
    h, w = size
    ys = torch.randint(0, h, (n, num_points), generator=generator)
    xs = torch.randint(0, w, (n, num_points), generator=generator)
    return torch.stack([(xs + 0.5) / w, (ys + 0.5) / h], dim=-1).to(device)


def uncertain_points(logits: torch.Tensor, num_points: int, size: tuple[int, int], oversample: float = 3.0,
                     importance: float = 0.75, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mask2Former's importance sampling on pixel centres: of ``num_points`` per mask, a fraction
    ``importance`` are the most uncertain (|logit| smallest) of ``oversample * num_points`` random
    points, the rest uniform."""
    n = logits.shape[0]
    k = int(num_points * oversample)
    cand = pixel_points(n, k, size, generator, logits.device)
    with torch.no_grad():
        unc = -point_sample(logits.detach(), cand).abs()
    n_imp = int(importance * num_points)
    idx = unc.argsort(dim=1, descending=True)[:, :n_imp]  # much faster than topk for large k on CPU
    chosen = torch.gather(cand, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    rand = pixel_points(n, num_points - n_imp, size, generator, logits.device)
    return torch.cat([chosen, rand], dim=1)


def batch_bce_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean BCE of every prediction (Q, P) against every target (G, P) -> (Q, G)."""
    p = logits.shape[1]
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / p


def batch_dice_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss 1 - (2|m g| + 1) / (|m| + |g| + 1) of every prediction against every target -> (Q, G)."""
    m = logits.sigmoid()
    num = 2 * m @ targets.T
    den = m.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (num + 1) / (den + 1)


def assign(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum-cost assignment of a (Q, G) cost matrix with scipy's Hungarian solver."""
    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)


def matching_cost(class_logits: torch.Tensor, pred_points: torch.Tensor, gt_classes: torch.Tensor,
                  gt_points: torch.Tensor, w_class: float = 2.0, w_bce: float = 5.0, w_dice: float = 5.0) -> torch.Tensor:
    """(Q, G) cost from class logits (Q, C+1) and mask logits / targets already sampled at shared points."""
    return (-w_class * class_logits.softmax(-1)[:, gt_classes] + w_bce * batch_bce_cost(pred_points, gt_points)
            + w_dice * batch_dice_cost(pred_points, gt_points))


@torch.no_grad()
def match(class_logits: torch.Tensor, mask_logits: torch.Tensor, gt_classes: torch.Tensor, gt_masks: torch.Tensor,
          *, num_points: int = 1024, w_class: float = 2.0, w_bce: float = 5.0, w_dice: float = 5.0,
          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimal assignment of Q queries to G segments of one image: (query indices, segment indices)."""
    if len(gt_classes) == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    points = pixel_points(1, num_points, tuple(gt_masks.shape[-2:]), generator, mask_logits.device)
    return assign(cost_matrix(class_logits, mask_logits, gt_classes, gt_masks, points, w_class, w_bce, w_dice))


def cost_matrix(class_logits, mask_logits, gt_classes, gt_masks, points, w_class=2.0, w_bce=5.0, w_dice=5.0):
    """The matching cost of one image on given points (1, P, 2)."""
    return matching_cost(class_logits, point_sample(mask_logits.float(), points), gt_classes,
                         point_sample(gt_masks.float(), points), w_class, w_bce, w_dice)
