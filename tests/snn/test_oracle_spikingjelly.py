"""Oracle: our LIF neuron and our BPTT / SLTT / SLTT-K rules against SpikingJelly 2.0.0 (`make oracles`).

These tests are required (CI runs `make test`, which installs the extra): a missing SpikingJelly is a
failure, not a skip. Deselect them explicitly with ``-m "not oracle"``.
Spec snn.md 1.5 check 7; issue 20 (conv-BN-residual network, three surrogates, three taus).
"""

import copy
import importlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tenfold.errors import ConfigError
from tenfold.snn import LIFNeuron
from tenfold.snn.loss import per_step_loss
from tenfold.snn.train import SNNTrainer, parameter_grads

pytestmark = pytest.mark.oracle

try:
    sj = importlib.import_module("spikingjelly.activation_based.neuron")
    functional = importlib.import_module("spikingjelly.activation_based.functional")
    surrogate = importlib.import_module("spikingjelly.activation_based.surrogate")
    MISSING = None
except ImportError as exc:  # reported by the fixture below as a failure of every oracle test
    sj = functional = surrogate = None
    MISSING = exc


@pytest.fixture(autouse=True)
def _require_spikingjelly():
    if MISSING is not None:
        pytest.fail(f"SpikingJelly 2.0.0 is required for the oracle tests (run `make oracles`): {MISSING}")

T, B, N_IN, N_HID, C = 6, 32, 20, 40, 5


def sj_kwargs(tau):
    return dict(tau=tau, decay_input=False, v_reset=None, surrogate_function=surrogate.PiecewiseQuadratic(1.0))


def make_layers(seed=0):
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(N_HID, N_IN, generator=g, dtype=torch.float64) * 0.6
    w2 = torch.randn(C, N_HID, generator=g, dtype=torch.float64) * 0.3
    x = torch.rand(T, B, N_IN, generator=g, dtype=torch.float64) * 1.5
    y = torch.randint(0, C, (B,), generator=g)
    return w1, w2, x, y


@pytest.mark.parametrize("tau", [1.1, 2.0])
def test_bptt_matches_spikingjelly_multistep_lifnode(tau):
    w1, w2, x, y = make_layers()
    grads, spikes = [], []
    for impl in ("ours", "sj"):
        a, b = w1.clone().requires_grad_(), w2.clone().requires_grad_()
        if impl == "ours":
            neuron = LIFNeuron(tau=tau, temporal="bptt")
            s = torch.stack([neuron(x[t] @ a.T) for t in range(T)])
        else:
            neuron = sj.LIFNode(step_mode="m", **sj_kwargs(tau))
            s = neuron(x @ a.T)
            functional.reset_net(neuron)
        loss = sum(per_step_loss(s[t] @ b.T, y) for t in range(T)) / T
        loss.backward()
        grads.append((a.grad, b.grad))
        spikes.append(s.detach())
    assert 0.05 < spikes[0].mean() < 0.6
    assert torch.equal(spikes[0], spikes[1])
    for ours, theirs in zip(*grads):
        assert (ours - theirs).abs().max().item() <= 1e-6 * max(1.0, theirs.abs().max().item())


@pytest.mark.parametrize("tau", [1.1, 2.0])
def test_sltt_matches_spikingjelly_slttlifnode(tau):
    w1, w2, x, y = make_layers(1)
    grads, spikes = [], []
    for impl in ("ours", "sj"):
        a, b = w1.clone().requires_grad_(), w2.clone().requires_grad_()
        neuron = LIFNeuron(tau=tau, temporal="sltt") if impl == "ours" else sj.SLTTLIFNode(**sj_kwargs(tau))
        out = []
        for t in range(T):  # per-step backward, as in the SLTT loop
            s = neuron(x[t] @ a.T)
            (per_step_loss(s @ b.T, y) / T).backward()
            out.append(s.detach())
        grads.append((a.grad.clone(), b.grad.clone()))
        spikes.append(torch.stack(out))
    assert torch.equal(spikes[0], spikes[1])
    for ours, theirs in zip(*grads):
        assert (ours - theirs).abs().max().item() <= 1e-12 * max(1.0, theirs.abs().max().item())


def test_spikingjelly_defaults_differ_so_arguments_must_be_explicit():
    """SLTTLIFNode's defaults (tau=2, decay_input, hard reset, Sigmoid) give other spikes than our preset."""
    _, _, x, _ = make_layers(2)
    ours = LIFNeuron(tau=2.0)
    default = sj.SLTTLIFNode()
    a = torch.stack([ours(x[t] * 0.8) for t in range(T)])
    b = torch.stack([default(copy.deepcopy(x[t]) * 0.8) for t in range(T)])
    assert not torch.equal(a, b)


# --- conv-BN-residual network: BPTT, SLTT, SLTT-K x three surrogates x three taus -------------------

CT, CB = 5, 6  # time steps, batch


def sj_surrogate(name):
    """Our surrogate of width 1 as SpikingJelly's function: triangle = PiecewiseQuadratic(1),
    sigmoid = Sigmoid(4), atan = ATan(2) (see tenfold.snn.surrogate)."""
    return {"triangle": lambda: surrogate.PiecewiseQuadratic(alpha=1.0), "sigmoid": lambda: surrogate.Sigmoid(alpha=4.0),
            "atan": lambda: surrogate.ATan(alpha=2.0)}[name]()


class ConvBNResidual(nn.Module):
    """conv-BN-LIF -> conv-BN-LIF, a residual sum of the two spike maps, avg-pool, Linear; one step per call."""

    def __init__(self, make_neuron):
        super().__init__()
        self.conv1, self.bn1, self.lif1 = nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), make_neuron()
        self.conv2, self.bn2, self.lif2 = nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6), make_neuron()
        self.head = nn.Linear(6 * 4 * 4, 4)
        with torch.no_grad():
            self.bn1.weight.fill_(1.5)
            self.bn2.weight.fill_(1.5)

    def forward(self, x):
        s1 = self.lif1(self.bn1(self.conv1(x)))
        s2 = self.lif2(self.bn2(self.conv2(s1)))
        return self.head(F.avg_pool2d(s2 + s1, 2).flatten(1))


def conv_case(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(CB, CT, 2, 8, 8, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 4, (CB,), generator=g)
    return x, y


def ours_and_theirs(tau, sur, theirs):
    torch.manual_seed(0)
    ours = ConvBNResidual(lambda: LIFNeuron(tau=tau, surrogate=sur)).double()
    kwargs = dict(tau=tau, decay_input=False, v_reset=None, v_threshold=1.0, surrogate_function=sj_surrogate(sur),
                  detach_reset=False, step_mode="s")
    ref = ConvBNResidual(lambda: theirs(**kwargs)).double()
    ref.load_state_dict(ours.state_dict())
    return ours, ref


def reference_gradients(net, x, y, rule, steps):
    """SpikingJelly's neurons in the paper's loop, written out here: BPTT = one backward of the summed
    per-step loss; SLTT / SLTT-K = SLTTLIFNode with a backward after each drawn step, no_grad elsewhere."""
    functional.reset_net(net)
    total = 0
    for t in range(CT):
        with torch.set_grad_enabled(t in steps):
            loss = per_step_loss(net(x[:, t]), y) / CT
        if rule == "bptt":
            total = total + loss
        elif t in steps:
            loss.backward()
    if rule == "bptt":
        total.backward()
    functional.reset_net(net)
    return parameter_grads(net)


@pytest.mark.parametrize("tau", [1.1, 2.0, 4.0])
@pytest.mark.parametrize("sur", ["triangle", "sigmoid", "atan"])
@pytest.mark.parametrize("rule, k", [("bptt", None), ("sltt", None), ("sltt-k", 2)])
def test_conv_bn_residual_gradients_equal_spikingjelly(rule, k, sur, tau):
    x, y = conv_case()
    theirs = sj.LIFNode if rule == "bptt" else sj.SLTTLIFNode
    ours, ref = ours_and_theirs(tau, sur, theirs)
    fired = []
    hooks = [m.register_forward_hook(lambda m, i, o: fired.append(o.mean().item()))
             for m in (ours.lif1, ours.lif2)]
    trainer = SNNTrainer(ours, CT, rule, k, static=False, generator=torch.Generator().manual_seed(5))
    result = trainer.gradients(x, y)
    for h in hooks:
        h.remove()
    assert min(fired) > 0.02 and max(fired) < 0.8, fired  # both layers fire at every step
    g_ours = parameter_grads(ours)
    g_ref = reference_gradients(ref, x, y, rule, set(result.grad_steps))
    assert len(result.grad_steps) == (2 if k else CT)
    for n in g_ours:
        scale = max(1.0, g_ref[n].abs().max().item())
        assert g_ref[n].abs().sum() > 0 or n.startswith("bn"), n
        assert (g_ours[n] - g_ref[n]).abs().max().item() <= 1e-12 * scale, (n, rule, sur, tau)
    for name in ("bn1", "bn2"):  # per-step BatchNorm statistics were updated identically
        assert torch.allclose(getattr(ours, name).running_mean, getattr(ref, name).running_mean, atol=1e-14)


@pytest.mark.parametrize("rule, k", [("bptt", None), ("sltt", None), ("sltt-2", None)])
def test_trainer_runs_a_model_built_from_spikingjelly_neurons(rule, k):
    """A user's model with SpikingJelly LIFNodes: the trainer resets them per batch (a second batch of
    another size works) and detaches them per step under SLTT, giving our own neurons' gradients."""
    x, y = conv_case(1)
    ours, ref = ours_and_theirs(2.0, "triangle", sj.LIFNode)
    grads = []
    for model in (ours, ref):
        trainer = SNNTrainer(model, CT, rule, k, static=False, generator=torch.Generator().manual_seed(2))
        model.zero_grad(set_to_none=True)
        trainer.gradients(x, y)
        grads.append(parameter_grads(model))
        trainer.gradients(x[:3], y[:3])  # another batch size right after: states were reset
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], rtol=1e-12, atol=1e-14), n


# --- the trainer's SpikingJelly-neuron path against SpikingJelly's own loop ----------------------------

def sj_neuron(name):
    """SpikingJelly neurons a user would put in a one-step model (soft reset, explicit surrogates)."""
    common = dict(v_reset=None, step_mode="s")
    return {
        "LIFNode": lambda: sj.LIFNode(tau=2.0, decay_input=False, surrogate_function=sj_surrogate("triangle"), **common),
        "ParametricLIFNode": lambda: sj.ParametricLIFNode(init_tau=2.0, decay_input=False,  # a learnable tau
                                                          surrogate_function=sj_surrogate("sigmoid"), **common),
        "IFNode": lambda: sj.IFNode(v_threshold=1.5, surrogate_function=sj_surrogate("atan"), **common),
        "SLTTLIFNode": lambda: sj.SLTTLIFNode(tau=2.0, decay_input=False, surrogate_function=sj_surrogate("triangle"),
                                              **common),
    }[name]


def sj_reference_step(net, opt, x, y, rule, steps):
    """One batch written with SpikingJelly's functional API only: reset_net, per-step forward, BPTT = one
    backward of the mean step loss, SLTT / SLTT-K = a backward after each drawn step and detach_net after
    every step (no temporal graph); one optimizer step. Returns the loss (1/T) sum_t l(o[t], y)."""
    functional.reset_net(net)
    total, losses = 0, []
    for t in range(CT):
        with torch.set_grad_enabled(t in steps):
            loss = per_step_loss(net(x[:, t]), y) / CT
        losses.append(loss.detach())
        if rule == "bptt":
            total = total + loss
        else:
            if t in steps:
                loss.backward()
            functional.detach_net(net)
    if rule == "bptt":
        total.backward()
    functional.reset_net(net)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(sum(losses))


@torch.no_grad()
def sj_reference_predict(net, x):
    net.eval()
    functional.reset_net(net)
    out = sum(net(x[:, t]) for t in range(CT))
    functional.reset_net(net)
    net.train()
    return out


@pytest.mark.parametrize("name, rule", [(n, r) for n in ("LIFNode", "ParametricLIFNode", "IFNode")
                                        for r in ("bptt", "sltt", "sltt-2")]
                         + [("SLTTLIFNode", "sltt"), ("SLTTLIFNode", "sltt-2")])
def test_trainer_on_spikingjelly_neurons_equals_spikingjelly_own_loop(name, rule):
    """SNNTrainer.step / predict / accuracy on a model built from SpikingJelly neurons (float64) give the
    parameters, losses, BatchNorm statistics and outputs of the same model trained by SpikingJelly's own
    functional loop, over two batches of different sizes (the trainer resets and detaches their state)."""
    torch.manual_seed(0)
    model = ConvBNResidual(sj_neuron(name)).double()
    ref = copy.deepcopy(model)
    trainer = SNNTrainer(model, CT, rule, optimizer=torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9),
                         static=False, generator=torch.Generator().manual_seed(3))
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.5, momentum=0.9)
    x, y = conv_case(4)
    fired = []
    hooks = [m.register_forward_hook(lambda m, i, o: fired.append(o.mean().item())) for m in (model.lif1, model.lif2)]
    for xb, yb in ((x, y), (x[:4], y[:4])):
        result = trainer.step(xb, yb)
        ref_loss = sj_reference_step(ref, ref_opt, xb, yb, trainer.rule, set(result.grad_steps))
        assert result.loss == pytest.approx(ref_loss, rel=1e-12)
        assert len(result.grad_steps) == (2 if rule == "sltt-2" else CT)
    for h in hooks:
        h.remove()
    assert min(fired) > 0.0 and max(fired) < 0.9, fired  # both layers fire at every step
    theirs = dict(ref.named_parameters())
    for n, p in model.named_parameters():
        assert torch.allclose(p, theirs[n], rtol=1e-12, atol=1e-13), n
    if name == "ParametricLIFNode":  # the learnable tau moved: its gradient went through the trainer
        assert model.lif1.w.item() != pytest.approx(ConvBNResidual(sj_neuron(name)).lif1.w.item(), abs=1e-6)
    for bn in ("bn1", "bn2"):
        assert torch.allclose(getattr(model, bn).running_mean, getattr(ref, bn).running_mean, atol=1e-13)
    out = trainer.predict(x)
    assert torch.allclose(out, sj_reference_predict(ref, x), rtol=1e-12, atol=1e-12)
    pairs = [(x[i:i + 3], y[i:i + 3]) for i in (0, 3)]
    assert trainer.accuracy(pairs) == (sj_reference_predict(ref, x).argmax(1) == y).double().mean().item()


def test_trainer_refuses_spikingjelly_multistep_neurons_in_one_line():
    model = nn.Sequential(nn.Linear(4, 4), sj.LIFNode(step_mode="m"))
    with pytest.raises(ConfigError, match="step_mode='m'") as info:
        SNNTrainer(model, 3, "sltt")
    assert "\n" not in str(info.value)
