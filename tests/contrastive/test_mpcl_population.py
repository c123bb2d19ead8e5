"""Population form on an explicit augmentation graph (spec 1.1, 1.6 checks 2-3)."""

import pytest
import torch
import torch.nn.functional as F

from tenfold.contrastive import population as pop
from tenfold.errors import ConfigError


def _graph(n=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(n, n, generator=g, dtype=torch.float64)
    a = w + w.T
    return a / a.sum()


def _features(n=9, k=4, seed=1, scale=1.0):
    return scale * torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_alignment_gradient_is_propagation_on_normalized_adjacency():
    a, f, tau, lr = _graph(), _features(), 0.5, 0.1
    fr = f.clone().requires_grad_()
    (g,) = torch.autograd.grad(pop.alignment_loss(fr, a, tau), fr)
    assert torch.allclose(g, pop.alignment_gradient(f, a, tau), atol=1e-14)
    # a gradient step on f is F <- (I + 2 lr/tau Abar) F in F = D^1/2 f coordinates, with step lr * D^-1
    d = pop.degrees(a)
    f_next = f - lr * g / d[:, None]
    big_f = d.sqrt()[:, None] * f
    assert torch.allclose(d.sqrt()[:, None] * f_next, pop.alignment_propagation(big_f, a, tau, lr), atol=1e-12)
    # and L_align = -(1/tau) Tr(F^T Abar F)
    trace = -torch.trace(big_f.T @ pop.normalized_adjacency(a) @ big_f) / tau
    assert abs(trace.item() - pop.alignment_loss(f, a, tau).item()) < 1e-12


def test_uniformity_gradient_is_repulsion_on_affinity_graph():
    a, f, tau = _graph(seed=2), _features(seed=3), 0.3
    fr = f.clone().requires_grad_()
    (g,) = torch.autograd.grad(pop.uniformity_loss(fr, a, tau), fr)
    assert torch.allclose(g, pop.uniformity_gradient(f, a, tau), atol=1e-12)
    p = pop.affinity_graph(f, a, tau)
    assert torch.allclose(p.sum(1), torch.ones(9, dtype=torch.float64), atol=1e-14)
    assert torch.allclose(pop.uniformity_step(f, a, tau, 0.2), f - 0.2 * g, atol=1e-12)


def test_combined_gradient_formula_matches_autograd():
    a, f, tau = _graph(seed=4), _features(seed=5), 0.7
    fr = f.clone().requires_grad_()
    (g,) = torch.autograd.grad(pop.alignment_loss(fr, a, tau) + pop.uniformity_loss(fr, a, tau), fr)
    assert torch.allclose(g, pop.population_gradient(f, a, tau), atol=1e-12)
    # the formula vanishes when the learned affinity is replaced by the augmentation transition P_d
    assert pop.population_gradient(f, a, tau, p_theta=pop.augmentation_transition(a)).abs().max() < 1e-15


def test_gradient_vanishes_on_a_graph_whose_augmentation_distribution_the_features_match():
    # build A = D K D / c with K = exp(f f^T / tau) and K d = const: then P_theta = P_d exactly
    f = torch.eye(5, 8, dtype=torch.float64) + _features(n=5, k=8, seed=6, scale=0.1)
    tau = 0.5
    k = torch.exp(f @ f.T / tau)
    d = torch.linalg.solve(k, torch.ones(5, dtype=torch.float64))
    assert bool((d > 0).all())
    d = d / d.sum()
    a = d[:, None] * k * d[None, :]
    a = a / a.sum()
    pop.check_augmentation_graph(a)
    assert torch.allclose(pop.affinity_graph(f, a, tau), pop.augmentation_transition(a), atol=1e-12)
    fr = f.clone().requires_grad_()
    (g,) = torch.autograd.grad(pop.alignment_loss(fr, a, tau) + pop.uniformity_loss(fr, a, tau), fr)
    assert g.abs().max() < 1e-12
    # while a perturbed f has a clearly non-zero gradient (so the check above could fail)
    assert pop.population_gradient(f + 0.1, a, tau).abs().max() > 1e-3


def test_alignment_propagation_converges_to_sqrt_degree_per_component():
    a = _graph(n=6, seed=7)
    big_f = _features(n=6, k=2, seed=8)
    for _ in range(200):
        big_f = pop.alignment_propagation(big_f, a, 0.5, 0.5)
        big_f = big_f / big_f.norm()
    top = pop.degrees(a).sqrt()
    top = top / top.norm()
    # every feature column is parallel to sqrt(d): the GNN over-smoothing fixed point
    for col in big_f.T:
        assert abs(abs(F.cosine_similarity(col, top, dim=0).item()) - 1) < 1e-9


def _sbm_training(uniformity: bool, steps: int = 1500):
    g = torch.Generator().manual_seed(0)
    a, labels = pop.stochastic_block_graph([20, 20, 20], 0.5, 0.05, g)
    u = torch.randn(60, 8, generator=g, dtype=torch.float64).requires_grad_()
    opt = torch.optim.SGD([u], lr=5.0)
    for _ in range(steps):
        f = F.normalize(u, dim=1)
        loss = pop.alignment_loss(f, a, 0.2) + (pop.uniformity_loss(f, a, 0.2) if uniformity else 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    f = F.normalize(u.detach(), dim=1)
    cos = f @ f.T
    same = labels[:, None] == labels[None, :]
    return cos[~same].mean().item(), pop.effective_rank(f)


@pytest.mark.slow
def test_block_model_alignment_alone_collapses_and_uniformity_prevents_it():
    inter_a, rank_a = _sbm_training(False)
    inter_u, rank_u = _sbm_training(True)
    assert rank_a < 1.1 and inter_a > 0.99
    assert inter_u < 0.5 and rank_u > 2


def test_effective_rank_known_values():
    assert abs(pop.effective_rank(torch.eye(4)) - 4) < 1e-12
    assert abs(pop.effective_rank(torch.ones(5, 3)) - 1) < 1e-6


def test_bad_augmentation_graph_is_rejected():
    with pytest.raises(ConfigError, match="^A="):
        pop.check_augmentation_graph(torch.tensor([[0.5, 0.2], [0.1, 0.2]]))
    with pytest.raises(ConfigError, match="^tau="):
        pop.alignment_loss(_features(), _graph(), 0.0)


def test_block_affinity_error_is_zero_at_the_equilibrium_and_its_definition_elsewhere():
    # the graph of the equilibrium test above: A = D P_theta exactly, so every block mass matches
    f = torch.eye(5, 8, dtype=torch.float64) + _features(n=5, k=8, seed=6, scale=0.1)
    k = torch.exp(f @ f.T / 0.5)
    d = torch.linalg.solve(k, torch.ones(5, dtype=torch.float64))
    a = d[:, None] * k * d[None, :]
    a = a / a.sum()
    labels = torch.tensor([0, 0, 1, 1, 2])
    assert pop.block_affinity_error(f, a, labels, 0.5) < 1e-12
    # elsewhere: the direct sum over block pairs of |mass of D P_theta - mass of A|, over A's between-block mass
    a, g = _graph(n=7, seed=3), _features(n=7, k=3, seed=4)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    q = pop.degrees(a)[:, None] * pop.affinity_graph(g, a, 0.3)
    direct = sum(abs(float(q[labels == b][:, labels == c].sum() - a[labels == b][:, labels == c].sum()))
                 for b in range(3) for c in range(3)) / 2
    between = float(sum(a[labels == b][:, labels != b].sum() for b in range(3)))
    assert abs(pop.block_affinity_error(g, a, labels, 0.3) - direct / between) < 1e-12


def test_block_graph_takes_one_density_per_block_and_connectivity_is_detected():
    g = torch.Generator().manual_seed(0)
    a, labels = pop.stochastic_block_graph([30, 30], [0.1, 0.9], 0.0, g)
    edges = (a > 0).double() - torch.eye(60, dtype=torch.float64)
    dens = [float(edges[labels == b][:, labels == b].sum()) / (30 * 29) for b in (0, 1)]
    assert 0.05 < dens[0] < 0.15 and 0.85 < dens[1] < 0.95
    assert not pop.is_connected(a)  # p_out = 0: two components
    assert pop.is_connected(pop.stochastic_block_graph([30, 30], [0.1, 0.9], 0.1, g)[0])
    path = torch.diag(torch.ones(5, dtype=torch.float64), 1)
    assert pop.is_connected(path + path.T)  # a path of 6 nodes needs the longest reach
    with pytest.raises(ConfigError, match="^p_in="):
        pop.stochastic_block_graph([3, 3], [0.5], 0.1, g)
