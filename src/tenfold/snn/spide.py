"""SPIDE: feedback spiking networks trained by implicit differentiation computed with spikes.

Xiao et al., "SPIDE: a purely spike-based method for training feedback spiking neural networks",
Neural Networks 2023 (arXiv:2302.00232); spec snn.md section 2.

**Forward (Sec. 3, spec 2.1).** ``x -> F -> layer 1 -> W_1 -> ... -> layer N``, feedback ``W_fb`` from
layer N to layer 1. IF neurons (optionally leaky) with the modified reset ``u <- u - (v_th - u_rest) s``,
``u_rest = -v_th``; ``V = v_th - u_rest``. For T steps the static drive ``F x + b`` (or ``F x[t]`` for
events) enters layer 1, layers update in order, the feedback uses layer N's spikes of the previous step.
The average firing rates approach the equilibrium

    a_1 = clamp((W_fb a_N + F x + b) / V, 0, 1),   a_{l+1} = clamp((W_l a_l + b_l) / V, 0, 1)

with an error of at most 1/(2T) per neuron (zero-mean, instead of 1/T and biased for u_rest = 0).

**Backward (Sec. 4, spec 2.2-2.3).** With ``m_l = 1[0 < a_l < 1]`` the implicit adjoint solves
``beta = g + J^T beta``: ``beta_N = g + W_fb^T (m_1 beta_1) / V``, ``beta_l = W_l^T (m_{l+1} beta_{l+1}) / V``.
Ternary neuron couples (thresholds +-0.5, reset by subtraction of 1) run this transposed network for
T_b steps on the constant input ``g = s_f dL/da_N``; ``beta = mean spikes`` (so ``|beta| <= 1``). Weight
gradients are then local: ``dW_l = (m_{l+1} beta_{l+1}) a_l^T / V``, ``dW_fb = (m_1 beta_1) a_N^T / V``,
``dF = (m_1 beta_1) x^T / V``, ``db = sum(m beta) / V``; all are divided by s_f here, so ``p.grad`` is an
estimate of the true gradient (the paper instead keeps s_f in the gradient and uses lr/s_f).

Neither pass builds an autograd graph through time; the backward is one autograd node whose inputs are
the rates, ``x`` and the parameters, so ``loss.backward()`` and ``torch.autograd.grad`` both work (a
second derivative, ``create_graph=True``, is refused with a one-line SecondOrderError). Usage::

    net = SpideNetwork(nn.Linear(64, 128), [nn.Linear(128, 128)], feedback=nn.Linear(128, 128, bias=False))
    rates = net(x)                      # training: backward of anything built on rates runs SPIDE
    loss = F.cross_entropy(head(rates), y); loss.backward(); opt.step(); net.cap_feedback_norm_()
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from tenfold.errors import ConfigError, require
from tenfold.snn.neurons import LIFNeuron
from tenfold.second_order import refuse_second_order, second_order
from tenfold.snn.spide_ops import cap_frobenius_, param_grads, transpose_of

BACKWARD_MODES = ("spike", "exact")
BACK_THRESHOLD = 0.5  # ternary neurons: v_th_b = 0.5, u_rest_b = -0.5, so each spike subtracts 1


@dataclass
class SpideState:
    """What one forward simulation leaves for the backward: no graph, only rates and masks.

    ``rates[l]`` and ``masks[l]`` are per layer (0-based); ``drops[k]`` the variational dropout mask of
    connection ``k`` (0 = input, 1..N-1 = layers, N = feedback; None when off); ``x`` the input seen by
    ``F`` (the time mean for events); ``in_shapes[k]`` the input shape of connection ``k``.
    After a backward, ``betas`` holds the adjoint per layer.
    """

    x: torch.Tensor
    rates: list[torch.Tensor]
    masks: list[torch.Tensor]
    drops: list[torch.Tensor | None]
    in_shapes: list[tuple[int, ...]]
    time_steps: int
    betas: list[torch.Tensor] | None = None
    stats: dict[str, float] = field(default_factory=dict)


def ternary_fire(u: torch.Tensor) -> torch.Tensor:
    """Spikes of a positive/negative neuron couple: ``+1`` if ``u >= 0.5``, ``-1`` if ``u <= -0.5``, else 0.

    Computed as ``clamp(trunc(2u), -1, 1)`` (``2u`` is exact in floating point), three kernels instead of five."""
    return torch.clamp(torch.trunc(u * (1.0 / BACK_THRESHOLD)), -1.0, 1.0)


def leak_weights_sum(leak: float, steps: int) -> float:
    """``sum_{k<steps} leak^k``: the normaliser of leak-weighted rates (``steps`` for IF)."""
    return float(steps) if leak == 1.0 else (1.0 - leak ** steps) / (1.0 - leak)


class SpideNetwork(nn.Module):
    """A (feedback) spiking network trained with SPIDE.

    ``input_op`` is F (input -> layer 1), ``layers[k]`` connects layer k+1 to layer k+2, ``feedback``
    (optional) connects layer N back to layer 1. Any affine module works as a connection (Linear,
    Conv2d, AvgPool2d, ConvTranspose2d, a Sequential of them). ``backward="exact"`` replaces the
    spiking backward by the float implicit gradient (linear solve), for comparison.
    """

    def __init__(self, input_op: nn.Module, layers: Sequence[nn.Module] = (), feedback: nn.Module | None = None, *,
                 time_steps: int = 30, time_steps_back: int = 100, scale: float = 100.0, v_th: float = 1.0,
                 u_rest: float | None = None, leak: float = 1.0, backward: str = "spike",
                 dropout: float | Sequence[float] = 0.0, feedback_norm_cap: float | None = 2.0,
                 adjoint_feedback: bool = True, world_size: int = 1) -> None:
        super().__init__()
        require(isinstance(time_steps, int) and time_steps >= 1, "time_steps", time_steps, "an integer >= 1")
        require(isinstance(time_steps_back, int) and time_steps_back >= 1, "time_steps_back", time_steps_back,
                "an integer >= 1")
        require(math.isfinite(scale) and scale > 0, "scale", scale, "a positive scale factor s_f")
        require(math.isfinite(v_th) and v_th > 0, "v_th", v_th, "a positive threshold")
        u_rest = -v_th if u_rest is None else u_rest
        require(math.isfinite(u_rest) and u_rest < v_th, "u_rest", u_rest, "a reset potential below v_th")
        require(0.0 <= leak <= 1.0, "leak", leak, "a leak factor in [0, 1] (1 = IF)")
        require(backward in BACKWARD_MODES, "backward", backward, f"one of {', '.join(BACKWARD_MODES)}")
        require(feedback_norm_cap is None or (math.isfinite(feedback_norm_cap) and feedback_norm_cap > 0),
                "feedback_norm_cap", feedback_norm_cap, "a positive Frobenius-norm bound or None")
        self.input_op = input_op
        self.layers = nn.ModuleList(layers)
        self.feedback = feedback
        n_conn = len(self.layers) + 2
        drops = [float(dropout)] * n_conn if isinstance(dropout, (int, float)) else [float(p) for p in dropout]
        require(len(drops) == n_conn, "dropout", dropout,
                f"a rate or one rate per connection (input, {len(self.layers)} layers, feedback) = {n_conn}")
        require(all(0.0 <= p < 1.0 for p in drops), "dropout", dropout, "rates in [0, 1)")
        self.dropout = drops
        self.time_steps, self.time_steps_back, self.scale = time_steps, time_steps_back, float(scale)
        self.v_th, self.u_rest, self.leak = float(v_th), float(u_rest), float(leak)
        self.backward_mode = backward
        self.feedback_norm_cap = feedback_norm_cap
        # False: the spike backward ignores the feedback (beta_N = g, a feedback-blind adjoint), an ablation
        self.adjoint_feedback = bool(adjoint_feedback)
        require(isinstance(world_size, int) and world_size >= 1, "world_size", world_size, "an integer >= 1")
        # data-parallel processes whose gradients DDP averages (see implicit_gradients)
        self.world_size = world_size

    # --- structure --------------------------------------------------------------------------------------
    @property
    def reset_drop(self) -> float:
        """``V = v_th - u_rest``: the potential one spike removes (2 v_th for SPIDE's reset)."""
        return self.v_th - self.u_rest

    @property
    def num_layers(self) -> int:
        return len(self.layers) + 1

    def connections(self) -> list[nn.Module | None]:
        """``[F, W_1, ..., W_{N-1}, W_fb]``; connection k (1 <= k < N) feeds layer k from layer k-1."""
        return [self.input_op, *self.layers, self.feedback]

    def _neuron(self) -> LIFNeuron:
        tau = math.inf if self.leak == 1.0 else 1.0 / (1.0 - self.leak)
        return LIFNeuron(tau=tau, v_th=self.v_th, u_rest=self.u_rest)

    def _drop_mask(self, k: int, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor | None:
        p = self.dropout[k]
        if not self.training or p == 0.0:
            return None
        if generator is None:
            raise ConfigError(f"dropout={p} on connection {k} needs a seeded generator: call net(x, generator=g)")
        keep = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype) >= p
        return keep.to(like.dtype) / (1.0 - p)

    # --- forward ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def simulate(self, x: torch.Tensor, *, events: bool = False,
                 generator: torch.Generator | None = None) -> SpideState:
        """Run the spiking forward for T steps (``x[:, t]`` per step when ``events``, T = x.shape[1]).

        Returns a :class:`SpideState` with the (leak-weighted) average firing rates of every layer."""
        if events:
            require(x.dim() >= 3 and x.shape[1] >= 1, "x", tuple(x.shape), "events of shape (batch, T, ...)")
        steps = x.shape[1] if events else self.time_steps
        conns = self.connections()
        neurons = [self._neuron() for _ in range(self.num_layers)]
        drops: list[torch.Tensor | None] = [None] * len(conns)
        in_shapes: list[tuple[int, ...]] = [()] * len(conns)
        lam = self.leak

        def apply(k: int, z: torch.Tensor, generator=generator) -> torch.Tensor:
            y = conns[k](z)
            if in_shapes[k] == ():
                in_shapes[k] = tuple(z.shape)
                drops[k] = self._drop_mask(k, y, generator)
            return y if drops[k] is None else y * drops[k]

        constant = None if events else apply(0, x)
        sums: list[torch.Tensor] = []
        spikes: list[torch.Tensor] = []
        for t in range(steps):
            drive = constant if constant is not None else apply(0, x[:, t])
            if t > 0 and self.feedback is not None:
                drive = drive + apply(len(conns) - 1, spikes[-1])
            spikes = [neurons[0](drive)]
            for k in range(1, self.num_layers):
                spikes.append(neurons[k](apply(k, spikes[-1])))
            if t == 0:
                sums = [torch.zeros_like(s) for s in spikes]
                if self.feedback is not None:
                    self._check_feedback(lambda: apply(len(conns) - 1, spikes[-1]), spikes[0], spikes[-1])
            for acc, s in zip(sums, spikes):
                (acc.mul_(lam) if lam != 1.0 else acc).add_(s)
        norm = leak_weights_sum(lam, steps)
        rates = [acc / norm for acc in sums]
        masks = [((a > 0) & (a < 1)).to(a.dtype) for a in rates]
        x_mean = x.mean(1) if events else x
        if self.feedback is not None and in_shapes[-1] == ():
            in_shapes[-1] = tuple(rates[-1].shape)
        return SpideState(x=x_mean, rates=rates, masks=masks, drops=drops, in_shapes=in_shapes, time_steps=steps)

    def _check_feedback(self, feedback, first: torch.Tensor, last: torch.Tensor) -> None:
        """One-line ConfigError unless the feedback maps layer N's shape to layer 1's."""
        expected = (f"expected a feedback module mapping layer N {tuple(last.shape[1:])} "
                    f"to layer 1 {tuple(first.shape[1:])}")
        try:
            out = feedback()
        except RuntimeError as exc:
            reason = str(exc).splitlines()[0]
            raise ConfigError(f"feedback does not accept layer N's output: {reason}; {expected}") from None
        if out.shape != first.shape:
            raise ConfigError(f"feedback output shape {tuple(out.shape[1:])} does not fit the first layer: {expected}")

    def attach(self, state: SpideState, x: torch.Tensor | None = None) -> torch.Tensor:
        """The last layer's rates as a tensor whose backward runs SPIDE's implicit backward on ``state``
        (the parameters' gradients flow through autograd: ``loss.backward()`` fills ``.grad``,
        ``torch.autograd.grad(loss, params)`` returns them). Pass the simulated input ``x`` to also get
        ``dL/dx = F^T (m_1 beta_1) / V`` when it requires grad (e.g. a trainable encoder before SPIDE;
        for events each step gets 1/T of it, matching F's time-mean gradient)."""
        rates = state.rates[-1].detach().requires_grad_(True)
        anchor = x if x is not None else torch.zeros((), dtype=rates.dtype, device=rates.device)
        params = [p for p in self.parameters() if p.requires_grad]
        return _ImplicitGradient.apply(rates, anchor, self, state, *params)

    def forward(self, x: torch.Tensor, *, events: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Average firing rates of the last layer; in training mode their backward runs SPIDE (and gives
        ``x`` a gradient when it requires one)."""
        state = self.simulate(x, events=events, generator=generator)
        return self.attach(state, x) if self.training and torch.is_grad_enabled() else state.rates[-1]

    def input_gradient(self, state: SpideState, betas: list[torch.Tensor], scale: float,
                       x_shape: tuple[int, ...]) -> torch.Tensor:
        """``dL/dx = F^T (drop_0 m_1 beta_1) / (V scale)``; spread as 1/T per step for event input."""
        delta = state.masks[0] * betas[0] / (self.reset_drop * scale)
        if state.drops[0] is not None:
            delta = delta * state.drops[0]
        grad = transpose_of(self.input_op, state.in_shapes[0], delta)(delta).reshape(state.x.shape)
        if tuple(x_shape) == tuple(state.x.shape):
            return grad
        steps = x_shape[1]
        return (grad / steps).unsqueeze(1).expand(x_shape).clone()

    # --- backward ---------------------------------------------------------------------------------------
    def adjoint_operators(self, state: SpideState):
        """The pieces of ``J^T``: for each connection k, ``(gate_k, A_k^T)`` with ``gate_k = drop_k m / V``
        of the layer it feeds (None for F and a missing feedback). ``A_k^T`` maps to the source layer."""
        conns = self.connections()
        ops = []
        for k, op in enumerate(conns):
            if k == 0 or op is None:
                ops.append(None)
                continue
            target = 0 if k == len(conns) - 1 else k
            gate = state.masks[target] / self.reset_drop
            if state.drops[k] is not None:
                gate = gate * state.drops[k]
            ops.append((gate, transpose_of(op, state.in_shapes[k], state.rates[0])))
        return ops

    @torch.no_grad()
    def spike_adjoint(self, state: SpideState, g: torch.Tensor,
                      time_steps_back: int | None = None) -> list[torch.Tensor]:
        """beta per layer from ternary neuron couples driven by the constant input ``g`` for T_b steps
        (spec 2.2). The backward network mirrors the forward one: layer N gets ``g`` (plus the
        transposed feedback of layer 1's previous spikes), layer l gets ``W_l^T(m_{l+1} s_{l+1})/V``."""
        steps = self.time_steps_back if time_steps_back is None else time_steps_back
        require(isinstance(steps, int) and steps >= 1, "time_steps_back", steps, "an integer >= 1")
        ops = self.adjoint_operators(state)
        n, lam = self.num_layers, self.leak
        u = [torch.zeros_like(a) for a in state.rates]
        s = [torch.zeros_like(a) for a in state.rates]
        sums = [torch.zeros_like(a) for a in state.rates]
        fb = ops[-1] if self.adjoint_feedback else None
        for t in range(steps):
            for layer in reversed(range(n)):
                if layer == n - 1:
                    inp = g if (t == 0 or fb is None) else g + fb[1](fb[0] * s[0]).reshape(g.shape)
                else:
                    gate, tr = ops[layer + 1]
                    inp = tr(gate * s[layer + 1]).reshape(u[layer].shape)
                u[layer].add_(inp)
                s[layer] = ternary_fire(u[layer])
                u[layer].sub_(s[layer])
                if lam != 1.0:
                    u[layer].mul_(lam)
                    sums[layer].mul_(lam)
                sums[layer].add_(s[layer])
        norm = leak_weights_sum(lam, steps)
        betas = [acc / norm for acc in sums]
        state.stats["backward_spike_rate"] = float(sum(b.abs().sum() for b in betas) / sum(b.numel() for b in betas))
        return betas

    @torch.no_grad()
    def parameter_gradients(self, state: SpideState, betas: list[torch.Tensor],
                            scale: float = 1.0) -> dict[nn.Parameter, torch.Tensor]:
        """Local updates (spec 2.3), divided by ``scale``: for connection k into layer l,
        ``dtheta_k = grad of op_k(z) with output gradient drop_k m_l beta_l / V``, z its input rates.
        A parameter shared by several connections gets the sum."""
        conns = self.connections()
        last = len(conns) - 1
        grads: dict[nn.Parameter, torch.Tensor] = {}
        for k, op in enumerate(conns):
            if op is None:
                continue
            target = 0 if k in (0, last) else k
            z = state.x if k == 0 else state.rates[last - 1 if k == last else k - 1]
            delta = state.masks[target] * betas[target] / (self.reset_drop * scale)
            if state.drops[k] is not None:
                delta = delta * state.drops[k]
            for p, g in param_grads(op, z, delta):
                grads[p] = g if p not in grads else grads[p] + g
        return grads

    @torch.no_grad()
    def assign_gradients(self, state: SpideState, betas: list[torch.Tensor], scale: float = 1.0) -> None:
        """Add :meth:`parameter_gradients` to the parameters' ``.grad`` (a lower-level helper; the
        network's own backward returns the same values through autograd)."""
        for p, g in self.parameter_gradients(state, betas, scale).items():
            p.grad = g.clone() if p.grad is None else p.grad + g

    def implicit_gradients(self, state: SpideState, grad_rates: torch.Tensor, x_shape: tuple[int, ...] | None = None
                           ) -> tuple[dict[nn.Parameter, torch.Tensor], torch.Tensor | None]:
        """Run the configured backward for ``dL/da_N = grad_rates``: the parameter gradients (by
        parameter) and, with ``x_shape``, the input gradient (else None).

        The spike adjoint is not linear in ``g`` (thresholds, ``|beta| <= 1``), so it depends on the
        batch size of a batch-mean loss. Under DDP with ``world_size = W`` processes each holding 1/W of
        the batch, the local ``dL/da_N`` is W times the one-process one; the spikes are driven by
        ``s_f dL/da_N / W`` (the one-process input of every sample, exactly for W a power of two) and the
        gradients divided by ``s_f / W``, so DDP's average equals the one-process gradient."""
        if self.backward_mode == "spike":
            g = self.scale * grad_rates
            if self.world_size != 1:
                g = g / self.world_size
            betas = self.spike_adjoint(state, g)
            scale = self.scale / self.world_size
        else:
            from tenfold.snn.spide_reference import exact_adjoint

            betas, scale = exact_adjoint(self, state, grad_rates), 1.0
        state.betas = [b / scale for b in betas] if scale != 1.0 else betas
        state.stats["max_abs_beta"] = float(max(b.abs().max() for b in betas))
        grads = self.parameter_gradients(state, betas, scale)
        return grads, (None if x_shape is None else self.input_gradient(state, betas, scale, x_shape))

    def implicit_backward(self, state: SpideState, grad_rates: torch.Tensor,
                          x_shape: tuple[int, ...] | None = None) -> torch.Tensor | None:
        """:meth:`implicit_gradients`, adding the parameter gradients to ``.grad``; returns the input
        gradient (with ``x_shape``)."""
        grads, grad_x = self.implicit_gradients(state, grad_rates, x_shape)
        with torch.no_grad():
            for p, g in grads.items():
                p.grad = g.clone() if p.grad is None else p.grad + g
        return grad_x

    @torch.no_grad()
    def cap_feedback_norm_(self) -> float | None:
        """Project the feedback weights onto ``||W_fb||_F <= feedback_norm_cap`` (call after each
        optimizer step); returns the norm after the projection, or None without feedback or cap."""
        if self.feedback is None or self.feedback_norm_cap is None:
            return None
        return cap_frobenius_(self.feedback, self.feedback_norm_cap)


@second_order("refuses", alternative="SPIDE's gradient is an implicit (spiking or linear-solve) adjoint; take "
              "first-order gradients only (loss.backward() or torch.autograd.grad without create_graph)")
class _ImplicitGradient(torch.autograd.Function):
    """Identity on the rates forward; SPIDE's implicit backward instead of a graph through time.

    The network's parameters are inputs of this node, so their gradients flow through autograd:
    ``loss.backward()`` accumulates them into ``.grad`` (and fires DDP's hooks), and
    ``torch.autograd.grad(loss, params)`` returns them. ``x`` gets ``dL/dx`` when it requires grad."""

    @staticmethod
    def forward(ctx, rates: torch.Tensor, x: torch.Tensor, net: SpideNetwork, state: SpideState,
                *params: torch.Tensor) -> torch.Tensor:
        ctx.net, ctx.state, ctx.x_shape, ctx.params = net, state, tuple(x.shape), params
        return rates.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        refuse_second_order(_ImplicitGradient)
        x_shape = ctx.x_shape if ctx.needs_input_grad[1] else None
        grads, grad_x = ctx.net.implicit_gradients(ctx.state, grad.detach(), x_shape)
        param_grads_ = [grads.get(p) if need else None for p, need in zip(ctx.params, ctx.needs_input_grad[4:])]
        return (None, grad_x, None, None, *param_grads_)
