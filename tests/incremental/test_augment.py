"""Mixup, CutMix and the mixed loss used in the base and incremental sessions."""

import numpy as np
import pytest
import torch

from tenfold.incremental.augment import cutmix, mix_batch, mixup
from tenfold.incremental import etf
from tenfold.incremental.losses import dot_regression_loss, mixed_loss


def test_mixup_is_the_convex_combination_with_a_seeded_pairing():
    x, y = torch.randn(6, 3), torch.arange(6)
    out, ya, yb, lam = mixup(x, y, 0.3, torch.Generator().manual_seed(0))
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, 0.3 * x + 0.7 * x[perm]) and torch.equal(yb, y[perm]) and lam == 0.3


def test_cutmix_lambda_equals_the_kept_area():
    x = torch.zeros(4, 1, 10, 10)
    x[:, :, :, :] = torch.arange(4).view(4, 1, 1, 1).float()
    out, ya, yb, lam = cutmix(x, torch.arange(4), 0.6, torch.Generator().manual_seed(1), np.random.default_rng(0))
    checked = 0
    for i in range(4):
        if yb[i] != ya[i]:  # pasted from another image: the kept area is lam
            assert (out[i] == x[i]).float().mean().item() == pytest.approx(lam)
            checked += 1
    assert checked >= 1 and 0.0 < lam < 1.0


def test_mix_batch_without_probabilities_is_the_identity_and_loss_mixes_linearly():
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    out, ya, yb, lam = mix_batch(x, y, mixup_p=0.0, mixup_alpha=0.8, cutmix_p=0.0, cutmix_alpha=1.0,
                                 generator=torch.Generator(), rng=np.random.default_rng(0))
    assert out is x and lam == 1.0
    w = etf(3, 4, seed=0)
    yb = torch.tensor([1, 2, 0, 1, 2])
    mixed = mixed_loss(dot_regression_loss, x, y, yb, 0.25, prototypes=w)
    expected = 0.25 * dot_regression_loss(x, y, w) + 0.75 * dot_regression_loss(x, yb, w)
    assert torch.allclose(mixed, expected)
