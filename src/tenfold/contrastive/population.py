"""The population form of contrastive learning on an explicit augmentation graph (spec 1.1; paper Sec. 3).

``A`` (N x N, symmetric, entries >= 0, summing to 1) is the augmentation graph, ``d = A 1``,
``D = diag(d)``, ``Abar = D^-1/2 A D^-1/2``, ``P_d = D^-1 A``. Features ``f`` are the rows of an
(N, k) matrix and ``F = D^1/2 f``.

- Alignment ``L_align = -(1/tau) sum A_xx' f_x . f_x' = -(1/tau) Tr(F^T Abar F)``; a gradient step is the
  propagation ``F <- (I + (2 eta / tau) Abar) F`` (GCN/SGC with a self-loop).
- Uniformity ``L_unif = sum_x d_x log sum_x' d_x' exp(f_x . f_x' / tau)`` with the affinity graph
  ``P_theta(x'|x) = d_x' e^{f_x.f_x'/tau} / sum_x'' d_x'' e^{f_x.f_x''/tau}``; its gradient is
  ``(1/tau)(D P_theta + P_theta^T D) f`` (repulsive message passing).
- Together ``grad = (1/tau)[D(P_theta - P_d) + (P_theta - P_d)^T D] f``: zero when ``P_theta = P_d``.
- The equilibrium ``P_theta = P_d`` seen at the level of node groups (blocks): :func:`block_affinity_error`
  compares the mass ``D P_theta`` puts between groups with the mass ``A`` puts there.
"""

from __future__ import annotations

import torch

from tenfold.errors import require


def check_augmentation_graph(a: torch.Tensor, atol: float = 1e-6) -> None:
    """Raise ConfigError unless ``a`` is square, symmetric, non-negative, sums to 1 and has no empty row."""
    require(a.dim() == 2 and a.shape[0] == a.shape[1], "A", tuple(a.shape), "a square matrix")
    require(bool((a >= 0).all()), "A", "negative entries", "non-negative entries")
    require(torch.allclose(a, a.T, atol=atol), "A", "asymmetric", "a symmetric matrix")
    require(abs(float(a.sum()) - 1.0) <= atol * a.numel(), "A", f"sum {float(a.sum()):.6g}", "entries summing to 1")
    require(bool((a.sum(1) > 0).all()), "A", "an empty row", "every node to have an edge (positive degree)")


def degrees(a: torch.Tensor) -> torch.Tensor:
    return a.sum(1)


def normalized_adjacency(a: torch.Tensor) -> torch.Tensor:
    """``Abar = D^-1/2 A D^-1/2``."""
    s = degrees(a).rsqrt()
    return s[:, None] * a * s[None, :]


def alignment_loss(f: torch.Tensor, a: torch.Tensor, tau: float) -> torch.Tensor:
    """``-(1/tau) sum_xx' A_xx' f_x . f_x'``."""
    require(tau > 0, "tau", tau, "a positive temperature")
    return -(a * (f @ f.T)).sum() / tau


def uniformity_loss(f: torch.Tensor, a: torch.Tensor, tau: float) -> torch.Tensor:
    """``sum_x d_x log sum_x' d_x' exp(f_x . f_x' / tau)``."""
    require(tau > 0, "tau", tau, "a positive temperature")
    d = degrees(a)
    return (d * torch.logsumexp((f @ f.T) / tau + d.log()[None, :], dim=1)).sum()


def affinity_graph(f: torch.Tensor, a: torch.Tensor, tau: float) -> torch.Tensor:
    """``P_theta(x'|x)``: row-stochastic, degree-weighted softmax of ``f_x . f_x' / tau``."""
    d = degrees(a)
    return torch.softmax((f @ f.T) / tau + d.log()[None, :], dim=1)


def augmentation_transition(a: torch.Tensor) -> torch.Tensor:
    """``P_d = D^-1 A``."""
    return a / degrees(a)[:, None]


def alignment_gradient(f: torch.Tensor, a: torch.Tensor, tau: float) -> torch.Tensor:
    """``-(2/tau) A f`` (in ``F`` coordinates: ``-(2/tau) Abar F``)."""
    return -(2.0 / tau) * (a @ f)


def uniformity_gradient(f: torch.Tensor, a: torch.Tensor, tau: float) -> torch.Tensor:
    """``(1/tau)(D P_theta + P_theta^T D) f``."""
    d = degrees(a)
    dp = d[:, None] * affinity_graph(f, a, tau)
    return ((dp + dp.T) @ f) / tau


def population_gradient(f: torch.Tensor, a: torch.Tensor, tau: float, p_theta: torch.Tensor | None = None
                        ) -> torch.Tensor:
    """``(1/tau)[D(P_theta - P_d) + (P_theta - P_d)^T D] f``; ``p_theta`` defaults to the learned affinity."""
    d = degrees(a)
    p = affinity_graph(f, a, tau) if p_theta is None else p_theta
    m = d[:, None] * (p - augmentation_transition(a))
    return ((m + m.T) @ f) / tau


def alignment_propagation(big_f: torch.Tensor, a: torch.Tensor, tau: float, lr: float) -> torch.Tensor:
    """One alignment step in ``F = D^1/2 f`` coordinates: ``F <- (I + (2 lr / tau) Abar) F``."""
    return big_f + (2.0 * lr / tau) * (normalized_adjacency(a) @ big_f)


def uniformity_step(f: torch.Tensor, a: torch.Tensor, tau: float, lr: float) -> torch.Tensor:
    """One uniformity step ``f <- f - (lr/tau)(D P_theta + P_theta^T D) f``."""
    return f - lr * uniformity_gradient(f, a, tau)


def effective_rank(f: torch.Tensor) -> float:
    """``exp(entropy of the normalised singular values)`` of the feature matrix (Roy & Vetterli, 2007)."""
    s = torch.linalg.svdvals(f.double())
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def is_connected(a: torch.Tensor) -> bool:
    """Whether the graph with edges ``a > 0`` is connected (reachability by repeated squaring)."""
    reach = (a > 0) | torch.eye(len(a), dtype=torch.bool, device=a.device)
    for _ in range(max(1, int(len(a)).bit_length())):
        reach = (reach.double() @ reach.double()) > 0
    return bool(reach.all())


def block_masses(q: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``B[b, b'] = sum_{x in b, x' in b'} q_xx'``: the mass a joint ``q`` (N x N) puts between node groups."""
    onehot = torch.nn.functional.one_hot(labels.long()).to(q.dtype)
    return onehot.T @ q @ onehot


def block_affinity_error(f: torch.Tensor, a: torch.Tensor, labels: torch.Tensor, tau: float) -> float:
    """How far the learned affinity graph is from the augmentation graph at the level of blocks (paper Sec. 4:
    the equilibrium of alignment + uniformity is ``P_theta = P_d``, i.e. ``D P_theta = A``):

    ``(1/2) sum_{b,b'} |B_theta[b,b'] - B_A[b,b']| / (1 - tr B_A)`` with ``B_theta = block_masses(D P_theta)``
    and ``B_A = block_masses(A)``: the mass the affinity graph misplaces between blocks, as a fraction of the
    mass the augmentation graph puts between blocks. 0 when the blocks are exactly as far apart as ``A``
    says; collapsed features (``P_theta = d`` on every row) misplace about all of ``A``'s within-block excess.
    """
    b_a = block_masses(a, labels)
    between = 1.0 - float(b_a.trace())
    require(between > 0, "A", "no mass between blocks", "a graph with edges between blocks")
    b_theta = block_masses(degrees(a)[:, None] * affinity_graph(f, a, tau), labels)
    return float((b_theta - b_a).abs().sum()) / 2 / between


def stochastic_block_graph(sizes: list[int], p_in: float | list[float], p_out: float, generator: torch.Generator,
                           dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """A symmetric SBM adjacency normalised to sum 1 (with self-loops so no row is empty) and block labels.

    ``p_in`` is one edge probability inside every block or one per block (blocks of different density give
    nodes of different degree, where the degree weights of the uniformity term matter)."""
    require(len(sizes) >= 1 and all(s >= 1 for s in sizes), "sizes", sizes, "positive block sizes")
    p_blocks = [float(p_in)] * len(sizes) if isinstance(p_in, (int, float)) else [float(p) for p in p_in]
    require(len(p_blocks) == len(sizes), "p_in", p_in, f"one probability or one per block ({len(sizes)})")
    require(all(0 <= p_out <= p <= 1 for p in p_blocks), "p_in/p_out", (p_in, p_out), "0 <= p_out <= p_in <= 1")
    labels = torch.cat([torch.full((s,), b) for b, s in enumerate(sizes)])
    n = len(labels)
    within = torch.tensor(p_blocks, dtype=torch.float64)[labels]
    prob = torch.where(labels[:, None] == labels[None, :], within[:, None], torch.tensor(p_out, dtype=torch.float64))
    upper = (torch.rand(n, n, generator=generator) < prob).triu(1)
    a = (upper | upper.T).to(dtype) + torch.eye(n, dtype=dtype)
    return a / a.sum(), labels
