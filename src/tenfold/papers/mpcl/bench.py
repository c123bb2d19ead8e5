"""``tenfold bench mpcl``: the message-passing InfoNCE against a straightforward NT-Xent.

For N rows of dimension 128 (N in {256, 1024, 4096}) it measures the median forward+backward time,
the bytes autograd saves for backward and, on CUDA, the peak allocated memory, and checks that loss
and gradient agree (float64, to 1e-6). ``mp_infonce`` keeps ``Z`` and one length-N vector for backward
and rebuilds ``P`` in place, so at most one N x N matrix is alive; NT-Xent saves several.
"""

from __future__ import annotations

import torch

from tenfold.benchmarks.common import SavedTensorBytes, fixed_threads, median_times, target
from tenfold.contrastive.losses import mp_infonce, nt_xent, pair_positives

NAME = "mpcl"
DESCRIPTION = "mp_infonce vs straightforward NT-Xent: forward+backward time, saved/peak memory, agreement"

DIM = 128
TAU = 0.5


def _agreement(n: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(n)
    u = torch.randn(n, DIM, generator=g, dtype=torch.float64, requires_grad=True)
    a = mp_infonce(u, pair_positives(n), TAU)
    (ga,) = torch.autograd.grad(a, u)
    b = nt_xent(u, TAU)
    (gb,) = torch.autograd.grad(b, u)
    return {"loss_abs_diff": float((a - b).detach().abs()), "grad_max_abs_diff": float((ga - gb).abs().max())}


def _saved_bytes(fn, u: torch.Tensor) -> int:
    with SavedTensorBytes() as m:
        loss = fn(u)
    loss.backward()
    u.grad = None
    return m.bytes


def _peak_cuda(fn, u: torch.Tensor) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn(u).backward()
    u.grad = None
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def _measure(n: int, device: torch.device, repeats: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    u = torch.randn(n, DIM, generator=g).to(device).requires_grad_()
    pos = pair_positives(n, device)
    fns = {"mp_infonce": lambda x: mp_infonce(x, pos, TAU), "nt_xent": lambda x: nt_xent(x, TAU)}

    def fwd_bwd(fn):
        def go():
            fn(u).backward()
            u.grad = None
            if device.type == "cuda":
                torch.cuda.synchronize()
        return go

    times = median_times({k: fwd_bwd(f) for k, f in fns.items()}, repeats=repeats, warmup=1)
    row = {"n": n, "device": device.type,
           "time_mp_infonce_s": times["mp_infonce"], "time_nt_xent_s": times["nt_xent"],
           "speedup": times["nt_xent"] / times["mp_infonce"],
           "saved_bytes_mp_infonce": _saved_bytes(fns["mp_infonce"], u),
           "saved_bytes_nt_xent": _saved_bytes(fns["nt_xent"], u)}
    row["saved_bytes_ratio"] = row["saved_bytes_nt_xent"] / row["saved_bytes_mp_infonce"]
    if device.type == "cuda":
        row["peak_bytes_mp_infonce"] = _peak_cuda(fns["mp_infonce"], u)
        row["peak_bytes_nt_xent"] = _peak_cuda(fns["nt_xent"], u)
        row["peak_ratio"] = row["peak_bytes_nt_xent"] / row["peak_bytes_mp_infonce"]
    return row


def run(quick: bool = False) -> dict:
    sizes = [256, 1024] if quick else [256, 1024, 4096]
    repeats = 3 if quick else 7
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    with fixed_threads(1):
        agreement = {n: _agreement(n) for n in sizes}
        rows = [_measure(n, d, repeats) for d in devices for n in sizes]
    largest = [r for r in rows if r["n"] == sizes[-1]]
    targets = [target(f"N={n}: loss and gradient agree with NT-Xent (float64)",
                      max(a.values()), "<= 1e-6", max(a.values()) <= 1e-6) for n, a in agreement.items()]
    for r in largest:
        targets.append(target(f"N={r['n']} ({r['device']}): saved-for-backward memory, NT-Xent / mp_infonce",
                              r["saved_bytes_ratio"], ">= 2", r["saved_bytes_ratio"] >= 2))
        targets.append(target(f"N={r['n']} ({r['device']}): forward+backward speed-up over NT-Xent",
                              r["speedup"], ">= 0.8", r["speedup"] >= 0.8))
        if "peak_ratio" in r:
            targets.append(target(f"N={r['n']} (cuda): peak memory, NT-Xent / mp_infonce", r["peak_ratio"],
                                  ">= 1.5", r["peak_ratio"] >= 1.5))
    return {"dim": DIM, "tau": TAU, "threads": 1, "agreement": {str(k): v for k, v in agreement.items()},
            "rows": rows, "targets": targets}
