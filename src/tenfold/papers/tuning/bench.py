"""``tenfold bench tuning``: cost of every tuning method on one ViT and one batch.

Per method: trainable parameters, AdamW optimizer-state bytes (measured from the optimizer after a
step), training-step time relative to full fine-tuning, and inference time after ``merge`` relative to
the untuned base model. Targets: merged LoRA (peft and split q/v) and folded SSF run within 2 % of the
base model (they are plain timm modules again); every parameter-efficient method keeps less optimizer
state than full fine-tuning.
"""

from __future__ import annotations

import copy

import torch

from tenfold.benchmarks.common import fixed_threads, median_times, target

NAME = "tuning"
DESCRIPTION = "visual tuning methods: trainable parameters, optimizer state, step time vs full, merged inference"

MERGEABLE = ("lora", "lora-qv", "ssf")


def _model(quick: bool) -> torch.nn.Module:
    from tenfold.tuning import build_vit

    if quick:
        return build_vit(img_size=16, patch_size=2, in_chans=3, num_classes=10, embed_dim=96, depth=4, num_heads=3,
                         mlp_ratio=4.0, seed=0).eval()
    return build_vit(img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=128, depth=4, num_heads=4,
                     mlp_ratio=4.0, seed=0).eval()


def _prepare(method: str, base: torch.nn.Module) -> torch.nn.Module:
    import tenfold.tuning as tt

    model = copy.deepcopy(base)
    if method in ("kd", "weight-selection"):
        return tt.apply(model, method, teacher=copy.deepcopy(base))
    return tt.apply(model, method)


def _repeated(model: torch.nn.Module, x: torch.Tensor, times: int = 2):
    """One timing sample: ``times`` forward passes (longer samples are less sensitive to scheduler noise)."""
    def call():
        for _ in range(times):
            model(x)
    return call


def _optimizer_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(v.numel() * v.element_size() for state in opt.state.values() for v in state.values()
               if isinstance(v, torch.Tensor) and v.dim() > 0)


def run(quick: bool = False) -> dict:
    import tenfold.tuning as tt

    base = _model(quick)
    size = base.patch_embed.img_size[0]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, size, size, generator=g)
    y = torch.randint(10, (len(x),), generator=g)
    repeats = 5 if quick else 7
    rows, steps, infer = {}, {}, {}
    with fixed_threads(1):
        for method in tt.method_names():
            try:
                model = _prepare(method, base)
            except Exception as exc:  # a method that cannot run on this model is reported, not fatal
                rows[method] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4)
            loss_of = getattr(model, "tuning_loss", None) or (
                lambda a, b, m=model: torch.nn.functional.cross_entropy(m(a), b))

            def step(model=model, opt=opt, loss_of=loss_of):
                opt.zero_grad(set_to_none=True)
                loss_of(x, y).backward()
                opt.step()

            model.train()
            step()
            rows[method] = {"family": tt.get_method(method).family,
                            "trainable": tt.count_parameters(model)["trainable"],
                            "optimizer_state_bytes": _optimizer_bytes(opt)}
            steps[method] = step
            merged = tt.merge(copy.deepcopy(model)).eval() if method in MERGEABLE else model.eval()
            infer[method] = _repeated(merged, x)
        step_times = median_times(steps, repeats=repeats)
        with torch.no_grad():
            infer_times = median_times({"base": _repeated(base, x), **infer}, repeats=3 * repeats, warmup=2)
    full = step_times.get("full")
    for method, t in step_times.items():
        rows[method]["step_seconds"] = t
        rows[method]["step_vs_full"] = t / full if full else float("nan")
    for method, t in infer_times.items():
        if method != "base":
            rows[method]["inference_vs_base"] = t / infer_times["base"]
    targets = []
    for method, r in rows.items():  # a method that failed to run is a failed target, never a silent gap
        if "error" in r:
            targets.append(target(f"{method} ran in the benchmark", 0.0, "runs", False))
    for method in MERGEABLE:
        if "inference_vs_base" in rows.get(method, {}):
            r = rows[method]["inference_vs_base"]
            targets.append(target(f"{method} merged inference time / base", r, "<= 1.02", r <= 1.02))
    full_state = rows.get("full", {}).get("optimizer_state_bytes")
    if full_state:
        efficient = [m for m, r in rows.items() if r.get("family") in ("prompt", "adapter", "parameter")]
        worst = max(rows[m]["optimizer_state_bytes"] for m in efficient) / full_state
        targets.append(target("largest efficient optimizer state / full", worst, "<= 0.1", worst <= 0.1))
    return {"model": {"img_size": size, "embed_dim": base.embed_dim, "depth": len(base.blocks),
                      "batch": len(x)},
            "base_inference_seconds": infer_times["base"], "methods": rows, "targets": targets}
