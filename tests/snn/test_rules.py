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


def grads(model, x, y, rule, k=None, generator=None, multistep=True):
    model.zero_grad(set_to_none=True)
    trainer = SNNTrainer(model, T, rule, k, generator=generator)
    trainer.multistep = multistep
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
    g_bptt, _ = grads(make_model(tau=1.0), x, y, "bptt", multistep=False)  # the one-step loop: same op order
    g_sltt, _ = grads(make_model(tau=1.0), x, y, "sltt")
    assert all(torch.equal(g_bptt[n], g_sltt[n]) for n in g_bptt)
    g_multi, _ = grads(make_model(tau=1.0), x, y, "bptt")  # the multi-step layout sums in another order
    for n in g_bptt:
        torch.testing.assert_close(g_multi[n], g_sltt[n], rtol=1e-12, atol=1e-14)


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


def test_a_second_trainer_on_the_same_model_does_not_change_the_first_ones_rule(batch):
    x, y = batch
    model = make_model(tau=2.0)
    bptt = SNNTrainer(model, T, "bptt")
    model.zero_grad(set_to_none=True)
    bptt.gradients(x, y)
    before = parameter_grads(model)
    SNNTrainer(model, T, "sltt")  # constructing another trainer must not touch the model
    model.zero_grad(set_to_none=True)
    bptt.gradients(x, y)
    after = parameter_grads(model)
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert all(m.temporal == "bptt" for m in model.modules() if isinstance(m, LIFNeuron))  # untouched


def test_temporal_mode_is_set_per_call_and_restored():
    from tenfold.snn.neurons import temporal_mode

    model = make_model()
    for m in model.modules():
        if isinstance(m, LIFNeuron):
            m.temporal = "sltt"
    seen = []
    hook = model.body[2].register_forward_hook(lambda m, i, o: seen.append(m.temporal))
    SNNTrainer(model, 2, "bptt").gradients(torch.rand(4, 64).double(), torch.zeros(4, dtype=torch.long))
    hook.remove()
    assert seen == ["bptt", "bptt"]
    assert all(m.temporal == "sltt" for m in model.modules() if isinstance(m, LIFNeuron))
    with pytest.raises(RuntimeError), temporal_mode(model, "bptt"):
        raise RuntimeError
    assert all(m.temporal == "sltt" for m in model.modules() if isinstance(m, LIFNeuron))


def test_rule_names_and_k():
    model = make_model()
    assert (SNNTrainer(model, T, "sltt-2").rule, SNNTrainer(model, T, "sltt-2").k) == ("sltt-k", 2)
    assert SNNTrainer(model, T, "sltt-k", 3).k == 3
    assert SNNTrainer(model, T, "sltt-2", 2).k == 2
    for rule, k, message in (("sltt", 2, "k=2 is invalid with rule='sltt'"), ("bptt", 1, "k=1 is invalid"),
                             ("sltt-2", 3, "already says K=2"), ("sltt-9", None, "K=9"), ("sltt-x", None, "rule=")):
        with pytest.raises(ConfigError, match=message) as info:
            SNNTrainer(model, T, rule, k)
        assert "\n" not in str(info.value)


def test_one_line_errors_for_models_without_neurons_and_bad_batches(batch):
    x, y = batch
    with pytest.raises(ConfigError, match="has no spiking neuron"):
        SNNTrainer(torch.nn.Linear(64, 10), T)
    trainer = SNNTrainer(make_model(), T)
    with pytest.raises(ConfigError, match="expected tensors x, y"):
        trainer.gradients(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y)), y)

    class Dict(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = make_model()

        def forward(self, x):
            return {"logits": self.net(x)}

    with pytest.raises(ConfigError, match="output of the model is a dict"):
        SNNTrainer(Dict(), T).gradients(x, y)


def test_tuple_outputs_dataloaders_and_a_custom_per_step_loss(batch):
    x, y = batch

    class Pair(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = make_model()

        def forward(self, x):
            return self.net(x), None

    model = Pair()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    calls = []
    trainer = SNNTrainer(model, T, "sltt", optimizer=opt,
                         loss=lambda o, t: (calls.append(1), torch.nn.functional.cross_entropy(o, t))[1])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    results = trainer.fit_epoch(loader)
    assert len(results) == 2 and len(calls) == 2 * T
    assert 0.0 <= trainer.accuracy(loader) <= 1.0
    assert trainer.accuracy(torch.utils.data.TensorDataset(x, y)) == trainer.accuracy(loader)
    plain = make_model()
    plain.zero_grad(set_to_none=True)  # the default loss is CE + 0.05 MSE(ones); lam_l=0 is plain CE
    SNNTrainer(plain, T, "sltt", lam_l=0.0).gradients(x, y)
    custom = make_model()
    SNNTrainer(custom, T, "sltt", loss=torch.nn.functional.cross_entropy).gradients(x, y)
    assert all(torch.allclose(a, b) for a, b in zip(parameter_grads(plain).values(), parameter_grads(custom).values()))


def test_no_sync_wraps_every_step_but_the_last_backward(batch):
    from contextlib import contextmanager

    x, y = batch
    log = []

    @contextmanager
    def no_sync():
        log.append("enter")
        yield
        log.append("exit")

    for rule, k, expected in (("sltt", None, T - 1), ("bptt", None, T - 1), ("sltt-k", 2, None)):
        log.clear()
        trainer = SNNTrainer(make_model(), T, rule, k, no_sync=no_sync, generator=torch.Generator().manual_seed(1))
        result = trainer.gradients(x, y)
        n = log.count("enter")
        assert n == (expected if expected is not None else result.grad_steps[-1]), (rule, n)


def test_amp_with_grad_scaler_matches_float32_closely(batch):
    x, y = batch
    x = x.float()
    grads = {}
    for precision in ("32", "bf16-mixed", "16-mixed"):
        model = make_model().float()
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        trainer = SNNTrainer(model, T, "sltt", optimizer=opt, precision=precision)
        trainer.step(x, y)
        if trainer.scaler is not None:
            assert trainer.scaler.get_scale() > 1  # gradients were scaled, the step unscaled them
        grads[precision] = torch.cat([p.grad.flatten() for p in model.parameters()])
    for precision in ("bf16-mixed", "16-mixed"):
        cos = torch.nn.functional.cosine_similarity(grads["32"], grads[precision], dim=0)
        assert cos > 0.9, (precision, cos)
    with pytest.raises(ConfigError, match="^precision="):
        SNNTrainer(make_model(), T, precision="fp8")


def test_offline_sltt_has_the_online_gradient_but_bptt_memory(batch):
    from tenfold.snn.profile import peak_saved_bytes

    x, y = batch
    g_on, res_on = grads(make_model(), x, y, "sltt")
    model = make_model()
    trainer = SNNTrainer(model, T, "sltt", online=False)
    result = trainer.gradients(x, y)
    g_off = parameter_grads(model)
    assert result.backward_calls == 1 and res_on.backward_calls == T
    for n in g_on:
        assert torch.allclose(g_on[n], g_off[n], rtol=1e-10, atol=1e-12)
    on = peak_saved_bytes(SNNTrainer(make_model(), T, "sltt"), x, y)
    off = peak_saved_bytes(trainer, x, y)
    assert off > 0.9 * T * on
