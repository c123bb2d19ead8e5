"""SLTT / SLTT-K / BPTT gradient rules at tiny scale (spec snn.md 1.5 checks 1, 4, 5, 6, 9)."""

import pytest
import torch

from tenfold.data import digits
from tenfold.errors import ConfigError
from tenfold.snn import LIFNeuron, reset_states
from tenfold.snn.loss import per_step_loss
from tenfold.snn.networks import SpikingMLP
from tenfold.snn.train import SNNTrainer, grad_cosines, parameter_grads, parse_rule

T = 6


@pytest.fixture(scope="module")
def batch():
    data = digits("train", seed=0, flatten=True)
    return data.x[:64].double(), data.y[:64]


def make_model(tau=1.1, seed=0):
    """The check's MLP 64-128-128-10 with hidden weights scaled 5x so that every layer fires (20-30%)."""
    torch.manual_seed(seed)
    model = SpikingMLP(64, (128, 128), 10, tau=tau).double()
    with torch.no_grad():
        for layer in model.body:
            if isinstance(layer, torch.nn.Linear):  # PyTorch's default init, scaled 5x
                layer.reset_parameters()
                layer.weight.mul_(5.0)
    return model


def grads(model, x, y, rule, k=None, generator=None):
    model.zero_grad(set_to_none=True)
    trainer = SNNTrainer(model, T, rule, k, generator=generator)
    result = trainer.gradients(x, y)
    return parameter_grads(model), result


def test_forward_outputs_identical_across_rules(batch):
    x, y = batch
    outs = []
    for rule, k in (("bptt", None), ("sltt", None), ("sltt-k", 1), ("sltt-k", 3)):
        _, result = grads(make_model(), x, y, rule, k)
        outs.append(result.logits_sum)
        assert result.loss > 0
    assert all(torch.equal(outs[0], o) for o in outs[1:])


def test_every_layer_fires_on_the_test_batch(batch):
    x, _ = batch
    model = make_model()
    rates = []
    hooks = [m.register_forward_hook(lambda m, i, o: rates.append(o.mean().item()))
             for m in model.modules() if isinstance(m, LIFNeuron)]
    model(x)
    for h in hooks:
        h.remove()
    assert all(0.1 < r < 0.5 for r in rates), rates


def test_tau_one_gives_identical_sltt_and_bptt_gradients(batch):
    x, y = batch
    g_bptt, _ = grads(make_model(tau=1.0), x, y, "bptt")
    g_sltt, _ = grads(make_model(tau=1.0), x, y, "sltt")
    assert all(torch.equal(g_bptt[n], g_sltt[n]) for n in g_bptt)


def test_online_per_step_backward_equals_offline_sum_with_detached_state(batch):
    x, y = batch
    g_online, _ = grads(make_model(), x, y, "sltt")
    model = make_model()
    for m in model.modules():
        if isinstance(m, LIFNeuron):
            m.temporal = "sltt"
    reset_states(model)
    total = sum(per_step_loss(model(x), y) for _ in range(T)) / T
    total.backward()
    g_offline = parameter_grads(model)
    for n in g_online:
        assert (g_online[n] - g_offline[n]).abs().max().item() <= 1e-8 * max(1.0, g_offline[n].abs().max().item())


def test_cosine_to_bptt_is_high_at_tau_1_1_and_falls_as_tau_grows(batch):
    x, y = batch
    worst = {}
    for tau in (1.1, 2.0, 4.0):
        g_bptt, _ = grads(make_model(tau), x, y, "bptt")
        g_sltt, _ = grads(make_model(tau), x, y, "sltt")
        cos = grad_cosines(g_bptt, g_sltt)
        worst[tau] = min(v for n, v in cos.items() if n.endswith("weight"))
    assert worst[1.1] >= 0.9998, worst
    assert worst[1.1] > worst[2.0] > worst[4.0], worst


def test_sltt_k_runs_k_backwards_and_sums_per_step_sltt_gradients(batch):
    x, y = batch
    per_step = []
    for t in range(T):  # gradient of the step-t loss alone under SLTT
        model = make_model()
        model.zero_grad(set_to_none=True)
        trainer = SNNTrainer(model, T, "sltt")
        trainer.draw_steps = lambda t=t: [t]
        trainer.gradients(x, y)
        per_step.append(parameter_grads(model))
    for k in (1, 2, 4):
        calls = []
        model = make_model()
        trainer = SNNTrainer(model, T, "sltt-k", k, generator=torch.Generator().manual_seed(3),
                             backward=lambda loss: (calls.append(1), loss.backward()))
        result = trainer.gradients(x, y)
        assert len(calls) == result.backward_calls == k and len(set(result.grad_steps)) == k
        g = parameter_grads(model)
        for n in g:
            expect = sum(per_step[t][n] for t in result.grad_steps)
            assert torch.allclose(g[n], expect, rtol=1e-10, atol=1e-12)


def test_sltt_k_with_k_equal_t_is_sltt_and_seeded_runs_repeat(batch):
    x, y = batch
    g_sltt, _ = grads(make_model(), x, y, "sltt")
    g_k, res = grads(make_model(), x, y, "sltt-k", T)
    assert res.grad_steps == list(range(T))
    assert all(torch.equal(g_sltt[n], g_k[n]) for n in g_sltt)
    runs = [grads(make_model(), x, y, "sltt-k", 2, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert runs[0][1].grad_steps == runs[1][1].grad_steps
    assert all(torch.equal(runs[0][0][n], runs[1][0][n]) for n in runs[0][0])
    draws = {tuple(grads(make_model(), x, y, "sltt-k", 2, torch.Generator().manual_seed(s))[1].grad_steps)
             for s in range(8)}
    assert len(draws) > 1  # the draw really depends on the generator


def test_bptt_backward_is_one_call_and_sltt_is_t_calls(batch):
    x, y = batch
    for rule, expected in (("bptt", 1), ("sltt", T)):
        _, result = grads(make_model(), x, y, rule)
        assert result.backward_calls == expected


def test_no_graph_or_state_survives_a_batch(batch):
    x, y = batch
    model = make_model()
    SNNTrainer(model, T, "bptt").gradients(x, y)
    assert all(m.u is None for m in model.modules() if isinstance(m, LIFNeuron))
    # a different batch size right after works: states were reset by the trainer
    SNNTrainer(model, T, "sltt").gradients(x[:10], y[:10])


def test_parse_rule():
    assert parse_rule("bptt") == ("bptt", None)
    assert parse_rule("sltt") == ("sltt", None)
    assert parse_rule("sltt-12") == ("sltt-k", 12)
    with pytest.raises(ConfigError, match="^rule="):
        parse_rule("sltt-x")


@pytest.mark.parametrize("kwargs, field", [
    ({"T": 0}, "T"), ({"rule": "tbptt"}, "rule"), ({"rule": "sltt-k", "k": 0}, "K"),
    ({"rule": "sltt-k", "k": 7}, "K"), ({"rule": "sltt-k", "k": None}, "K"), ({"lam_l": 1.5}, "lam_l"),
    ({"mse_target": "zeros"}, "mse_target"),
])
def test_bad_trainer_arguments_are_one_line_errors(kwargs, field):
    args = {"T": T, "rule": "sltt"} | kwargs
    with pytest.raises(ConfigError, match=f"^{field}=") as info:
        SNNTrainer(make_model(), **args)
    assert "\n" not in str(info.value)
