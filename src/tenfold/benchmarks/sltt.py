"""``tenfold bench sltt``: activation memory, time per iteration and gradient fidelity of BPTT, SLTT,
SLTT-2 and SpikingJelly's multi-step BPTT, for T = 2 .. 32 (spec snn.md 3).

Same network (spiking MLP 64-512-512-10, tau=1.1, triangle surrogate, hidden weights scaled so every
layer fires), same batch of 256 digits, same per-step loss. Saved bytes are the peak of autograd's
saved tensors between backward calls (parameters excluded) (``torch.autograd.graph.saved_tensors_hooks``); times are
medians of interleaved repeats with one thread. With CUDA present it also measures peak CUDA memory of
the pre-activation spiking ResNet-18 (T=6, batch 128) under BPTT and SLTT, as in the paper's table.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tenfold.benchmarks.common import fixed_threads, median_times, target
from tenfold.snn.loss import per_step_loss
from tenfold.snn.networks import SpikingMLP, SpikingPreActResNet18
from tenfold.snn.profile import peak_live_saved, peak_saved_bytes
from tenfold.snn.train import SNNTrainer, grad_cosines, parameter_grads

NAME = "sltt"
DESCRIPTION = "SNN training rules: saved activation bytes, ms/iteration and gradient cosine vs T"
TAU = 1.1


def _model(hidden: int, seed: int = 0) -> SpikingMLP:
    torch.manual_seed(seed)
    model = SpikingMLP(64, (hidden, hidden), 10, tau=TAU)
    with torch.no_grad():
        for layer in model.body:
            if isinstance(layer, nn.Linear):  # PyTorch's default init, scaled 5x
                layer.reset_parameters()
                layer.weight.mul_(5.0)
    return model


def _batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from tenfold.data import digits

    data = digits("train", seed=0, flatten=True)
    return data.x[:n], data.y[:n]


def _spikingjelly(model: SpikingMLP):
    """The same weights as a SpikingJelly 2.0.0 multi-step network, or None without the extra."""
    try:
        from spikingjelly.activation_based import functional, layer, neuron, surrogate
    except ImportError:
        return None
    lin = [m for m in model.modules() if isinstance(m, nn.Linear)]
    mods = []
    for i, src in enumerate(lin):
        dst = layer.Linear(src.in_features, src.out_features, step_mode="m")
        dst.load_state_dict(src.state_dict())
        mods.append(dst)
        if i < len(lin) - 1:
            mods.append(neuron.LIFNode(tau=TAU, decay_input=False, v_reset=None, step_mode="m",
                                       surrogate_function=surrogate.PiecewiseQuadratic(1.0)))
    net = nn.Sequential(*mods)
    return net, functional.reset_net


def _sj_iteration(net, reset, x: torch.Tensor, y: torch.Tensor, T: int, xs: torch.Tensor | None = None) -> None:
    net.zero_grad(set_to_none=True)
    out = net(x.unsqueeze(0).repeat(T, 1, 1) if xs is None else xs)
    loss = sum(per_step_loss(out[t], y) for t in range(T)) / T
    loss.backward()
    reset(net)


def _sj_saved_bytes(net, reset, x, y, T) -> int:
    xs = x.unsqueeze(0).repeat(T, 1, 1)  # the multi-step input is SpikingJelly's input, not an activation
    return peak_live_saved(lambda: _sj_iteration(net, reset, x, y, T, xs), [*net.parameters(), x, xs])


def cuda_memory(batch: int = 128, T: int = 6) -> dict[str, Any] | None:
    """Peak CUDA memory (GB) of one training iteration of ResNet-18 on 32x32 inputs, BPTT vs SLTT."""
    if not torch.cuda.is_available():
        return None
    device = torch.device("cuda")
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "batch": batch, "T": T}
    for rule in ("bptt", "sltt"):
        torch.manual_seed(0)
        model = SpikingPreActResNet18(3, 10, 64, tau=TAU).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        trainer = SNNTrainer(model, T, rule, optimizer=opt)
        trainer.step(x, y)  # warm-up (cuDNN workspaces, optimizer state)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        trainer.step(x, y)
        torch.cuda.synchronize()
        out[f"{rule}_peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
        out[f"{rule}_activation_gb"] = (torch.cuda.max_memory_allocated() - base) / 1e9
        del model, opt, trainer
        torch.cuda.empty_cache()
    out["ratio_sltt_over_bptt"] = out["sltt_peak_gb"] / out["bptt_peak_gb"]
    return out


def run(quick: bool = False) -> dict[str, Any]:
    Ts = [2, 4, 8] if quick else [2, 4, 8, 16, 32]
    hidden, batch, repeats = (128, 64, 3) if quick else (512, 256, 5)
    x, y = _batch(batch)
    sj = _spikingjelly(_model(hidden))
    keys = ["bptt", "sltt", "sltt_k2"] + (["spikingjelly_bptt"] if sj else [])
    saved: dict[str, list[int]] = {k: [] for k in keys}
    ms: dict[str, list[float]] = {k: [] for k in keys}
    cosine: dict[str, list[float]] = {"sltt": []}
    with fixed_threads(1):
        for T in Ts:
            trainers = {"bptt": SNNTrainer(_model(hidden), T, "bptt"), "sltt": SNNTrainer(_model(hidden), T, "sltt"),
                        "sltt_k2": SNNTrainer(_model(hidden), T, "sltt-k", min(2, T),
                                              generator=torch.Generator().manual_seed(0))}
            for k, tr in trainers.items():
                saved[k].append(peak_saved_bytes(tr, x, y))
            fns = {}
            for k, tr in trainers.items():
                fns[k] = (lambda tr=tr: (tr.model.zero_grad(set_to_none=True), tr.gradients(x, y)))
            if sj:
                net, reset = _spikingjelly(_model(hidden))
                saved["spikingjelly_bptt"].append(_sj_saved_bytes(net, reset, x, y, T))
                fns["spikingjelly_bptt"] = lambda net=net, reset=reset, T=T: _sj_iteration(net, reset, x, y, T)
            times = median_times(fns, repeats=repeats, warmup=1)
            for k in keys:
                ms[k].append(1000 * times[k])
            grads = {}
            for k in ("bptt", "sltt"):
                trainers[k].model.zero_grad(set_to_none=True)
                trainers[k].gradients(x, y)
                grads[k] = parameter_grads(trainers[k].model)
            cos = grad_cosines(grads["bptt"], grads["sltt"])
            cosine["sltt"].append(min(v for n, v in cos.items() if n.endswith("weight")))

    last = -1
    flat = max(saved["sltt"]) / min(saved["sltt"])
    below = saved["bptt"][last] / saved["sltt"][last]
    k2_time = ms["sltt_k2"][last] / ms["bptt"][last]
    targets = [
        target(f"SLTT saved bytes max/min over T={Ts[0]}..{Ts[last]}", flat, "<= 1.05", flat <= 1.05),
        target(f"BPTT / SLTT saved bytes at T={Ts[last]}", below, ">= 25" if not quick else ">= 5",
               below >= (25 if not quick else 5)),
        target(f"SLTT-2 / BPTT time per iteration at T={Ts[last]}", k2_time, "<= 0.45" if not quick else "<= 0.6",
               k2_time <= (0.45 if not quick else 0.6)),
        target(f"min per-layer gradient cosine SLTT vs BPTT (tau={TAU})", min(cosine["sltt"]), ">= 0.999",
               min(cosine["sltt"]) >= 0.999),
    ]
    notes = []
    result: dict[str, Any] = {"T": Ts, "network": f"spiking MLP 64-{hidden}-{hidden}-10, tau={TAU}",
                              "batch": batch, "repeats": repeats, "threads": 1, "saved_bytes": saved,
                              "ms_per_iter": ms, "grad_cosine_vs_bptt": cosine}
    if sj:
        ratio = ms["bptt"][last] / ms["spikingjelly_bptt"][last]
        result["bptt_time_over_spikingjelly"] = [a / b for a, b in zip(ms["bptt"], ms["spikingjelly_bptt"])]
        targets.append(target(f"our BPTT / SpikingJelly BPTT time at T={Ts[last]}", ratio, "<= 1.0", ratio <= 1.0))
    else:
        notes.append("SpikingJelly column skipped: install the oracle extra "
                     "(pip install --no-deps spikingjelly==2.0.0 loguru)")
    gpu = cuda_memory()
    if gpu is not None:
        result["cuda_resnet18"] = gpu
    else:
        notes.append("no CUDA device: the ResNet-18 peak-memory measurement (paper: 3.00 vs 1.09 GB) was skipped")
    result["targets"] = targets
    result["notes"] = notes
    return result
