"""The multi-positive forms of InfoNCE: mean of logs (SupCon L_out) and log of summed positives (L_in)."""

import math

import pytest
import torch
import torch.nn.functional as F

from tenfold.contrastive import mp_infonce, nt_xent, pair_positives, positives_from_indexes, view_positives
from tenfold.contrastive.rewiring import rewired_infonce, rewired_positives
from tenfold.errors import ConfigError


def _rows(n=12, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def _direct(u, index_lists, tau, form, weights=None, degree_weighted=False):
    """Straight from the formula, float64, one anchor at a time."""
    z = F.normalize(u, dim=1)
    s = z @ z.T / tau
    n = len(z)
    losses, degs = [], []
    for i in range(n):
        denom = torch.logsumexp(torch.cat([s[i, :i], s[i, i + 1:]]), 0)
        pos = index_lists[i]
        w = torch.ones(len(pos), dtype=u.dtype) if weights is None else weights[i]
        if form == "log_sum":
            losses.append(denom - torch.log((w * torch.exp(s[i, pos])).sum()))
        else:
            losses.append((w * (denom - s[i, pos])).sum() / w.sum())
        degs.append(w.sum())
    losses, degs = torch.stack(losses), torch.stack(degs)
    r = degs / degs.sum() if degree_weighted else torch.full((n,), 1.0 / n, dtype=u.dtype)
    return (r * losses).sum()


@pytest.mark.parametrize("form", ["mean_log", "log_sum"])
@pytest.mark.parametrize("degree_weighted", [False, True])
def test_both_forms_equal_the_direct_computation_and_its_autograd(form, degree_weighted):
    """Uneven numbers of positives (solo-learn's index convention, padded with -1)."""
    ids = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4])
    ids[-1] = 3  # ids 3 has three rows
    positives = positives_from_indexes(ids)
    lists = [[int(j) for j in row if j >= 0] for row in positives]
    tau = 0.4
    u = _rows().requires_grad_()
    loss = mp_infonce(u, positives, tau, multi_positive=form, degree_weighted=degree_weighted)
    (g,) = torch.autograd.grad(loss, u)
    v = u.detach().clone().requires_grad_()
    ref = _direct(v, lists, tau, form, degree_weighted=degree_weighted)
    (g_ref,) = torch.autograd.grad(ref, v)
    assert abs(loss.item() - ref.item()) < 1e-13
    assert torch.allclose(g, g_ref, atol=1e-13, rtol=0)
    assert torch.autograd.gradcheck(
        lambda x: mp_infonce(x, positives, tau, multi_positive=form, degree_weighted=degree_weighted), (v,))


def test_the_two_forms_differ_with_several_positives_and_log_sum_is_solo_learns_simclr_loss():
    tau = 0.2
    u = _rows(n=12)
    positives = view_positives(4, 3)  # 3 views of 4 samples: two positives per row
    mean_log = mp_infonce(u, positives, tau)
    log_sum = mp_infonce(u, positives, tau, multi_positive="log_sum")
    # Jensen: log sum_p e^{s_p} >= log |P| + mean_p s_p, so mean_log - log_sum >= log 2 with two positives
    assert mean_log.item() - log_sum.item() >= math.log(2) - 1e-12
    # solo-learn simclr_loss: sim = exp(z z^T / tau); -mean log(pos / (pos + neg)), diagonal excluded
    z = F.normalize(u, dim=1)
    sim = torch.exp(z @ z.T / tau)
    idx = torch.arange(4).repeat(3)
    pos_mask = (idx[:, None] == idx[None, :]).double().fill_diagonal_(0)
    neg_mask = (idx[:, None] != idx[None, :]).double()
    pos, neg = (sim * pos_mask).sum(1), (sim * neg_mask).sum(1)
    assert abs(log_sum.item() - (-torch.log(pos / (pos + neg))).mean().item()) < 1e-13


@pytest.mark.parametrize("normalize", [False, True])
def test_both_forms_are_nt_xent_with_one_positive(normalize):
    u = _rows(n=10)
    for form in ("mean_log", "log_sum"):
        a = mp_infonce(u, pair_positives(10), 0.3, normalize=normalize, multi_positive=form)
        assert abs(a.item() - nt_xent(u, 0.3, normalize=normalize).item()) < 1e-13


def test_weighted_rewired_positives_log_sum_equals_the_direct_form():
    u = _rows(n=12).requires_grad_()
    tau, k, beta = 0.5, 2, 0.3
    positives = pair_positives(12)
    idx, w = rewired_positives(positives, u.detach(), k, beta)
    loss = rewired_infonce(u, positives, tau, k, beta, multi_positive="log_sum")
    ref = _direct(u, [list(map(int, row)) for row in idx], tau, "log_sum", weights=list(w))
    assert abs(loss.item() - ref.item()) < 1e-13
    (g,) = torch.autograd.grad(loss, u)
    (g_ref,) = torch.autograd.grad(ref, u)
    assert torch.allclose(g, g_ref, atol=1e-13, rtol=0)


def test_an_unknown_form_is_refused():
    with pytest.raises(ConfigError, match="multi_positive"):
        mp_infonce(_rows(n=4), pair_positives(4), 0.5, multi_positive="mean")
