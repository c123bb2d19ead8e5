"""Exact math of NC-FSCIL: the simplex ETF, the dot-regression loss and its gradient (spec 2.6.1-3)."""

import pytest
import torch
import torch.nn.functional as F

from tenfold.errors import ConfigError
from tenfold.incremental import balance_weights, dot_regression_loss, etf, etf_gram, prototype_cosine
from tenfold.incremental.model import ETFClassifier, ProjectionHead, predict


@pytest.mark.parametrize("k,d", [(5, 8), (10, 10), (100, 512), (10, 9), (3, 2)])
def test_etf_gram_matches_formula_and_is_centred_with_rank_k_minus_1(k, d):
    w = etf(k, d, seed=3, dtype=torch.float64)
    assert w.shape == (d, k)
    assert torch.allclose(w.T @ w, etf_gram(k), atol=1e-12, rtol=0)
    assert torch.allclose(w.sum(dim=1), torch.zeros(d, dtype=torch.float64), atol=1e-12)
    assert torch.linalg.matrix_rank(w).item() == k - 1
    assert torch.allclose(w.norm(dim=0), torch.ones(k, dtype=torch.float64), atol=1e-12)


def test_etf_float32_gram_within_1e_6_and_seeded():
    w = etf(100, 512, seed=0)
    assert w.dtype == torch.float32
    assert (w.T @ w - etf_gram(100, torch.float32)).abs().max() < 1e-6
    assert torch.equal(w, etf(100, 512, seed=0))
    assert not torch.allclose(w, etf(100, 512, seed=1))


def test_etf_pairwise_cosine_is_minus_one_over_k_minus_1():
    w = etf(7, 16, seed=1, dtype=torch.float64)
    off = (w.T @ w)[~torch.eye(7, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -1 / 6), atol=1e-12)


def test_etf_rejects_too_few_dimensions():
    with pytest.raises(ConfigError, match="dim=8 is invalid: expected an integer >= num_classes - 1 = 9"):
        etf(10, 8)


def test_dr_gradient_matches_closed_form():
    g = torch.Generator().manual_seed(0)
    w = etf(6, 10, seed=0, dtype=torch.float64)
    mu = torch.randn(5, 10, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 5, 1, 3])
    (grad,) = torch.autograd.grad(dot_regression_loss(mu, y, w) * len(y), mu)  # sum of per-sample losses
    norm = mu.detach().norm(dim=1, keepdim=True)
    mu_hat = mu.detach() / norm
    c = (mu_hat * w[:, y].T).sum(dim=1, keepdim=True)
    expected = (c - 1) * (w[:, y].T - c * mu_hat) / norm
    assert torch.allclose(grad, expected, atol=1e-12)


def test_dr_loss_is_zero_exactly_at_the_prototype_and_positive_elsewhere():
    w = etf(4, 6, seed=0, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    assert dot_regression_loss(2.5 * w.T, y, w).item() == pytest.approx(0.0, abs=1e-15)
    perturbed = w.T + 1e-3 * torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert dot_regression_loss(perturbed, y, w).item() > 0
    assert dot_regression_loss(-w.T, y, w).item() == pytest.approx(2.0)  # c = -1: 1/2 (-2)^2


def test_balanced_weights_equalise_classes_and_balanced_loss_matches_manual():
    y = torch.tensor([0, 0, 0, 1, 2, 2])
    r2 = balance_weights(y)
    assert torch.allclose(r2, torch.tensor([2 / 3, 2 / 3, 2 / 3, 2.0, 1.0, 1.0]))
    for c in (0, 1, 2):  # every class contributes the same total weight B / #labels
        assert r2[y == c].sum().item() == pytest.approx(2.0)
    w = etf(3, 4, seed=0, dtype=torch.float64)
    mu = torch.randn(6, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    c = prototype_cosine(mu, y, w)
    manual = (0.5 * r2.double() * (c - 1) ** 2).mean()
    assert torch.allclose(dot_regression_loss(mu, y, w, balanced=True), manual)


def test_free_features_converge_to_their_prototypes_under_10_to_1_imbalance():
    k, d = 5, 8
    w = etf(k, d, seed=0)
    y = torch.cat([torch.zeros(100, dtype=torch.long)] + [torch.full((10,), c) for c in range(1, k)])
    mu = F.normalize(torch.randn(len(y), d, generator=torch.Generator().manual_seed(0)), dim=1).requires_grad_(True)
    opt = torch.optim.SGD([mu], lr=2.0)
    for _ in range(150):  # projected gradient descent on unit features
        opt.zero_grad()
        (len(y) * dot_regression_loss(mu, y, w)).backward()  # per-sample sum: every feature moves freely
        opt.step()
        with torch.no_grad():
            mu.copy_(F.normalize(mu, dim=1))
    cos = prototype_cosine(mu.detach(), y, w)
    assert cos.min().item() > 0.995  # DR converges slowly near c = 1: 1 - c ~ 1 / (2 * steps)
    for c in range(k):  # minority classes are not collapsed onto each other: each reaches its own prototype
        assert F.cosine_similarity(mu.detach()[y == c].mean(0), w[:, c], dim=0) > 0.999


def test_projection_head_pools_maps_to_d_and_etf_classifier_scores_cosines():
    head = ProjectionHead(12, 9)
    assert head(torch.randn(4, 12, 3, 3)).shape == (4, 9)
    assert head(torch.randn(4, 12)).shape == (4, 9)
    assert head.mlp[-1].bias is None and head.shortcut.bias is None
    clf = ETFClassifier(10, 9, seed=0)
    assert list(clf.parameters()) == []  # a buffer, never trained
    mu = torch.randn(4, 9)
    scores = clf(mu)
    assert torch.allclose(scores, F.normalize(mu, dim=1) @ clf.prototypes)
    assert scores.abs().max() <= 1 + 1e-6
    pred = predict(scores, seen=6)
    assert (pred < 6).all() and torch.equal(pred, scores[:, :6].argmax(1))
