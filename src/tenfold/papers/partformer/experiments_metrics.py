"""``partformer-metrics``: which errors do PQ, PartPQ, part mIoU and PWQ (provisional) see?

PanopticPartFormer++ (arXiv:2301.00954) argues that PartPQ "biases to PQ" and proposes Part-Whole
Quality (PWQ), which decouples part errors from panoptic errors. We evaluate systematically corrupted
copies of perfect predictions of procedural scenes (part swaps, instance splits, dropped instances,
shifted masks) at increasing severity and record how each metric responds.

PWQ here is the provisional definition of ``panoptic_parts.md`` section 3 (geometric mean of PQ and
part mIoU); the paper's own formula could not be read, so every output labels it "provisional".
"""

from __future__ import annotations


import numpy as np

from tenfold.data.panoptic_scenes import generate_scenes, write_spec_files
from tenfold.engine import RunContext
from tenfold.experiments.registry import register
from tenfold.papers.partformer.configs import PanopticMetricsConfig
from tenfold.panoptic.corrupt import CORRUPTIONS
from tenfold.panoptic.format import EvalSpec
from tenfold.panoptic.merge import gt_to_prediction
from tenfold.panoptic.metrics import COMBINERS, PartStats, image_stats, summarize
from tenfold.reporting import Check, PaperClaim, Result, markdown_table
from tenfold.reporting.figures import new_figure

METRICS = ("PQ", "PartPQ", "PartPQ_parts", "part_mIoU", "PWQ (provisional)")


CLAIMS = [
    PaperClaim("PartPQ biases to PQ: under part swaps the published PartPQ (every parts class, background counted) "
               "loses 0.35 of part mIoU's drop on this class mix",
               metric="PartPQ_drop_over_mIoU_drop_part_swap",
               between=("thresholds.min_bias_ratio", "thresholds.max_bias_ratio"),
               ablation=["include_bg=false", "partpq_classes=parts"],
               paper="PanopticPartFormer++ (arXiv:2301.00954, abstract): PartPQ 'biases to PQ'; PWQ is proposed "
                     "to decouple part and panoptic errors (+3 PWQ on Cityscapes-PP over Panoptic-PartFormer)"),
    Check("the bias ratio is the value the definitions give for this class mix and PartPQ variant "
          "(|ratio - (|P|/|C|) s / d|: s = part-score loss of a swap of 2 of K parts, d = part-mIoU loss)",
          metric="bias_ratio_minus_definitions", at_most="thresholds.bias_tolerance"),
    Check("part swaps leave PQ, PartRQ and the PartPQ of classes without parts at 1 (the drop is part quality only)",
          metric="part_swap_whole_shortfall", at_most="thresholds.exact"),
    Check("uncorrupted predictions score 1 on every metric (1 - min)", metric="perfect_shortfall",
          at_most="thresholds.exact"),
    Check("part swaps leave PQ at 1 (PQ is blind to part errors; 1 - PQ)", metric="part_swap_PQ_shortfall",
          at_most="thresholds.exact"),
    Check("part swaps lower part mIoU", metric="part swap/part_mIoU", at_most="thresholds.max_swap_miou"),
    Check("instance splits leave part mIoU at 1 (PWQ part term decoupled; 1 - mIoU)",
          metric="instance_split_mIoU_shortfall", at_most="thresholds.exact"),
    Check("instance splits lower PQ", metric="instance split/PQ", at_most="thresholds.max_split_pq"),
    Check("PWQ (provisional) sees part swaps", metric="part swap/PWQ (provisional)", at_most="thresholds.max_pwq"),
    Check("PWQ (provisional) sees instance splits", metric="instance split/PWQ (provisional)",
          at_most="thresholds.max_pwq"),
]


def definitions_ratio(spec: EvalSpec, n_classes: int, include_bg: bool, classes: str = "all") -> float:
    """Bias ratio that the definitions give when two of the K parts of every parts segment are swapped
    (shapes exact, every part visible): each such segment scores (K - 1)/(K + 1) with the background
    label counted ((K - 2)/K without it), the other classes lose nothing, so PartPQ drops by
    (|P|/|C|) * 2/(K + 1) (|C| = classes averaged); part mIoU over background + flat parts loses
    2 labels per parts class: 2|P|/(num_flat + 1)."""
    k = {len(spec.sid2pids[s]) for s in spec.parts_sids}
    if len(k) != 1:
        raise ValueError("the derivation assumes every class with parts has the same number of parts")
    k = k.pop()
    n_p = len(spec.parts_sids)
    loss = 2 / (k + 1) if include_bg else 2 / k
    share = 1.0 if classes == "parts" else n_p / n_classes
    return share * loss / (2 * n_p / (spec.num_flat + 1))


def _evaluate(gts, preds, spec, cfg):
    total = PartStats()
    for gt, pred in zip(gts, preds):
        total += image_stats(gt, pred, spec, include_bg=cfg.include_bg)
    return summarize(total, spec, combiner=cfg.combiner, include_bg=cfg.include_bg)


def _corrupted(name, perfect, spec, level, rng, cfg):
    kwargs = {"shift": cfg.shift_px} if name == "shifted mask" else {}
    return [CORRUPTIONS[name](p, spec, level, rng, **kwargs) for p in perfect]


@register("partformer-metrics", paper="partformer", config=PanopticMetricsConfig, order=80, claims=CLAIMS,
          description="PQ, PartPQ, part mIoU and PWQ (provisional) under systematic prediction corruptions")
def run(cfg: PanopticMetricsConfig, ctx: RunContext) -> Result:
    from tenfold.errors import ConfigError

    if cfg.combiner not in COMBINERS:
        raise ConfigError(f"combiner={cfg.combiner!r} is invalid: expected one of {', '.join(COMBINERS)}")
    if cfg.min_things > cfg.max_things:
        raise ConfigError(f"min_things={cfg.min_things} is invalid: expected <= max_things={cfg.max_things}")
    if any(not 0.0 <= f <= 1.0 for f in cfg.levels) or max(cfg.levels) != 1.0:
        raise ConfigError(f"levels={cfg.levels!r} is invalid: expected fractions in [0, 1] up to 1.0 (the bias "
                          "ratio is measured with every parts segment corrupted)")
    if ctx.world_size > 1:
        raise ConfigError(f"devices={ctx.world_size} is invalid for partformer-metrics: it runs in one process")
    _, eval_path, _ = write_spec_files(ctx.path("specs"))
    spec = EvalSpec.load(eval_path)
    levels = sorted(set(cfg.levels))
    ppq_key = "PartPQ" if cfg.partpq_classes == "all" else "PartPQ_parts"
    curves: dict[str, dict[str, list[float]]] = {}
    rows = []
    ratios, seed_rows = [], []
    with ctx.bar("seeds x corruptions x levels", len(CORRUPTIONS) * len(levels) + 2 * (cfg.seeds - 1)) as bar:
        for k in range(cfg.seeds):
            scenes = generate_scenes(cfg.images, seed=ctx.seed + 1000 * k, height=cfg.height, width=cfg.width,
                                     things=(cfg.min_things, cfg.max_things))
            gts = [s.uids for s in scenes]
            perfect = [gt_to_prediction(g, spec) for g in gts]
            if k == 0:   # the full response curves on the first scene set
                for ci, name in enumerate(CORRUPTIONS):
                    curves[name] = {m: [] for m in METRICS}
                    for li, level in enumerate(levels):
                        rng = np.random.default_rng([ctx.seed, ci, li])
                        res = _evaluate(gts, _corrupted(name, perfect, spec, level, rng, cfg), spec, cfg)
                        if name == "part swap" and level == levels[-1]:
                            swap_full = res
                        for m in METRICS:
                            curves[name][m].append(float(res[m]))
                        ctx.log_metrics(corruption=ci, level=level, **{m.split(" ")[0]: res[m] for m in METRICS})
                        rows.append({"corruption": name, "fraction": level, **{m: res[m] for m in METRICS}})
                        bar.advance()
                swap = {m: curves["part swap"][m][-1] for m in (*METRICS, )}
                swap_ppq = swap[ppq_key]
            else:
                ci = list(CORRUPTIONS).index("part swap")
                rng = np.random.default_rng([ctx.seed + 1000 * k, ci, 1])
                res = _evaluate(gts, _corrupted("part swap", perfect, spec, 1.0, rng, cfg), spec, cfg)
                swap_ppq, swap = res[ppq_key], {m: res[m] for m in METRICS}
                bar.advance(2)
            d_miou = 1.0 - swap["part_mIoU"]
            ratios.append((1.0 - swap_ppq) / d_miou if d_miou > 0 else float("nan"))
            seed_rows.append({"scene set": k, "PartPQ used": ppq_key, "PartPQ": swap_ppq,
                              "part mIoU": swap["part_mIoU"], "PQ": swap["PQ"], "drop ratio": ratios[-1]})

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
    metrics = {f"{c}/{m}": v for c, d in full.items() for m, v in d.items()}
    swap_res = swap_full
    derived = definitions_ratio(spec, swap_res["n_classes"], cfg.include_bg, cfg.partpq_classes)
    metrics.update({
        "bias_ratio_minus_definitions": abs(float(np.mean(ratios)) - derived),
        "bias_ratio_from_definitions": derived,
        "part_swap_whole_shortfall": 1.0 - min(swap_res["PQ"], swap_res["PartRQ"], swap_res["PartPQ_noparts"]),
        "perfect_shortfall": 1.0 - min(v for d in zero.values() for v in d.values()) if levels[0] == 0.0
        else float("nan"),
        "part_swap_PQ_shortfall": 1.0 - full["part swap"]["PQ"],
        "instance_split_mIoU_shortfall": 1.0 - full["instance split"]["part_mIoU"],
        "PartPQ_drop_over_mIoU_drop_part_swap": float(np.mean(ratios)),
    })
    cols = ["corruption", "fraction", *METRICS]
    return Result(
        metrics=metrics, samples={"PartPQ_drop_over_mIoU_drop_part_swap": ratios}, figures=[figure],
        tables={"metric response (fraction of thing segments corrupted, scene set 0)": markdown_table(rows, cols),
                "part swaps of every thing segment, per scene set": markdown_table(seed_rows)},
        key_metric="PartPQ_drop_over_mIoU_drop_part_swap",
        notes=(f"{cfg.seeds} sets of {cfg.images} procedural scenes of {cfg.height}x{cfg.width} px with every corner "
               "case (void, crowd, unlabelled parts, a part object without part labels). The bias ratio is "
               f"(1 - {ppq_key}) / (1 - part mIoU) when every car and person has two parts swapped "
               f"(include_bg={cfg.include_bg}). PWQ is the provisional definition ({cfg.combiner} mean of PQ and "
               "part mIoU), not the paper's unpublished formula."),
    )
