"""NIO, GradInit and GradCosine take ONE loss convention, torch's: ``loss_fn(outputs, targets)`` returns the
mean loss as a scalar (``F.cross_entropy``, ``nn.CrossEntropyLoss()``); the per-sample form is refused with a
one-line error naming the expected signature. GradCosine's sub-batch gradients are unchanged by the
convention: the gradient of each sub-batch's mean of the per-sample losses of ONE forward pass."""

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tenfold.errors import ConfigError
from tenfold.init import LOSS_FN_SIGNATURE, gradcosine, gradinit, nio, sub_batch_bounds, supported_parameters
from tenfold.init.gradcosine import statistic_mode


def _bn_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.Tanh(), nn.Linear(12, 3)).double()


def _batch(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def _run(method, model, batch, loss_fn):
    if method == "gradcosine":
        return gradcosine(model, batch, loss_fn, D=3)
    if method == "nio":
        return nio(model, batch, iterations=2, D=3, loss_fn=loss_fn)
    return gradinit(model, batch, iterations=2, loss_fn=loss_fn)


METHODS = ["gradcosine", "nio", "gradinit"]
MEAN_LOSSES = {"F.cross_entropy": F.cross_entropy, "nn.CrossEntropyLoss": nn.CrossEntropyLoss(label_smoothing=0.1),
               "lambda": lambda outputs, targets: F.nll_loss(F.log_softmax(outputs, dim=1), targets)}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("loss", sorted(MEAN_LOSSES))
def test_every_method_takes_a_mean_loss(method, loss):
    _run(method, _bn_mlp(), _batch(), MEAN_LOSSES[loss])


@pytest.mark.parametrize("method", METHODS)
def test_the_per_sample_form_is_refused_naming_the_expected_signature(method):
    per_sample = nn.CrossEntropyLoss(reduction="none")
    with pytest.raises(ConfigError) as err:
        _run(method, _bn_mlp(), _batch(), per_sample)
    message = str(err.value)
    assert "\n" not in message and re.search(r"shape \(\d+,\)", message) and LOSS_FN_SIGNATURE in message
    assert "loss_fn(outputs, targets) -> the mean loss as a scalar tensor" in message


def test_sub_batch_gradients_are_those_of_the_per_sample_losses_of_one_forward_pass():
    """G_i = grad mean_{j in sub-batch i} l_j with BatchNorm on the statistics of the WHOLE batch (one
    forward pass), with overlapping sub-batches; float64, against an independent computation."""
    model, (x, y) = _bn_mlp(), _batch(13)
    bounds = sub_batch_bounds(13, 3, 0.3)
    params = list(supported_parameters(model).values())
    with statistic_mode(model):
        per_sample = F.cross_entropy(model(x), y, reduction="none")
        rows = [torch.cat([g.flatten() for g in torch.autograd.grad(per_sample[a:b].mean(), params,
                                                                     retain_graph=True)]) for a, b in bounds]
    g = torch.stack(rows)
    unit = g / g.norm(dim=1, keepdim=True)
    cos = unit @ unit.T
    stats = gradcosine(model, (x, y), D=3, overlap=0.3)
    assert torch.allclose(stats.cosines, cos, atol=1e-12, rtol=0)
    assert float(stats.gc) == pytest.approx(float((cos.sum() - cos.trace()) / 6), abs=1e-12)
    assert float(stats.norm) == pytest.approx(float(g.norm(dim=1).mean()), abs=1e-12)


class _TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(6, 3).double()

    def forward(self, x):
        out = self.body(x)
        return {"logits": out, "aux": (out.square(), torch.ones((), dtype=out.dtype))}


def test_structured_outputs_are_cut_per_sub_batch_and_other_outputs_are_refused():
    torch.manual_seed(0)
    model, batch = _TupleOut(), _batch()
    stats = gradcosine(model, batch, lambda out, t: F.cross_entropy(out["logits"], t) + out["aux"][1], D=3)
    plain = gradcosine(model.body, batch, D=3)
    assert torch.allclose(stats.cosines, plain.cosines, atol=1e-12)

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(6, 3).double()

        def forward(self, x):
            return object()

    with pytest.raises(ConfigError, match="model output or target of type object is invalid"):
        gradcosine(Odd(), batch, lambda o, t: o, D=3)
