"""Graph rewiring: neighbour positives mixed into the augmentation graph (paper abstract; spec 1.3 V3).

EXPERIMENTAL, our design: the paper names rewiring but its official code has none. We rewire the
positive graph to ``A~ = (1 - beta) A + beta kNN_k(sg(features))`` (rows of both normalised to 1, so
``A~`` is row-stochastic), an NNCLR-style edit: besides its other view, each anchor is pulled towards
the ``k`` rows nearest to it in a detached feature space. With ``beta = 0`` it is the base loss.

Control (``partners="random"``, the ablation of the rewiring comparison): the same ``k`` extra positives
at the same weight ``beta / k``, drawn uniformly from the rows that are neither the anchor nor its
positives instead of chosen by similarity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tenfold.contrastive.losses import mp_infonce, positive_graph
from tenfold.errors import require

PARTNERS = ("knn", "random")


@torch.no_grad()
def knn_positives(features: torch.Tensor, k: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Indices (N, k) of each row's ``k`` nearest other rows by cosine; ``exclude`` (N, K) rows are skipped
    (``-1`` entries are padding and exclude nothing)."""
    n = features.shape[0]
    require(1 <= k <= n - 2, "k", k, f"a neighbour count in 1..{n - 2} for {n} rows")
    f = F.normalize(features.detach(), dim=1)
    sim = f @ f.T
    sim.fill_diagonal_(float("-inf"))
    if exclude is not None:
        ex = exclude.to(sim.device).view(n, -1)
        # padding (-1) must not exclude anything: point it at the row itself (already -inf), never at row 0
        ex = torch.where(ex >= 0, ex, torch.arange(n, device=sim.device)[:, None])
        sim.scatter_(1, ex, float("-inf"))
    return sim.topk(k, dim=1).indices


@torch.no_grad()
def random_partners(n: int, k: int, exclude: torch.Tensor | None = None, generator: torch.Generator | None = None,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Indices (N, k): for each of ``n`` rows, ``k`` distinct other rows drawn uniformly, skipping the row
    itself and its ``exclude`` (N, K) rows (``-1`` entries are padding), the control of :func:`knn_positives`.
    Drawn on the CPU from ``generator`` (the global RNG when None), so every process draws the same."""
    require(1 <= k <= n - 2, "k", k, f"a neighbour count in 1..{n - 2} for {n} rows")
    score = torch.rand(n, n, generator=generator, dtype=torch.float64)
    score.fill_diagonal_(float("-inf"))
    if exclude is not None:
        ex = exclude.cpu().view(n, -1)
        ex = torch.where(ex >= 0, ex, torch.arange(n)[:, None])
        score.scatter_(1, ex, float("-inf"))
    # top-k of i.i.d. uniform scores over the allowed rows: a uniform k-subset of them
    out = score.topk(k, dim=1).indices
    return out.to(device) if device is not None else out


def rewired_positives(positives: torch.Tensor, features: torch.Tensor, k: int, beta: float,
                      edge_weights: torch.Tensor | None = None, partners: str = "knn",
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(index, weight)`` of ``A~ = (1 - beta) A + beta kNN_k(sg(features))``, shapes (N, K + k);
    ``partners="random"``: the ``k`` extra positives drawn at random (:func:`random_partners`, from
    ``generator``) instead of the nearest neighbours, at the same weights."""
    require(0.0 <= beta <= 1.0, "beta", beta, "a mixing weight in [0, 1]")
    require(partners in PARTNERS, "rewire_partners", partners, f"one of {', '.join(PARTNERS)}")
    n = features.shape[0]
    positives = positives.to(features.device)
    idx, w = positive_graph(positives, n, edge_weights)  # idx has padding clamped to 0 (with weight 0)
    if partners == "knn":
        nn_idx = knn_positives(features, k, exclude=positives.view(n, -1))  # the padded form: -1 excludes nothing
    else:
        nn_idx = random_partners(n, k, positives.view(n, -1), generator, features.device)
    w = w.to(features.dtype) if features.is_floating_point() else w
    w_all = torch.cat([(1 - beta) * w, torch.full((n, k), beta / k, dtype=w.dtype, device=w.device)], dim=1)
    return torch.cat([idx, nn_idx], dim=1), w_all


def rewired_infonce(z: torch.Tensor, positives: torch.Tensor, tau: float, k: int, beta: float,
                    features: torch.Tensor | None = None, normalize: bool = True,
                    multi_positive: str = "mean_log", negatives: torch.Tensor | None = None,
                    partners: str = "knn", generator: torch.Generator | None = None) -> torch.Tensor:
    """InfoNCE on the rewired graph; neighbours come from ``sg(features)`` (default ``sg(z)``);
    ``multi_positive`` as in :func:`~tenfold.contrastive.losses.mp_infonce`; ``partners="random"`` is the
    control with random partners (:func:`rewired_positives`)."""
    feats = z.detach() if features is None else features.detach()
    require(feats.shape[0] == z.shape[0], "features", tuple(feats.shape), f"{z.shape[0]} rows like z")
    idx, w = rewired_positives(positives, feats, k, beta, partners=partners, generator=generator)
    return mp_infonce(z, idx, tau, edge_weights=w, normalize=normalize, multi_positive=multi_positive,
                      negatives=negatives)
