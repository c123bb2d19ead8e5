"""``tenfold bench sltt``: activation memory, time per iteration and gradient fidelity of BPTT, SLTT,
SLTT-2 and SpikingJelly's multi-step BPTT, for T = 2 .. 32 (spec snn.md 3).

Same network (spiking MLP 64-512-512-10, tau=1.1, triangle surrogate, hidden weights scaled so every
layer fires), same batch of 256 digits, same per-step loss. Saved bytes are the peak of autograd's
saved tensors between backward calls (parameters excluded) (``torch.autograd.graph.saved_tensors_hooks``); times are
medians of interleaved repeats with one thread. The paper-scale networks (pre-activation ResNet-18 on
32x32 at T=6, VGG-11 on 48x48 event frames at T=10) are measured by the same live saved-tensor accounting
on the CPU at batches 1 and 2 (bytes are linear in the batch); with CUDA present also by
``torch.cuda.max_memory_allocated`` at batch 128, as in the paper's table.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tenfold.benchmarks.common import fixed_threads, median_times, target
from tenfold.snn.loss import per_step_loss
from tenfold.snn.networks import SpikingMLP, SpikingPreActResNet18, SpikingVGG
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


# The paper's table (spec snn.md 1.4): network, input, T, batch, BPTT GB, SLTT GB (GPU, whole training
# memory). CIFAR-10: pre-activation ResNet-18 on 32x32 images; DVS-CIFAR10: VGG-11 on 48x48 event frames.
PAPER_SCALE = {
    "resnet18": {"what": "pre-activation spiking ResNet-18, CIFAR-10 32x32, T=6", "T": 6, "shape": (3, 32, 32),
                 "static": True, "batch": 128, "paper_gb": (3.00, 1.09)},
    "vgg11": {"what": "spiking VGG-11-BN, DVS-CIFAR10 2x48x48 event frames, T=10", "T": 10, "shape": (2, 48, 48),
              "static": False, "batch": 128, "paper_gb": (3.70, 1.07)},
}


def _paper_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "resnet18":
        return SpikingPreActResNet18(3, 10, 64, tau=TAU)
    return SpikingVGG(2, 10, tau=TAU)


def _paper_input(name: str, batch: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    spec = PAPER_SCALE[name]
    g = torch.Generator().manual_seed(0)
    if spec["static"]:
        x = torch.rand(batch, *spec["shape"], generator=g)
    else:  # binary event frames (B, T, 2, H, W), about 10% active
        x = (torch.rand(batch, spec["T"], *spec["shape"], generator=g) < 0.1).float()
    return x.to(device), torch.randint(0, 10, (batch,), generator=g).to(device)


def paper_scale_memory(batches: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    """Live saved activation bytes (snn/profile.py) of one training iteration of the paper's networks on
    the CPU, BPTT vs SLTT, at small batches. Saved activations are linear in the batch (every saved
    tensor has the batch as its leading dimension; only BatchNorm's per-channel statistics do not), so
    the per-sample bytes, measured at two batches to show it, give the paper's batch by scaling."""
    out: dict[str, Any] = {}
    for name, spec in PAPER_SCALE.items():
        row: dict[str, Any] = {"network": spec["what"], "T": spec["T"], "batches": list(batches)}
        for rule in ("bptt", "sltt"):
            row[f"{rule}_saved_bytes"] = []
            for batch in batches:
                x, y = _paper_input(name, batch)
                trainer = SNNTrainer(_paper_model(name), spec["T"], rule, static=spec["static"])
                row[f"{rule}_saved_bytes"].append(peak_saved_bytes(trainer, x, y))
            per_sample = [b / n for b, n in zip(row[f"{rule}_saved_bytes"], batches)]
            row[f"{rule}_mb_per_sample"] = per_sample[-1] / 1e6
            row[f"{rule}_linearity"] = max(per_sample) / min(per_sample)  # 1.0: exactly linear in the batch
            row[f"{rule}_gb_at_batch_{spec['batch']}"] = per_sample[-1] * spec["batch"] / 1e9
        row["ratio_bptt_over_sltt"] = row["bptt_saved_bytes"][-1] / row["sltt_saved_bytes"][-1]
        bptt_gb, sltt_gb = spec["paper_gb"]
        row["paper_gb_bptt_sltt"] = [bptt_gb, sltt_gb]
        row["paper_ratio"] = bptt_gb / sltt_gb
        out[name] = row
    return out


def cuda_memory(names: tuple[str, ...] = ("resnet18", "vgg11")) -> dict[str, Any] | None:
    """Peak CUDA memory (``torch.cuda.max_memory_allocated``, GB) of one training iteration (SGD momentum,
    after a warm-up iteration) of the paper-scale networks at the paper's batch, BPTT vs SLTT."""
    if not torch.cuda.is_available():
        return None
    device = torch.device("cuda")
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(0)}
    for name in names:
        spec = PAPER_SCALE[name]
        x, y = _paper_input(name, spec["batch"], device)
        out: dict[str, Any] = {"batch": spec["batch"], "T": spec["T"]}
        for rule in ("bptt", "sltt"):
            model = _paper_model(name).to(device)
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            trainer = SNNTrainer(model, spec["T"], rule, optimizer=opt, static=spec["static"])
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
        out["ratio_bptt_over_sltt"] = out["bptt_peak_gb"] / out["sltt_peak_gb"]
        out["paper_ratio"] = spec["paper_gb"][0] / spec["paper_gb"][1]
        result[name] = out
    return result


def neuron_step_times(sizes: tuple[tuple[int, int], ...] = ((64, 128), (256, 512)), T: int = 8,
                      repeats: int = 15) -> dict[str, Any]:
    """ms for T LIF steps forward + backward (BPTT through the membranes, triangle surrogate) on (B, H)
    currents, three ways: the step in separate ops (membrane update, subtraction, spike Function), our
    fused one-node step (:class:`~tenfold.snn.neurons.LIFNeuron`), and ``torch.compile`` of the separate
    membrane update. Kept in the library: the fastest (the fused step; torch.compile's per-call overhead
    outweighs its kernel fusion at these sizes on the CPU)."""
    from tenfold.snn.neurons import LIFNeuron, leak
    from tenfold.snn.surrogate import spike

    lam = leak(TAU)

    def update(current, u, s):
        return torch.add(current, u, alpha=lam).add_(s, alpha=-lam)

    def chain(step):
        def fn(currents, grad):
            u = currents[0]
            s = spike(u - 1.0)
            out = [s]
            for t in range(1, T):
                u = step(currents[t], u, s)
                s = spike(u - 1.0)
                out.append(s)
            torch.stack(out).backward(grad)
        return fn

    def fused(currents, grad):
        neuron = LIFNeuron(TAU)
        torch.stack([neuron(c) for c in currents]).backward(grad)

    out: dict[str, Any] = {"T": T, "sizes": [list(z) for z in sizes]}
    fns = {"separate_ops": chain(update), "fused": fused}
    try:
        compiled = torch.compile(update, dynamic=False)
        fns["torch_compile"] = chain(compiled)
    except Exception as exc:  # noqa: BLE001  (no compiler toolchain: reported, not fatal)
        out["torch_compile_error"] = f"{type(exc).__name__}: {exc}"[:200]
    for b, h in sizes:
        g = torch.Generator().manual_seed(0)
        currents = (1.5 * torch.randn(T, b, h, generator=g)).requires_grad_()
        grad = torch.randn(T, b, h, generator=g)
        calls = {}
        for key, fn in list(fns.items()):
            try:
                fn(currents, grad)  # compiles here
                calls[key] = lambda fn=fn: fn(currents, grad)
            except Exception as exc:  # noqa: BLE001
                out[f"{key}_error"] = f"{type(exc).__name__}: {exc}"[:200]
                fns.pop(key)
        times = median_times(calls, repeats=repeats, warmup=2)
        out[f"{b}x{h}"] = {k: 1000 * v for k, v in times.items()}
    return out


def run(quick: bool = False) -> dict[str, Any]:
    Ts = [2, 4, 8] if quick else [2, 4, 8, 16, 32]
    hidden, batch, repeats = (128, 64, 5) if quick else (512, 256, 5)
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
    result["bptt_over_sltt_saved"] = [a / b for a, b in zip(saved["bptt"], saved["sltt"])]
    with fixed_threads(1):
        paper = paper_scale_memory()
    result["paper_scale"] = paper
    for name, row in paper.items():
        targets.append(target(f"BPTT / SLTT live saved bytes, {row['network']} (paper, whole GPU memory: "
                              f"{row['paper_ratio']:.2f}x)", row["ratio_bptt_over_sltt"],
                              f">= {row['paper_ratio']:.2f}", row["ratio_bptt_over_sltt"] >= row["paper_ratio"]))
    notes.append("paper-scale networks measured on the CPU at batches " + ", ".join(map(str, paper["resnet18"]["batches"]))
                 + ": saved activations are linear in the batch (per-sample bytes agree within "
                 + f"{max(abs(r[k + '_linearity'] - 1) for r in paper.values() for k in ('bptt', 'sltt')):.2%}), "
                 "so the GB at batch 128 are per-sample bytes x 128; the paper's GB are whole GPU memory "
                 "(parameters, optimizer state, workspaces), hence its smaller ratio")
    gpu = cuda_memory()
    if gpu is not None:
        result["cuda_peak"] = gpu
    else:
        notes.append("no CUDA device: torch.cuda.max_memory_allocated of the paper-scale networks "
                     "(paper: 3.00 vs 1.09 GB, 3.70 vs 1.07 GB) was not measured")
    if not quick:
        with fixed_threads(1):
            result["neuron_step_ms"] = neuron_step_times()
    result["targets"] = targets
    result["notes"] = notes
    return result
