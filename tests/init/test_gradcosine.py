"""GradCosine: exact values, invariances, modes and bad input (spec 3.5.1-3)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tenfold.errors import ConfigError
from tenfold.init import cosine_statistics, gradcosine, statistic_mode, sub_batch_bounds, supported_parameters


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 3))


def batch(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_sub_batch_bounds_follow_the_formula():
    assert sub_batch_bounds(10, 2) == [(0, 5), (5, 10)]
    assert sub_batch_bounds(10, 2, 0.2) == [(0, 6), (4, 10)]  # floor(1.2 * 5) = 6, floor(0.8 * 5) = 4
    assert sub_batch_bounds(12, 4, 0.2) == [(0, 3), (2, 7), (4, 10), (7, 12)]
    assert sub_batch_bounds(7, 7) == [(i, i + 1) for i in range(7)]


def test_sub_batch_bounds_use_the_integer_length_int_b_over_d_as_the_official_code():
    # official batch_settings: length = int(bs / chunks); with B/D = 2.5 as a float the first sub-batch
    # would be [0, 3) and the second [2, 6)
    assert sub_batch_bounds(10, 4, 0.2) == [(0, 2), (1, 4), (3, 7), (4, 10)]
    assert sub_batch_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]  # the last takes the remainder
    assert sub_batch_bounds(11, 2, 0.5) == [(0, 7), (2, 11)]


def test_variance_statistic_is_the_official_population_variance_summed():
    g = torch.randn(4, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    stats = cosine_statistics(g)
    mean = g.mean(0)
    assert stats.variance.item() == pytest.approx(((g - mean) ** 2).mean(0).sum().item(), rel=1e-12)
    assert torch.allclose(stats.norms, g.norm(dim=1))


def test_identical_samples_give_gc_one():
    x, y = batch(1)
    stats = gradcosine(mlp(), (x.repeat(8, 1), y.repeat(8)), D=4)
    assert stats.gc.item() == pytest.approx(1.0, abs=1e-5)
    assert gradcosine(mlp(), (x.repeat(5, 1), y.repeat(5)), sample_wise=True).gc.item() == pytest.approx(1.0, abs=1e-5)


def test_gc_in_range_and_invariant_to_positive_loss_scaling():
    model, data = mlp(), batch(16)
    plain = gradcosine(model, data, D=4, overlap=0.2)
    scaled = gradcosine(model, data, lambda o, t: 7.5 * F.cross_entropy(o, t), D=4, overlap=0.2)
    assert -1.0 <= plain.gc.item() <= 1.0
    assert scaled.gc.item() == pytest.approx(plain.gc.item(), abs=1e-6)
    assert scaled.norm.item() == pytest.approx(7.5 * plain.norm.item(), rel=1e-5)


def test_sample_wise_form_matches_the_definition_with_per_sample_gradients():
    model, (x, y) = mlp(), batch(5)
    params = list(supported_parameters(model).values())
    grads = []
    for i in range(5):
        g = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), params)
        grads.append(torch.cat([t.flatten() for t in g]))
    cos = [F.cosine_similarity(grads[i], grads[j], dim=0) for i in range(5) for j in range(5) if i != j]
    expected = torch.stack(cos).mean()
    assert gradcosine(model, (x, y), sample_wise=True).gc.item() == pytest.approx(expected.item(), abs=1e-5)


def test_scale_derivative_identity():
    """d/dalpha L(alpha W0) = <grad_W L, W> / alpha at W = alpha W0."""
    torch.manual_seed(0)
    w0 = torch.randn(3, 6, dtype=torch.float64)
    x = torch.randn(10, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (10,))
    alpha = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    (d_alpha,) = torch.autograd.grad(F.cross_entropy(x @ (alpha * w0).T, y), alpha)
    w = (1.7 * w0).requires_grad_(True)
    (g_w,) = torch.autograd.grad(F.cross_entropy(x @ w.T, y), w)
    assert d_alpha.item() == pytest.approx(((g_w * w).sum() / 1.7).item(), rel=1e-12)


def test_batchnorm_uses_batch_statistics_without_touching_running_stats_and_modes_are_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
    model.train()
    bn = model[1]
    mean, var, tracked = bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()
    a = gradcosine(model, batch(16), D=2)
    b = gradcosine(model, batch(16), D=2)
    assert a.gc.item() == b.gc.item()  # dropout off: deterministic
    assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
    assert torch.equal(bn.num_batches_tracked, tracked)
    assert model.training and all(m.training for m in model.modules())
    layer = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8)).eval()
    with statistic_mode(layer):
        out = layer(batch(16)[0])  # batch statistics although in eval mode: zero mean per feature
        assert not layer.training
    assert torch.allclose(out.mean(dim=0), torch.zeros(8), atol=1e-5)
    assert layer[1].running_mean is not None and torch.equal(layer[1].running_mean, torch.zeros(8))


def test_gradients_cover_conv_linear_layernorm_weights_and_biases_only():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LayerNorm(4 * 36), nn.Linear(144, 2))
    names = set(supported_parameters(model))
    assert names == {"0.weight", "0.bias", "3.weight", "3.bias", "4.weight", "4.bias"}


@pytest.mark.parametrize("kwargs,message", [
    ({"D": 1}, "D=1 is invalid"),
    ({"overlap": 1.0}, "overlap=1.0 is invalid"),
    ({"overlap": -0.1}, "overlap=-0.1 is invalid"),
])
def test_bad_arguments_are_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        gradcosine(mlp(), batch(8), **kwargs)


def test_batch_smaller_than_d_and_models_without_supported_layers_are_rejected():
    with pytest.raises(ConfigError, match="batch=3 is invalid: expected at least D=4 samples"):
        gradcosine(mlp(), batch(3), D=4)
    with pytest.raises(ConfigError, match="model=Sequential is invalid: expected at least one Conv, Linear"):
        gradcosine(nn.Sequential(nn.BatchNorm1d(6), nn.ReLU()), batch(8))
    with pytest.raises(ConfigError, match="loss_fn"):  # per-sample losses, not the mean (see test_loss_convention.py)
        gradcosine(mlp(), batch(8), lambda o, t: F.cross_entropy(o, t, reduction="none"))
