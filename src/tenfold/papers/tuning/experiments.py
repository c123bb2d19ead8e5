"""``tuning-minivtab``: every registered tuning method on a mini-VTAB of four few-shot tasks (Visual Tuning survey).

Paper claims (task means of per-seed accuracies, 95% intervals over seeds): each claimed efficient method
beats the linear probe by at least ``thresholds.min_gain_vs_linear`` (0.02, the figure's dashed line is
drawn from the same declared claim) and reaches full fine-tuning; full fine-tuning beats the linear probe.
Ablations (``freeze_new``, ``freeze_full``) remove only the mechanism: VPT loses its prompts; adapters, LoRA
and BitFit keep their tensors at init, which makes them the linear probe computation for computation, and
the claims declare their arms (per-seed accuracies) so the report says "ablation = baseline" for them;
``freeze_full`` trains full fine-tuning's head only, with the linear probe's own lr grid. Checks: the frozen
backbone is bit-identical after training (AdamW with weight decay) in every parameter-efficient run;
trainable counts equal the closed-form formulas. No order among the efficient methods is asserted: at
this scale it is dominated by noise.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from tenfold.engine.threads import fixed_threads
from tenfold.engine import RunContext, Stage
from tenfold.engine.search import next_rate_outward, on_edge
from tenfold.errors import DataError
from tenfold.experiments.registry import register
from tenfold.papers.tuning.configs import PAPER_VTAB, CLAIMED, MiniVTABConfig
from tenfold.reporting import Check, PaperClaim, Result, markdown_table
from tenfold.reporting.figures import curves_figure, new_figure


# The methods whose paper claims are made (VTAB-1k, ViT-B/16 IN-21k, 19-task means from V-PETL Bench; spec sec. 1).
LINEAR_VTAB, FULL_VTAB = 52.94, 65.57


def arm(method: str) -> str:
    """The per-seed sample key of a method's task-mean accuracy (a claim's arm)."""
    return f"seed_acc_{method}"


def _claims() -> list:
    out = []
    for m, value in PAPER_VTAB.items():
        out.append(PaperClaim(f"{m} beats the linear probe (task-mean accuracy gain)", metric=f"gain_vs_linear_{m}",
                              at_least="thresholds.min_gain_vs_linear", ablation=["freeze_new=true"],
                              arms=(arm(m), arm("linear")),
                              paper=f"VTAB-1k 19-task mean, ViT-B/16 IN-21k: {m} {value} vs linear {LINEAR_VTAB} "
                                    "(V-PETL Bench)"))
        out.append(PaperClaim(f"{m} reaches full fine-tuning (task-mean accuracy gain)", metric=f"gain_vs_full_{m}",
                              at_least="thresholds.min_gain_vs_full", ablation=["freeze_new=true"],
                              arms=(arm(m), arm("full")),
                              paper=f"VTAB-1k 19-task mean, ViT-B/16 IN-21k: {m} {value} vs full {FULL_VTAB} "
                                    "(V-PETL Bench)"))
    out.append(PaperClaim("full fine-tuning beats the linear probe", metric="gain_full_vs_linear",
                          at_least="thresholds.full_min_gain_vs_linear", ablation=["freeze_full=true"],
                          arms=(arm("full"), arm("linear")),
                          paper=f"VTAB-1k 19-task mean, ViT-B/16 IN-21k: full {FULL_VTAB} vs linear {LINEAR_VTAB}"))
    out.append(Check("frozen backbone bit-identical after AdamW with weight decay (efficient runs that changed it)",
                     metric="backbone_changed_runs", at_most="thresholds.max_changed"))
    out.append(Check("trainable parameters (without head) equal the closed-form formulas (methods that differ)",
                     metric="formula_mismatches", at_most="thresholds.max_mismatch"))
    out.append(Check("every method's lr pick lies inside the rates its search tried (task-method pairs on an edge "
                     "after lr_extend extensions)", metric="lr_on_edge", at_most="thresholds.max_lr_on_edge"))
    return out


CLAIMS = _claims()


def _method_list(cfg: MiniVTABConfig) -> list[str]:
    """The methods in run order: kd after its teacher; unknown names fail before any work."""
    import tenfold.tuning as tt

    methods = list(cfg.methods) if cfg.methods is not None else tt.method_names()
    for name in [*methods, *cfg.options]:
        tt.get_method(name)
    from tenfold.tuning.registry import check_options

    for name, opts in cfg.options.items():
        check_options(name, opts)
    if "kd" in methods and cfg.kd_teacher not in methods:
        methods.insert(0, cfg.kd_teacher)
    if "kd" in methods:
        methods.remove("kd")
        methods.append("kd")
    return methods


def _formula_checks(foundation, method_names) -> dict[str, tuple[int, int]]:
    """(counted, formula) trainable parameters without the head on a foundation model (any width and depth)."""
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


@register("tuning-minivtab", paper="tuning", config=MiniVTABConfig, order=10, claims=CLAIMS, threads=1,
          description="prompt/adapter/parameter/remapping tuning of small pre-trained ViTs on a mini-VTAB")
def run(cfg: MiniVTABConfig, ctx: RunContext) -> Result:
    # One CPU thread: these models are tiny, and a second thread costs more in synchronisation than it
    # gains (far more when another process shares the cores). The caller's setting is restored after.
    with contextlib.ExitStack() as stack:
        if ctx.device.type == "cpu":
            stack.enter_context(fixed_threads(1))
        return _run(cfg, ctx)


def _split_validation(task, val_shots: int, seed: int):
    """(train, val) of a task: the first ``val_shots`` of each class's shots (a seeded order) for validation."""
    from tenfold.tuning.tasks import DatasetTask

    if isinstance(task, DatasetTask):  # VTAB-1k: 20 % of train800val200 as validation, seeded
        n = len(task.train_data)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        cut = n // 5
        return (torch.utils.data.Subset(task.train_data, order[cut:]),
                torch.utils.data.Subset(task.train_data, order[:cut]))
    g = torch.Generator().manual_seed(20_000 + seed)
    val, train = [], []
    for c in torch.unique(task.y_train):
        idx = torch.nonzero(task.y_train == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        val.append(idx[:val_shots])
        train.append(idx[val_shots:])
    tr, va = torch.cat(train), torch.cat(val)
    return (task.x_train[tr], task.y_train[tr]), (task.x_train[va], task.y_train[va])


def _base_lr(cfg: MiniVTABConfig, method: str) -> float:
    """The centre of a method's lr grid; under ``freeze_full`` full fine-tuning trains its head only and is
    searched on the linear probe's grid (full_lr's grid would make its gap to linear an lr artefact)."""
    from tenfold.tuning.protocol import trains_everything

    if method == "full" and cfg.freeze_full:
        return cfg.lr
    return cfg.full_lr if trains_everything(method) else cfg.lr


def _run(cfg: MiniVTABConfig, ctx: RunContext) -> Result:
    import tenfold.tuning as tt
    from tenfold.tuning.protocol import StudentShape, is_efficient

    methods = _method_list(cfg)
    started = time.perf_counter()
    if cfg.source == "vtab1k":
        foundations, infos = _vtab_backbone(cfg)
        kinds = ["vtab"]
    else:
        kinds = (["fractal"] if cfg.foundation == "fractal" else
                 sorted({"shapes" if t == "shapes" else "digits" for t in cfg.tasks}))
        foundations, infos = {}, {}
        for kind in kinds:
            foundations[kind], infos[kind] = tt.foundation_model(kind, cfg.cache_dir)
    student = StudentShape(cfg.student_dim, cfg.student_depth, cfg.student_heads)
    decays = cfg.weight_decays or [cfg.weight_decay]
    # the searched grid of each method: (lr, weight decay) pairs, its base lr times each factor
    grid = {m: [(f * _base_lr(cfg, m), wd) for f in cfg.lr_factors for wd in decays] for m in methods}
    runs: dict[str, dict] = {}     # "task|method|seed" -> the run kept (seed 0: the one at the picked lr)
    trials: dict[str, list] = {}   # "task|method" -> seed-0 runs of the lr grid
    chosen: dict[str, float] = {}  # "task|method" -> picked lr
    chosen_wd: dict[str, float] = {}  # "task|method" -> picked weight decay
    state = {"runs": runs, "trials": trials, "chosen": chosen, "chosen_wd": chosen_wd}
    task_cache: dict[tuple[str, int], tuple] = {}

    def task_of(name: str, seed: int):
        if (name, seed) not in task_cache:
            task_cache.clear()
            task = _load_task(cfg, name, seed)
            if cfg.source == "mini" and cfg.test_size is not None and len(task.y_test) > cfg.test_size:
                keep = torch.randperm(len(task.y_test), generator=ctx.generator(name, seed))[:cfg.test_size]
                task.x_test, task.y_test = task.x_test[keep], task.y_test[keep]
            task_cache[(name, seed)] = (task, *_split_validation(task, cfg.val_shots, seed))
        return task_cache[(name, seed)]

    def train_one(task_name: str, method: str, seed: int, lr: float, wd: float) -> dict:
        task, train, val = task_of(task_name, seed)
        teacher = None
        if method == "kd":  # its teacher, tuned at its own picked lr on the same task and seed
            key = f"{task_name}|{cfg.kd_teacher}"
            teacher = _tune(cfg, cfg.kd_teacher, foundations, task, train, val, chosen[key], seed, ctx, student,
                            weight_decay=chosen_wd[key])["model"]
        out = _tune(cfg, method, foundations, task, train, val, lr, seed, ctx, student, teacher, weight_decay=wd)
        out.pop("model")
        return {"task": task_name, "method": method, "seed": seed, "lr": lr, "weight_decay": wd, **out}

    def pick(key: str) -> None:
        best = max(trials[key], key=lambda r: (r["val_acc"], -r["lr"], -r["weight_decay"]))
        chosen[key], chosen_wd[key] = best["lr"], best["weight_decay"]
        runs[f"{key}|0"] = best

    def run_stage(name: str, jobs: list[tuple]) -> None:
        """One unit of the resumable stage = one training run (task, method, seed, (lr, wd) or None: picked)."""
        stage = Stage(ctx, name, state=state)
        for unit in stage.epochs(len(jobs)):
            task_name, method, seed, setting = jobs[unit - 1]
            key = f"{task_name}|{method}"
            lr, wd = (chosen[key], chosen_wd[key]) if setting is None else setting
            row = train_one(task_name, method, seed, lr, wd)
            if setting is not None:
                trials.setdefault(key, []).append(row)
                if len(trials[key]) >= len(grid[method]):   # the grid is done (kd needs its teacher's pick)
                    pick(key)
            else:
                runs[f"{key}|{seed}"] = row
            stage.log(task=task_name, method=method, seed=seed, lr=lr, weight_decay=wd, val_acc=row["val_acc"],
                      acc=row["acc"], trainable=row["trainable"], seconds=row["seconds"])

    def tried(key: str) -> list[float]:   # the rates tried at the picked weight decay
        return [r["lr"] for r in trials[key] if r["weight_decay"] == chosen_wd[key]]

    # the search (seed 0, every method and task, each (lr, wd) of its grid); an lr picked on an edge of what
    # was tried grows the grid by one rate outward, up to lr_extend times; then the other seeds at the pick
    run_stage("runs", [(t, m, 0, setting) for t in cfg.tasks for m in methods for setting in grid[m]])
    for round_ in range(1, cfg.lr_extend + 1):
        keys = [f"{t}|{m}" for t in cfg.tasks for m in methods]
        grow = [(k, next_rate_outward(tried(k), chosen[k])) for k in keys]
        grow = [(k, lr) for k, lr in grow if lr is not None]
        if not grow:
            break
        run_stage(f"extend-{round_}", [(*k.split("|"), 0, (lr, chosen_wd[k])) for k, lr in grow])
    run_stage("seeds", [(t, m, seed, None) for t in cfg.tasks for seed in range(1, cfg.seeds) for m in methods])
    edge_keys = sorted(k for k in chosen if on_edge(tried(k), chosen[k]))
    if edge_keys:
        ctx.warn(f"lr still on the edge of the searched grid after {cfg.lr_extend} extension(s) (lr_extend) for "
                 f"{', '.join(edge_keys)}: their optimum may lie outside it")

    acc = {(m, t): [runs[f"{t}|{m}|{s}"]["acc"] for s in range(cfg.seeds)] for m in methods for t in cfg.tasks}
    params = {(m, t): runs[f"{t}|{m}|0"]["trainable"] for m in methods for t in cfg.tasks}
    seconds = {m: sum(r["seconds"] for k, rs in trials.items() if k.endswith(f"|{m}") for r in rs)
               + sum(r["seconds"] for k, r in runs.items() if k.split("|")[1] == m and not k.endswith("|0"))
               for m in methods}
    changed = sum(1 for r in runs.values() if is_efficient(r["method"]) and not r["unchanged"])
    mean = {m: statistics.fmean(statistics.fmean(acc[(m, t)]) for t in cfg.tasks) for m in methods}
    per_seed = {m: [statistics.fmean(acc[(m, t)][s] for t in cfg.tasks) for s in range(cfg.seeds)] for m in methods}
    rows = []
    for m in methods:
        row: dict[str, Any] = {"method": m, "family": tt.get_method(m).family,
                               "trainable": params[(m, cfg.tasks[0])]}
        for t in cfg.tasks:
            vals = acc[(m, t)]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            row[t] = (f"{100 * statistics.fmean(vals):.1f} ± {100 * sd:.1f} (lr {chosen[f'{t}|{m}']:.2g}"
                      + (f", wd {chosen_wd[f'{t}|{m}']:.2g})" if len(decays) > 1 else ")"))
        row["mean"] = f"{100 * mean[m]:.1f}"
        row["seconds"] = f"{seconds[m]:.1f}"
        rows.append(row)

    samples: dict[str, list[float]] = {}
    if "linear" in per_seed:
        for m in methods:
            if m != "linear":
                samples[f"gain_vs_linear_{m}"] = [a - b for a, b in zip(per_seed[m], per_seed["linear"])]
    if "full" in per_seed:
        for m in methods:
            if m != "full":
                samples[f"gain_vs_full_{m}"] = [a - b for a, b in zip(per_seed[m], per_seed["full"])]
        if "linear" in per_seed:
            samples["gain_full_vs_linear"] = samples.pop("gain_vs_linear_full")
    samples.update({arm(m): per_seed[m] for m in methods})  # the claims' arms (ablation = baseline detection)
    for claim in CLAIMS:  # a claim whose methods were left out of the run reads NaN (reported, never holds)
        if isinstance(claim, PaperClaim) and claim.metric not in samples:
            samples[claim.metric] = [float("nan")] * cfg.seeds
    counted_on = next((k for k in ("digits", "fractal") if k in foundations), None)
    formulas = _formula_checks(foundations[counted_on], methods) if counted_on else {}
    figure = _figure(ctx, cfg, methods, acc, params, mean)
    # every seed's training loss per epoch at the picked lr: a flat end says the budget let training converge
    curves = {t: {m: [runs[f"{t}|{m}|{s}"].get("losses", []) for s in range(cfg.seeds)] for m in methods}
              for t in cfg.tasks}
    ctx.write_json("training_curves.json", curves)
    curves_png = ctx.save_figure(curves_figure(curves), "training_curves")
    metrics: dict[str, float] = {f"acc_{m}": mean[m] for m in methods}
    metrics.update({f"trainable_{m}": float(params[(m, cfg.tasks[0])]) for m in methods})
    metrics.update({f"pretrain_acc_{k}": float(infos[k]["held_out_acc"]) for k in kinds if k != "vtab"})
    metrics["linear_seed_sd"] = statistics.stdev(per_seed["linear"]) if "linear" in per_seed and cfg.seeds > 1 else 0.0
    metrics["backbone_changed_runs"] = float(changed)
    metrics["lr_on_edge"] = float(len(edge_keys))
    metrics["formula_mismatches"] = float(sum(c != f for c, f in formulas.values()))
    metrics["wall_seconds"] = time.perf_counter() - started
    if "linear" in mean:
        metrics["best_efficient_minus_linear"] = max((mean[m] for m in methods if is_efficient(m)),
                                                     default=mean["linear"]) - mean["linear"]
    def origin(info: dict) -> str:
        if info.get("shipped"):
            return f"shipped weights sha256 {info['sha256'][:12]}"
        return "cached" if info["cached"] else "pre-trained now"

    cached = ", ".join(f"{k}: {origin(infos[k])}, held-out acc "
                       f"{100 * infos[k]['held_out_acc']:.1f}%" if k != "vtab" else f"{cfg.backbone} from {cfg.weights}"
                       for k in kinds)
    return Result(
        metrics=metrics, samples=samples, figures=[figure, curves_png],
        tables={"mini-VTAB test accuracy (%, mean ± sd over seeds; lr picked on validation)": markdown_table(rows),
                f"parameter counts vs formulas ({counted_on} ViT, without head)": markdown_table(
                    [{"method": k, "counted": c, "formula": f} for k, (c, f) in formulas.items()])},
        key_metric="best_efficient_minus_linear",
        notes=(f"{len(methods)} methods x {len(cfg.tasks)} tasks x {cfg.seeds} seeds, {cfg.shots - cfg.val_shots} "
               f"training + {cfg.val_shots} validation shots per class, {cfg.epochs} epochs of AdamW; every method's "
               f"lr picked on validation (seed 0) from {cfg.lr_factors} x its base lr ({cfg.lr:g} frozen-backbone "
               f"methods / {cfg.full_lr:g} full and remapping)"
               + (f", jointly with the weight decay from {decays}" if len(decays) > 1 else
                  f", weight decay {decays[0]:g}") + f". Foundation models: {cached}."
               + (" ABLATION freeze_new: the methods' own tensors stay at init (full as it is)." if cfg.freeze_new
                  else "") + (" ABLATION freeze_full: full trains only its head." if cfg.freeze_full else "")),
    )


def _tune(cfg, method, foundations, task, train, val, lr, seed, ctx, student, teacher=None,
          weight_decay: float | None = None) -> dict:
    from tenfold.tuning.protocol import tune_on_task
    from tenfold.tuning.training import accuracy

    out = tune_on_task(method, foundations[task.foundation], task, train=train, options=cfg.options.get(method, {}),
                       epochs=cfg.epochs, batch_size=cfg.batch_size, lr=lr,
                       weight_decay=cfg.weight_decay if weight_decay is None else weight_decay,
                       seed=1000 * seed + ctx.seed, student=student, teacher=teacher, device=ctx.device,
                       freeze_new=cfg.freeze_full if method == "full" else cfg.freeze_new)
    return {"model": out.model, "acc": out.accuracy, "val_acc": accuracy(out.model, val, batch_size=256),
            "trainable": out.trainable, "seconds": out.seconds, "unchanged": out.backbone_unchanged,
            "losses": list(out.losses)}


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
    try:
        model = timm.create_model(cfg.backbone, pretrained=True, pretrained_cfg_overlay={"file": str(weights)},
                                  img_size=cfg.image_size)
    except Exception as exc:  # timm raises RuntimeError / KeyError / safetensors errors for a wrong file
        reason = " ".join(str(exc).split())[:200]
        raise DataError(f"weights={cfg.weights!r} are not {cfg.backbone} weights (a timm checkpoint or safetensors "
                        f"of that model): {type(exc).__name__}: {reason}") from None
    return {"vtab": model.eval()}, {"vtab": {"held_out_acc": float("nan"), "cached": True, "path": str(weights)}}


def _load_task(cfg: MiniVTABConfig, name: str, seed: int):
    from tenfold.tuning.tasks import DatasetTask, make_task
    from tenfold.tuning.vtab import vtab_task

    if cfg.source == "mini":
        task = make_task(name, seed, cfg.shots)
        if cfg.foundation != "native":
            from tenfold.tuning.foundation import SPECS
            from tenfold.tuning.tasks import on_foundation

            spec = SPECS[cfg.foundation]
            task = on_foundation(task, cfg.foundation, spec.img_size, spec.in_chans)
        return task
    train, test, classes = vtab_task(cfg.vtab_root, name, cfg.image_size)
    return DatasetTask(name, "vtab", train, test, classes)


def _figure(ctx: RunContext, cfg: MiniVTABConfig, methods, acc, params, mean) -> str:
    """Accuracy vs trainable parameters; the claims' bars (linear + min gain, full + min gain) are read from
    the declared claims, so the figure, the config and the docstring cannot disagree."""
    import tenfold.tuning as tt

    tasks = cfg.tasks
    claim_of = {c.metric: c for c in CLAIMS}  # every claimed method shares these two thresholds
    bar = {base: claim_of[f"gain_vs_{base}_{CLAIMED[0]}"].bounds(cfg)[0] for base in ("linear", "full")}
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
    for base, gain in bar.items():
        if base in mean:
            ax[0].axhline(100 * (mean[base] + gain), ls="--", c="gray" if base == "linear" else "k", lw=0.8,
                          label=f"claim: {base} {100 * gain:+.3g} points")
    handles, labels = ax[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax[0].legend(unique.values(), unique.keys(), fontsize=7)
    ax[0].set(xscale="log", xlabel=f"trainable parameters ({tasks[0]} model)", ylabel="mean accuracy (%)",
              title="mini-VTAB: accuracy vs trainable parameters")
    ax[1].set(xscale="log", xlabel="trainable parameters", ylabel="accuracy (%)", title="per task (3-seed mean)")
    ax[1].legend(fontsize=7)
    return ctx.save_figure(fig, "accuracy_vs_parameters")
