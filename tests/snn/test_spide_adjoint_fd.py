"""Finite-difference test of SpideNetwork.adjoint_operators (SPIDE, Xiao et al. 2023, Sec. 4; spec snn.md 2.2).

At the equilibrium rates a*, connection k maps its source layer's rates z to its target layer through
``f_k(z) = clamp((A_k z + c) / V, 0, 1)`` (c: the bias, plus F x for the feedback into layer 1). The
adjoint's piece ``(gate_k, A_k^T)`` must give ``J_k^T v = A_k^T (gate_k v)`` with ``J_k = df_k/dz``, i.e.
``<A_k^T(gate_k v), d> = <v, (f_k(z + h d) - f_k(z - h d)) / 2h>`` for any v, d. A wrong mask (the
source layer's, or none) fails it; the spike-vs-exact cosine cannot, since both modes share these operators.
"""

import pytest
import torch
from torch import nn

from tenfold.snn.spide import SpideNetwork
from tenfold.snn.spide_reference import clamp_equilibrium


def _net():
    torch.manual_seed(0)
    net = SpideNetwork(nn.Linear(6, 7).double(), [nn.Linear(7, 7).double(), nn.Linear(7, 7).double()],
                       feedback=nn.Linear(7, 7, bias=False).double(), time_steps=5, feedback_norm_cap=None)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)  # a mix of clamped (0 or 1) and unclamped units in every layer
        net.feedback.weight.mul_(0.1)
    return net.eval()


def _at_equilibrium(net, x):
    """A SpideState whose rates are the exact equilibrium (so the masks are the clamp's derivative)."""
    state = net.simulate(x)
    state.rates = clamp_equilibrium(net, x, tol=1e-14)
    state.masks = [((a > 0) & (a < 1)).to(a.dtype) for a in state.rates]
    return state


@torch.no_grad()
def fd_errors(net, x, adjoint_operators=None) -> list[float]:
    """Per connection, the relative error of ``<A^T(gate v), d>`` against the central difference."""
    state = _at_equilibrium(net, x)
    ops = (adjoint_operators or net.adjoint_operators)(state)
    conns, n = net.connections(), net.num_layers
    g = torch.Generator().manual_seed(1)
    errors = []
    for k in range(1, len(conns)):
        if ops[k] is None:
            continue
        gate, tr = ops[k]
        source = state.rates[n - 1 if k == len(conns) - 1 else k - 1]
        target = 0 if k == len(conns) - 1 else k
        extra = conns[0](state.x) if target == 0 else 0.0  # the feedback adds to layer 1's drive F x + b

        def f(z, k=k, extra=extra):
            return torch.clamp((conns[k](z) + extra) / net.reset_drop, 0, 1)

        for _ in range(3):
            v = torch.randn(state.rates[target].shape, generator=g, dtype=torch.float64)
            d = torch.randn(source.shape, generator=g, dtype=torch.float64)
            h = 1e-7
            fd = float((v * (f(source + h * d) - f(source - h * d))).sum() / (2 * h))
            adj = float((tr(gate * v).reshape(source.shape) * d).sum())
            errors.append(abs(adj - fd) / max(abs(fd), 1e-3))
    return errors


def test_adjoint_operators_match_finite_differences():
    net = _net()
    x = torch.rand(8, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    state = _at_equilibrium(net, x)
    for m in state.masks:  # the test point has clamped and unclamped units in every layer
        assert 0 < float(m.mean()) < 1
    errors = fd_errors(net, x)
    assert len(errors) == 3 * 3 and max(errors) < 1e-6, errors


@pytest.mark.parametrize("wrong", ["source_mask", "no_mask"])
def test_a_wrong_mask_in_the_adjoint_fails_the_finite_difference_test(wrong):
    net = _net()
    x = torch.rand(8, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def mutant(state):
        ops = SpideNetwork.adjoint_operators(net, state)
        n, out = net.num_layers, []
        for k, op in enumerate(ops):
            if op is None:
                out.append(None)
                continue
            source = n - 1 if k == len(ops) - 1 else k - 1
            mask = state.masks[source] if wrong == "source_mask" else torch.ones_like(state.masks[source])
            out.append((mask / net.reset_drop, op[1]))
        return out

    assert max(fd_errors(net, x, mutant)) > 0.05
