"""SimCLR-Attn: graph-attention edge weights on InfoNCE anchors (paper Sec. 5.1; spec 1.3 V1).

``L = -sum_i a_i log P_{i,p(i)}`` with ``a_i = exp(1 + cos(h_i, h_p(i))) / sum_j exp(1 + cos(h_j, h_p(j)))``:
a softmax over the ``N`` anchors of the cosine between an anchor's encoder feature and its positive's,
detached (the ``+1`` of the official code cancels in the softmax). Positive pairs whose views disagree
get down-weighted, like attention coefficients in a GAT. The denominator of ``P`` is unchanged.

Control (``weights="permuted"``, the ablation of the SimCLR-Attn claim): the same detached weights,
computed the same way, handed to the anchors in a random order (a derangement per step), so their
distribution over the batch is kept and only their tie to each anchor's own view agreement is removed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tenfold.contrastive.losses import mp_infonce, positive_graph, random_derangement
from tenfold.errors import require

ATTENTION_WEIGHTS = ("similarity", "permuted")


@torch.no_grad()
def attention_weights(h: torch.Tensor, positives: torch.Tensor, edge_weights: torch.Tensor | None = None
                      ) -> torch.Tensor:
    """Detached anchor weights ``a = softmax_i(cos(h_i, h_p(i)))`` (weighted mean cosine for several positives)."""
    require(h.dim() == 2, "h", tuple(h.shape), "encoder features of shape (N, C)")
    idx, w = positive_graph(positives.to(h.device), h.shape[0],
                            None if edge_weights is None else edge_weights.to(h.device))
    hn = F.normalize(h.detach(), dim=1)
    cos = ((hn.unsqueeze(1) * hn[idx]).sum(-1) * w.to(hn.dtype)).sum(1)
    return torch.softmax(1.0 + cos, dim=0)


def simclr_attn_loss(z: torch.Tensor, h: torch.Tensor, positives: torch.Tensor, tau: float,
                     normalize: bool = True, negatives: torch.Tensor | None = None, weights: str = "similarity",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """SimCLR-Attn loss (paper Sec. 5.1): ``L = -sum_i a_i log P_{i,p(i)}``, :func:`mp_infonce` with the
    detached anchor weights ``a = softmax_i(cos(h_i, h_p(i)))`` of the encoder features ``h`` (N, C)
    (:func:`attention_weights`); ``z`` (N, D) are the projections, ``negatives`` extra memory-bank rows in
    the denominators.

    ``weights="permuted"`` is the control: ``L = -sum_i a_{pi(i)} log P_{i,p(i)}`` with ``pi`` a random
    derangement drawn from ``generator`` (:func:`~tenfold.contrastive.losses.random_derangement`): the same
    weights, detached the same way, not tied to the anchor's own view agreement.

    >>> import torch
    >>> from tenfold.contrastive import pair_positives, simclr_attn_loss
    >>> g = torch.Generator().manual_seed(0)
    >>> h = torch.randn(8, 32, generator=g)                     # encoder features of [view 1; view 2]
    >>> z = torch.randn(8, 16, generator=g, requires_grad=True)  # projector outputs
    >>> loss = simclr_attn_loss(z, h, pair_positives(8), tau=0.5)
    >>> loss.backward(); z.grad.shape
    torch.Size([8, 16])
    """
    require(h.shape[0] == z.shape[0], "h", tuple(h.shape), f"{z.shape[0]} rows like z")
    require(weights in ATTENTION_WEIGHTS, "attention_weights", weights, f"one of {', '.join(ATTENTION_WEIGHTS)}")
    a = attention_weights(h, positives)
    if weights == "permuted":
        a = a[random_derangement(len(a), generator, a.device)]
    return mp_infonce(z, positives, tau, anchor_weights=a, normalize=normalize, negatives=negatives)
