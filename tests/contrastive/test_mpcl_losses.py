"""Exact math of the message-passing InfoNCE (spec 1.2, 1.6 check 1)."""

import math

import pytest
import torch
import torch.nn.functional as F

from tenfold.contrastive import (
    dense_positive_matrix, infonce_parts, message_passing_gradients, mp_infonce, nt_xent, pair_positives,
    positives_from_indexes, view_positives,
)
from tenfold.errors import ConfigError


def _rows(n=12, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def _dense_reference(z, positives, tau, edge_weights=None, anchor_weights=None):
    align, unif = infonce_parts(z, positives, tau, edge_weights, anchor_weights)
    return align + unif


@pytest.mark.parametrize("normalize", [False, True])
def test_autograd_of_nt_xent_equals_closed_form(normalize):
    u = _rows().requires_grad_()
    tau = 0.3
    z = F.normalize(u, dim=1) if normalize else u
    loss = nt_xent(u, tau, normalize=normalize)
    (g_auto,) = torch.autograd.grad(loss, u)
    zd = z.detach()
    g_z = message_passing_gradients(zd, pair_positives(12), tau)["total"]
    n, t = 12, tau
    a = dense_positive_matrix(pair_positives(12), 12)
    p = torch.softmax((zd @ zd.T / t).masked_fill(torch.eye(n, dtype=torch.bool), float("-inf")), 1)
    assert torch.allclose(g_z, ((p - a) + (p - a).T) @ zd / (n * t), atol=1e-14)
    if normalize:
        norm = u.detach().norm(dim=1, keepdim=True)
        g_u = (g_z - (g_z * zd).sum(1, keepdim=True) * zd) / norm  # (I - z z^T) g / ||u||
    else:
        g_u = g_z
    assert (g_auto - g_u).abs().max() < 1e-10


@pytest.mark.parametrize("normalize", [False, True])
def test_mp_infonce_matches_nt_xent_value_and_gradient(normalize):
    u = _rows(16, 5, seed=1).requires_grad_()
    a = mp_infonce(u, pair_positives(16), 0.2, normalize=normalize)
    b = nt_xent(u, 0.2, normalize=normalize)
    (ga,) = torch.autograd.grad(a, u)
    (gb,) = torch.autograd.grad(b, u)
    assert abs(a.item() - b.item()) < 1e-12
    assert (ga - gb).abs().max() < 1e-12


def test_loss_is_alignment_plus_uniformity_and_parts_have_their_gradients():
    z = _rows(10, 4, seed=2).requires_grad_()
    pos, tau = pair_positives(10), 0.5
    align, unif = infonce_parts(z, pos, tau)
    assert abs((align + unif).item() - mp_infonce(z, pos, tau, normalize=False).item()) < 1e-12
    grads = message_passing_gradients(z.detach(), pos, tau)
    (g_align,) = torch.autograd.grad(align, z, retain_graph=True)
    (g_unif,) = torch.autograd.grad(unif, z)
    assert (g_align - grads["align"]).abs().max() < 1e-12
    assert (g_unif - grads["unif"]).abs().max() < 1e-12
    # the alignment part is pure propagation on the positive graph: -(A + A^T) Z / (N tau)
    a = dense_positive_matrix(pos, 10)
    assert torch.allclose(grads["align"], -(a + a.T) @ z.detach() / (10 * tau), atol=1e-14)


def test_weighted_multi_positive_graph_and_anchor_weights_match_dense_autograd():
    n = 12
    u = _rows(n, 5, seed=3).requires_grad_()
    pos = view_positives(4, 3)  # 3 views of 4 samples: two positives per row
    w = torch.rand(n, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64) + 0.1
    r = torch.rand(n, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    r = r / r.sum()
    a = mp_infonce(u, pos, 0.4, edge_weights=w, anchor_weights=r, normalize=False)
    b = _dense_reference(u, pos, 0.4, w, r)
    (ga,) = torch.autograd.grad(a, u)
    (gb,) = torch.autograd.grad(b, u)
    assert abs(a.item() - b.item()) < 1e-12
    assert (ga - gb).abs().max() < 1e-12


def test_gradcheck_of_custom_backward():
    u = _rows(8, 3, seed=6).requires_grad_()
    pos = positives_from_indexes(torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    assert torch.autograd.gradcheck(lambda x: mp_infonce(x, pos, 0.7), (u,), eps=1e-6, atol=1e-9)


def test_positives_from_indexes_and_view_positives_agree():
    pos_a = view_positives(3, 2)
    pos_b = positives_from_indexes(torch.tensor([0, 1, 2, 0, 1, 2]))
    assert torch.equal(pos_a.squeeze(1), pair_positives(6))
    assert torch.equal(pos_b.squeeze(1), pair_positives(6))


def test_known_value_for_orthogonal_pairs():
    # two identical pairs of orthogonal unit vectors: S_pos = 1/tau, the two negatives have S = 0
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    tau = 0.5
    expected = -2.0 + math.log(math.exp(2.0) + 2.0)
    assert abs(mp_infonce(z, pair_positives(4), tau).item() - expected) < 1e-12


@pytest.mark.parametrize("call, field", [
    (lambda z: mp_infonce(z, pair_positives(6), 0.0), "tau"),
    (lambda z: mp_infonce(z, pair_positives(6), -1.0), "tau"),
    (lambda z: pair_positives(5), "num_rows"),
    (lambda z: mp_infonce(z, torch.tensor([3, 4, 5, 0, 1, 6]), 0.5), "positives"),
    (lambda z: mp_infonce(z, torch.tensor([[3, -1], [4, -1], [5, -1], [0, -1], [1, -1], [-1, -1]]), 0.5),
     "positives"),
    (lambda z: mp_infonce(z, torch.tensor([0, 4, 5, 0, 1, 2]), 0.5), "positives"),
    (lambda z: positives_from_indexes(torch.tensor([0, 1, 0, 2])), "indexes"),
    (lambda z: mp_infonce(z, pair_positives(6), 0.5, anchor_weights=torch.ones(5)), "anchor_weights"),
])
def test_bad_input_raises_one_line_error_naming_the_field(call, field):
    z = _rows(6, 3)
    with pytest.raises(ConfigError) as err:
        call(z)
    msg = str(err.value)
    assert msg.startswith(field) and "\n" not in msg


def test_edge_weights_give_the_population_objective_with_degree_weighted_anchors():
    """Raw edge weights A_ij: L = -sum A_ij S_ij / sum A + sum_i d_i lse_i / sum d (paper Sec. 3), so an
    anchor with twice the edge mass counts twice; per-row normalisation alone would weight all alike."""
    n, tau = 12, 0.4
    u = _rows(n, 5, seed=7).requires_grad_()
    pos = view_positives(4, 3)
    w = torch.rand(n, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64) + 0.1
    w[:3] *= 5.0  # very different degrees
    a = torch.zeros(n, n, dtype=torch.float64).scatter_add_(1, pos, w)
    s = u @ u.T / tau
    lse = torch.logsumexp(s.masked_fill(torch.eye(n, dtype=torch.bool), float("-inf")), 1)
    d = a.sum(1)
    population = -(a * s).sum() / a.sum() + (d * lse).sum() / d.sum()
    loss = mp_infonce(u, pos, tau, edge_weights=w, normalize=False)
    (g_mp,) = torch.autograd.grad(loss, u)
    (g_pop,) = torch.autograd.grad(population, u)
    assert abs(loss.item() - population.item()) < 1e-12
    assert (g_mp - g_pop).abs().max() < 1e-12
    assert abs(_dense_reference(u, pos, tau, w).item() - population.item()) < 1e-12
    grads = message_passing_gradients(u.detach(), pos, tau, w)["total"]
    assert (grads - g_pop).abs().max() < 1e-12
    per_row = mp_infonce(u, pos, tau, edge_weights=w, normalize=False, degree_weighted=False)
    assert abs(per_row.item() - population.item()) > 1e-3
    # equal degrees (the two-view case) change nothing
    assert abs(mp_infonce(u, pos, tau, edge_weights=torch.full((n, 2), 3.0, dtype=torch.float64), normalize=False)
               .item() - mp_infonce(u, pos, tau, normalize=False).item()) < 1e-12
