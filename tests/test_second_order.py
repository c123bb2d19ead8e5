"""Every custom ``torch.autograd.Function`` in Tenfold is exact at second order or refuses ``create_graph=True``
with a one-line SecondOrderError (tenfold.second_order).

The Functions are found by scanning the package's source, so a new one fails
``test_every_function_is_marked_and_has_a_case`` until it is marked and given a case below."""

import ast
import contextlib
import importlib
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

from tenfold.second_order import KINDS, SecondOrderError

SRC = Path(__file__).resolve().parents[1] / "src" / "tenfold"
D = torch.float64


def _function_classes() -> list[str]:
    """``module:Class`` of every class in src/tenfold whose base is (torch.)autograd.Function."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(ast.unparse(b).endswith(("autograd.Function", "Function"))
                                                      and "Function" == ast.unparse(b).split(".")[-1]
                                                      for b in node.bases):
                module = ".".join(("tenfold", *path.relative_to(SRC).with_suffix("").parts))
                found.append(f"{module}:{node.name}")
    return found


FOUND = _function_classes()


def _cls(key):
    module, name = key.split(":")
    return getattr(importlib.import_module(module), name)


# --- one case per Function: (function of float64 inputs, inputs) ----------------------------------------------------
def _rand(*shape, lo=-1.5, hi=1.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g, dtype=D) * (hi - lo) + lo).requires_grad_()


def _spike_cases():
    from tenfold.snn.surrogate import SURROGATES, _Spike

    return [(lambda x, s=s, w=w: _Spike.apply(x, s, w), (_rand(9),)) for s in SURROGATES for w in (1.0, 0.7)]


def _first_spike_cases():
    from tenfold.snn.neurons import _FirstSpike
    from tenfold.snn.surrogate import SURROGATES

    return [(lambda u, s=s: _FirstSpike.apply(u, 1.0, s, 0.8), (_rand(9, lo=-0.5, hi=2.5),)) for s in SURROGATES]


def _lif_step_cases():
    from tenfold.snn.neurons import _LIFStep
    from tenfold.snn.surrogate import SURROGATES

    s_prev = (torch.rand(9, generator=torch.Generator().manual_seed(3)) > 0.5).to(D).requires_grad_()
    return [(lambda c, u, sp, s=s: _LIFStep.apply(c, u, sp, 0.6, 2.0, 1.0, s, 1.0),
             (_rand(9, seed=1), _rand(9, seed=2), s_prev)) for s in SURROGATES]


def _multistep_lif_cases():
    from tenfold.snn.multistep import _MultiStepLIF

    return [(lambda c: _MultiStepLIF.apply(c, 0.6, 1.0, 1.0, "sigmoid", 1.0), (_rand(4, 5, lo=-0.5, hi=2.5),))]


def _implicit_gradient_cases():
    from tenfold.snn.spide_models import mlp_f

    torch.manual_seed(0)
    net = mlp_f(6, (8,), time_steps=6, time_steps_back=10).double().train()
    return [(lambda x: net(x), (_rand(3, 6, lo=0, hi=1),))]


def _mp_infonce_cases():
    from tenfold.contrastive.losses import mp_infonce, pair_positives

    return [(lambda z: mp_infonce(z, pair_positives(6), 0.5), (_rand(6, 4),))]


def _ift_output_cases():
    from tenfold.implicit import EquilibriumSolver, SolverSettings

    torch.manual_seed(0)
    layer = nn.Linear(4, 4).double()
    solver = EquilibriumSolver(SolverSettings(f_tol=1e-8, b_tol=1e-8, f_max_iter=60)).train()
    return [(lambda x: solver(lambda z: 0.3 * torch.tanh(layer(z)) + x, torch.zeros_like(x)), (_rand(2, 4),))]


def _gather_rows_cases():
    from tenfold.contrastive.methods import _GatherRows

    return [(lambda x: _GatherRows.apply(x), (_rand(3, 4),))]


def _all_reduce_cases():
    from tenfold.contrastive.methods import _AllReduceSum

    return [(lambda x: _AllReduceSum.apply(x), (_rand(3, 4),))]


@contextlib.contextmanager
def _one_process_group():
    """A gloo group of one process around a collective's case (its sum and gather are then identities, which
    still runs every backward through the collective), torn down after."""
    import torch.distributed as dist

    folder = tempfile.mkdtemp()
    dist.init_process_group("gloo", init_method=f"file://{folder}/init", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


COLLECTIVES = {"tenfold.contrastive.methods:_GatherRows", "tenfold.contrastive.methods:_AllReduceSum"}

CASES = {
    "tenfold.contrastive.methods:_GatherRows": _gather_rows_cases,
    "tenfold.contrastive.methods:_AllReduceSum": _all_reduce_cases,
    "tenfold.snn.surrogate:_Spike": _spike_cases,
    "tenfold.snn.neurons:_FirstSpike": _first_spike_cases,
    "tenfold.snn.neurons:_LIFStep": _lif_step_cases,
    "tenfold.snn.multistep:_MultiStepLIF": _multistep_lif_cases,
    "tenfold.snn.spide:_ImplicitGradient": _implicit_gradient_cases,
    "tenfold.contrastive.losses:_MPInfoNCE": _mp_infonce_cases,
    "tenfold.implicit.deq:_IFTOutput": _ift_output_cases,
}


def test_scan_finds_the_known_functions():
    assert set(CASES) <= set(FOUND), sorted(set(CASES) - set(FOUND))


@pytest.mark.parametrize("key", FOUND)
def test_every_function_is_marked_and_has_a_case(key):
    cls = _cls(key)
    assert issubclass(cls, torch.autograd.Function)
    assert getattr(cls, "second_order", None) in KINDS, f"mark {key} with tenfold.second_order.second_order(...)"
    assert key in CASES, f"add a second-order case for {key} to tests/test_second_order.py"


@pytest.mark.parametrize("key", FOUND)
def test_second_order_is_exact_or_refused(key):
    cls = _cls(key)
    with _one_process_group() if key in COLLECTIVES else contextlib.nullcontext():
        _check_second_order(cls, key)


def _check_second_order(cls, key):
    for fn, inputs in CASES[key]():
        if cls.second_order == "exact":
            assert torch.autograd.gradgradcheck(fn, inputs, atol=1e-6, rtol=1e-5)
            continue
        out = fn(*inputs)
        loss = (out * torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)).sum()
        first = torch.autograd.grad(loss, inputs, retain_graph=True)  # first order still works
        assert all(torch.isfinite(g).all() for g in first)
        with pytest.raises(SecondOrderError, match=cls.__qualname__) as info:
            torch.autograd.grad(loss, inputs, create_graph=True)
        message = str(info.value)
        assert "\n" not in message and "create_graph" in message and cls.second_order_alternative[:20] in message


def test_lif_neuron_hessian_through_time_equals_a_straight_through_reference():
    """A BPTT LIF layer over 3 steps: its Hessian-vector product equals that of the same recursion in plain
    torch ops with the straight-through spike ``H(x) + sigmoid(a x) - sigmoid(a x).detach()`` (whose every
    derivative is the sigmoid surrogate's). Finite differences cannot check this one: the forward is a step."""
    from tenfold.snn import LIFNeuron, run_steps

    neuron, a, lam = LIFNeuron(tau=2.0, surrogate="sigmoid"), 4.0, 0.5
    weights = torch.arange(1.0, 4.0, dtype=D)[:, None]

    def reference(currents):
        out, u, s = [], None, None
        for c in currents:
            u = c if u is None else c + lam * (u - s)
            soft = torch.sigmoid(a * (u - 1.0))
            s = (u >= 1.0).to(D) + soft - soft.detach()
            out.append(s)
        return torch.stack(out)

    currents = _rand(3, 5, lo=0.2, hi=1.8, seed=4)
    v = _rand(3, 5, seed=5).detach()
    hvps = []
    for f in (lambda c: run_steps(neuron, c), reference):
        (g,) = torch.autograd.grad((f(currents) * weights).square().sum(), currents, create_graph=True)
        hvps.append(torch.autograd.grad((g * v).sum(), currents)[0])
    assert hvps[0].abs().sum() > 0
    torch.testing.assert_close(hvps[0], hvps[1], atol=1e-12, rtol=1e-10)


def _hvp(loss_fn, z, v):
    (g,) = torch.autograd.grad(loss_fn(z), z, create_graph=True)
    return torch.autograd.grad((g * v).sum(), z)[0]


def _exact_or_refused(ours, reference):
    """The behaviour the issue asks for: a second derivative equals the reference, or is refused in one line."""
    try:
        value = ours()
    except SecondOrderError as exc:
        assert "\n" not in str(exc)
        return
    torch.testing.assert_close(value, reference(), atol=1e-8, rtol=1e-6)


def test_mp_infonce_hessian_is_never_silently_wrong():
    import torch.nn.functional as F

    from tenfold.contrastive.losses import infonce_parts, mp_infonce, pair_positives

    z, v = _rand(6, 4), _rand(6, 4, seed=3).detach()
    _exact_or_refused(lambda: _hvp(lambda u: mp_infonce(u, pair_positives(6), 0.5), z, v),
                      lambda: _hvp(lambda u: sum(infonce_parts(F.normalize(u, dim=1), pair_positives(6), 0.5)), z, v))


def test_deq_ift_hessian_is_never_silently_wrong():
    from tenfold.implicit import EquilibriumSolver, SolverSettings, unrolled_fixed_point

    torch.manual_seed(0)
    layer = nn.Linear(4, 4).double()
    solver = EquilibriumSolver(SolverSettings(f_tol=1e-10, b_tol=1e-10, f_max_iter=80, b_max_iter=80)).train()
    x, v = _rand(2, 4), _rand(2, 4, seed=6).detach()

    def loss(solve):
        return lambda u: solve(lambda z: 0.3 * torch.tanh(layer(z)) + u, torch.zeros_like(u)).square().sum() + u.pow(3).sum()

    _exact_or_refused(lambda: _hvp(loss(solver), x, v),
                      lambda: _hvp(loss(lambda f, z0: unrolled_fixed_point(f, z0, 60)), x, v))
