"""``tuning-minivtab``: every registered tuning method on a mini-VTAB of four few-shot tasks (Visual Tuning survey).

Claims (means over tasks of 3-seed means): every parameter-efficient method reaches at least linear
probing minus 1 point; full fine-tuning reaches at least linear probing; the frozen backbone is
bit-identical after training (AdamW with weight decay) in every parameter-efficient run; trainable
counts equal the closed-form formulas. No order among the efficient methods is asserted: at this
scale it is dominated by noise.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from tenfold.engine.threads import fixed_threads
from tenfold.config import Config
from tenfold.engine import RunContext
from tenfold.errors import ConfigError, DataError
from tenfold.experiments.registry import register
from tenfold.reporting import Claim, Result, markdown_table
from tenfold.reporting.figures import new_figure

DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "vpt-shallow": {"length": 4}, "vpt-deep": {"length": 4}, "lora": {"rank": 4}, "lora-qv": {"rank": 4},
    "houlsby": {"hidden": 8}, "pfeiffer": {"hidden": 8}, "adaptformer": {"hidden": 8}, "convpass": {"hidden": 8},
    "net2net": {"noise": 0.01},
}


class MiniVTABConfig(Config):
    methods: list[str] | None = Field(None, description="methods to compare; default: every registered method")
    tasks: list[str] = Field(default_factory=lambda: ["digits-5-9", "rotation", "inverted", "shapes"])
    seeds: int = Field(3, ge=1, description="training-shot draws and initialisations per task")
    shots: int = Field(20, ge=1, description="training images per class")
    epochs: int = Field(6, ge=1)
    batch_size: int = Field(50, ge=1)
    lr: float = Field(2e-2, gt=0, description="AdamW lr of the methods with a frozen backbone (linear included)")
    full_lr: float = Field(3e-3, gt=0, description="AdamW lr of methods that train every weight (full, remapping)")
    weight_decay: float = Field(1e-4, ge=0)
    test_size: int | None = Field(200, ge=1, description="test images per task (a seeded subset; null: all)")
    options: dict[str, dict[str, Any]] = Field(default_factory=lambda: dict(DEFAULT_OPTIONS),
                                               description="per-method options passed to tenfold.tuning.apply")
    kd_teacher: str = Field("full", description="method whose tuned model teaches the kd student")
    student_dim: int = Field(32, ge=4)
    student_depth: int = Field(2, ge=1)
    student_heads: int = Field(2, ge=1)
    cache_dir: str | None = Field(None, description="foundation-model cache (default ~/.cache/tenfold/tuning)")
    source: Literal["mini", "vtab1k"] = Field("mini", description="mini-VTAB (built in) or VTAB-1k from vtab_root")
    vtab_root: str | None = Field(None, description="converted VTAB-1k folder: <root>/<task>/{train800val200,test}.txt")
    backbone: str = Field("vit_base_patch16_224", description="timm model name of the VTAB-1k backbone")
    weights: str | None = Field(None, description="local weight file of the VTAB-1k backbone (no downloads)")
    image_size: int = Field(224, ge=8)

    @model_validator(mode="after")
    def _known_tasks(self) -> "MiniVTABConfig":
        from tenfold.tuning.tasks import TASKS
        from tenfold.tuning.vtab import VTAB_TASKS

        known = TASKS if self.source == "mini" else VTAB_TASKS
        bad = [t for t in self.tasks if t not in known]
        if bad or not self.tasks:
            raise ValueError(f"tasks {bad or self.tasks} are unknown for source {self.source!r}: expected some of "
                             f"{', '.join(known)}")
        return self


def _method_list(cfg: MiniVTABConfig) -> list[str]:
    """The methods in run order: kd after its teacher; unknown names fail before any work."""
    import tenfold.tuning as tt

    methods = list(cfg.methods) if cfg.methods is not None else tt.method_names()
    for name in [*methods, *cfg.options]:
        tt.get_method(name)
    for name, opts in cfg.options.items():
        unknown = sorted(set(opts) - set(tt.get_method(name).defaults))
        if unknown:
            raise ConfigError(f"options.{name}.{unknown[0]} is unknown: expected one of "
                              f"{', '.join(sorted(tt.get_method(name).defaults)) or 'no options'}")
    if "kd" in methods and cfg.kd_teacher not in methods:
        methods.insert(0, cfg.kd_teacher)
    if "kd" in methods:
        methods.remove("kd")
        methods.append("kd")
    return methods


def _formula_checks(foundation, method_names) -> dict[str, tuple[int, int]]:
    """(counted, formula) trainable parameters without the head on the digits foundation model."""
    import copy

    import tenfold.tuning as tt

    d, depth = foundation.embed_dim, len(foundation.blocks)
    hidden = int(foundation.blocks[0].mlp.fc1.out_features)
    formulas = {
        "vpt-shallow": ({"length": 4}, 4 * d), "vpt-deep": ({"length": 4}, depth * 4 * d),
        "pfeiffer": ({"hidden": 8}, depth * (2 * d * 8 + 8 + d)), "adaptformer": ({"hidden": 8}, depth * (2 * d * 8 + 8 + d)),
        "houlsby": ({"hidden": 8}, 2 * depth * (2 * d * 8 + 8 + d)), "lora-qv": ({"rank": 4}, depth * 4 * d * 4),
        "lora": ({"rank": 4}, depth * 4 * d * 4), "convpass": ({"hidden": 8}, 2 * depth * (2 * d * 8 + d + 9 * 64 + 16)),
        "ssf": ({}, 2 * (d + depth * (7 * d + hidden) + d)),
        "bitfit": ({}, d + depth * (3 * d + d + hidden + d + 2 * d) + d),
    }
    out = {}
    for name, (opts, formula) in formulas.items():
        if name in method_names:
            model = copy.deepcopy(foundation)
            model.reset_classifier(5)
            out[name] = (tt.count_parameters(tt.apply(model, name, **opts))["trainable_without_head"], formula)
    return out


@register("tuning-minivtab", paper="visual-tuning", config=MiniVTABConfig, order=10,
          description="prompt/adapter/parameter/remapping tuning of small pre-trained ViTs on a mini-VTAB")
def run(cfg: MiniVTABConfig, ctx: RunContext) -> Result:
    # One CPU thread: these models are tiny, and a second thread costs more in synchronisation than it
    # gains (far more when another process shares the cores). The caller's setting is restored after.
    with contextlib.ExitStack() as stack:
        if ctx.device.type == "cpu":
            stack.enter_context(fixed_threads(1))
        return _run(cfg, ctx)


def _run(cfg: MiniVTABConfig, ctx: RunContext) -> Result:
    import tenfold.tuning as tt
    from tenfold.tuning.protocol import StudentShape, is_efficient, trains_everything, tune_on_task

    methods = _method_list(cfg)
    started = time.perf_counter()
    if cfg.source == "vtab1k":
        foundations, infos = _vtab_backbone(cfg)
        kinds = ["vtab"]
    else:
        kinds = sorted({"shapes" if t == "shapes" else "digits" for t in cfg.tasks})
        foundations, infos = {}, {}
        for kind in kinds:
            foundations[kind], infos[kind] = tt.foundation_model(kind, cfg.cache_dir)
            ctx.log_metrics(stage="pretrain", foundation=kind, held_out_acc=infos[kind]["held_out_acc"],
                            cached=int(infos[kind]["cached"]))
    student = StudentShape(cfg.student_dim, cfg.student_depth, cfg.student_heads)
    acc: dict[tuple[str, str], list[float]] = {}
    params: dict[tuple[str, str], int] = {}
    seconds: dict[str, float] = {m: 0.0 for m in methods}
    unchanged: dict[str, bool] = {}
    with ctx.bar("mini-VTAB runs", len(cfg.tasks) * cfg.seeds * len(methods)) as bar:
        for task_name in cfg.tasks:
            for seed in range(cfg.seeds):
                task = _load_task(cfg, task_name, seed)
                if cfg.source == "mini" and cfg.test_size is not None and len(task.y_test) > cfg.test_size:
                    keep = torch.randperm(len(task.y_test), generator=ctx.generator(task_name, seed))[:cfg.test_size]
                    task.x_test, task.y_test = task.x_test[keep], task.y_test[keep]
                tuned = {}
                for method in methods:
                    efficient = is_efficient(method)
                    out = tune_on_task(method, foundations[task.foundation], task, options=cfg.options.get(method, {}),
                                       epochs=cfg.epochs, batch_size=cfg.batch_size,
                                       lr=cfg.full_lr if trains_everything(method) else cfg.lr, weight_decay=cfg.weight_decay,
                                       seed=1000 * seed + ctx.seed, student=student, teacher=tuned.get(cfg.kd_teacher),
                                       device=ctx.device)
                    if method == cfg.kd_teacher:
                        tuned[method] = out.model
                    acc.setdefault((method, task_name), []).append(out.accuracy)
                    params[(method, task_name)] = out.trainable
                    seconds[method] += out.seconds
                    if efficient:
                        unchanged[method] = unchanged.get(method, True) and out.backbone_unchanged
                    ctx.log_metrics(stage="tune", task=task_name, seed=seed, method=method, acc=out.accuracy,
                                    trainable=out.trainable, seconds=out.seconds)
                    bar.advance(1)

    mean = {m: statistics.fmean(statistics.fmean(acc[(m, t)]) for t in cfg.tasks) for m in methods}
    rows = []
    for m in methods:
        row: dict[str, Any] = {"method": m, "family": tt.get_method(m).family,
                               "trainable (digits ViT)": params.get((m, next((t for t in cfg.tasks if t != "shapes"),
                                                                             cfg.tasks[0])))}
        for t in cfg.tasks:
            vals = acc[(m, t)]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            row[t] = f"{100 * statistics.fmean(vals):.1f} ± {100 * sd:.1f}"
        row["mean"] = f"{100 * mean[m]:.1f}"
        row["seconds"] = f"{seconds[m]:.1f}"
        rows.append(row)

    claims = []
    if "linear" in mean:
        for m in methods:
            if is_efficient(m):
                claims.append(Claim.at_least(f"{m}: mean accuracy >= linear - 1 point", mean[m], mean["linear"] - 0.01))
        if "full" in mean:
            claims.append(Claim.at_least("full: mean accuracy >= linear", mean["full"], mean["linear"]))
    if unchanged:
        claims.append(Claim.true("frozen backbone bit-identical after AdamW with weight decay (every efficient run)",
                                 all(unchanged.values())))
    formulas = _formula_checks(foundations["digits"], methods) if "digits" in foundations else {}
    if formulas:
        claims.append(Claim.true("trainable parameters (without head) equal the closed-form formulas",
                                 all(c == f for c, f in formulas.values())))

    figure = _figure(ctx, methods, cfg.tasks, acc, params, mean)
    metrics: dict[str, float] = {f"acc_{m}": mean[m] for m in methods}
    metrics.update({f"trainable_{m}": float(params[(m, cfg.tasks[0])]) for m in methods})
    metrics.update({f"pretrain_acc_{k}": float(infos[k]["held_out_acc"]) for k in kinds if k != "vtab"})
    metrics["wall_seconds"] = time.perf_counter() - started
    if "linear" in mean:
        metrics["best_efficient_minus_linear"] = max((mean[m] for m in methods if is_efficient(m)),
                                                     default=mean["linear"]) - mean["linear"]
    cached = ", ".join(f"{k}: {'cached' if infos[k]['cached'] else 'pre-trained now'}, held-out acc "
                       f"{100 * infos[k]['held_out_acc']:.1f}%" if k != "vtab" else f"{cfg.backbone} from {cfg.weights}"
                       for k in kinds)
    return Result(
        metrics=metrics, claims=claims, figures=[figure],
        tables={"mini-VTAB accuracy (%, mean ± sd over seeds) and trainable parameters": markdown_table(rows),
                "parameter counts vs formulas (digits ViT, without head)": markdown_table(
                    [{"method": k, "counted": c, "formula": f} for k, (c, f) in formulas.items()])},
        key_metric="best_efficient_minus_linear",
        notes=(f"{len(methods)} methods x {len(cfg.tasks)} tasks x {cfg.seeds} seeds, {cfg.shots} shots per class, "
               f"{cfg.epochs} epochs of AdamW (lr {cfg.lr:g} frozen-backbone methods / {cfg.full_lr:g} full and remapping). "
               f"Foundation models: {cached}. Remapping rows train a {cfg.student_depth}-block D={cfg.student_dim} "
               f"student (weight selection from the foundation model; kd distils the tuned '{cfg.kd_teacher}' model)."),
    )


def _vtab_backbone(cfg: MiniVTABConfig) -> tuple[dict, dict]:
    """The VTAB-1k backbone from a local weight file; missing folders or files fail before any work."""
    import timm

    root = Path(cfg.vtab_root).expanduser() if cfg.vtab_root else None
    if root is None or not root.is_dir():
        raise DataError(f"vtab_root={cfg.vtab_root!r} is not a folder: expected the converted VTAB-1k folder "
                        "(one sub-folder per task with train800val200.txt and test.txt)")
    for task in cfg.tasks:
        for name in ("train800val200.txt", "test.txt"):
            if not (root / task / name).is_file():
                raise DataError(f"{root / task / name} does not exist: expected the VTAB-1k list of task {task!r}")
    weights = Path(cfg.weights).expanduser() if cfg.weights else None
    if weights is None or not weights.is_file():
        raise DataError(f"weights={cfg.weights!r} is not a file: expected local {cfg.backbone} weights "
                        "(.safetensors, .pth or .npz; nothing is downloaded)")
    model = timm.create_model(cfg.backbone, pretrained=True, pretrained_cfg_overlay={"file": str(weights)},
                              img_size=cfg.image_size)
    return {"vtab": model.eval()}, {"vtab": {"held_out_acc": float("nan"), "cached": True, "path": str(weights)}}


def _load_task(cfg: MiniVTABConfig, name: str, seed: int):
    from tenfold.tuning.tasks import DatasetTask, make_task
    from tenfold.tuning.vtab import vtab_task

    if cfg.source == "mini":
        return make_task(name, seed, cfg.shots)
    train, test, classes = vtab_task(cfg.vtab_root, name, cfg.image_size)
    return DatasetTask(name, "vtab", train, test, classes)


def _figure(ctx: RunContext, methods, tasks, acc, params, mean) -> str:
    import tenfold.tuning as tt

    fig, ax = new_figure(2)
    families = sorted({tt.get_method(m).family for m in methods})
    colours = {f: f"C{i}" for i, f in enumerate(families)}
    for m in methods:
        fam = tt.get_method(m).family
        x = params[(m, tasks[0])]
        ax[0].scatter(x, 100 * mean[m], c=colours[fam], label=fam)
        ax[0].annotate(m, (x, 100 * mean[m]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        for i, t in enumerate(tasks):
            ax[1].scatter(params[(m, t)], 100 * statistics.fmean(acc[(m, t)]), c=f"C{i}", s=12,
                          label=t if m == methods[0] else None)
    if "linear" in mean:
        ax[0].axhline(100 * mean["linear"] - 1, ls="--", c="gray", lw=0.8, label="claim: linear - 1 point")
    handles, labels = ax[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax[0].legend(unique.values(), unique.keys(), fontsize=7)
    ax[0].set(xscale="log", xlabel=f"trainable parameters ({tasks[0]} model)", ylabel="mean accuracy (%)",
              title="mini-VTAB: accuracy vs trainable parameters")
    ax[1].set(xscale="log", xlabel="trainable parameters", ylabel="accuracy (%)", title="per task (3-seed mean)")
    ax[1].legend(fontsize=7)
    return ctx.save_figure(fig, "accuracy_vs_parameters")
