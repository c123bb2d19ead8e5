"""``panoptic-metrics``: which errors do PQ, PartPQ, part mIoU and PWQ (provisional) see?

PanopticPartFormer++ (arXiv:2301.00954) argues that PartPQ "biases to PQ" and proposes Part-Whole
Quality (PWQ), which decouples part errors from panoptic errors. We evaluate systematically corrupted
copies of perfect predictions of procedural scenes (part swaps, instance splits, dropped instances,
shifted masks) at increasing severity and record how each metric responds.

PWQ here is the provisional definition of ``panoptic_parts.md`` section 3 (geometric mean of PQ and
part mIoU); the paper's own formula could not be read, so every output labels it "provisional".
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from tenfold.config import Config
from tenfold.data.panoptic_scenes import generate_scenes, write_spec_files
from tenfold.engine import RunContext
from tenfold.experiments.registry import register
from tenfold.panoptic.corrupt import CORRUPTIONS
from tenfold.panoptic.format import EvalSpec
from tenfold.panoptic.merge import gt_to_prediction
from tenfold.panoptic.metrics import COMBINERS, PartStats, image_stats, summarize
from tenfold.reporting import Claim, Result, markdown_table
from tenfold.reporting.figures import new_figure

METRICS = ("PQ", "PartPQ", "PartPQ_parts", "part_mIoU", "PWQ (provisional)")


class PanopticMetricsConfig(Config):
    images: int = Field(24, ge=1, le=10_000, description="procedural scenes")
    height: int = Field(96, ge=16, le=4096)
    width: int = Field(128, ge=16, le=4096)
    min_things: int = Field(3, ge=0, le=100)
    max_things: int = Field(6, ge=1, le=100)
    levels: list[float] = Field([0.0, 0.25, 0.5, 0.75, 1.0], min_length=2,
                                description="fractions of thing segments corrupted")
    shift_px: int = Field(4, ge=1, le=256, description="shift of the 'shifted mask' corruption")
    combiner: str = Field("geometric", description="PWQ combiner: geometric | harmonic | arithmetic")


def _evaluate(gts, preds, spec, combiner):
    total = PartStats()
    for gt, pred in zip(gts, preds):
        total += image_stats(gt, pred, spec)
    return summarize(total, spec, combiner=combiner)


@register("panoptic-metrics", paper="panoptic-partformer", config=PanopticMetricsConfig, order=80,
          description="PQ, PartPQ, part mIoU and PWQ (provisional) under systematic prediction corruptions")
def run(cfg: PanopticMetricsConfig, ctx: RunContext) -> Result:
    from tenfold.errors import ConfigError

    if cfg.combiner not in COMBINERS:
        raise ConfigError(f"combiner={cfg.combiner!r} is invalid: expected one of {', '.join(COMBINERS)}")
    if cfg.min_things > cfg.max_things:
        raise ConfigError(f"min_things={cfg.min_things} is invalid: expected <= max_things={cfg.max_things}")
    if any(not 0.0 <= f <= 1.0 for f in cfg.levels):
        raise ConfigError(f"levels={cfg.levels!r} is invalid: expected fractions in [0, 1]")
    if ctx.world_size > 1:
        raise ConfigError(f"devices={ctx.world_size} is invalid for panoptic-metrics: it runs in one process")
    _, eval_path, _ = write_spec_files(ctx.path("specs"))
    spec = EvalSpec.load(eval_path)
    scenes = generate_scenes(cfg.images, seed=ctx.seed, height=cfg.height, width=cfg.width,
                             things=(cfg.min_things, cfg.max_things))
    gts = [s.uids for s in scenes]
    perfect = [gt_to_prediction(g, spec) for g in gts]
    levels = sorted(set(cfg.levels))
    curves: dict[str, dict[str, list[float]]] = {}
    rows = []
    with ctx.bar("corruptions x levels", len(CORRUPTIONS) * len(levels)) as bar:
        for ci, (name, fn) in enumerate(CORRUPTIONS.items()):
            curves[name] = {m: [] for m in METRICS}
            for li, level in enumerate(levels):
                rng = np.random.default_rng([ctx.seed, ci, li])
                kwargs = {"shift": cfg.shift_px} if name == "shifted mask" else {}
                preds = [fn(p, spec, level, rng, **kwargs) for p in perfect]
                res = _evaluate(gts, preds, spec, cfg.combiner)
                for m in METRICS:
                    curves[name][m].append(float(res[m]))
                ctx.log_metrics(corruption=ci, level=level, **{m.split(" ")[0]: res[m] for m in METRICS})
                rows.append({"corruption": name, "fraction": level, **{m: res[m] for m in METRICS}})
                bar.advance()

    fig, axes = new_figure(len(CORRUPTIONS), size=(4.2 * len(CORRUPTIONS), 3.6))
    for ax, (name, curve) in zip(np.atleast_1d(axes), curves.items()):
        for m in METRICS:
            ax.plot(levels, curve[m], marker="o", label=m)
        ax.set(title=name, xlabel="fraction of thing segments corrupted", ylim=(-0.02, 1.02))
    np.atleast_1d(axes)[0].set_ylabel("metric")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    figure = ctx.save_figure(fig, "metric_response")

    full = {name: {m: curve[m][-1] for m in METRICS} for name, curve in curves.items()}
    zero = {name: {m: curve[m][0] for m in METRICS} for name, curve in curves.items()}
    swap, split = full["part swap"], full["instance split"]
    d_ppq = 1.0 - swap["PartPQ"]
    d_miou = 1.0 - swap["part_mIoU"]
    metrics = {f"{c}/{m}": v for c, d in full.items() for m, v in d.items()}
    metrics["PartPQ_drop_over_mIoU_drop_part_swap"] = d_ppq / d_miou if d_miou > 0 else float("nan")
    claims = [
        Claim.true("uncorrupted predictions score 1 on every metric",
                   all(abs(v - 1.0) < 1e-12 for d in zero.values() for v in d.values())),
        Claim.at_least("part swaps: PQ unchanged (PQ is blind to part errors)", swap["PQ"], 1.0),
        Claim.at_most("part swaps: part mIoU falls", swap["part_mIoU"], 0.9),
        Claim.at_least("instance splits: part mIoU unchanged (PWQ part term decoupled)", split["part_mIoU"], 1.0),
        Claim.at_most("instance splits: PQ falls", split["PQ"], 0.9),
        Claim.at_most("PartPQ biases to PQ: its drop under part swaps relative to part mIoU's",
                      metrics["PartPQ_drop_over_mIoU_drop_part_swap"], 0.75),
        Claim.at_most("PWQ (provisional) sees part swaps", swap["PWQ (provisional)"], 0.95),
        Claim.at_most("PWQ (provisional) sees instance splits", split["PWQ (provisional)"], 0.95),
    ]
    cols = ["corruption", "fraction", *METRICS]
    return Result(
        metrics=metrics, claims=claims, figures=[figure],
        tables={"metric response (fraction of thing segments corrupted)": markdown_table(rows, cols)},
        key_metric="PartPQ_drop_over_mIoU_drop_part_swap",
        notes=(f"{cfg.images} procedural scenes of {cfg.height}x{cfg.width} px with every corner case (void, crowd, "
               "unlabelled parts, a part object without part labels). PWQ is the provisional definition "
               f"({cfg.combiner} mean of PQ and part mIoU), not the paper's unpublished formula."),
    )
