"""Float references for SPIDE: the clamp equilibrium, the exact implicit adjoint and a clamp network.

Xiao et al. 2023, Sec. 3-4; spec snn.md 2.1-2.4. These are what the spiking passes approximate:

- :func:`clamp_equilibrium`: ``a_1 = clamp((W_fb a_N + F x + b)/V)``, ``a_{l+1} = clamp((W_l a_l + b_l)/V)``.
- :func:`exact_adjoint`: ``beta_N = (I - J^T)^{-1} g`` by a per-sample linear solve (small networks) or
  a fixed-point iteration, then ``beta_l = W_l^T (m_{l+1} beta_{l+1}) / V`` down the layers.
- :func:`masked_clamp_rates`: without feedback, a differentiable network whose values are the spiking
  rates and whose derivative is ``m / V`` per layer; autograd through it gives the implicit gradient.
"""

from __future__ import annotations

import torch

from tenfold.errors import ConvergenceError, require
from tenfold.snn.spide import SpideNetwork, SpideState


def _descend(net: SpideNetwork, ops, beta_last: torch.Tensor, state: SpideState) -> list[torch.Tensor]:
    """``beta_l = W_l^T (gate_{l+1} beta_{l+1})`` from the last layer down to the first."""
    n = net.num_layers
    betas: list[torch.Tensor] = [beta_last] * n
    for layer in reversed(range(n - 1)):
        gate, tr = ops[layer + 1]
        reps = betas[layer + 1].shape[0] // gate.shape[0]
        gate = gate.repeat_interleave(reps, 0) if reps > 1 else gate
        betas[layer] = tr(gate * betas[layer + 1]).reshape(betas[layer + 1].shape[0], *state.rates[layer].shape[1:])
    return betas


def _loop_transpose(net: SpideNetwork, ops, v: torch.Tensor, state: SpideState) -> torch.Tensor:
    """``J^T v``: the transposed map once around the loop N -> ... -> 1 -> (feedback) -> N."""
    first = _descend(net, ops, v, state)[0]
    gate, tr = ops[-1]
    reps = v.shape[0] // gate.shape[0]
    gate = gate.repeat_interleave(reps, 0) if reps > 1 else gate
    return tr(gate * first).reshape(v.shape)


@torch.no_grad()
def exact_adjoint(net: SpideNetwork, state: SpideState, g: torch.Tensor, method: str = "solve",
                  tol: float = 1e-10, max_iter: int = 10_000) -> list[torch.Tensor]:
    """The exact implicit adjoint per layer for ``g = dL/da_N`` (float, no spikes).

    ``method="solve"`` builds ``J^T`` per sample (n_N x n_N, batched) and solves ``(I - J^T) beta = g`` in
    float64; ``"iterate"`` runs ``beta <- g + J^T beta`` and raises ConvergenceError if it diverges."""
    require(method in ("solve", "iterate"), "method", method, "'solve' or 'iterate'")
    ops = net.adjoint_operators(state)
    if ops[-1] is None:
        return _descend(net, ops, g, state)
    if method == "iterate":
        beta = g.clone()
        for _ in range(max_iter):
            new = g + _loop_transpose(net, ops, beta, state)
            step = float((new - beta).norm())
            beta = new
            if not torch.isfinite(beta).all():
                break
            if step <= tol * max(float(g.norm()), 1e-30):
                return _descend(net, ops, beta, state)
        raise ConvergenceError(f"exact_adjoint: beta = g + J^T beta did not converge in {max_iter} iterations "
                               f"(last step {step:.3g}); the feedback is too strong, use method='solve' or a norm cap")
    batch, shape = g.shape[0], g.shape[1:]
    n = g[0].numel()
    eye = torch.eye(n, dtype=g.dtype, device=g.device).repeat(batch, 1).reshape(batch * n, *shape)
    cols = _loop_transpose(net, ops, eye, state).reshape(batch, n, n)  # cols[b, k] = J_b^T e_k
    system = torch.eye(n, dtype=torch.float64, device=g.device) - cols.transpose(1, 2).double()
    beta = torch.linalg.solve(system, g.reshape(batch, n, 1).double()).reshape(g.shape).to(g.dtype)
    return _descend(net, ops, beta, state)


def masked_clamp_rates(net: SpideNetwork, state: SpideState) -> torch.Tensor:
    """The last layer's rates with a float graph: value ``a_l`` (spiking), derivative ``m_l / V`` w.r.t.
    the pre-activation ``op_l(a_{l-1})``. Only for networks without feedback (then its autograd
    gradient is the exact implicit gradient of SPIDE)."""
    require(net.feedback is None, "feedback", type(net.feedback).__name__, "None (use exact_adjoint with feedback)")
    conns = net.connections()
    z = state.x
    for k in range(net.num_layers):
        pre = conns[k](z)
        if state.drops[k] is not None:
            pre = pre * state.drops[k]
        pre = pre / net.reset_drop
        z = state.rates[k] + state.masks[k] * (pre - pre.detach())
    return z


@torch.no_grad()
def clamp_equilibrium(net: SpideNetwork, x: torch.Tensor, max_iter: int = 1000,
                      tol: float = 1e-7) -> list[torch.Tensor]:
    """The float equilibrium rates (no dropout): sweeps layer by layer until the change is below ``tol``.

    Feedforward networks need one sweep. Raises ConvergenceError if a feedback network does not settle."""
    conns = net.connections()
    V = net.reset_drop
    drive = conns[0](x)
    rates: list[torch.Tensor] = []
    for it in range(max_iter):
        pre = drive if not rates or net.feedback is None else drive + net.feedback(rates[-1])
        new = [torch.clamp(pre / V, 0, 1)]
        for k in range(1, net.num_layers):
            new.append(torch.clamp(conns[k](new[-1]) / V, 0, 1))
        change = max(float((a - b).abs().max()) for a, b in zip(new, rates)) if rates else float("inf")
        rates = new
        if net.feedback is None or change <= tol:
            return rates
    raise ConvergenceError(f"clamp_equilibrium did not settle in {max_iter} sweeps (last change {change:.3g})")


@torch.no_grad()
def constant_input_rates(c: torch.Tensor, time_steps: int, v_th: float = 1.0, u_rest: float | None = None,
                         leak: float = 1.0) -> torch.Tensor:
    """Average firing rates of independent IF neurons driven by the constant currents ``c`` for T steps
    (SPIDE's forward with F = identity and one layer); compare with ``clamp(c / V, 0, 1)``."""
    net = SpideNetwork(torch.nn.Identity(), time_steps=time_steps, v_th=v_th, u_rest=u_rest, leak=leak)
    return net.simulate(c.reshape(1, -1)).rates[0].reshape(c.shape)
