"""``tenfold bench spide``: memory held for backward and time per iteration, SPIDE vs BPTT, T = 10, 30, 100.

Same spiking network (IF, modified reset, 64 -> H with recurrent feedback, Linear read-out), same batch of
digits, same loss (cross-entropy on the average firing rates). BPTT runs the same connections through
the shared :class:`~tenfold.snn.neurons.LIFNeuron` (``tau=inf``, ``u_rest=-v_th``, triangle surrogate)
and keeps the graph through time. SPIDE's held memory is autograd's saved tensors (the read-out) plus
everything its :class:`~tenfold.snn.spide.SpideState` keeps for the backward (input, rates, masks).
Times are medians of interleaved repeats on one thread; SPIDE's time includes its T_b = 100 backward steps.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tenfold.benchmarks.common import SavedTensorBytes, fixed_threads, median_times, target
from tenfold.snn.neurons import LIFNeuron
from tenfold.snn.spide import SpideNetwork, SpideState
from tenfold.snn.spide_models import SpideClassifier, mlp_f

NAME = "spide"
DESCRIPTION = "SPIDE vs BPTT: memory held for backward and ms per iteration for T = 10, 30, 100"


def bptt_rates(snn: SpideNetwork, x: torch.Tensor, steps: int) -> torch.Tensor:
    """The SPIDE network's forward as an ordinary autograd graph through time (surrogate gradients)."""
    conns = snn.connections()
    neurons = [LIFNeuron(tau=math.inf, v_th=snn.v_th, u_rest=snn.u_rest, temporal="bptt")
               for _ in range(snn.num_layers)]
    drive = conns[0](x)
    total, spikes = None, None
    for t in range(steps):
        inp = drive if t == 0 or snn.feedback is None else drive + snn.feedback(spikes[-1])
        spikes = [neurons[0](inp)]
        for k in range(1, snn.num_layers):
            spikes.append(neurons[k](conns[k](spikes[-1])))
        total = spikes[-1] if total is None else total + spikes[-1]
    return total / steps


def _state_bytes(state: SpideState) -> int:
    tensors = [state.x, *state.rates, *state.masks, *[d for d in state.drops if d is not None]]
    return sum(t.numel() * t.element_size() for t in tensors)


def _model(hidden: int, steps: int) -> SpideClassifier:
    torch.manual_seed(0)
    snn = mlp_f(64, (hidden, hidden), feedback=True, time_steps=steps, time_steps_back=100, scale=100.0)
    return SpideClassifier(snn, hidden, 10)


def run(quick: bool = False) -> dict:
    from tenfold.data import digits

    data = digits("train", seed=0, flatten=True)
    batch, hidden = (64, 128) if quick else (128, 256)
    x, y = data.x[:batch], data.y[:batch]
    rows = []
    with fixed_threads(1):
        for steps in (10, 30, 100):
            model = _model(hidden, steps)

            def spide_iter():
                model.zero_grad(set_to_none=True)
                logits, state = model.forward_with_state(x)
                F.cross_entropy(logits, y).backward()
                return state

            def bptt_iter():
                model.zero_grad(set_to_none=True)
                F.cross_entropy(model.head(bptt_rates(model.snn, x, steps)), y).backward()

            with SavedTensorBytes() as spide_saved:
                logits, state = model.forward_with_state(x)
                loss = F.cross_entropy(logits, y)
            spide_bytes = spide_saved.bytes + _state_bytes(state)
            loss.backward()
            with SavedTensorBytes() as bptt_saved:
                loss = F.cross_entropy(model.head(bptt_rates(model.snn, x, steps)), y)
            loss.backward()
            times = median_times({"spide": spide_iter, "bptt": bptt_iter}, repeats=3 if quick else 5)
            rows.append({"T": steps, "spide_bytes": spide_bytes, "bptt_bytes": bptt_saved.bytes,
                         "spide_ms": 1e3 * times["spide"], "bptt_ms": 1e3 * times["bptt"],
                         "memory_ratio_bptt_over_spide": bptt_saved.bytes / spide_bytes,
                         "time_ratio_bptt_over_spide": times["bptt"] / times["spide"]})
    by_t = {r["T"]: r for r in rows}
    spide_growth = by_t[100]["spide_bytes"] / by_t[10]["spide_bytes"]
    bptt_growth = by_t[100]["bptt_bytes"] / by_t[10]["bptt_bytes"]
    return {
        "setup": {"network": f"IF 64-{hidden}-{hidden}, feedback {hidden}->{hidden}, read-out 10", "batch": batch,
                  "time_steps_back": 100, "threads": 1, "dtype": "float32"},
        "rows": rows,
        "spide_memory_growth_T10_to_T100": spide_growth,
        "bptt_memory_growth_T10_to_T100": bptt_growth,
        "targets": [
            target("SPIDE memory flat in T (bytes at T=100 / T=10)", spide_growth, "<= 1.05", spide_growth <= 1.05),
            target("BPTT memory grows with T (bytes at T=100 / T=10)", bptt_growth, ">= 5", bptt_growth >= 5),
            target("memory BPTT / SPIDE at T=100", by_t[100]["memory_ratio_bptt_over_spide"], ">= 10",
                   by_t[100]["memory_ratio_bptt_over_spide"] >= 10),
        ],
    }


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(quick=True), indent=2))
