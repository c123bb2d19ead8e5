"""SPIDE's implicit backward is an autograd node: ``torch.autograd.grad`` returns the parameter (and input)
gradients, equal to what ``loss.backward()`` puts in ``.grad`` and to the lower-level ``assign_gradients``."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tenfold.second_order import SecondOrderError
from tenfold.snn.spide import SpideNetwork
from tenfold.snn.spide_models import SpideClassifier, lenet5, mlp_f

D = torch.float64


def _net(backward="spike"):
    torch.manual_seed(0)
    return mlp_f(20, (30, 25), feedback=True, time_steps=20, time_steps_back=40, backward=backward).double().train()


@pytest.mark.parametrize("backward", ["spike", "exact"])
def test_autograd_grad_returns_the_parameter_gradients_of_backward(backward):
    net = _net(backward)
    x = torch.rand(5, 20, dtype=D)
    params = list(net.parameters())
    grads = torch.autograd.grad(net(x).square().sum(), params)
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in params)  # autograd.grad leaves .grad alone
    net(x).square().sum().backward()
    for p, g in zip(params, grads):
        assert torch.equal(p.grad, g)
    # the values of the lower-level path (simulate, adjoint, assign_gradients into .grad)
    net.zero_grad()
    state = net.simulate(x)
    net.implicit_backward(state, 2 * state.rates[-1])
    for p, g in zip(params, grads):
        assert torch.equal(p.grad, g)


def test_input_gets_gradient_with_the_parameters():
    net = _net("exact")
    x = torch.rand(5, 20, dtype=D, requires_grad=True)
    gx, gw = torch.autograd.grad(net(x).sum(), [x, net.input_op.weight])
    state = net.simulate(x.detach())
    grads, manual_x = net.implicit_gradients(state, torch.ones_like(state.rates[-1]), tuple(x.shape))
    assert torch.equal(gx, manual_x) and torch.equal(gw, grads[net.input_op.weight])
    assert gx.abs().sum() > 0


def test_classifier_head_and_conv_network_through_autograd_grad():
    torch.manual_seed(0)
    snn = lenet5(1, 8, width=0.2, time_steps=8, time_steps_back=20).double()
    model = SpideClassifier(snn, 60, 3).double().train()
    x, y = torch.rand(2, 1, 8, 8, dtype=D), torch.tensor([0, 2])
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()), allow_unused=True)
    names = [n for n, _ in model.named_parameters()]
    missing = [n for n, g in zip(names, grads) if g is None]
    assert not missing
    F.cross_entropy(model(x), y).backward()
    for p, g in zip(model.parameters(), grads):
        assert torch.equal(p.grad, g)


def test_frozen_parameters_get_no_gradient_and_the_rest_do():
    net = _net("exact")
    net.input_op.weight.requires_grad_(False)
    net(torch.rand(3, 20, dtype=D)).sum().backward()
    assert net.input_op.weight.grad is None and net.input_op.bias.grad is not None


def test_second_derivative_is_refused_in_one_line():
    net = _net()
    out = net(torch.rand(3, 20, dtype=D)).sum()
    with pytest.raises(SecondOrderError, match="_ImplicitGradient") as info:
        torch.autograd.grad(out, list(net.parameters()), create_graph=True)
    assert "\n" not in str(info.value)


def test_shared_connection_gets_the_sum_of_its_gradients():
    torch.manual_seed(0)
    shared = nn.Linear(10, 10)
    net = SpideNetwork(nn.Linear(6, 10), [shared, shared], None, time_steps=10, backward="exact").double().train()
    x = torch.rand(4, 6, dtype=D)
    (g,) = torch.autograd.grad(net(x).sum(), [shared.weight])
    state = net.simulate(x)
    from tenfold.snn.spide_reference import exact_adjoint

    betas = exact_adjoint(net, state, torch.ones_like(state.rates[-1]))
    net.zero_grad()
    net.assign_gradients(state, betas)
    assert torch.allclose(g, shared.weight.grad, atol=1e-12)
