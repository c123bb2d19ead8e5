"""GradInit (Zhu et al., NeurIPS 2021): the one-step-lookahead meta-gradient against finite differences
(float64), the gradient-norm constraint branch, the alpha_min bound and the returned model."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from tenfold.errors import ConfigError
from tenfold.init import gradinit, lookahead_loss, scaled_parameters
from tenfold.init.gradcosine import statistic_mode


def _mlp(dtype=torch.float64):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)


def _bn_cnn(dtype=torch.float64):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3)).to(dtype)


def _half_batches(n, shape, count, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, *shape, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g))
            for _ in range(count)]


def _cat(a, b):
    return torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]])


def _reference(model, alphas, first, second, eta, fixed_step=None):
    """An independent J(alpha) = L(second; alpha theta0 - eta g/||g||) / eta, g = grad L(first) at alpha;
    with ``fixed_step`` the step direction is that constant instead (the official approximation)."""
    theta = {k: alphas[k] * p.detach() for k, p in model.named_parameters()}
    leaves = {k: v.detach().requires_grad_(True) for k, v in theta.items()}
    loss = F.cross_entropy(functional_call(model, leaves, (first[0],)), first[1])
    grads = torch.autograd.grad(loss, list(leaves.values()))
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    step = fixed_step or {k: g / norm for k, g in zip(leaves, grads)}
    moved = {k: theta[k] - eta * step[k] for k in theta}
    return float(F.cross_entropy(functional_call(model, moved, (second[0],)), second[1])) / eta, step


def _meta_gradient(model, first, second, eta, second_order):
    named = scaled_parameters(model)
    theta0 = {k: p.detach().clone() for k, p in named.items()}
    alphas = {k: torch.tensor(a, dtype=torch.float64, requires_grad=True)
              for k, a in zip(named, [1.3, 0.7, 1.1, 0.9, 1.2, 0.8])}
    target, norm, _ = lookahead_loss(model, theta0, alphas, first, second, eta=eta, second_order=second_order)
    grads = torch.autograd.grad(target, list(alphas.values()))
    return {k: float(g) for k, g in zip(alphas, grads)}, {k: a.item() for k, a in alphas.items()}, float(target.detach())


@pytest.mark.parametrize("second_order", [True, False])
def test_lookahead_meta_gradient_matches_finite_differences_in_float64(second_order):
    model = _mlp()
    s0, s1, s2 = _half_batches(8, (6,), 3)
    first, second = _cat(s0, s1), _cat(s0, s2)
    eta = 0.5
    got, alphas, value = _meta_gradient(model, first, second, eta, second_order)
    ref_value, step0 = _reference(model, alphas, first, second, eta)
    assert value == pytest.approx(ref_value, rel=1e-12)
    h = 1e-6
    for k in alphas:
        up, down = dict(alphas), dict(alphas)
        up[k] += h
        down[k] -= h
        fixed = None if second_order else step0  # first order: the step direction held at alpha
        fd = (_reference(model, up, first, second, eta, fixed)[0]
              - _reference(model, down, first, second, eta, fixed)[0]) / (2 * h)
        assert got[k] == pytest.approx(fd, rel=1e-6, abs=1e-9), k


def test_first_and_second_order_meta_gradients_differ():
    """The official approximation is an approximation: through g the meta-gradient changes."""
    model = _mlp()
    s0, s1, s2 = _half_batches(8, (6,), 3)
    first, second = _cat(s0, s1), _cat(s0, s2)
    full, _, _ = _meta_gradient(model, first, second, 0.5, True)
    approx, _, _ = _meta_gradient(model, first, second, 0.5, False)
    assert max(abs(full[k] - approx[k]) for k in full) > 1e-4


def test_first_objective_step_moves_each_scale_against_its_meta_gradient():
    """RescaleAdam's first step is lr * sign(grad): the loop descends on the lookahead loss."""
    model = _mlp()
    batches = _half_batches(8, (6,), 3)
    first, second = _cat(batches[0], batches[1]), _cat(batches[0], batches[2])
    named = scaled_parameters(model)
    theta0 = {k: p.detach().clone() for k, p in named.items()}
    ones = {k: torch.tensor(1.0, dtype=torch.float64, requires_grad=True) for k in named}
    target, norm, _ = lookahead_loss(model, theta0, ones, first, second, eta=0.1)
    assert float(norm.detach()) < 100.0
    grads = dict(zip(ones, torch.autograd.grad(target, list(ones.values()))))
    _, hist = gradinit(copy.deepcopy(model), iter(batches), gamma=100.0, iterations=1, lr=0.01, eta=0.1)
    assert hist.constraint == [False]
    assert hist.lookahead_loss[0] == pytest.approx(float(target) * 0.1, rel=1e-12)
    for k, g in grads.items():
        assert hist.alphas[0][k] == pytest.approx(1.0 - 0.01 * float(torch.sign(g)), abs=1e-7), k  # eps in Adam


def test_gradinit_lowers_the_lookahead_loss_on_a_fixed_batch():
    model = _mlp()
    data = _half_batches(16, (6,), 1)[0]
    _, hist = gradinit(copy.deepcopy(model), data, gamma=100.0, iterations=30, lr=0.05, eta=0.5)
    assert not any(hist.constraint)
    assert hist.lookahead_loss[-1] < hist.lookahead_loss[0] - 1e-3


def test_constraint_branch_is_taken_above_gamma_and_lowers_the_norm():
    model = _mlp()
    data = _half_batches(16, (6,), 1)[0]  # the same batch every time: the norms are comparable
    _, probe = gradinit(copy.deepcopy(model), data, gamma=1e6, iterations=1)
    gamma = 0.5 * probe.norm[0]
    _, hist = gradinit(copy.deepcopy(model), data, gamma=gamma, iterations=25, lr=0.05)
    assert hist.constraint[0] and all(c == (n > gamma) for c, n in zip(hist.constraint, hist.norm))
    assert all(v != v for v, c in zip(hist.lookahead_loss, hist.constraint) if c)  # no lookahead there: NaN
    for t in range(len(hist.norm) - 1):
        if hist.constraint[t]:
            assert hist.norm[t + 1] < hist.norm[t], t
    assert min(hist.norm) <= gamma * 1.1  # it reached the bound


def test_adam_variant_uses_the_l1_norm_and_the_sign_step():
    model = _mlp()
    data = _half_batches(8, (6,), 1)[0]
    first = _cat(data, data)
    loss = F.cross_entropy(model(first[0]), first[1])
    l1 = sum(g.abs().sum() for g in torch.autograd.grad(loss, list(model.parameters())))
    _, hist = gradinit(copy.deepcopy(model), data, gamma=1e6, iterations=3, optimizer="adam", eta=0.01)
    assert hist.norm[0] == pytest.approx(float(l1), rel=1e-10)
    named = scaled_parameters(model)
    theta0 = {k: p.detach().clone() for k, p in named.items()}
    alphas = {k: torch.tensor(1.0, dtype=torch.float64, requires_grad=True) for k in named}
    a, _, _ = lookahead_loss(model, theta0, alphas, first, first, eta=0.01, optimizer="adam", second_order=True)
    b, _, _ = lookahead_loss(model, theta0, alphas, first, first, eta=0.01, optimizer="adam", second_order=False)
    ga, gb = torch.autograd.grad(a, list(alphas.values())), torch.autograd.grad(b, list(alphas.values()))
    assert all(torch.allclose(x, y) for x, y in zip(ga, gb))  # sign has no gradient: both orders agree


def test_scales_stay_at_or_above_alpha_min():
    model = _mlp()
    data = _half_batches(16, (6,), 1)[0]
    _, hist = gradinit(copy.deepcopy(model), data, gamma=1e-8, iterations=10, lr=0.5)
    assert all(hist.constraint)
    for row in hist.alphas:
        for k, a in row.items():
            assert a >= (0.01 if "weight" in k else 0.0), (k, a)
    assert min(a for k, a in hist.alphas[-1].items() if "weight" in k) == 0.01  # projected, not below


@pytest.mark.parametrize("make", [_mlp, _bn_cnn])
def test_returned_model_is_the_original_with_each_tensor_times_its_multiplier(make):
    model = make()
    shape = (6,) if make is _mlp else (3, 6, 6)
    batches = _half_batches(8, shape, 6)
    running = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    tuned, hist = gradinit(copy.deepcopy(model).train(), iter(batches * 10), gamma=100.0, iterations=6, lr=0.1)
    last = hist.alphas[-1]
    assert any(abs(a - 1) > 1e-3 for a in last.values())
    assert tuned.training and all(p.dtype == torch.float64 for p in tuned.parameters())
    for k, v in running.items():
        assert torch.equal(tuned.state_dict()[k], v)  # batch statistics only, running ones untouched
    scaled = {k: last.get(k, 1.0) * p.detach() for k, p in model.named_parameters()}
    x = batches[0][0]
    with statistic_mode(model), statistic_mode(tuned), torch.no_grad():
        assert torch.allclose(tuned(x), functional_call(model, scaled, (x,)), rtol=1e-12, atol=1e-12)


def test_bad_input_is_a_one_line_error():
    model, data = _mlp(), _half_batches(4, (6,), 1)[0]
    with pytest.raises(ConfigError, match="gamma=0.0 is invalid"):
        gradinit(model, data, gamma=0.0)
    with pytest.raises(ConfigError, match="eta=-1.0 is invalid"):
        gradinit(model, data, eta=-1.0)
    with pytest.raises(ConfigError, match="optimizer='lion' is invalid"):
        gradinit(model, data, optimizer="lion")
    with pytest.raises(ConfigError, match="model=ReLU is invalid"):
        gradinit(nn.ReLU(), data)
