"""Multi-step BPTT: every layer applied once over all T steps, the LIF recurrence in one loop.

SLTT (Meng et al., ICCV 2023, Sec. 3) trains by BPTT as its baseline; this module is the fast layout of
that baseline, as SpikingJelly's ``step_mode='m'``: a stateless layer (Linear, Conv, pooling, Flatten)
maps the (T, B, ...) sequence in one call (one matmul over T x B rows instead of T calls), and each
:class:`~tenfold.snn.neurons.LIFNeuron` runs its recurrence

    u[t] = lam * (u[t-1] - (v_th - u_rest) * s[t-1]) + I[t],   s[t] = H(u[t] - v_th)

in one autograd node (:class:`_MultiStepLIF`) whose backward is the BPTT recurrence (spec snn.md 1.2)

    g[t] = sigma'(u[t]) * (dL/ds[t] - lam (v_th - u_rest) g[t+1]) + lam g[t+1],   dL/dI[t] = g[t],

i.e. ``dL/du[t] = dL/ds[t] sigma'(u[t]) + eps[t] dL/du[t+1]`` with ``eps[t] = lam (1 - V sigma'(u[t]))``.
The forward uses the same floating-point operations as the one-step neuron, so spikes are
bit-identical; gradients equal the one-step path's up to summation order (float64 test).

A static input (the same image at every step) passes the layers before the first neuron once (their
output does not depend on t). BatchNorm keeps the paper's per-step batch statistics (called per step);
:class:`~tenfold.snn.networks.StepDropout` keeps its one mask for all steps. Networks with anything else
(SpikingJelly neurons, nn.Dropout, a DDP wrapper, custom forwards) are not handled here and the trainer
keeps its one-step loop: :func:`multistep_logits` returns None for them.

SLTT and SLTT-K stay one-step: their memory is flat in T only because each step is back-propagated and
freed before the next one runs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tenfold.second_order import refuse_second_order, second_order
from tenfold.snn.neurons import LIFNeuron
from tenfold.snn.surrogate import surrogate_of_membrane


@second_order("refuses", alternative="for second derivatives use the one-step BPTT path "
              "(SNNTrainer.multistep = False), whose LIF steps are exact at second order")
class _MultiStepLIF(torch.autograd.Function):
    """T LIF steps on currents (T, ...) as one node; saves the membranes u (T, ...) only."""

    @staticmethod
    def forward(ctx, currents, lam, reset, v_th, surrogate, width):
        T = currents.shape[0]
        u_seq = torch.empty(currents.shape, dtype=currents.dtype, device=currents.device)
        s_seq = torch.empty_like(u_seq)
        u_seq[0] = currents[0]
        s_seq[0].copy_(u_seq[0].ge(v_th))
        for t in range(1, T):
            # the one-step neuron's ops, in its order: identical rounding, identical spikes
            torch.add(currents[t], u_seq[t - 1], alpha=lam, out=u_seq[t])
            u_seq[t].add_(s_seq[t - 1], alpha=-lam * reset)
            s_seq[t].copy_(u_seq[t].ge(v_th))
        ctx.save_for_backward(u_seq)
        ctx.lam, ctx.reset, ctx.v_th, ctx.surrogate, ctx.width = lam, reset, v_th, surrogate, width
        return s_seq

    @staticmethod
    def backward(ctx, grad_s):
        refuse_second_order(_MultiStepLIF)  # the recurrence below fills buffers in place, outside the graph
        (u_seq,) = ctx.saved_tensors
        lam, reset = ctx.lam, ctx.reset
        grad_i = torch.empty_like(u_seq)
        g_next = None
        for t in range(u_seq.shape[0] - 1, -1, -1):
            g = surrogate_of_membrane(u_seq[t], ctx.v_th, ctx.surrogate, ctx.width)
            if g_next is None:
                g.mul_(grad_s[t])
            else:  # dL/ds[t] gets the reset path of step t+1; dL/du[t] its leak path
                g.mul_(grad_s[t].add(g_next, alpha=-lam * reset)).add_(g_next, alpha=lam)
            grad_i[t] = g
            g_next = grad_i[t]
        return grad_i, None, None, None, None, None


def lif_multistep(neuron: LIFNeuron, currents: torch.Tensor) -> torch.Tensor:
    """Spikes (T, ...) of ``neuron`` driven by ``currents`` (T, ...) from the rest state, with the BPTT
    gradient (the neuron's ``temporal`` mode is not consulted: this path is BPTT's)."""
    return _MultiStepLIF.apply(currents, neuron.lam, neuron.v_th - neuron.u_rest, neuron.v_th, neuron.surrogate,
                               neuron.width)


_STATELESS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.AvgPool1d, nn.AvgPool2d, nn.MaxPool2d,
              nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool1d, nn.Identity, nn.ReLU, nn.Flatten)
_PER_STEP = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)  # per-step batch statistics: called once per step


def _supported(module: nn.Module) -> bool:
    from tenfold.snn.networks import SpikingMLP, SpikingVGG, StepDropout

    if isinstance(module, (SpikingMLP, SpikingVGG)):
        return all(_supported(m) for m in module.children())
    if type(module) is nn.Sequential:
        return all(_supported(m) for m in module)
    if isinstance(module, nn.Flatten):
        return module.start_dim == 1 and module.end_dim == -1
    return isinstance(module, (*_STATELESS, *_PER_STEP, LIFNeuron, StepDropout))


def supports_multistep(model: nn.Module) -> bool:
    """Whether :func:`multistep_logits` can run ``model``: a :class:`SpikingMLP`, :class:`SpikingVGG` or
    plain ``nn.Sequential`` built from stateless layers, BatchNorm, StepDropout and LIFNeuron only, with
    no forward hooks."""
    if not isinstance(model, nn.Module) or not _supported(model):
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


class _Seq:
    """A (T, B, ...) sequence, or one (B, ...) tensor that is the same at every step (static input)."""

    def __init__(self, z: torch.Tensor, T: int, per_step: bool) -> None:
        self.z, self.T, self.per_step = z, T, per_step

    def steps(self) -> torch.Tensor:
        return self.z if self.per_step else self.z.unsqueeze(0).expand(self.T, *self.z.shape)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor], feature_last: bool = False) -> "_Seq":
        """``fn`` on every step: once for a static value, else on the T x B rows at once."""
        if not self.per_step:
            return _Seq(fn(self.z), self.T, False)
        if feature_last:  # Linear acts on the last dim: (T, B, H) in, no reshape
            return _Seq(fn(self.z), self.T, True)
        T, B = self.z.shape[:2]
        out = fn(self.z.reshape(T * B, *self.z.shape[2:]))
        return _Seq(out.reshape(T, B, *out.shape[1:]), T, True)


def _apply(module: nn.Module, seq: _Seq) -> _Seq:
    from tenfold.snn.networks import SpikingMLP, SpikingVGG, StepDropout

    if isinstance(module, SpikingMLP):
        return _apply(module.head, _apply(module.body, seq))
    if isinstance(module, SpikingVGG):
        seq = _apply(module.pool, _apply(module.features, seq))
        return _apply(module.head, seq.map(lambda z: z.flatten(1)))
    if type(module) is nn.Sequential:
        for m in module:
            seq = _apply(m, seq)
        return seq
    if isinstance(module, LIFNeuron):
        return _Seq(lif_multistep(module, seq.steps()), seq.T, True)
    if isinstance(module, _PER_STEP):
        if module.training:  # T calls, as the one-step network: per-step statistics, T running-stat updates
            return _Seq(torch.stack([module(z) for z in seq.steps()]), seq.T, True)
        return seq.map(module)
    if isinstance(module, StepDropout):
        if not module.training or module.p == 0.0:
            return seq
        first = seq.z[0] if seq.per_step else seq.z
        module(first)  # draws the mask exactly as the one-step network's first call
        return _Seq(seq.z * module.mask, seq.T, seq.per_step)
    return seq.map(module, feature_last=isinstance(module, nn.Linear))


def multistep_logits(model: nn.Module, x: torch.Tensor, T: int, static: bool) -> torch.Tensor | None:
    """The logits o (T, B, C) of ``model`` over T steps from the rest state, computed layer by layer over
    all steps; None when ``model`` is not supported (see :func:`supports_multistep`). ``static``: ``x`` is
    fed at every step; otherwise ``x`` is (B, T', ...) with T' >= T and frame t feeds step t."""
    if not supports_multistep(model):
        return None
    seq = _Seq(x, T, False) if static else _Seq(x[:, :T].transpose(0, 1), T, True)
    return _apply(model, seq).steps()


def multistep_bptt_gradients(trainer, x: torch.Tensor, y: torch.Tensor):
    """BPTT's gradients of ``L = (1/T) sum_t l(o[t], y)`` for an :class:`~tenfold.snn.train.SNNTrainer`
    through the multi-step layout, or None when its model is not supported (the caller then runs the
    one-step loop). The default loss is evaluated once on the T x B rows: the mean of CE (and MSE) over
    T x B rows is ``(1/T) sum_t`` of the per-step means, i.e. ``L`` itself."""
    from tenfold.snn.loss import per_step_loss
    from tenfold.snn.train import BatchResult, _full

    if trainer.rule != "bptt" or trainer.no_sync is not None:
        return None
    T = trainer.T
    with trainer._autocast(x):
        logits = multistep_logits(trainer.model, x, T, trainer.static)
        if logits is None:
            return None
        if trainer.loss_fn is None:
            loss = per_step_loss(_full(logits).reshape(-1, logits.shape[-1]), y.repeat(T), trainer.lam_l,
                                 trainer.mse_target)
        else:
            loss = sum(trainer._loss(logits[t], y, scale=False) for t in range(T)) / T
    if torch.is_grad_enabled() and loss.requires_grad:
        trainer._run_backward(loss)
    return BatchResult(float(loss.detach()), _full(logits.detach()).sum(0), 1, list(range(T)))
