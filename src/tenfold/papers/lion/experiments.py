"""``lion``: LION-style implicit prompts with lottery pruning vs VPT-deep on a frozen pre-trained ViT.

Protocol (spec sec. 7, task A): the digits foundation ViT (pre-trained on digits 0-4, frozen) is tuned on
digits 5-9 with ``shots`` labelled images per class (``val_shots`` of them held out as validation) and
tested on all the other images of 5-9. VPT-deep is the baseline, at LION's parameter budget: p prompts per
block, the smallest p with LION's count <= 0.885 x VPT-deep's (the paper's "up to 11.5% fewer"), the same
lr grid; neither reads raw pixels besides the backbone (LION's output-layer image summary is off,
``pool=0``); LION is trained at every sparsity rho of the sweep. Each method's lr is picked from the
same grid on validation accuracy (seed 0); the other seeds then run at that lr.

Paper claim (LION abstract, arXiv:2303.09992; spec sec. 3): LION beats VPT with fewer trainable parameters.
It is made three times, each with an ablation that removes one mechanism and keeps everything else (the
parameter count, the optimiser, the lr search, the data order):

- ``freeze_implicit=true``: the implicit layers keep their initial values (LION = frozen model + head);
- ``solve=one_step``: each equilibrium layer is replaced by one explicit step of the same layer (same
  parameters and initialisation; no fixed-point solve, no implicit gradient);
- ``score=random``: the lottery selection is replaced by random masks of the same sparsity (same soft
  phase, schedule and hard finalisation).

Checks: LION trains <= 0.885x VPT-deep's parameters (non-zero implicit weights + head, fixed by the
architecture and rho), residuals of every eval batch and every IFT backward solve within tolerance,
||J|| at both fixed points <= gamma. Solver statistics of every training step (forward iterations and
final relative residual of both layers) are written to ``solver_steps.json``; a forward solve that stops
above ``f_tol`` keeps torchdeq's lowest-residual iterate (a NonConvergenceWarning, counted in
``lion_train_nonconverged`` / ``lion_eval_nonconverged`` and reported as a run warning).
"""

from __future__ import annotations

import contextlib
import copy
import math
import statistics
import warnings

import torch
from torch import nn

from tenfold.data.digits import load_digits_arrays
from tenfold.engine.search import next_rate_outward, on_edge
from tenfold.engine import RunContext, Stage
from tenfold.engine.threads import fixed_threads
from tenfold.errors import DataError
from tenfold.experiments.registry import register
from tenfold.papers.lion.configs import LionConfig
from tenfold.implicit import NonConvergenceWarning
from tenfold.reporting import Check, PaperClaim, Result, markdown_table
from tenfold.reporting.figures import curves_figure, new_figure


PAPER = ("LION abstract (arXiv:2303.09992; the body's tables are not transcribed, spec visual_tuning.md sec. 3): "
         "higher accuracy than VPT with up to 11.5% fewer trainable parameters (CIFAR-10/100, ImageNet-100, "
         "Flowers, Dogs, Cars)")
ARMS = ("lion_test_acc", "vpt_test_acc")  # per-seed test accuracies of the two arms (ablation = baseline detection)

CLAIMS = [
    PaperClaim("LION beats VPT-deep (which has at least LION's parameter budget), each lr picked on validation",
               metric="acc_gain_over_vpt", at_least="thresholds.min_gain_over_vpt",
               ablation=["freeze_implicit=true"], arms=ARMS, paper=PAPER),
    PaperClaim("LION's equilibrium solve is what beats VPT-deep (ablation: one explicit step of the same layers)",
               metric="acc_gain_over_vpt", at_least="thresholds.min_gain_over_vpt",
               ablation=["solve=one_step"], arms=ARMS,
               paper=PAPER + "; the gain is attributed to the implicit (equilibrium) layers (abstract, Sec. 3)"),
    PaperClaim("LION's lottery pruning keeps it above VPT-deep (ablation: random masks of the same sparsity)",
               metric="acc_gain_over_vpt", at_least="thresholds.min_gain_over_vpt",
               ablation=["score=random"], arms=ARMS,
               paper=PAPER + "; the parameter saving comes from lottery-hypothesis pruning of the implicit layers "
                             "(abstract)"),
    Check("LION trainable parameters <= 0.885 x VPT-deep's (non-zero implicit weights + head)",
          metric="param_ratio", at_most="thresholds.target_ratio"),
    Check("each method's lr pick lies inside the rates its search tried (methods on an edge after lr_extend "
          "extensions)", metric="lr_on_edge", at_most="thresholds.max_lr_on_edge"),
    Check("forward solves: max relative residual over every eval batch", metric="lion_max_eval_residual",
          at_most="f_tol"),
    Check("IFT backward solves: max relative residual over every training step", metric="lion_max_backward_residual",
          at_most="thresholds.max_backward_residual"),
    Check("||J_f|| at the input layer's fixed point <= gamma", metric="in_jacobian_norm", at_most="gamma"),
    Check("||J_f|| at the output layer's fixed point <= gamma", metric="out_jacobian_norm", at_most="gamma"),
]


def few_shot_task(shots: int, split_seed: int, val_shots: int = 0):
    """Digits 5-9 relabelled 0-4: ``shots`` per class labelled (the first ``val_shots`` of them held out for
    validation), the rest for testing. Returns (train, val, test); val is empty when ``val_shots`` is 0."""
    x, y = load_digits_arrays()
    keep = y >= 5
    x, y = x[keep], y[keep] - 5
    train_idx, val_idx, test_idx = [], [], []
    g = torch.Generator().manual_seed(split_seed)
    for c in range(5):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        if len(idx) <= shots:
            raise DataError(f"shots={shots} leaves no test images of digit {c + 5} ({len(idx)} images)")
        val_idx.append(idx[:val_shots])
        train_idx.append(idx[val_shots:shots])
        test_idx.append(idx[shots:])
    tr, va, te = torch.cat(train_idx), torch.cat(val_idx), torch.cat(test_idx)
    return (x[tr], y[tr]), (x[va], y[va]), (x[te], y[te])


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> dict:
    """Accuracy, and for LION the solver statistics of EVERY eval batch (max relative residual, mean steps,
    forward passes above f_tol)."""
    model.eval()
    correct, residual, steps, nonconverged, batches = 0, 0.0, 0.0, 0, 0
    for i in range(0, len(y), batch):
        correct += int((model(x[i:i + batch]).argmax(-1) == y[i:i + batch]).sum())
        if hasattr(model, "solver_infos"):
            for info in model.solver_infos().values():
                if info is None:  # solve="one_step": no solver
                    continue
                residual = max(residual, info.max_residual)
                steps += info.mean_steps
                nonconverged += int(not info.converged)
            batches += 1
    return {"acc": correct / len(y), "residual": residual, "steps": steps / max(1, batches),
            "nonconverged": nonconverged}


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    return evaluate(model, x, y, batch)["acc"]


def train(model: nn.Module, data, cfg: LionConfig, generator: torch.Generator, pruner=None,
          on_epoch=None, lr: float | None = None) -> dict:
    """AdamW on the trainable parameters; with a pruner: soft lottery pruning, masks recomputed every
    epoch, hard from epoch ceil(finalize_at * epochs). Returns the max relative residual of the IFT
    backward solves over every step (0 without any) and, for LION, the forward solver's statistics of
    every training step (``solver_steps``: per layer, mean iterations and max relative residual over the
    batch; empty under ``solve="one_step"``) and the count of forward solves that stopped above f_tol."""
    x, y = data
    lr = cfg.lrs[0] if lr is None else lr
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    hard_from = math.ceil(cfg.finalize_at * cfg.epochs)
    backward_residual = 0.0
    solver_steps: list[dict] = []
    nonconverged = 0
    losses: list[float] = []   # mean training loss of each epoch
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(y), generator=generator)
        total = 0.0
        for i in range(0, len(y), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            total += float(loss.detach()) * len(idx)
            if hasattr(model, "solver_infos"):
                infos = {k: v for k, v in model.solver_infos().items() if v is not None}
                if infos:
                    solver_steps.append({f"{k}_{stat}": value for k, v in infos.items()
                                         for stat, value in (("steps", v.mean_steps), ("residual", v.max_residual))})
                    nonconverged += sum(not v.converged for v in infos.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if hasattr(model, "backward_infos"):
                for info in model.backward_infos().values():
                    if info is not None:
                        backward_residual = max(backward_residual, info.max_residual)
            soft = pruner is not None and not pruner.finalized
            if soft:
                pruner.after_backward()
                pruner.before_step()
            opt.step()
            if soft:
                pruner.after_step(lr)
            if hasattr(model, "tuning_after_step"):
                model.tuning_after_step()
        if pruner is not None and not pruner.finalized:
            pruner.recompute()
            if epoch + 1 >= hard_from:
                pruner.finalize()
        losses.append(total / len(y))
        if on_epoch is not None:
            on_epoch(epoch, float(loss))
    return {"backward_residual": backward_residual, "solver_steps": solver_steps, "nonconverged": nonconverged,
            "losses": losses}


def train_imp(model: nn.Module, data, cfg: LionConfig, generator: torch.Generator, pruner, on_epoch=None,
              lr: float | None = None) -> dict:
    """Iterative magnitude pruning with rewinding: train, prune ``imp_rate`` of the survivors by |theta|,
    rewind every trainable weight to epoch ``rewind_epoch`` (masks kept), repeat to floor(rho n) zeros,
    then train the final ticket."""
    from tenfold.tuning.lion_pruning import imp_zero_counts

    if cfg.rewind_epoch > 0:
        train(model, data, cfg.model_copy(update={"epochs": cfg.rewind_epoch}), generator, lr=lr)
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    worst, steps, nonconverged = 0.0, [], 0
    for zeros in imp_zero_counts(pruner.size, pruner.rho, cfg.imp_rate):
        round_ = train(model, data, cfg, generator, lr=lr)
        worst = max(worst, round_["backward_residual"])
        steps += round_["solver_steps"]
        nonconverged += round_["nonconverged"]
        pruner.prune_magnitude(zeros)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in start:
                    p.copy_(start[n])
    pruner.finalized = True
    out = train(model, data, cfg, generator, on_epoch=on_epoch, lr=lr)
    return {"backward_residual": max(worst, out["backward_residual"]), "solver_steps": steps + out["solver_steps"],
            "nonconverged": nonconverged + out["nonconverged"], "losses": out["losses"]}   # the final ticket's


def with_new_head(backbone: nn.Module, classes: int, seed: int) -> nn.Module:
    """A copy of ``backbone`` with a fresh ``classes``-way head; timm initialises it from the global
    generator, so that generator is seeded here and restored afterwards. VPT-deep and LION of one seed
    start from the same head."""
    import copy

    model = copy.deepcopy(backbone)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.reset_classifier(classes)
    return model.to(next(backbone.parameters()).device)


def run_vpt(backbone: nn.Module, data, evals: dict, cfg: LionConfig, seed: int, ctx: RunContext, lr: float) -> dict:
    import copy

    import tenfold.tuning as tt

    model = tt.apply(copy.deepcopy(backbone), "vpt-deep", length=cfg.vpt_length, seed=seed)
    trained = train(model, data, cfg, ctx.generator("vpt", seed), lr=lr)
    out = {"method": "VPT-deep", "seed": seed, "rho": float("nan"), "lr": lr,
           "params": tt.count_parameters(model)["trainable"], "losses": trained["losses"]}
    out.update({f"{k}_acc": evaluate(model, *v)["acc"] for k, v in evals.items()})
    return out


def run_lion(backbone: nn.Module, data, evals: dict, cfg: LionConfig, rho: float, seed: int, ctx: RunContext,
             lr: float) -> dict:
    import copy

    import tenfold.tuning as tt
    from tenfold.tuning.lion import lion_parameter_count
    from tenfold.tuning.lion_pruning import LotteryPruner

    model = tt.apply(copy.deepcopy(backbone), "lion", hidden=cfg.hidden, rank=cfg.rank, gamma=cfg.gamma,
                     pool=cfg.pool, solver=cfg.solver, f_max_iter=cfg.f_max_iter, eval_f_max_iter=cfg.eval_f_max_iter,
                     f_tol=cfg.f_tol, backward=cfg.backward, b_solver=cfg.b_solver, b_max_iter=cfg.b_max_iter,
                     b_tol=cfg.b_tol, seed=seed, solve=cfg.solve)
    if cfg.freeze_implicit:  # ablation: the implicit layers keep their initial values
        for layer in model.implicit_layers():
            for p in layer.parameters():
                p.requires_grad_(False)
    pruner = LotteryPruner(model, rho, score=cfg.score, decay=cfg.prune_decay,
                           generator=ctx.generator("masks", seed, str(rho)))

    log = None  # one metrics row per run (the stage's), so a resumed run never repeats rows

    with warnings.catch_warnings():
        # fallback of a forward solve that stops above f_tol: torchdeq's lowest-residual iterate is used;
        # the warning is counted (every training step and eval batch) and reported once per run below
        warnings.simplefilter("ignore", NonConvergenceWarning)
        generator = ctx.generator("lion", seed, str(rho))
        if cfg.pruning == "soft":
            trained = train(model, data, cfg, generator, pruner=pruner, on_epoch=log, lr=lr)
        else:
            trained = train_imp(model, data, cfg, generator, pruner, on_epoch=log, lr=lr)
        evals_out = {k: evaluate(model, *v) for k, v in evals.items()}
        diag = model.diagnostics(evals["test"][0][:64])
    counts = lion_parameter_count(model)
    out = {"method": "LION", "seed": seed, "rho": rho, "lr": lr, "params": counts["trainable"],
           "zeros": pruner.zero_count(), "prunable": pruner.size, "backward_residual": trained["backward_residual"],
           "train_nonconverged": trained["nonconverged"], "solver_steps": trained["solver_steps"],
           "losses": trained["losses"]}
    steps = trained["solver_steps"]
    for layer in ("input", "output"):
        out[f"train_{layer}_steps"] = statistics.fmean(r[f"{layer}_steps"] for r in steps) if steps else 0.0
        out[f"train_{layer}_residual"] = max((r[f"{layer}_residual"] for r in steps), default=0.0)
    for k, v in evals_out.items():
        out.update({f"{k}_acc": v["acc"], f"{k}_residual": v["residual"], f"{k}_steps": v["steps"],
                    f"{k}_nonconverged": v["nonconverged"]})
    out.update(diag)
    return out


def matched_vpt_length(backbone: nn.Module, cfg: LionConfig) -> int:
    """The smallest VPT-deep prompt length p with LION's budget at ``claim_rho`` <= target_ratio x VPT-deep's
    count (L p D + head): VPT-deep at about LION's budget / target_ratio, as the paper compares them."""
    import tenfold.tuning as tt
    from tenfold.tuning.lion import lion_parameter_count
    from tenfold.tuning.lion_pruning import prunable_weights

    model = with_new_head(backbone, 5, 0)
    lion = tt.apply(copy.deepcopy(model), "lion", hidden=cfg.hidden, rank=cfg.rank, gamma=cfg.gamma, pool=cfg.pool)
    prunable = sum(getattr(m, a).numel() for m, a in prunable_weights(lion).values())
    budget = lion_parameter_count(lion)["dense_trainable"] - math.floor(cfg.claim_rho * prunable)
    base = tt.count_parameters(tt.apply(copy.deepcopy(model), "vpt-deep", length=0))["trainable"]
    per_prompt = tt.count_parameters(tt.apply(copy.deepcopy(model), "vpt-deep", length=1))["trainable"] - base
    return max(1, math.ceil((budget / cfg.thresholds.target_ratio - base) / per_prompt))


def _pick(rows: list[dict]) -> dict:
    """The row with the best validation accuracy (ties: the smaller lr)."""
    return max(rows, key=lambda r: (r["val_acc"], -r["lr"]))


@register("lion", paper="lion", config=LionConfig, claims=CLAIMS, order=20, threads=1,
          description="equilibrium prompts + lottery pruning vs VPT-deep on a frozen foundation ViT, lr tuned on validation")
def run(cfg: LionConfig, ctx: RunContext) -> Result:
    # One CPU thread: the models are tiny and a second thread costs more in synchronisation than it gains
    # (far more when other processes share the cores). The caller's setting is restored after.
    with contextlib.ExitStack() as stack:
        if ctx.device.type == "cpu":
            stack.enter_context(fixed_threads(1))
        return _run(cfg, ctx)


def _run(cfg: LionConfig, ctx: RunContext) -> Result:
    from tenfold.tuning.foundation import foundation_model

    from tenfold.tuning.foundation import SPECS
    from tenfold.tuning.tasks import resize_images

    backbone, info = foundation_model(cfg.foundation)
    backbone = backbone.to(ctx.device)
    if cfg.vpt_length is None:
        cfg = cfg.model_copy(update={"vpt_length": matched_vpt_length(backbone, cfg)})
    spec = SPECS[cfg.foundation]
    train_set, val_set, test_set = ((resize_images(x, spec.img_size, spec.in_chans).to(ctx.device), y.to(ctx.device))
                                    for x, y in few_shot_task(cfg.shots, cfg.split_seed, cfg.val_shots))
    evals = {"val": val_set, "test": test_set}
    keys = [("VPT-deep", -1.0)] + [("LION", float(rho)) for rho in cfg.rhos]
    rows: list[dict] = []      # the runs of seeds 1.. at the picked lr, restored on --resume
    trials: list[dict] = []    # the seed-0 lr-search runs
    chosen: dict[str, float] = {}
    state = {"rows": rows, "trials": trials, "chosen": chosen}

    def mine(method: str, rho: float) -> list[dict]:
        return [t for t in trials if t["method"] == method and (method == "VPT-deep" or t["rho"] == rho)]

    def run_stage(name: str, jobs: list[tuple]) -> None:
        """One unit of the resumable stage = one training run ((method, rho), seed, lr or None: the pick)."""
        stage = Stage(ctx, name, state=state)
        for unit in stage.epochs(len(jobs)):
            (method, rho), seed, lr = jobs[unit - 1]
            lr = chosen[f"{method}/{rho:g}"] if lr is None else lr
            seeded = with_new_head(backbone, 5, int(ctx.generator("head", seed).initial_seed()))
            row = (run_vpt(seeded, train_set, evals, cfg, seed, ctx, lr) if method == "VPT-deep"
                   else run_lion(seeded, train_set, evals, cfg, rho, seed, ctx, lr))
            (trials if seed == 0 else rows).append(row)
            if seed == 0 and len(mine(method, rho)) >= len(cfg.lrs):   # the grid is done: pick on validation
                chosen[f"{method}/{rho:g}"] = _pick(mine(method, rho))["lr"]
            stage.log(method=method, rho=rho, seed=seed, lr=lr, val_acc=row["val_acc"], test_acc=row["test_acc"],
                      params=row["params"], eval_residual=row.get("test_residual", 0.0),
                      backward_residual=row.get("backward_residual", 0.0),
                      train_input_steps=row.get("train_input_steps", 0.0),
                      train_output_steps=row.get("train_output_steps", 0.0),
                      train_residual=max(row.get("train_input_residual", 0.0), row.get("train_output_residual", 0.0)),
                      train_nonconverged=row.get("train_nonconverged", 0))

    def tried(key: tuple) -> list[float]:
        return [t["lr"] for t in mine(*key)]

    # the lr search (seed 0, every lr of the grid) first; a pick on an edge of the rates tried grows the grid
    # by one rate outward (lr_extend times); then the other seeds at the lr each method picked on validation
    run_stage("runs", [(key, 0, lr) for key in keys for lr in cfg.lrs])
    for round_ in range(1, cfg.lr_extend + 1):
        grow = [(key, next_rate_outward(tried(key), chosen[f"{key[0]}/{key[1]:g}"])) for key in keys]
        grow = [(key, 0, lr) for key, lr in grow if lr is not None]
        if not grow:
            break
        run_stage(f"extend-{round_}", grow)
    run_stage("seeds", [(key, seed, None) for seed in range(1, cfg.seeds) for key in keys])
    edges = [f"{m}/{rho:g}" for m, rho in keys if on_edge(tried((m, rho)), chosen[f"{m}/{rho:g}"])]
    if edges:
        ctx.warn(f"lr still on the edge of the searched grid after {cfg.lr_extend} extension(s) (lr_extend) for "
                 f"{', '.join(edges)}: their optimum may lie outside it")
    # each method's seed-0 run at its pick, then the other seeds
    rows = [next(t for t in mine(m, rho) if t["lr"] == chosen[f"{m}/{rho:g}"]) for m, rho in keys] + rows
    return summarize(rows, cfg, ctx, info, {(k.split("/")[0], float(k.split("/")[1]) if k.split("/")[0] == "LION"
                                              else -1.0): v for k, v in chosen.items()}, lr_on_edge=len(edges))


def _mean(rows: list[dict], key: str) -> float:
    return statistics.fmean(r[key] for r in rows)


def summarize(rows: list[dict], cfg: LionConfig, ctx: RunContext, foundation: dict, chosen: dict,
              lr_on_edge: int = 0) -> Result:
    vpt = sorted((r for r in rows if r["method"] == "VPT-deep"), key=lambda r: r["seed"])
    vpt_acc, vpt_params = _mean(vpt, "test_acc"), _mean(vpt, "params")
    table = []
    for rho in cfg.rhos:
        runs = [r for r in rows if r["method"] == "LION" and r["rho"] == rho]
        table.append({"rho": rho, "lr": chosen[("LION", rho)], "acc": _mean(runs, "test_acc"),
                      "acc_std": statistics.pstdev(r["test_acc"] for r in runs),
                      "params": _mean(runs, "params"), "ratio_to_vpt": _mean(runs, "params") / vpt_params,
                      "zeros": runs[0]["zeros"], "prunable": runs[0]["prunable"],
                      "eval_steps": _mean(runs, "test_steps"),
                      "nonconverged_eval_batches": sum(r["test_nonconverged"] for r in runs)})
    best = next(e for e in table if e["rho"] == cfg.claim_rho)  # fixed in the config, not chosen on test
    lion = sorted((r for r in rows if r["method"] == "LION" and r["rho"] == cfg.claim_rho), key=lambda r: r["seed"])
    lion_all = [r for r in rows if r["method"] == "LION"]
    gains = [lr_["test_acc"] - vr["test_acc"] for lr_, vr in zip(lion, vpt)]
    eval_nc = sum(r["test_nonconverged"] + r["val_nonconverged"] for r in lion_all)
    if eval_nc:
        ctx.warn(f"LION solvers stopped above f_tol={cfg.f_tol:g} in {eval_nc} evaluation forward passes "
                 "(see the every-run table and metrics.csv in_residual/out_residual)")
    max_eval_residual = max(max(r["test_residual"], r["val_residual"]) for r in lion_all)
    train_nc = sum(r["train_nonconverged"] for r in lion_all)
    if train_nc:
        ctx.warn(f"LION solvers stopped above f_tol={cfg.f_tol:g} in {train_nc} training forward passes (the "
                 "lowest-residual iterate was used; solver_steps.json has every step's iterations and residual)")
    ctx.write_json("solver_steps.json", {
        "note": "per LION run and training step: mean forward iterations and max relative residual of each layer "
                "(empty under solve=one_step, which calls no solver)",
        "runs": [{"seed": r["seed"], "rho": r["rho"], "lr": r["lr"], "steps": r["solver_steps"]} for r in lion_all]})

    fig, ax = new_figure(1)
    ax = ax[0] if hasattr(ax, "__len__") else ax
    ax.errorbar([e["params"] for e in table], [100 * e["acc"] for e in table],
                yerr=[100 * e["acc_std"] for e in table], marker="o", label="LION")
    for e in table:
        ax.annotate(f"rho={e['rho']:g}", (e["params"], 100 * e["acc"]), textcoords="offset points", xytext=(4, 4))
    ax.errorbar([vpt_params], [100 * vpt_acc], yerr=[100 * statistics.pstdev(r["test_acc"] for r in vpt)], marker="s",
                ls="none", c="C3", label=f"VPT-deep p={cfg.vpt_length}")
    ax.axvline(cfg.thresholds.target_ratio * vpt_params, ls="--", c="gray",
               label=f"{cfg.thresholds.target_ratio:g} x VPT-deep params")
    ax.set(xlabel="trainable parameters (non-zero)", ylabel="test accuracy (%)",
           title=f"digits 5-9 ({cfg.foundation} ViT), {cfg.shots - cfg.val_shots}+{cfg.val_shots} shots/class, {cfg.seeds} seeds")
    ax.legend()
    figure = ctx.save_figure(fig, "accuracy_vs_parameters")
    # every seed's training loss per epoch at the picked lr: a flat end says the budget let training converge
    curves = {f"digits 5-9 on the {cfg.foundation} ViT": {
        **{"VPT-deep": [r.get("losses", []) for r in vpt]},
        **{f"LION rho={rho:g}": [r.get("losses", []) for r in rows if r["method"] == "LION" and r["rho"] == rho]
           for rho in cfg.rhos}}}
    ctx.write_json("training_curves.json", curves)
    curves_png = ctx.save_figure(curves_figure(curves), "training_curves")

    metrics = {"vpt_acc": vpt_acc, "vpt_params": vpt_params, "vpt_length": cfg.vpt_length,
               "vpt_lr": chosen[("VPT-deep", -1.0)], "lr_on_edge": float(lr_on_edge),
               "lion_claim_rho": best["rho"], "lion_lr": best["lr"], "lion_acc": best["acc"],
               "lion_params": best["params"], "param_ratio": best["ratio_to_vpt"],
               "acc_gain_over_vpt": statistics.fmean(gains), "lion_eval_nonconverged": eval_nc,
               "lion_max_eval_residual": max_eval_residual,
               "lion_max_backward_residual": max(r["backward_residual"] for r in lion_all),
               "lion_train_nonconverged": train_nc,
               "lion_train_input_steps": _mean(lion_all, "train_input_steps"),
               "lion_train_output_steps": _mean(lion_all, "train_output_steps"),
               "lion_max_train_residual": max(max(r["train_input_residual"], r["train_output_residual"])
                                              for r in lion_all),
               "in_jacobian_norm": max(r["in_jacobian_norm"] for r in lion_all),
               "out_jacobian_norm": max(r["out_jacobian_norm"] for r in lion_all),
               "in_one_step_gap": _mean(lion, "in_one_step_gap"), "out_one_step_gap": _mean(lion, "out_one_step_gap"),
               "foundation_held_out_acc": foundation["held_out_acc"]}
    for e in table:
        metrics[f"lion_acc_rho{e['rho']:g}"] = e["acc"]
        metrics[f"lion_params_rho{e['rho']:g}"] = e["params"]
    columns = ("method", "seed", "rho", "lr", "val_acc", "test_acc", "params")
    per_run = markdown_table([{k: r.get(k) for k in columns} for r in rows])
    return Result(
        metrics=metrics, figures=[figure, curves_png], key_metric="acc_gain_over_vpt",
        samples={"acc_gain_over_vpt": gains, ARMS[0]: [r["test_acc"] for r in lion],
                 ARMS[1]: [r["test_acc"] for r in vpt]},
        tables={"LION (means over seeds)": markdown_table(
                    [{k: e[k] for k in ("rho", "lr", "acc", "acc_std", "params", "ratio_to_vpt", "eval_steps",
                                        "nonconverged_eval_batches")} for e in table]),
                "VPT-deep": markdown_table([{"lr": metrics["vpt_lr"], "acc": vpt_acc, "params": vpt_params,
                                             "length": cfg.vpt_length}]),
                "every run": per_run},
        notes=(("Frozen digits ViT (held-out acc {:.3f} on digits 0-4)" if cfg.foundation == "digits" else
                "Frozen fractal ViT (held-out acc {:.3f} on its 500 formula-driven categories; the digits resized to "
                "32 px RGB)").format(foundation["held_out_acc"]) + "; task: digits 5-9, "
               f"{cfg.shots - cfg.val_shots} training + {cfg.val_shots} validation images per class, {cfg.epochs} "
               f"epochs AdamW; lr of each method picked on validation (seed 0) from {cfg.lrs}. LION = our design (spec "
               f"sec. 3): contractive input/output equilibrium layers (Lipschitz bound gamma={cfg.gamma:g}, "
               f"{cfg.solver} forward / {cfg.b_solver} backward, {cfg.backward}), soft lottery pruning ({cfg.score}), "
               f"hard masks after {cfg.finalize_at:g} of the epochs. Parameters count non-zero implicit weights plus "
               "the head. Residuals: every eval batch (val and test) and every IFT backward solve."
               + (" ABLATION freeze_implicit: the implicit layers stay at init." if cfg.freeze_implicit else "")
               + (" ABLATION solve=one_step: one explicit step of each layer, no solver." if cfg.solve == "one_step"
                  else "")
               + (" ABLATION score=random: random masks of the same sparsity." if cfg.score == "random" else "")),
    )
