"""Parameters, FLOPs and CPU throughput of the part-whole model, against the same model without
decoupled part features (same parameters; the part queries then share the whole features); and the memory of a training
DataLoader worker reading a panoptic-parts folder on demand, against the in-memory dataset."""

from __future__ import annotations

import torch

from tenfold.benchmarks.common import fixed_threads, median_times
from tenfold.panoptic.losses import PartWholeCriterion
from tenfold.panoptic.model import PartFormerConfig, PartWholeFormer
from tenfold.panoptic.targets import Targets

NAME = "partformer"
DESCRIPTION = ("parameters, FLOPs and throughput: decoupled part features vs shared (tiny and R50 configurations); "
               "DataLoader worker memory of the on-demand folder dataset")

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


class _PeakRSS(torch.utils.data.Dataset):
    """Wraps a dataset; each item also carries (worker id, this process's peak RSS in bytes so far)."""

    def __init__(self, data) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        import resource

        item = self.data[i]
        info = torch.utils.data.get_worker_info()
        return item, (info.id if info else -1, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def _collate_with_rss(items):
    """Collate the batch in the worker (as training does) and hand back only the RSS readings: the batch's
    trip to the main process through shared memory is the DataLoader's cost, not the dataset's."""
    from tenfold.panoptic.dataset import collate

    collate([it for it, _ in items])
    return [rss for _, rss in items]


def worker_memory(counts: tuple[int, ...] = (16, 64), size: int = 256, workers: int = 2, crop: int = 192) -> dict:
    """Peak RSS of each DataLoader worker over one pass of a training folder of ``n`` procedural scenes
    (``size`` x ``size``, Mask2Former augmentation, ``crop``), for each ``n`` in ``counts``; and the bytes the
    in-memory ``PanopticPartsDataset`` holds for the same folder. On-demand reading keeps the worker's
    memory independent of the number of images; the in-memory dataset grows linearly with it. Workers are
    spawned, not forked, so their RSS holds what they load and not pages inherited from this process."""
    import tempfile
    from pathlib import Path

    from tenfold.data.panoptic_scenes import generate_scenes, write_scenes
    from tenfold.panoptic import EvalSpec, PartsFolderDataset
    from tenfold.panoptic.dataset import PanopticPartsDataset

    out: dict = {"size": size, "workers": workers, "crop": crop, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            paths = write_scenes(Path(tmp) / f"n{n}", generate_scenes(n, seed=0, height=size, width=size))
            spec = EvalSpec.load(paths["eval_spec"])
            # scale fixed at 1 (crop and flip kept): a random scale up to 2x makes the peak the largest of more
            # draws as the folder grows, which is not the memory the number of images costs
            data = PartsFolderDataset(paths["images"], paths["labels"], spec, train=True, crop=crop,
                                      min_scale=1.0, max_scale=1.0)
            loader = torch.utils.data.DataLoader(_PeakRSS(data), batch_size=2, num_workers=workers,
                                                 collate_fn=_collate_with_rss, persistent_workers=False,
                                                 multiprocessing_context="spawn")
            peak: dict[int, int] = {}
            for rss in loader:
                for wid, value in rss:
                    peak[wid] = max(peak.get(wid, 0), value)
            del loader
            held = PanopticPartsDataset.from_folder(paths["images"], paths["labels"], spec)
            in_memory = sum(t.nbytes for t in _tensors(held))
            del held   # not alive when the next loader's workers start
            out["rows"].append({"images": n, "workers_seen": len(peak), "worker_peak_rss_mib": max(peak.values()) / 2**20,
                                "in_memory_dataset_mib": in_memory / 2**20})
    small, large = out["rows"][0], out["rows"][-1]
    out["worker_rss_large_over_small"] = large["worker_peak_rss_mib"] / small["worker_peak_rss_mib"]
    out["in_memory_large_over_small"] = large["in_memory_dataset_mib"] / small["in_memory_dataset_mib"]
    return out


def _tensors(obj, seen=None):
    """Every tensor or array reachable from ``obj``'s attributes, lists and dicts (each counted once)."""
    import numpy as np

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v, seen)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v, seen)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        for v in vars(obj).values():
            yield from _tensors(v, seen)


def run(quick: bool = False) -> dict:
    from tenfold.benchmarks.common import target

    with fixed_threads(2):
        tiny = measure(TINY, (64, 64), batch=8, train=True, repeats=3 if quick else 7)
        r50 = None if quick else measure(R50, (512, 1024), batch=1, train=False, repeats=2)
        memory = worker_memory((8, 32) if quick else (16, 64), size=128 if quick else 256,
                               crop=96 if quick else 192)
    growth = memory["worker_rss_large_over_small"]
    targets = [target(f"DataLoader worker peak RSS, {memory['rows'][-1]['images']} vs "
                      f"{memory['rows'][0]['images']} images (on-demand reading)", growth, "<= 1.10", growth <= 1.10)]
    return {"threads": 2, "tiny_64x64_batch8": tiny, "r50_512x1024_batch1_inference": r50,
            "dataset_worker_memory": memory, "targets": targets,
            "note": "R50 built with pretrained=False (no download); its timing is CPU inference only. "
                    "The R50 entry is skipped with --quick. Worker RSS includes the interpreter and torch."}
