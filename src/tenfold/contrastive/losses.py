"""InfoNCE as message passing on a positive graph (Wang et al., ICLR 2023, Sec. 3-4).

Mini-batch form (spec section 1.2). ``N`` rows ``Z`` (already normalised or not), ``S = Z Z^T / tau``
with the diagonal excluded, ``P = rowsoftmax(S)``, a row-stochastic positive graph ``A`` and anchor
weights ``r`` (``1/N`` for plain InfoNCE, attention weights for SimCLR-Attn)::

    L       = sum_i r_i [ -sum_j A_ij S_ij + log sum_{j != i} exp S_ij ]  = L_align + L_unif
    dL/dZ   = (1/tau) [ R(P - A) + (R(P - A))^T ] Z          ( = ((P-A) + (P-A)^T) Z / (N tau) )

The alignment part ``-(1/tau)(RA + (RA)^T) Z`` pulls each row towards its positives (message passing
on the augmentation graph); the uniformity part ``(1/tau)(RP + (RP)^T) Z`` pushes it away from its
soft neighbours (repulsive message passing on the affinity graph).

:func:`mp_infonce` evaluates the loss with one N x N matrix alive at a time: the forward keeps only
``Z`` and the row log-normalisers, the backward rebuilds ``P`` in place and applies the closed form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tenfold.errors import require
from tenfold.second_order import refuse_second_order, second_order

MULTI_POSITIVE = ("mean_log", "log_sum")


# --------------------------------------------------------------------------------------------------
# positive graphs
# --------------------------------------------------------------------------------------------------
def pair_positives(num_rows: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Positives for two views stacked as ``[view 1; view 2]``: row ``i`` pairs with ``(i + n) mod 2n``."""
    require(num_rows >= 2 and num_rows % 2 == 0, "num_rows", num_rows,
            "an even number of rows (two views of each sample stacked)")
    n = num_rows // 2
    return (torch.arange(num_rows, device=device) + n) % num_rows


def random_derangement(n: int, generator: torch.Generator | None = None,
                       device: torch.device | str | None = None) -> torch.Tensor:
    """A random permutation ``pi`` of ``0..n-1`` with no fixed point (``pi[i] != i`` for every ``i``), for
    the variants' controls: row ``i`` takes what row ``pi[i]`` computed. One random cycle through a
    uniformly shuffled order (``sigma[k] -> sigma[k+1]``), drawn on the CPU from ``generator`` (the global
    RNG when None) so that every process and device draws the same one."""
    require(n >= 2, "n", n, "at least 2 rows (one row has no other row to take from)")
    sigma = torch.randperm(n, generator=generator)
    pi = torch.empty_like(sigma)
    pi[sigma] = sigma.roll(-1)
    return pi.to(device) if device is not None else pi


def view_positives(num_samples: int, num_views: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Multi-view positives for ``num_views`` blocks of ``num_samples`` rows: shape (N, num_views - 1),
    row ``v * n + i`` is positive with every other view of sample ``i``."""
    require(num_views >= 2, "num_views", num_views, "at least 2 views")
    require(num_samples >= 1, "num_samples", num_samples, "at least 1 sample")
    n, v = num_samples, num_views
    rows = torch.arange(n * v, device=device)
    sample, view = rows % n, rows // n
    others = torch.stack([(view + k) % v for k in range(1, v)], dim=1)
    return others * n + sample[:, None]


def positives_from_indexes(indexes: torch.Tensor) -> torch.Tensor:
    """solo-learn convention: rows with equal sample index are positives. Returns (N, K) padded with -1."""
    require(indexes.dim() == 1 and len(indexes) >= 2, "indexes", tuple(indexes.shape), "a 1-d tensor of >= 2 ids")
    same = indexes[:, None] == indexes[None, :]
    same.fill_diagonal_(False)
    counts = same.sum(1)
    require(bool((counts > 0).all()), "indexes", int(indexes[counts == 0][0]) if (counts == 0).any() else None,
            "every sample id to appear at least twice (a row without positives)")
    k = int(counts.max())
    order = torch.argsort((~same).to(torch.int8), dim=1, stable=True)[:, :k]
    picked = torch.gather(same, 1, order)
    return torch.where(picked, order, torch.full_like(order, -1))


def positive_graph(positives: torch.Tensor, num_rows: int, edge_weights: torch.Tensor | None = None,
                   return_degree: bool = False):
    """Validate positives and return ``(index (N, K), weight (N, K))`` with each row's weights summing to 1
    (``P_d = D^-1 A``), and with ``return_degree`` also the degrees ``d = A 1`` (N,) before normalisation.

    ``positives`` is (N,) (one positive per row) or (N, K) (padding ``-1`` allowed, at index 0 with weight
    0 in the returned index). ``edge_weights`` (same shape, >= 0) default to 1 per listed positive.
    """
    require(positives.dim() in (1, 2), "positives", tuple(positives.shape), "a tensor of shape (N,) or (N, K)")
    require(not positives.is_floating_point(), "positives", positives.dtype, "an integer tensor of row indices")
    idx = positives.view(-1, 1) if positives.dim() == 1 else positives
    require(idx.shape[0] == num_rows, "positives", tuple(positives.shape), f"{num_rows} rows, one per row of Z")
    valid = idx >= 0
    bad = idx[(idx >= num_rows) | (idx < -1)]
    require(bad.numel() == 0, "positives", int(bad[0]) if bad.numel() else None, f"row indices in 0..{num_rows - 1}")
    rows = torch.arange(num_rows, device=idx.device)[:, None]
    self_loop = valid & (idx == rows)
    require(not bool(self_loop.any()), "positives", "row i listed as its own positive",
            "positives different from the anchor row (the diagonal is excluded from InfoNCE)")
    if edge_weights is None:
        w = valid.to(torch.get_default_dtype())
    else:
        require(tuple(edge_weights.shape) == tuple(positives.shape), "edge_weights", tuple(edge_weights.shape),
                f"the shape of positives {tuple(positives.shape)}")
        require(not edge_weights.requires_grad, "edge_weights", "a tensor requiring grad",
                "detached weights (InfoNCE edge weights are constants; detach them)")
        w = edge_weights.reshape(idx.shape).to(torch.get_default_dtype() if not edge_weights.is_floating_point()
                                               else edge_weights.dtype)
        require(bool((w >= 0).all()) and bool(torch.isfinite(w).all()), "edge_weights", "negative or non-finite",
                "finite non-negative weights")
        w = torch.where(valid, w, torch.zeros_like(w))
    total = w.sum(1, keepdim=True)
    empty = (total <= 0).flatten()
    require(not bool(empty.any()), "positives", f"row {int(empty.nonzero()[0]) if empty.any() else -1}",
            "at least one positive (with positive weight) in every row")
    if return_degree:
        return idx.clamp_min(0), w / total, total.flatten()
    return idx.clamp_min(0), w / total


def _anchor_weights(anchor_weights: torch.Tensor | None, n: int, like: torch.Tensor,
                    degree: torch.Tensor | None = None) -> torch.Tensor:
    """``r``: the given weights (default ``1/N``), times ``d_i / mean(d)`` when ``degree`` is given (the
    population objective weights each anchor by its degree; uniform degrees change nothing)."""
    if degree is not None:
        scale = (degree / degree.mean()).to(like.dtype)
        return _anchor_weights(anchor_weights, n, like) * scale
    if anchor_weights is None:
        return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)
    require(tuple(anchor_weights.shape) == (n,), "anchor_weights", tuple(anchor_weights.shape), f"shape ({n},)")
    require(not anchor_weights.requires_grad, "anchor_weights", "a tensor requiring grad",
            "detached weights (the paper stops the gradient through the attention weights)")
    require(bool((anchor_weights >= 0).all()) and bool(torch.isfinite(anchor_weights).all()), "anchor_weights",
            "negative or non-finite", "finite non-negative weights")
    return anchor_weights.to(like.dtype)


# --------------------------------------------------------------------------------------------------
# the memory-lean loss
# --------------------------------------------------------------------------------------------------
def _row_log_normalisers(z: torch.Tensor, tau: float, neg: torch.Tensor | None = None) -> torch.Tensor:
    """``log sum_{j != i} exp(z_i . z_j / tau)`` (plus ``sum_m exp(z_i . b_m / tau)`` over the rows ``b``
    of ``neg``) using one N x N (N x (N + M)) buffer, modified in place."""
    if neg is None:
        s = z @ z.T
        s.div_(tau)
        s.fill_diagonal_(float("-inf"))
    else:
        s = z @ torch.cat([z, neg]).T
        s.div_(tau)
        s[:, : len(z)].fill_diagonal_(float("-inf"))
    m = s.amax(1, keepdim=True)
    s.sub_(m).exp_()
    return s.sum(1).log_() + m.squeeze(1)


@second_order("refuses", alternative="for second derivatives use the dense form sum(infonce_parts(...)) "
              "(tenfold.contrastive.losses; plain autograd, the same loss with multi_positive='mean_log')")
class _MPInfoNCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, idx, w, r, tau, log_sum=False, neg=None):  # type: ignore[override]
        lse = _row_log_normalisers(z, tau, neg)
        pos = (z.unsqueeze(1) * z[idx]).sum(-1) / tau  # (N, K)
        if log_sum:  # -log sum_k w_ik e^{S_ik} + lse_i; its gradient is the mean-log one with w -> q = softmax_k
            logits = pos + torch.log(w)  # padding (w = 0) -> -inf
            pos_lse = torch.logsumexp(logits, dim=1)
            loss = (r * (lse - pos_lse)).sum()
            w = torch.softmax(logits, dim=1)
        else:
            loss = (r * (lse - (w * pos).sum(1))).sum()
        if neg is None:
            ctx.save_for_backward(z, idx, w, r, lse)
        else:
            ctx.save_for_backward(z, idx, w, r, lse, neg)
        ctx.tau = tau
        return loss

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        refuse_second_order(_MPInfoNCE)  # the closed form below treats P and lse as constants
        z, idx, w, r, lse, *neg = ctx.saved_tensors
        tau = ctx.tau
        if neg:  # the queued negatives: constants that only enter the denominators of the rows of z
            (b,) = neg
            pb = z @ b.T
            pb.div_(tau).sub_(lse[:, None]).exp_()
            pb.mul_(r[:, None])
            g_bank = pb @ b
            del pb
        p = z @ z.T  # becomes R P in place: the only N x N buffer
        p.div_(tau).sub_(lse[:, None]).exp_()
        p.fill_diagonal_(0.0)
        p.mul_(r[:, None])
        g = p @ z
        g.addmm_(p.T, z)
        del p
        if neg:
            g.add_(g_bank)
        ra = r[:, None] * w  # (N, K): weights of edges i -> idx[i, k]
        g.sub_((ra.unsqueeze(-1) * z[idx]).sum(1))
        g.index_add_(0, idx.flatten(), -(ra.flatten()[:, None] * z.repeat_interleave(idx.shape[1], dim=0)))
        g.mul_(grad / tau)
        return g, None, None, None, None, None, None


def mp_infonce(z: torch.Tensor, positives: torch.Tensor, tau: float, edge_weights: torch.Tensor | None = None,
               anchor_weights: torch.Tensor | None = None, normalize: bool = True,
               degree_weighted: bool = True, multi_positive: str = "mean_log",
               negatives: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE over the rows of ``z`` (N, D) with an explicit positive graph (spec 1.2).

    ``positives``: (N,) or (N, K) row indices (``-1`` pads); ``edge_weights``: optional per-edge weights
    ``A_ij``; ``anchor_weights``: optional detached per-row weights (default ``1/N``). With
    ``degree_weighted`` (default) the anchor weights are multiplied by ``d_i / mean(d)``, ``d = A 1``, and
    each row's edges are normalised to ``A_ij / d_i``: the loss is then the population objective
    ``-sum_ij A_ij S_ij / sum(A) + sum_i d_i lse_i / sum(d)`` (paper Sec. 3). ``False`` gives every anchor
    the same weight whatever its degree. With one positive per row (or equal degrees) both are NT-Xent.
    ``normalize`` projects rows to the unit sphere first (autograd adds ``(I - zz^T)/||u||``).
    The backward is the closed form ``(1/tau)[R(P-A) + (R(P-A))^T] Z``; memory stays at one N x N matrix.

    ``multi_positive`` chooses how several positives of a row combine (SupCon's L_out vs L_in):

    - ``"mean_log"`` (default): ``lse_i - sum_j A_ij S_ij / d_i``, the mean over positives of
      ``-log(e^{S_ij} / sum_{a != i} e^{S_ia})`` (SupCon L_out; the message-passing form above);
    - ``"log_sum"``: ``-log(sum_j A_ij e^{S_ij} / sum_{a != i} e^{S_ia})`` with the raw edge weights (1 per
      listed positive by default: solo-learn's ``simclr_loss`` and lightly's multi-positive NT-Xent; SupCon
      L_in plus ``log |P(i)|``). Its gradient is the same closed form with ``A`` replaced by the detached
      softmax over each row's positives ``Q_ij = A_ij e^{S_ij} / sum_k A_ik e^{S_ik}``: positives already
      close to the anchor take most of the pull.

    With one positive per row both are NT-Xent.

    ``negatives`` (M, D): extra rows that enter every denominator and receive no gradient (a memory bank
    of earlier batches, :class:`~tenfold.contrastive.bank.MemoryBank`); they are used as given, so pass
    them normalised when ``normalize`` is on. The anchor's row softmax then runs over ``N - 1 + M`` rows.

    >>> import torch
    >>> from tenfold.contrastive import mp_infonce, nt_xent, pair_positives, view_positives
    >>> z = torch.randn(12, 16, requires_grad=True)            # 3 views of 4 images: [view 1; view 2; view 3]
    >>> loss = mp_infonce(z, view_positives(4, 3), tau=0.5)     # each row: 2 positives (SupCon L_out)
    >>> loss_in = mp_infonce(z, view_positives(4, 3), tau=0.5, multi_positive="log_sum")  # SupCon L_in
    >>> loss.backward()                                         # closed-form backward, one N x N matrix
    >>> pairs = torch.randn(8, 16, dtype=torch.float64)         # one positive per row: NT-Xent (SimCLR)
    >>> torch.allclose(mp_infonce(pairs, pair_positives(8), tau=0.5), nt_xent(pairs, tau=0.5))
    True
    """
    require(tau > 0, "tau", tau, "a positive temperature")
    require(multi_positive in MULTI_POSITIVE, "multi_positive", multi_positive, f"one of {', '.join(MULTI_POSITIVE)}")
    require(z.dim() == 2 and z.shape[0] >= 2, "z", tuple(z.shape), "a matrix of shape (N >= 2, D)")
    n = z.shape[0]
    positives = positives.to(z.device)
    if edge_weights is None:  # 1 per listed positive, in z's dtype (not the default float32: 1/3 must be exact)
        edge_weights = (positives >= 0).to(z.dtype if z.is_floating_point() else torch.get_default_dtype())
    idx, w, deg = positive_graph(positives, n, edge_weights.to(z.device), return_degree=True)
    r = _anchor_weights(None if anchor_weights is None else anchor_weights.to(z.device), n, z,
                        deg if degree_weighted else None)
    if normalize:
        z = F.normalize(z, dim=1)
    if multi_positive == "log_sum":
        w = w * deg[:, None]  # the raw weights A_ij (positive_graph normalised each row to sum 1)
    neg = None
    if negatives is not None and len(negatives) > 0:
        require(negatives.dim() == 2 and negatives.shape[1] == z.shape[1], "negatives", tuple(negatives.shape),
                f"a matrix of shape (M, {z.shape[1]})")
        neg = negatives.detach().to(device=z.device, dtype=z.dtype)
    return _MPInfoNCE.apply(z, idx, w.to(z.dtype), r, float(tau), multi_positive == "log_sum", neg)


# --------------------------------------------------------------------------------------------------
# dense reference forms: the straightforward loss, its two parts and their message-passing gradients
# --------------------------------------------------------------------------------------------------
def nt_xent(z: torch.Tensor, tau: float, normalize: bool = True) -> torch.Tensor:
    """The straightforward NT-Xent (SimCLR) for two stacked views: cross-entropy over masked logits."""
    require(tau > 0, "tau", tau, "a positive temperature")
    n = z.shape[0]
    if normalize:
        z = F.normalize(z, dim=1)
    logits = (z @ z.T) / tau
    logits = logits.masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), float("-inf"))
    return F.cross_entropy(logits, pair_positives(n, z.device))


def dense_positive_matrix(positives: torch.Tensor, num_rows: int, edge_weights: torch.Tensor | None = None,
                          dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The row-stochastic positive graph ``A`` as a dense (N, N) matrix."""
    idx, w = positive_graph(positives, num_rows, edge_weights)
    a = torch.zeros(num_rows, num_rows, dtype=dtype, device=idx.device)
    return a.scatter_add_(1, idx, w.to(dtype))


def _degrees(positives: torch.Tensor, n: int, edge_weights: torch.Tensor | None, degree_weighted: bool):
    return positive_graph(positives, n, edge_weights, return_degree=True)[2] if degree_weighted else None


def infonce_parts(z: torch.Tensor, positives: torch.Tensor, tau: float, edge_weights: torch.Tensor | None = None,
                  anchor_weights: torch.Tensor | None = None, degree_weighted: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_align, L_unif)`` on already-projected rows ``z``: ``-sum r_i A_ij S_ij`` and ``sum r_i lse_i``
    (``A`` row-normalised, ``r`` as in :func:`mp_infonce`)."""
    require(tau > 0, "tau", tau, "a positive temperature")
    n = z.shape[0]
    a = dense_positive_matrix(positives, n, edge_weights, z.dtype)
    r = _anchor_weights(anchor_weights, n, z, _degrees(positives, n, edge_weights, degree_weighted))
    s = (z @ z.T) / tau
    align = -(r * (a * s).sum(1)).sum()
    unif = (r * torch.logsumexp(s.masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), float("-inf")),
                                1)).sum()
    return align, unif


def affinity_matrix(z: torch.Tensor, tau: float) -> torch.Tensor:
    """``P = rowsoftmax(Z Z^T / tau)`` with the diagonal excluded (the learned affinity graph)."""
    n = z.shape[0]
    s = (z @ z.T) / tau
    return torch.softmax(s.masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), float("-inf")), dim=1)


def message_passing_gradients(z: torch.Tensor, positives: torch.Tensor, tau: float,
                              edge_weights: torch.Tensor | None = None,
                              anchor_weights: torch.Tensor | None = None,
                              degree_weighted: bool = True) -> dict[str, torch.Tensor]:
    """Closed-form gradients w.r.t. projected rows ``z`` (spec 1.2):

    ``align = -(1/tau)(RA + (RA)^T) Z``, ``unif = (1/tau)(RP + (RP)^T) Z``, ``total = align + unif``.
    """
    n = z.shape[0]
    r = _anchor_weights(anchor_weights, n, z, _degrees(positives, n, edge_weights, degree_weighted))
    ra = r[:, None] * dense_positive_matrix(positives, n, edge_weights, z.dtype)
    rp = r[:, None] * affinity_matrix(z, tau)
    align = -((ra + ra.T) @ z) / tau
    unif = ((rp + rp.T) @ z) / tau
    return {"align": align, "unif": unif, "total": align + unif}
