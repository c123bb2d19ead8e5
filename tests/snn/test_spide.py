"""SPIDE exact-math checks (spec snn.md 2.4): rate error bounds, adjoints, spike backward, norm cap."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tenfold.errors import ConfigError, ConvergenceError
from tenfold.snn.spide import SpideNetwork, SpideState, ternary_fire
from tenfold.snn.spide_models import SpideClassifier, alexnet_f, lenet5, mlp_f
from tenfold.snn.spide_ops import accumulate_param_grads, cap_frobenius_, transpose_of
from tenfold.snn.spide_reference import (clamp_equilibrium, constant_input_rates, exact_adjoint,
                                         masked_clamp_rates)

D = torch.float64


def make_mlp(feedback=True, gain=2.0, seed=1, **kw):
    torch.manual_seed(seed)
    net = SpideNetwork(nn.Linear(20, 30), [nn.Linear(30, 25)], nn.Linear(25, 30, bias=False) if feedback else None,
                       **kw).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(gain)
    return net


def flat_grads(module):
    return torch.cat([p.grad.flatten() for p in module.parameters()])


def exact_grads(net, state, g):
    net.zero_grad()
    net.assign_gradients(state, exact_adjoint(net, state, g))
    return flat_grads(net)


def spike_grads(net, state, g, scale, steps):
    net.zero_grad()
    betas = net.spike_adjoint(state, scale * g, steps)
    net.assign_gradients(state, betas, scale)
    return flat_grads(net), betas


# --- 1. single neuron ------------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [10, 30, 100])
def test_single_neuron_rate_error_at_most_half_over_T(T):
    c = torch.linspace(-1.0, 3.0, 801, dtype=D)
    err = constant_input_rates(c, T) - torch.clamp(c / 2, 0, 1)
    assert err.abs().max() <= 1 / (2 * T) + 1e-12
    if T == 30:  # the bound is attained
        assert err.abs().max() >= 1 / (2 * T) - 1e-9


def test_soft_reset_is_worse_and_biased():
    T = 30
    c = torch.linspace(0.0, 2.0, 801, dtype=D)[1:]  # positive inputs, both resets in their linear range
    spide_err = constant_input_rates(c, T) - torch.clamp(c / 2, 0, 1)
    soft_err = constant_input_rates(c, T, u_rest=0.0) - torch.clamp(c, 0, 1)
    assert soft_err.abs().max() <= 1 / T + 1e-12
    assert soft_err.abs().max() > 1.9 / (2 * T)           # twice the modified reset's bound
    assert soft_err.max() <= 1e-12                          # never above: biased low
    assert soft_err.mean() < -0.2 / T and abs(spide_err.mean()) < 0.1 / T


def test_spikes_follow_if_equation_with_spide_reset():
    # u[t] = u[t-1] - 2 s[t-1] + 0.7: 0.7, 1.4 (spike) -> 0.1, 0.8, 1.5 (spike) ...
    rates = constant_input_rates(torch.tensor([0.7], dtype=D), 5)
    assert rates.item() == pytest.approx(2 / 5)


def test_leaky_variant_weights_rates_and_leak_one_is_if():
    c = torch.linspace(0, 2, 11, dtype=D)
    assert torch.equal(constant_input_rates(c, 20, leak=1.0), constant_input_rates(c, 20))
    leaky = constant_input_rates(c, 20, leak=0.9)
    assert torch.all((leaky >= 0) & (leaky <= 1 + 1e-12)) and not torch.equal(leaky, constant_input_rates(c, 20))


# --- 2. multi-layer convergence ----------------------------------------------------------------------------
def test_multilayer_rate_error_shrinks_like_one_over_T():
    torch.manual_seed(0)
    x = torch.rand(64, 20, dtype=D)
    errs, soft = {}, {}
    for T in (10, 30, 100, 300):
        for u_rest, out in ((None, errs), (0.0, soft)):
            net = make_mlp(feedback=False, gain=1.5, time_steps=T, u_rest=u_rest).eval()
            rates, star = net.simulate(x).rates, clamp_equilibrium(net, x)
            out[T] = float(torch.cat([(a - b).abs().flatten() for a, b in zip(rates, star)]).mean())
    assert errs[10] > errs[30] > errs[100] > errs[300]
    assert errs[10] / errs[300] > 10          # ideal 1/T scaling gives 30
    assert all(soft[T] > 1.5 * errs[T] for T in errs)


# --- 3. float adjoint ----------------------------------------------------------------------------------------
def test_exact_adjoint_solve_equals_iteration_and_satisfies_equation():
    net = make_mlp(time_steps=30)
    x = torch.rand(8, 20, dtype=D)
    state = net.simulate(x)
    g = torch.randn(8, 25, dtype=D)
    solve, iterate = exact_adjoint(net, state, g, "solve"), exact_adjoint(net, state, g, "iterate")
    for a, b in zip(solve, iterate):
        assert torch.allclose(a, b, atol=1e-10)
    # beta_N = g + W_fb^T (m_1 beta_1) / 2 and beta_1 = W_1^T (m_2 beta_N) / 2
    b1, b2 = solve
    assert torch.allclose(b2, g + (state.masks[0] * b1) @ net.feedback.weight / 2, atol=1e-10)
    assert torch.allclose(b1, (state.masks[1] * b2) @ net.layers[0].weight / 2, atol=1e-10)


def test_iteration_raises_when_feedback_is_too_strong():
    net = make_mlp(gain=30.0, time_steps=30)
    state = net.simulate(torch.rand(4, 20, dtype=D))
    state.masks = [torch.ones_like(m) for m in state.masks]  # every neuron in its linear range
    with pytest.raises(ConvergenceError):
        exact_adjoint(net, state, torch.randn(4, 25, dtype=D), "iterate", max_iter=200)


def test_no_feedback_adjoint_equals_autograd_through_masked_clamp():
    net = make_mlp(feedback=False, time_steps=30)
    state = net.simulate(torch.rand(8, 20, dtype=D))
    head = torch.randn(25, 3, dtype=D)
    net.zero_grad()
    (masked_clamp_rates(net, state) @ head).square().sum().backward()
    autograd = flat_grads(net)
    g = 2 * (state.rates[-1] @ head) @ head.t()
    assert torch.allclose(exact_grads(net, state, g), autograd, atol=1e-12)


def test_implicit_gradient_matches_finite_differences_of_float_equilibrium():
    # With feedback: the adjoint + local updates differentiate the clamp equilibrium a*(theta).
    net = make_mlp(gain=1.0, time_steps=30)
    x = torch.rand(3, 20, dtype=D)
    head = torch.randn(25, dtype=D)
    rates = clamp_equilibrium(net, x, tol=1e-14)
    masks = [((a > 0) & (a < 1)).to(D) for a in rates]
    state = SpideState(x=x, rates=rates, masks=masks, drops=[None] * 3,
                       in_shapes=[tuple(x.shape), tuple(rates[0].shape), tuple(rates[1].shape)], time_steps=0)
    grad = exact_grads(net, state, head.expand(3, 25).clone())
    w = net.feedback.weight
    numeric = torch.zeros_like(w)
    eps = 1e-6
    for i, j in [(0, 0), (3, 7), (10, 24), (29, 5)]:
        for sign in (1, -1):
            with torch.no_grad():
                w[i, j] += sign * eps
            numeric[i, j] += sign * float((clamp_equilibrium(net, x, tol=1e-14)[-1] @ head).sum()) / (2 * eps)
            with torch.no_grad():
                w[i, j] -= sign * eps
    fb_grad = net.feedback.weight.grad
    for i, j in [(0, 0), (3, 7), (10, 24), (29, 5)]:
        assert fb_grad[i, j].item() == pytest.approx(numeric[i, j].item(), abs=1e-7)
    assert grad.abs().max() > 1e-3


# --- 4. spike backward -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("feedback", [False, True])
def test_spike_backward_cosine_to_exact_gradient(feedback):
    net = make_mlp(feedback=feedback, time_steps=30)
    state = net.simulate(torch.rand(8, 20, dtype=D))
    g = torch.randn(8, 25, dtype=D) * 0.02 / 8
    exact = exact_grads(net, state, g)
    beta_star = max(float(b.abs().max()) for b in exact_adjoint(net, state, 100 * g))
    assert beta_star < 1
    cos = {steps: float(F.cosine_similarity(spike_grads(net, state, g, 100.0, steps)[0], exact, 0))
           for steps in (25, 100)}
    assert cos[100] >= 0.99 and cos[100] > cos[25]


def test_spike_backward_saturates_but_stays_bounded():
    net = make_mlp(time_steps=30)
    state = net.simulate(torch.rand(8, 20, dtype=D))
    g = torch.randn(8, 25, dtype=D) * 0.5
    beta_star = max(float(b.abs().max()) for b in exact_adjoint(net, state, 100 * g))
    grads, betas = spike_grads(net, state, g, 100.0, 100)
    assert beta_star > 4
    assert all(b.abs().max() <= 1 for b in betas)
    assert float(F.cosine_similarity(grads, exact_grads(net, state, g), 0)) < 0.99


def test_ternary_neuron_fires_both_signs():
    u = torch.tensor([-0.7, -0.5, -0.49, 0.0, 0.49, 0.5, 1.2])
    assert ternary_fire(u).tolist() == [-1, -1, 0, 0, 0, 1, 1]


def test_autograd_hook_assigns_spike_gradients_and_head_gets_autograd():
    torch.manual_seed(0)
    snn = mlp_f(20, (30,), feedback=True, time_steps=20, time_steps_back=50).double()
    model = SpideClassifier(snn, 30, 4).double().train()
    x, y = torch.rand(6, 20, dtype=D), torch.tensor([0, 1, 2, 3, 0, 1])
    logits, state = model.forward_with_state(x)
    F.cross_entropy(logits, y).backward()
    hook = flat_grads(snn)
    rates = state.rates[-1].clone().requires_grad_()
    g, = torch.autograd.grad(F.cross_entropy(model.head(rates), y), rates)
    manual, _ = spike_grads(snn, state, g, snn.scale, snn.time_steps_back)
    assert torch.equal(hook, manual)
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0


def test_no_autograd_graph_through_time():
    snn = mlp_f(20, (30,), feedback=True, time_steps=10)
    state = snn.simulate(torch.rand(4, 20))
    assert all(not a.requires_grad for a in state.rates)


# --- dropout ------------------------------------------------------------------------------------------------------
def test_dropout_mask_shared_over_steps_and_reused_in_backward():
    net = make_mlp(feedback=False, time_steps=30, dropout=0.3)
    x = torch.rand(8, 20, dtype=D)
    a = net.simulate(x, generator=torch.Generator().manual_seed(3))
    b = net.simulate(x, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(a.rates, b.rates))
    assert a.drops[0] is not None and set(a.drops[0].unique().tolist()) <= {0.0, 1 / 0.7}
    head = torch.randn(25, dtype=D)
    net.zero_grad()
    (masked_clamp_rates(net, a) @ head).sum().backward()
    autograd = flat_grads(net)
    assert torch.allclose(exact_grads(net, a, head.expand(8, 25).clone()), autograd, atol=1e-12)
    with pytest.raises(ConfigError, match="generator"):
        net.simulate(x)
    assert net.eval().simulate(x).drops[0] is None


# --- norm cap ------------------------------------------------------------------------------------------------------
def test_feedback_norm_cap_holds_after_every_step():
    torch.manual_seed(0)
    snn = mlp_f(20, (30,), feedback=True, feedback_gain=3.0, time_steps=10, time_steps_back=20,
                feedback_norm_cap=2.0)
    model = SpideClassifier(snn, 30, 4)
    opt = torch.optim.SGD(model.parameters(), lr=5.0)
    x, y = torch.rand(16, 20), torch.randint(0, 4, (16,))
    assert snn.feedback.weight.norm() > 2
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        norm = snn.cap_feedback_norm_()
        assert norm <= 2.0 and snn.feedback.weight.norm() <= 2.0
    small = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        small.weight.fill_(0.1)
    before = small.weight.clone()
    cap_frobenius_(small, 2.0)
    assert torch.equal(small.weight, before)


# --- connections ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("op, shape", [
    (nn.Linear(7, 5), (3, 7)),
    (nn.Conv2d(2, 4, 3, stride=2, padding=1), (3, 2, 8, 8)),
    (nn.Conv2d(2, 4, 5, padding=2), (3, 2, 7, 7)),
    (nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1), (3, 4, 4, 4)),
    (nn.AvgPool2d(2), (3, 2, 8, 8)),
    (nn.Sequential(nn.Flatten(), nn.Linear(32, 6)), (3, 2, 4, 4)),
])
def test_transpose_and_parameter_gradients_match_autograd(op, shape):
    op = op.double()
    z = torch.rand(shape, dtype=D, requires_grad=True)
    out = op(z)
    y = torch.randn_like(out)
    expect_z, *expect_p = torch.autograd.grad(out, [z, *op.parameters()], y)
    got = transpose_of(op, tuple(shape), z.detach())(y).reshape(shape)
    assert torch.allclose(got, expect_z, atol=1e-12)
    op.zero_grad()
    accumulate_param_grads(op, z.detach(), y)
    for p, e in zip(op.parameters(), expect_p):
        assert torch.allclose(p.grad, e, atol=1e-12)


def test_conv_networks_spike_backward_agrees_with_exact():
    torch.manual_seed(0)
    lenet = lenet5(size=8, width=0.3, time_steps=30, time_steps_back=200).double()
    alex = alexnet_f(width=0.04, time_steps=30, time_steps_back=200).double()
    for net, x in ((lenet, torch.rand(2, 1, 8, 8, dtype=D)), (alex, torch.rand(2, 3, 8, 8, dtype=D))):
        state = net.simulate(x)
        g = torch.randn_like(state.rates[-1]) * 0.005
        exact = exact_grads(net, state, g)
        spike, betas = spike_grads(net, state, g, 100.0, 200)
        assert all(b.abs().max() <= 1 for b in betas)
        assert float(F.cosine_similarity(spike, exact, 0)) > 0.95


# --- bad input --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, field", [
    ({"time_steps": 0}, "time_steps"), ({"time_steps_back": 0}, "time_steps_back"), ({"scale": 0.0}, "scale"),
    ({"scale": -1.0}, "scale"), ({"v_th": 0.0}, "v_th"), ({"feedback_norm_cap": 0.0}, "feedback_norm_cap"),
    ({"backward": "bptt"}, "backward"), ({"dropout": [0.1]}, "dropout"), ({"leak": 1.5}, "leak"),
    ({"world_size": 0}, "world_size"),
])
def test_bad_arguments_raise_one_line_errors_naming_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=f"^{field}=") as err:
        SpideNetwork(nn.Linear(4, 4), **kwargs)
    assert "\n" not in str(err.value)


def test_feedback_that_does_not_fit_first_layer_is_rejected():
    net = SpideNetwork(nn.Linear(4, 6), [nn.Linear(6, 5)], nn.Linear(5, 7))
    with pytest.raises(ConfigError, match="feedback output shape"):
        net.simulate(torch.rand(2, 4))
    wrong_input = SpideNetwork(nn.Linear(4, 6), [nn.Linear(6, 5)], nn.Linear(7, 6))
    with pytest.raises(ConfigError, match="^feedback does not accept") as err:
        wrong_input.simulate(torch.rand(2, 4))
    assert "\n" not in str(err.value)
    assert math.isfinite(float(SpideNetwork(nn.Linear(4, 6), [nn.Linear(6, 5)], nn.Linear(5, 6))
                               .simulate(torch.rand(2, 4)).rates[0].sum()))


def test_input_gradient_matches_autograd_through_masked_clamp():
    net = make_mlp(feedback=False, time_steps=30, backward="exact")
    head = torch.randn(25, dtype=D)
    x = torch.rand(5, 20, dtype=D, requires_grad=True)
    (net(x) @ head).sum().backward()
    spide_grad = x.grad.clone()
    x.grad = None
    state = net.simulate(x)
    (masked_clamp_rates(net, state) @ head).sum().backward()
    assert torch.allclose(spide_grad, x.grad, atol=1e-12) and spide_grad.abs().max() > 0
    # events: T identical frames behave like a static input for T steps; each step gets 1/T of its gradient
    net.time_steps = 4
    x.grad = None
    (net(x) @ head).sum().backward()
    ev = x.detach().unsqueeze(1).repeat(1, 4, 1).requires_grad_()
    (net(ev, events=True) @ head).sum().backward()
    assert torch.allclose(ev.grad, (x.grad / 4).unsqueeze(1).expand(5, 4, 20), atol=1e-12)
