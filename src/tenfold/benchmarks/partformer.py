"""Parameters, FLOPs and CPU throughput of the part-whole model, against the same model without
decoupled part features (the part queries then share the whole features)."""

from __future__ import annotations

import torch

from tenfold.benchmarks.common import fixed_threads, median_times
from tenfold.panoptic.losses import PartWholeCriterion
from tenfold.panoptic.model import PartFormerConfig, PartWholeFormer
from tenfold.panoptic.targets import Targets

NAME = "partformer"
DESCRIPTION = "parameters, FLOPs and throughput: decoupled part features vs shared (tiny and R50 configurations)"

# the procedural scenes: 5 whole classes (2 with parts), 6 flat parts; Cityscapes-Panoptic-Parts: 19 and 23
TINY = dict(num_classes=5, num_parts=6, parts_classes=(2, 3))
R50 = dict(num_classes=19, num_parts=23, parts_classes=(11, 12, 13, 14, 15), backbone="resnet50", hidden=256,
           part_hidden=256, num_queries=100, num_layers=9, heads=8, ffn=2048)


def flops(model: torch.nn.Module, images: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:  # forward only; no_grad trips its module tracker
        model(images)
    return int(counter.get_total_flops())


def _fake_targets(b: int, cfg: PartFormerConfig, h: int, w: int) -> list[Targets]:
    g = torch.Generator().manual_seed(0)
    return [Targets(torch.randint(0, cfg.num_classes, (4,), generator=g), (torch.rand(4, h, w, generator=g) > 0.5).float(),
                    (torch.rand(cfg.num_parts, h, w, generator=g) > 0.8).float(), torch.ones(h, w, dtype=torch.bool),
                    torch.ones(h, w, dtype=torch.bool)) for _ in range(b)]


def measure(base: dict, size: tuple[int, int], batch: int, train: bool, repeats: int) -> dict:
    rows = {}
    models, fns = {}, {}
    images = torch.rand(batch, 3, *size)
    for name, decoupled in (("decoupled", True), ("shared", False)):
        cfg = PartFormerConfig(**base, decoupled=decoupled)
        torch.manual_seed(0)
        model = models[name] = PartWholeFormer(cfg)
        rows[name] = {"parameters": sum(p.numel() for p in model.parameters()),
                      "inference_gflops_per_image": flops(model.eval(), images[:1]) / 1e9}
        model.eval()
        fns[f"{name}/infer"] = (lambda m=model: m(images)) if not train else None
        if train:
            crit = PartWholeCriterion(cfg.num_classes, num_points=1024)
            targets = _fake_targets(batch, cfg, *size)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

            def step(m=model, c=crit, t=targets, o=opt):
                m.train()
                loss = c(m(images), t, torch.Generator().manual_seed(0))["loss"]
                o.zero_grad()
                loss.backward()
                o.step()

            def infer(m=model):
                m.eval()
                with torch.no_grad():
                    m(images)

            fns[f"{name}/train"], fns[f"{name}/infer"] = step, infer
        else:
            def infer(m=model):
                with torch.no_grad():
                    m(images)
            fns[f"{name}/infer"] = infer
    times = median_times({k: v for k, v in fns.items() if v is not None}, repeats=repeats, warmup=1)
    for key, seconds in times.items():
        name, kind = key.split("/")
        rows[name][f"{kind}_images_per_s"] = batch / seconds
    rows["ratios_decoupled_over_shared"] = {
        k: rows["decoupled"][k] / rows["shared"][k] for k in rows["decoupled"] if k in rows["shared"]}
    return rows


def run(quick: bool = False) -> dict:
    with fixed_threads(2):
        tiny = measure(TINY, (64, 64), batch=8, train=True, repeats=3 if quick else 7)
        r50 = None if quick else measure(R50, (512, 1024), batch=1, train=False, repeats=2)
    return {"threads": 2, "tiny_64x64_batch8": tiny, "r50_512x1024_batch1_inference": r50,
            "note": "R50 built with pretrained=False (no download); its timing is CPU inference only. "
                    "The R50 entry is skipped with --quick."}
